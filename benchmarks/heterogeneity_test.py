"""Size and power of the BLP test of heterogeneity (and of the GATES top-minus-bottom test).

Each replication draws fresh rows of one generated experiment
(``make_experiment(..., n_features=5, n_variants=2, seed=0)``: partition ``r`` of the frame
is replication ``r``, so the design is fixed and the rows independent), fits a DR-learner
with ``LinearRegression`` outcome and treatment models and a ``LogisticRegression``
propensity model, and tests "the CATE carries no information about the effect"
(``blp_test``, beta2 = 0, two-sided, HC0) at level ``--level``. Settings:

* ``held-out``: the learner is fitted on the first half of the rows; the CATE and the
  nuisances (``is_oos=True``, the models fitted on the first half) are predicted on the
  second half, where the test runs: the CATE and the scores' nuisances never saw those
  rows, the design the BLP test assumes.
* ``in-sample``: the learner is fitted on all rows and the test runs on its cross-fitted
  in-sample CATE and nuisances (``is_oos=False``).

With ``effect="constant"`` there is no heterogeneity: the rejection rate is the test's size
(about ``--level`` if it is right). With ``effect="linear"`` it is the power. The table
gives per setting the rejections of the BLP and of the GATES (5 groups, highest minus lowest)
tests, their binomial standard errors, and the mean and standard deviation of beta2 (1 for
a CATE on the right scale). Data in memory (numpy), the learner on one LocalCluster.

    ./dev.sh bench heterogeneity_test [--replications 200] [--rows 4000] [--folds 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _cluster import local_client

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "heterogeneity_test.runs.json"
SETTINGS = {
    "constant effect, held-out": ("constant", "held-out"),
    "linear effect, held-out": ("linear", "held-out"),
    "constant effect, in-sample": ("constant", "in-sample"),
    "linear effect, in-sample": ("linear", "in-sample"),
}
HEADER = {
    "benchmark": "heterogeneity_test",
    "script": "benchmarks/heterogeneity_test.py",
    "setup": (
        "Size and power of blp_test (HC0, two-sided, normal) and of the GATES highest-minus-"
        "lowest test (5 groups): make_experiment(n_features=5, n_variants=2, seed=0), one "
        "partition of fresh rows per replication; DR-learner with LinearRegression / "
        "LogisticRegression; held-out (fit on half, test on the other half with is_oos=True) "
        "or in-sample (cross-fitted, is_oos=False) CATE and nuisances."
    ),
    "fields": {
        "date": "day the run's numbers were recorded (YYYY-MM-DD)",
        "commit": "the commit that recorded the run's numbers in the repository",
        "machine": "where it ran, and the Dask cluster it used",
        "command": "what was run (./dev.sh bench NAME runs .venv/bin/python benchmarks/NAME.py)",
        "rows": "the numbers, one object per table row",
        "notes": "conditions of the run and what it showed",
    },
    "runs": [],
}


def replicate(
    design: str, rows: tuple[np.ndarray, np.ndarray, np.ndarray], args: argparse.Namespace
) -> dict:
    """One replication: fit, predict, test. ``rows``: the replication's X, y and w."""
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from dask_meta import DRLearner
    from dask_meta.metrics import blp_test, gates

    X, y, w = rows
    learner = DRLearner(
        is_classification=False,
        n_variants=2,
        nuisance_model_factory=LinearRegression,
        propensity_model_factory=LogisticRegression,
        treatment_model_factory=LinearRegression,
        n_folds=args.folds,
        random_state=0,
    )
    if design == "held-out":
        half = len(y) // 2
        learner.fit(X[:half], y[:half], w[:half])
        X, y, w, is_oos = X[half:], y[half:], w[half:], True
    else:
        learner.fit(X, y, w)
        is_oos = False
    cate = learner.predict(X, is_oos=is_oos)[:, 0, 0]
    nuisances = {
        "mu0": learner.predict_nuisance(X, "variant_outcome_model", 0, is_oos=is_oos),
        "mu1": learner.predict_nuisance(X, "variant_outcome_model", 1, is_oos=is_oos),
        "propensity": learner.predict_nuisance(X, "propensity_model", 0, is_oos=is_oos)[:, 1],
    }
    blp = blp_test(cate, y, w, **nuisances)
    table = gates(cate, y, w, **nuisances, n_groups=5)
    return {
        "het": blp.het,
        "blp_reject": blp.het_pvalue < args.level,
        "gates_reject": table.attrs["difference_pvalue"] < args.level,
    }


