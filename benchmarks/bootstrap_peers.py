"""Bootstrap intervals side by side: dask-meta's Bootstrap against EconML's and CausalML's.

One command, one machine, the same data, base models and number of replicates for everyone:

    ./dev.sh bench bootstrap_peers                                  # T and DR, 1M rows, 20
    .venv/bin/python benchmarks/bootstrap_peers.py --rows 20000 --bootstraps 3   # a quick look

* Data: ``dask_meta.datasets.make_experiment`` (20 covariates, ``--variants`` variants,
  default 2, linear effects, seed ``--seed``): ``--rows`` training rows written to parquet
  from the cluster, and a held-out sample of ``--test-rows`` (default 10,000) rows of the
  same design (partition :data:`TEST_PARTITION` of the generator, drawn apart from every
  training row) in a parquet file of its own. Every package reads these files.
* Base models: ``LGBMRegressor(n_estimators=100, verbose=-1)`` for every outcome and effect
  model, ``LGBMClassifier`` with the same params for propensities (``peers.py``'s setting);
  ``--folds`` (default 5) for every cross-fitting package.
* Replicates: ``--bootstraps`` (default 20) for everyone; intervals at ``--alpha`` 0.05.

Each package, and what its timer holds ("s" in the table: the point fit, the replicates and
the ATE interval; the held-out CATE intervals are timed apart):

* dask-meta: ``Bootstrap(learner, n_bootstraps=B, random_state=seed).fit(X, y, w)`` then
  ``ate_interval(alpha)`` (percentile), on the parquet read lazily (``--input lazy``,
  the read counted; ``persisted``: persisted on the cluster first, untimed), on a
  LocalCluster of 1 worker x all cores with ``plan="auto"``, as ``peers.py``'s headline: one
  process holds the data once and the planner chooses between multi-threaded LightGBM
  models and single-threaded ones side by side, as the peers' processes use LightGBM's
  threads. ``fit`` fits the point estimate and B replicates in one planner run: each
  replicate weighs every row by a Poisson(1) count (nothing is resampled) and LightGBM's
  replicates share one binned Dataset; it also computes every replicate's ATE, the
  count-weighted mean of its in-sample CATE. The learner does the peers' work
  (``peers.py``'s configurations, :func:`peers.peer_config`): ``peers-folds`` for EconML
  and for the T-learner (each model of the T-learner fitted once; the DR-learner's outcome
  and propensity models cross-fitted, the outcome models on every row as EconML's
  (``cross_fit_all_rows``), its effect model fitted once, no overall nuisance model) and
  ``peers-pairwise`` for CausalML's DR-learner (a binary propensity model per variant, the
  outcome models over 3 folds, with their overall models); ``--configs default``
  adds metalearners' folds. Held out: ``predict_interval(X_test, is_oos=True)``.
* EconML 0.17: ``TLearner(models=...)`` and ``DRLearner(model_propensity=...,
  model_regression=..., model_final=..., cv=folds)``, fitted with
  ``inference=BootstrapInference(n_bootstrap_samples=B, n_jobs=-1)``, then
  ``ate_interval(X, T0=0, T1=k)``, which is
  ``effect_inference(X).population_summary().conf_int_mean()``. Its ``BootstrapEstimator``
  clones the whole estimator B times and refits each clone on rows drawn with replacement
  (n of them; stratified by treatment for the DR-learner, whose ``_strata`` is the
  treatment; not for the T-learner), from numpy's global random state (seeded here),
  besides the point fit on all rows; ``n_jobs=-1`` (``--econml-n-jobs``) fits the clones
  in joblib threads, one per core, each LightGBM with all cores. Its default
  ``bootstrap_type`` is ``"pivot"`` (the width of a pivot interval equals the percentile
  one's). Its ATE interval is not a bootstrap percentile of the ATE: ``conf_int_mean`` is a
  normal interval around the mean CATE with ``stderr_mean`` = sqrt(mean over rows of each
  row's bootstrap CATE variance), an upper bound (as if the rows' errors were perfectly
  correlated); the table also gives the width of the replicates' own ATE percentiles
  ("replicates"). Held out: ``effect_interval(X_test)``.
* CausalML 0.18: ``BaseTRegressor(learner=...)`` and ``BaseDRRegressor(learner=...)`` (the
  same regressor for the outcome and effect models, its 3 rotated folds fixed), then
  ``fit_bootstrap_ensemble(X, w, y, p, n_bootstraps=B, bootstrap_size=n)``: B clones, each
  refitted on ``bootstrap_size`` rows drawn with replacement; the intervals are the
  replicates' CATE percentiles, and the ATE interval the percentiles of their mean CATE
  over the training rows, as ``estimate_ate(bootstrap_ci=True)`` computes it. Run once with
  ``bootstrap_size = n`` (package ``causalml``: the same bootstrap as everyone's) and once
  with its default of 10,000 rows (``causalml, bootstrap_size=10,000``, a subsample
  bootstrap: the intervals of a 10,000-row fit, wider than the n-row fit's). Its public
  one-call routes do the same work less usefully: ``fit_predict(return_ci=True)`` gives
  intervals only for the rows it fits on, and ``estimate_ate(bootstrap_ci=True)`` refits
  a second set of B replicates of its own. The DR-learner takes propensity scores ``p``:
  ``_peers_runner.propensities`` (the same LGBMClassifier, one binary model per variant
  against control, out of fold), their computation counted in the time; every replicate
  reuses the scores at its drawn rows (CausalML does not refit the propensities, so
  their uncertainty is not in its intervals).

The ATEs differ in what they resample: dask-meta's replicate ATE is the count-weighted mean
of the replicate's CATE over the training rows (the covariates resampled too: the population
ATE's interval), EconML's and CausalML's the plain mean of the replicate's CATE over the
fixed training rows (the sample-average CATE's).

Reported per learner and package: the time, dask-meta's time over the package's (its
configuration doing the package's work), the ATE interval's width, the held-out CATE
intervals' mean width and coverage of the true CATE (widths also as ratios to dask-meta's),
and sqrt(PEHE): the RMSE of the point CATE of the training rows against the truth (over all
variants). Results: ``benchmarks/results/bootstrap_peers.json`` (written after each package;
``--resume`` goes on from the peers' checkpoint beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _bootstrap_peers_runner as runner  # noqa: E402
import accuracy  # noqa: E402
import peers  # noqa: E402
from _cluster import local_client, machine_load  # noqa: E402

RESULTS = HERE / "results" / "bootstrap_peers.json"
RUNNER = HERE / "_bootstrap_peers_runner.py"
#: the held-out rows: this partition of the generator (``--test-rows`` rows per partition),
#: above the training data's partitions (250,000 rows each) up to 2.5 billion rows
TEST_PARTITION = 10_000
#: the peers (``--peers``): their package name in the results and, for CausalML, the rows
#: each replicate draws (None: all the training rows' number, n)
PEERS: dict[str, tuple[str, int | None]] = {
    "econml": ("econml", None),
    "causalml": ("causalml", None),
    "causalml-10k": (
        f"causalml, bootstrap_size={runner.CAUSALML_DEFAULT_SIZE:,}",
        runner.CAUSALML_DEFAULT_SIZE,
    ),
}
LEARNERS = ("T", "DR")


def log(message: str) -> None:
    print(f"[bootstrap-peers] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="training rows")
    parser.add_argument("--test-rows", type=int, default=10_000, help="held-out rows")
    parser.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=LEARNERS)
    parser.add_argument("--bootstraps", type=int, default=20, help="replicates")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--variants", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--peers",
        nargs="*",
        default=list(PEERS),
        choices=tuple(PEERS),
        help="causalml: bootstrap_size = the rows; causalml-10k: its default, 10,000",
    )
    parser.add_argument(
        "--configs",
        nargs="*",
        default=None,
        choices=tuple(peers.OURS),
        help="dask-meta's configurations (default: those doing the chosen peers' work)",
    )
    parser.add_argument(
        "--econml-n-jobs",
        type=int,
        default=-1,
        help="BootstrapInference's n_jobs: joblib threads fitting EconML's replicates, each "
        "LightGBM with all cores (default -1, its default: one per core)",
    )
    parser.add_argument("--plan", default="auto", choices=("auto", "none"))
    parser.add_argument(
        "--input",
        default="lazy",
        choices=("lazy", "persisted"),
        help="dask-meta's training data: read lazily from parquet (counted in its time) or "
        "persisted on the cluster before its timer starts, as the peers' are in memory",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the fits of an earlier run with the same --results (dask-meta's from its "
        "JSON, the peers' from its checkpoint) and run only the others",
    )
    return parser.parse_args(argv)


def configs(args: argparse.Namespace, learner: str) -> list[str]:
    """dask-meta's configurations for ``learner``, in :data:`peers.OURS` order (those of the
    peers' work that apply to it: :data:`peers.PEER_CONFIGS`)."""
    wanted = set(args.configs or ())
    if args.configs is None:
        wanted = {peers.peer_config(learner, p.split("-")[0]) for p in args.peers}
    usable = {"default", *peers.PEER_CONFIGS[learner]}
    return [c for c in peers.OURS if c in wanted & usable]


