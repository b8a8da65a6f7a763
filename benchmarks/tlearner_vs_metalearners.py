"""A learner's fit time and accuracy: dask-meta against metalearners 0.13.0, same data, one run.

``--learner`` picks S, T (default), X, R or DR. Both fit it with LightGBM
(``LGBMRegressor(n_estimators=100, verbose=-1)``, and ``LGBMClassifier`` for propensities) on
generated data (default 1M rows x 20 features, 3 variants, 5 folds):

* the data are generated once with ``dask_meta.datasets.make_experiment`` and written to
  parquet from the cluster, in a temporary directory;
* dask-meta fits on an embedded ``LocalCluster`` reading that parquet lazily, with the
  planner's defaults (it chooses the LightGBM threads); its time includes reading the
  parquet, which is how dask-meta works out of core;
* metalearners runs in its own virtualenv (``.venv-parity``, because it needs
  scikit-learn < 1.8) through ``_metalearners_runner.py``, which reads the parquet into
  pandas (not timed) and tries its three levels of parallelism: LightGBM ``n_jobs`` in
  {1, all cores} x ``n_jobs_cross_fitting`` in {None, -1} x ``n_jobs_base_learners`` in
  {None, -1}. ``--quick`` runs only its default (all cores for LightGBM, None, None).
  Every configuration but the default is stopped once it has run ``--cap`` times dask-meta's
  fit time (default 1.0; 0 runs each to the end): past that point it is slower than
  dask-meta, so it cannot change whether dask-meta is at least as fast as metalearners' best;
  the table shows it as "> cap". The default configuration is always timed to the end.

The cluster is closed before metalearners runs, so the two never share the cores. Start-up
costs are left out on both sides: the cluster's worker imports LightGBM before the timed
fit, and the runner starts joblib's process pool before its first one.

Reported: the fit wall time (``time.perf_counter`` around ``fit``), the RMSE of the
in-sample (cross-fitted) CATE against the true ``cate_k`` per variant, and dask-meta's
parallel efficiency (core-seconds of the single-model fits / (cores x wall time)). The
target is dask-meta at least as fast as the best metalearners configuration, with an
efficiency of at least 0.85.

    ./dev.sh bench tlearner_vs_metalearners [--rows 50000 --quick]
    .venv/bin/python benchmarks/tlearner_vs_metalearners.py [--rows 50000 --quick]

Results are also written to ``benchmarks/results/tlearner_vs_metalearners.json``.
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
from importlib.metadata import version
from pathlib import Path

from _cluster import local_client, machine_load
from _peers_runner import model_kwargs

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RUNNER = HERE / "_metalearners_runner.py"
PARITY_PYTHON = REPO / ".venv-parity" / "bin" / "python"
RESULTS = HERE / "results" / "{learner}learner_vs_metalearners.json"

TARGET_RATIO = 1.0
TARGET_EFFICIENCY = 0.85


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    cores = available_cores()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--variants", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--trees", type=int, default=100, help="LightGBM n_estimators")
    parser.add_argument("--seed", type=int, default=0, help="data, and both learners' folds")
    parser.add_argument(
        "--quick", action="store_true", help="metalearners: only its default configuration"
    )
    parser.add_argument(
        "--cap",
        type=float,
        default=1.0,
        help="stop non-default metalearners configurations after this multiple of dask-meta's "
        "fit time (0: no cap)",
    )
    parser.add_argument("--workers", type=int, default=1, help="dask-meta LocalCluster workers")
    parser.add_argument("--learner", default="T", choices=("S", "T", "X", "R", "DR"))
    parser.add_argument(
        "--threads",
        type=int,
        default=cores,
        help=f"threads per worker (default: this machine's cores, {cores})",
    )
    parser.add_argument(
        "--metalearners-python",
        type=Path,
        default=PARITY_PYTHON,
        help="interpreter with metalearners 0.13.0 (default: .venv-parity; ./dev.sh parity "
        "creates it)",
    )
    return parser.parse_args(argv)


def write_data(args: argparse.Namespace, path: Path) -> None:
    """Generate the experiment and write it to parquet; the cluster does both."""
    from dask_meta.datasets import make_experiment

    data = make_experiment(args.rows, args.features, args.variants, seed=args.seed)
    data.to_parquet(path, write_index=False)


def run_dask_meta(args: argparse.Namespace, client, path: Path) -> dict:
    import dask
    import dask.array as da
    import dask.dataframe as dd
    from lightgbm import LGBMClassifier, LGBMRegressor

    import dask_meta
    from dask_meta.datasets import cate_names, feature_names
    from dask_meta.planner import parallel_efficiency

    cores = sum(client.nthreads().values())
    ddf = dd.read_parquet(path)
    features, cates = feature_names(ddf), cate_names(ddf)
    params = {"n_estimators": args.trees, "verbose": -1}
    learner = getattr(dask_meta, f"{args.learner}Learner")(
        is_classification=False,
        n_variants=args.variants,
        **model_kwargs(args.learner, LGBMRegressor, params, LGBMClassifier, params),
        n_folds=args.folds,
        random_state=args.seed,
        fold_strategy="partition",
        client=client,
    )
    start = time.perf_counter()
    learner.fit(ddf[features], ddf["y"], ddf["w"])
    fit_s = time.perf_counter() - start

    cate = learner.predict(ddf[features], is_oos=False)[:, :, 0]
    # dask-expr would fuse the parquet files of this projection into fewer partitions than the
    # prediction has (its own to_dask_array(lengths=True) then fails): keep one per file
    with dask.config.set({"optimization.tune.active": False}):
        truth = ddf[cates].to_dask_array(lengths=True)
    rmse = client.compute(da.sqrt(((cate - truth) ** 2).mean(axis=0))).result()
    report = learner.fit_report_
    assert report is not None
    threads = sorted({int(t) for t in report["threads"]})
    return {
        "label": (
            f"LocalCluster {args.workers}x{args.threads} threads, partition folds, planner "
            f"defaults ({len(report)} fits x {'/'.join(map(str, threads))} thread)"
        ),
        "fit_s": fit_s,
        "rmse": [float(r) for r in rmse],
        "cores": cores,
        "partitions": ddf.npartitions,
        "efficiency": parallel_efficiency(report, cores, fit_s),
        "fit_core_s": float((report["duration"] * report["threads"]).sum()),
        "fit_report": json.loads(report.to_json(orient="records")),
    }


def run_metalearners(args: argparse.Namespace, path: Path, cap_seconds: float) -> dict:
    command = [
        str(args.metalearners_python),
        str(RUNNER),
        "--parquet",
        str(path),
        "--folds",
        str(args.folds),
        "--trees",
        str(args.trees),
        "--seed",
        str(args.seed),
        "--learner",
        args.learner,
        "--cores",
        str(available_cores()),
        "--cap-seconds",
        f"{cap_seconds:.3f}",
    ] + (["--quick"] if args.quick else [])
    # stderr (progress, warnings) goes to the terminal; stdout is the JSON document
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"metalearners runner failed (exit {done.returncode}): {command}")
    return json.loads(done.stdout)


def table(
    args: argparse.Namespace, dm: dict, ml: dict, load: tuple[float, float, float]
) -> tuple[str, dict]:
    configs = ml["configs"]
    best = configs[ml["best"]]
    ratio_best = dm["fit_s"] / best["fit_s"]
    passed = ratio_best <= TARGET_RATIO and dm["efficiency"] >= TARGET_EFFICIENCY
    rmse_heads = [f"RMSE v{k}" for k in range(1, args.variants)]
    heads = ["implementation", "configuration", "fit s", "ratio", *rmse_heads, "efficiency"]
    rows = [
        [
            "dask-meta",
            dm["label"],
            f"{dm['fit_s']:.2f}",
            f"{ratio_best:.2f} (dm/best)",
            *(f"{r:.4f}" for r in dm["rmse"]),
            f"{dm['efficiency']:.2f}",
        ]
    ]
    for i, c in enumerate(configs):
        if c["fit_s"] is None:  # stopped at the cap
            rows.append(
                [
                    "metalearners",
                    c["label"],
                    f"> {c['capped_s']:.2f}",
                    f"> {c['capped_s'] / dm['fit_s']:.2f} (ml/dm)",
                    *("-" for _ in rmse_heads),
                    "-",
                ]
            )
            continue
        rows.append(
            [
                "metalearners" + (" *" if i == ml["best"] else ""),
                c["label"],
                f"{c['fit_s']:.2f}",
                f"{c['fit_s'] / dm['fit_s']:.2f} (ml/dm)",
                *(f"{r:.4f}" for r in c["rmse"]),
                "-",
            ]
        )
    widths = [max(len(str(r[i])) for r in [heads, *rows]) for i in range(len(heads))]
    right = {i for i in range(2, len(heads))}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    out = [
        f"{args.learner}-learner, LightGBM n_estimators={args.trees}: {args.rows:,} rows x "
        f"{args.features} features, {args.variants} variants, {args.folds} folds, "
        f"seed {args.seed}; "
        f"{available_cores()} cores, load average at start {load[0]:.2f}",
        "",
        line(heads),
        line(["-" * w for w in widths]),
        *(line(r) for r in rows),
        "",
        "* fastest metalearners configuration"
        + (" (--quick: only the default one was run)" if args.quick else ""),
        *(
            [
                f"> t: stopped after t s = {args.cap} x dask-meta's fit time (--cap), so slower "
                "than dask-meta and not the fastest"
            ]
            if any(c["fit_s"] is None for c in configs)
            else []
        ),
        "ratio: ml/dm = metalearners time / dask-meta time (> 1: dask-meta faster); "
        "dm/best = dask-meta time / fastest metalearners time",
        "efficiency: core-seconds of dask-meta's single-model fits / (cores x fit wall time)",
        f"target: ratio dask-meta/best-metalearners <= {TARGET_RATIO} and efficiency >= "
        f"{TARGET_EFFICIENCY}: {'PASS' if passed else 'FAIL'} "
        f"(ratio {ratio_best:.2f}, efficiency {dm['efficiency']:.2f})"
        + ("; --quick: against metalearners' default only, not its best" if args.quick else ""),
    ]
    summary = {
        "ratio_dask_meta_to_best": ratio_best,
        "efficiency": dm["efficiency"],
        "target_ratio": TARGET_RATIO,
        "target_efficiency": TARGET_EFFICIENCY,
        "pass": passed,
    }
    return "\n".join(out), summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.metalearners_python.exists():
        print(
            f"{args.metalearners_python} not found: metalearners 0.13.0 runs in its own "
            "virtualenv; create it with ./dev.sh parity (or pass --metalearners-python)",
            file=sys.stderr,
        )
        return 2
    cores = available_cores()
    load = machine_load()
    if args.workers * args.threads != cores:
        print(
            f"note: dask-meta gets {args.workers}x{args.threads} threads but metalearners "
            f"uses all {cores} cores; the times are not like for like",
            file=sys.stderr,
        )

    with tempfile.TemporaryDirectory(prefix="dask-meta-bench-") as tmp:
        path = Path(tmp) / "experiment.parquet"
        with local_client(args.workers, args.threads) as client:
            start = time.perf_counter()
            write_data(args, path)
            print(f"[dask-meta] wrote {args.rows:,} rows in {time.perf_counter() - start:.1f} s")
            dm = run_dask_meta(args, client, path)
            print(f"[dask-meta] fit {dm['fit_s']:.2f} s, RMSE {[round(r, 4) for r in dm['rmse']]}")
        ml = run_metalearners(args, path, args.cap * dm["fit_s"])

    text, summary = table(args, dm, ml, load)
    print()
    print(text)
    result = {
        "benchmark": "tlearner_vs_metalearners",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"cores": cores, "platform": platform.platform(), "load_average": load},
        "versions": {
            "python": platform.python_version(),
            **{n: version(n) for n in ("dask-meta", "dask", "distributed", "lightgbm", "pandas")},
            "metalearners_side": {"python": ml["python"], **ml["versions"]},
        },
        "dask_meta": dm,
        "metalearners": ml,
        "summary": summary,
    }
    results = Path(str(RESULTS).format(learner=args.learner.lower()))
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2))
    print(f"\nresults: {results.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
