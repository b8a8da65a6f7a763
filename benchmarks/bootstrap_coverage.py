"""Coverage of dask-meta's bootstrap intervals on generated data with a known effect.

Each replication draws an independent sample of ``--rows`` rows of one generated design
(``make_experiment``: linear outcome and linear effect, observational treatment with
logistic propensities, two variants; replication ``r`` is the design's partition ``r``), fits
a ``Bootstrap`` of the T- and the DR-learner with linear base models (least squares for
outcomes and effects, logistic regression for the propensity: correctly specified), and
checks:

* whether the 95% ATE interval (percentile and normal) holds the population ATE, which is
  the design's constant effect ``tau0`` (the covariates are standard normal);
* the share of rows of a held-out sample (``--test-rows``, the same for every replication)
  whose true CATE lies in their 95% percentile interval (out-of-sample prediction), and the
  intervals' mean width;
* the mean bootstrap standard error of the ATE against the standard deviation of the ATE
  estimates over the replications (the standard error it should estimate).

    ./dev.sh bench bootstrap_coverage --replications 200 --bootstraps 100

It prints one table row per learner and writes ``benchmarks/results/bootstrap_coverage.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _cluster import local_client, machine_load  # noqa: E402

RESULTS = HERE / "results" / "bootstrap_coverage.json"
SEED = 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--bootstraps", type=int, default=100)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--test-rows", type=int, default=2_000)
    parser.add_argument("--features", type=int, default=5)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--learners", nargs="+", default=["T", "DR"], choices=["T", "DR"])
    parser.add_argument("--alpha", type=float, default=0.05)
    return parser.parse_args(argv)


def learner_of(name: str, folds: int, client):
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from dask_meta import DRLearner, TLearner

    if name == "T":
        return TLearner(False, 2, LinearRegression, n_folds=folds, random_state=0, client=client)
    return DRLearner(
        False,
        2,
        LinearRegression,
        LinearRegression,
        LogisticRegression,
        n_folds=folds,
        random_state=0,
        client=client,
    )


def population_ate(features: int) -> float:
    """``tau0``: the mean of the linear effect over standard normal covariates."""
    from dask_meta.datasets import _draw_design

    return float(_draw_design(SEED, features, 2, "linear", True, 1.0).tau0[0])


def binomial_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from dask_meta import Bootstrap
    from dask_meta.datasets import make_experiment

    load = machine_load()
    truth = population_ate(args.features)
    # partition r is replication r's sample; the last one, after every replication's, the
    # held-out rows
    experiment = make_experiment(
        (args.replications + 1) * args.rows,
        args.features,
        2,
        effect="linear",
        rows_per_partition=args.rows,
    )
    features = [f"x{i}" for i in range(args.features)]
    test = experiment.get_partition(args.replications).compute().iloc[: args.test_rows]
    rows = {name: [] for name in args.learners}
    started = time.time()
    with local_client(2, 1) as client:
        for r in range(args.replications):
            data = experiment.get_partition(r).compute()
            for name in args.learners:
                t0 = time.perf_counter()
                boot = Bootstrap(
                    learner_of(name, args.folds, client), args.bootstraps, random_state=r
                ).fit(data[features], data["y"], data["w"])
                seconds = time.perf_counter() - t0
                percentile = boot.ate_interval(args.alpha).ravel()
                normal = boot.ate_interval(args.alpha, method="normal").ravel()
                cate = boot.predict_interval(test[features], is_oos=True, alpha=args.alpha)
                lower, upper = cate[:, 0, 0, 0], cate[:, 0, 0, 1]
                true_cate = test["cate_1"].to_numpy()
                rows[name].append(
                    {
                        "ate": float(boot.ate_.ravel()[0]),
                        "se": float(boot.ate_stderr_.ravel()[0]),
                        "covered_percentile": bool(percentile[0] <= truth <= percentile[1]),
                        "covered_normal": bool(normal[0] <= truth <= normal[1]),
                        "width": float(percentile[1] - percentile[0]),
                        "cate_coverage": float(
                            np.mean((lower <= true_cate) & (true_cate <= upper))
                        ),
                        "cate_width": float(np.mean(upper - lower)),
                        "seconds": seconds,
                    }
                )
            if (r + 1) % 10 == 0:
                print(f"{r + 1} replications, {time.time() - started:.0f} s", file=sys.stderr)
    table = summary(rows, args.replications)
    print(table)
    write(args, rows, table, truth, load)
    return 0


def summary(rows: dict[str, list[dict]], n: int) -> str:
    lines = [
        "| learner | ATE coverage, percentile | ATE coverage, normal | mean ATE interval "
        "width | bootstrap SE / SD of ATE estimates | CATE coverage (held-out rows) | mean "
        "CATE interval width | fit s per replication |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in rows.items():
        pct = float(np.mean([r["covered_percentile"] for r in runs]))
        nrm = float(np.mean([r["covered_normal"] for r in runs]))
        sd = float(np.std([r["ate"] for r in runs], ddof=1))
        se = float(np.mean([r["se"] for r in runs]))
        lines.append(
            f"| {name} | {pct:.3f} ± {binomial_se(pct, n):.3f} | {nrm:.3f} ± "
            f"{binomial_se(nrm, n):.3f} | {np.mean([r['width'] for r in runs]):.4f} | "
            f"{se:.4f} / {sd:.4f} = {se / sd:.2f} | "
            f"{np.mean([r['cate_coverage'] for r in runs]):.3f} | "
            f"{np.mean([r['cate_width'] for r in runs]):.4f} | "
            f"{np.mean([r['seconds'] for r in runs]):.1f} |"
        )
    return "\n".join(lines)


def write(args, rows, table, truth, load) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "bootstrap_coverage",
                "date": date.today().isoformat(),
                "commit": commit,
                "args": vars(args),
                "population_ate": truth,
                "machine": {"platform": platform.platform(), "load_average": load},
                "runs": rows,
                "table": table,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