def write_data(args: argparse.Namespace, train: Path, test: Path) -> None:
    """The training rows to parquet from the cluster; the held-out rows to one file."""
    from dask_meta.datasets import make_experiment

    assert args.rows <= TEST_PARTITION * 250_000, "the held-out partition would overlap"
    make_experiment(args.rows, 20, args.variants, seed=args.seed).to_parquet(
        train, write_index=False
    )
    held = make_experiment(
        (TEST_PARTITION + 1) * args.test_rows,
        20,
        args.variants,
        rows_per_partition=args.test_rows,
        seed=args.seed,
    )
    held.get_partition(TEST_PARTITION).compute().to_parquet(test, index=False)


def fit_dask_meta(
    args: argparse.Namespace, client, train: Path, test: Path, learner: str, config: str
) -> dict:
    import dask.dataframe as dd
    import numpy as np
    import pandas as pd
    from distributed import wait

    from dask_meta import Bootstrap
    from dask_meta.datasets import cate_names, feature_names
    from dask_meta.planner import parallel_efficiency

    ddf = dd.read_parquet(train)
    features, cates = feature_names(ddf), cate_names(ddf)
    if args.input == "persisted":
        ddf = client.persist(ddf)
        wait(ddf)
    held = pd.read_parquet(test)
    est, fit_kwargs = peers.dask_meta_learner(args, client, learner, config)
    boot = Bootstrap(est, n_bootstraps=args.bootstraps, random_state=args.seed)
    start = time.perf_counter()
    boot.fit(ddf[features], ddf["y"], ddf["w"], **fit_kwargs)
    fit_s = time.perf_counter() - start
    ate_interval = boot.ate_interval(args.alpha)[:, 0, :]
    total_s = time.perf_counter() - start

    start = time.perf_counter()
    intervals = boot.predict_interval(held[features], is_oos=True, alpha=args.alpha)[:, :, 0, :]
    cate_interval_s = time.perf_counter() - start
    mse = peers.in_sample_mse(client, boot, ddf[features], ddf[cates])
    report = boot.fit_report_
    out = {
        "fit_s": fit_s,
        "total_s": total_s,
        "cate_interval_s": cate_interval_s,
        "interval": "CATE and ATE percentile",
        "point_test": np.asarray(boot.predict(held[features], is_oos=True))[:, :, 0],
        "ate": boot.ate_[:, 0],
        "ate_lower": ate_interval[:, 0],
        "ate_upper": ate_interval[:, 1],
        "ate_replicates": boot.ate_replicates_[:, :, 0],
        "lower": intervals[..., 0],
        "upper": intervals[..., 1],
        "pehe_in": float(np.mean(mse)) ** 0.5,
        "true_ate": client.compute(ddf[cates].mean(), sync=True).to_numpy(),
    }
    job = {
        "package": peers.OURS[config],
        "config": config,
        "learner": learner,
        "rows": args.rows,
        "seed": args.seed,
        "folds": args.folds,
        "bootstraps": args.bootstraps,
        "bootstrap_size": args.rows,
        "alpha": args.alpha,
    }
    return {
        **runner.summary(job, out, held[cates].to_numpy()),
        "input": args.input,
        "fits": len(report),
        "shared_bins": bool(report.attrs.get("shared_bins")),
        "plan": report.attrs.get("plan", {}),
        "efficiency": parallel_efficiency(report, sum(client.nthreads().values()), fit_s),
    }


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else ""