def data(effect: str, args: argparse.Namespace) -> Any:
    from dask_meta.datasets import feature_names, make_experiment

    frame = make_experiment(
        args.replications * args.rows,
        n_features=5,
        n_variants=2,
        effect=effect,
        rows_per_partition=args.rows,
        seed=0,
    )
    return frame, feature_names(frame)


def commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    )
    return out.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--rows", type=int, default=4_000, help="rows per replication")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--level", type=float, default=0.05)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--no-record", action="store_true", help="do not append to the runs")
    args = parser.parse_args(argv)

    table = []
    start = time.perf_counter()
    with local_client(1, 2):
        for name in args.settings:
            effect, design = SETTINGS[name]
            frame, features = data(effect, args)
            runs = []
            for r in range(args.replications):
                part = frame.partitions[r].compute()
                rows = (part[features].to_numpy(), part["y"].to_numpy(), part["w"].to_numpy())
                runs.append(replicate(design, rows, args))
            het = np.array([x["het"] for x in runs])
            row: dict[str, Any] = {"setting": name, "replications": len(runs)}
            for test in ("blp", "gates"):
                rate = float(np.mean([x[f"{test}_reject"] for x in runs]))
                row[f"{test}_rejection_rate"] = round(rate, 4)
                row[f"{test}_se"] = round(float(np.sqrt(rate * (1 - rate) / len(runs))), 4)
            row["het_mean"] = round(float(het.mean()), 3)
            row["het_sd"] = round(float(het.std(ddof=1)), 3)
            table.append(row)
            print(f"{name}: done after {time.perf_counter() - start:.0f} s", flush=True)
    print(
        f"\nBLP test of heterogeneity at level {args.level}: {args.replications} replications "
        f"of {args.rows:,} rows, DR-learner (linear models, {args.folds} folds)\n"
    )
    print(
        "| setting | replications | BLP rejection rate (se) | GATES top-bottom rejection "
        "rate (se) | beta2 mean (sd) |"
    )
    print("|---|---|---|---|---|")
    for row in table:
        print(
            f"| {row['setting']} | {row['replications']} | {row['blp_rejection_rate']:.3f} "
            f"({row['blp_se']:.3f}) | {row['gates_rejection_rate']:.3f} ({row['gates_se']:.3f})"
            f" | {row['het_mean']:.2f} ({row['het_sd']:.2f}) |"
        )
    elapsed = time.perf_counter() - start
    print(f"\n{elapsed:.0f} s in all")
    if not args.no_record:
        document = json.loads(RESULTS.read_text()) if RESULTS.exists() else dict(HEADER)
        document["runs"].append(
            {
                "date": datetime.date.today().isoformat(),
                "commit": commit(),
                "machine": (
                    f"{platform.system()} {platform.machine()}, "
                    f"{len(os.sched_getaffinity(0))} cores; a LocalCluster of 1 worker x 2 threads"
                ),
                "command": "./dev.sh bench heterogeneity_test " + " ".join(argv or sys.argv[1:]),
                "rows": table,
                "notes": (
                    f"level {args.level}, {args.rows} rows, {args.folds} folds, {elapsed:.0f} s"
                ),
            }
        )
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(document, indent=2) + "\n")
        print(f"appended to {RESULTS.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