def table(results: list[dict], learners: list[str]) -> str:
    """One markdown row per learner and package; the ratios against dask-meta's
    configuration doing that package's work."""
    heads = [
        "learner",
        "package",
        "rows per replicate",
        "s (fit + ATE interval)",
        "dask-meta s / package s",
        "ATE interval width",
        "width / dask-meta's",
        "ATE width, replicates",
        "held-out CATE interval width",
        "width / dask-meta's",
        "CATE coverage",
        "sqrt(PEHE)",
        "held-out intervals s",
    ]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    ours = set(peers.OURS.values())
    for learner in learners:
        mine = [r for r in results if r["learner"] == learner]
        by_package = {r["package"]: r for r in mine}
        for r in mine:
            dm = None
            if r["package"] not in ours:
                config = peers.peer_config(learner, r["package"].split(",")[0])
                dm = by_package.get(peers.OURS[config])
            cells = [
                learner,
                r["package"],
                f"{r['bootstrap_size']:,}",
                f"{r['total_s']:.1f}",
                _ratio(dm["total_s"], r["total_s"]) if dm else "",
                f"{r['ate_width']:.4f}",
                _ratio(r["ate_width"], dm["ate_width"]) if dm else "",
                f"{r['ate_width_replicates']:.4f}",
                f"{r['cate_width']:.4f}",
                _ratio(r["cate_width"], dm["cate_width"]) if dm else "",
                f"{r['cate_coverage']:.3f}",
                f"{r['pehe_in']:.4f}",
                f"{r['cate_interval_s']:.1f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()


def peer_versions(python: Path | None) -> dict:
    if python is None:
        return {}
    done = subprocess.run(
        [str(python), str(RUNNER), "versions"], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def save(args, cores: int, load: tuple, results: list[dict], versions: dict) -> str:
    """Write what is measured so far (a long run that stops keeps its finished rows)."""
    text = table(results, args.learners)
    document = {
        "benchmark": "bootstrap_peers",
        "date": date.today().isoformat(),
        "commit": _commit(),
        "machine": {
            "cores": cores,
            "platform": platform.platform(),
            "load_average": load,
            "cluster": f"LocalCluster of 1 worker x {cores} threads (dask-meta)",
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "versions": versions,
        "rows": results,
        "table": text,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(document, indent=2, default=str))
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    python = accuracy.ensure_peers_venv() if args.peers else None
    load = machine_load()
    cores = len(os.sched_getaffinity(0))
    versions = {
        "python": platform.python_version(),
        **{n: version(n) for n in ("dask-meta", "dask", "lightgbm", "scikit-learn")},
        "peers": peer_versions(python),
    }
    results: list[dict] = []
    ours = set(peers.OURS.values())
    if args.resume and args.results.exists():
        results = [r for r in json.loads(args.results.read_text())["rows"] if r["package"] in ours]
    checkpoint = accuracy.Checkpoint(args.results, args.resume)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dask-meta-bootstrap-peers-") as tmp_name:
        tmp = Path(tmp_name)
        train, test = tmp / f"train-{args.rows}.parquet", tmp / "heldout.parquet"
        with local_client(1, cores) as client:
            write_data(args, train, test)
            for learner in args.learners:
                for config in configs(args, learner):
                    if any((r["learner"], r["config"]) == (learner, config) for r in results):
                        continue  # --resume: fitted in the earlier run
                    r = fit_dask_meta(args, client, train, test, learner, config)
                    results.append(r)
                    log(
                        f"{learner} {r['package']}: {r['total_s']:.1f} s "
                        f"({time.perf_counter() - started:.0f} s so far)"
                    )
                    save(args, cores, load, results, versions)
        # the cluster is closed: the peers get the cores to themselves
        for peer in args.peers:
            package, size = PEERS[peer]
            jobs = [
                {
                    "data": str(train),
                    "test": str(test),
                    # the checkpoint's key: one per size and number of replicates
                    "dataset": f"generated-{args.rows}-B{args.bootstraps}",
                    "rows": args.rows,
                    "seed": args.seed,
                    "learner": learner,
                    "base": "lgbm100",
                    "folds": args.folds,
                    "package": package,
                    "bootstraps": args.bootstraps,
                    "bootstrap_size": min(size or args.rows, args.rows),
                    "alpha": args.alpha,
                    "n_jobs": args.econml_n_jobs if peer == "econml" else None,
                }
                for learner in args.learners
            ]
            results += accuracy.run_peer(python, jobs, tmp, checkpoint, RUNNER)
            log(f"{peer} done ({time.perf_counter() - started:.0f} s so far)")
            save(args, cores, load, results, versions)

    text = save(args, cores, load, results, versions)
    print(text)
    print(f"\nresults: {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
