"""DR-learner fit time and worker memory against the number of rows.

One experiment of the largest size is generated once (``make_experiment``, one parquet file
per 250k rows); the smaller sizes read its first files, so each smaller data set is a sample
of the larger ones. For every size and backend a fresh ``LocalCluster`` (2 workers x 1
thread, ``--memory-limit`` each) fits a DR-learner with 3 variants:

* ``lightgbm``: local ``LGBMRegressor``/``LGBMClassifier`` fits (``--trees`` trees), up to
  ``--lightgbm-max`` rows (each fit needs its rows in one worker);
* ``stream``: dask-ml ``Incremental`` around ``SGDRegressor``/``SGDClassifier``, at every size
  (the training frame stays on disk once it is larger than a third of the cluster's memory).

Reported per run: fit wall time, each worker's peak resident memory (``getrusage``), the
in-sample RMSE of the CATE against the truth; per backend, the exponent b of
time ~ rows^b fitted by least squares on the log-log points (b <= 1: at most linear).

    ./dev.sh bench scaling                       # 1M, 3M, 10M, 30M rows
    ./dev.sh bench scaling --rows 250000 1000000 # a quick look

Results go to ``benchmarks/results/scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from out_of_core import GIB, _peak_rss, stream_models  # noqa: E402

RESULTS = HERE / "results" / "scaling.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000, 30_000_000]
    )
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--variants", type=int, default=3)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--trees", type=int, default=20)
    parser.add_argument("--lightgbm-max", type=int, default=3_000_000)
    parser.add_argument("--memory-limit", type=float, default=4.0, help="GiB per worker")
    parser.add_argument("--rows-per-partition", type=int, default=250_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None, help="parquet directory to reuse")
    return parser.parse_args(argv)


def learner(args: argparse.Namespace, backend: str, client):
    from dask_meta import DRLearner

    if backend == "lightgbm":
        from lightgbm import LGBMClassifier, LGBMRegressor

        params = {"n_estimators": args.trees, "verbose": -1}
        models = {
            "nuisance_model_factory": LGBMRegressor,
            "nuisance_model_params": params,
            "propensity_model_factory": LGBMClassifier,
            "propensity_model_params": params,
            "treatment_model_factory": LGBMRegressor,
            "treatment_model_params": params,
        }
    else:
        models = stream_models(args.seed)
    return DRLearner(
        False,
        args.variants,
        **models,
        n_folds=args.folds,
        random_state=args.seed,
        adaptive_clipping=True,
        client=client,
    )


def one_run(args: argparse.Namespace, backend: str, files: list[str]) -> dict:
    import dask
    import dask.array as da
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    from dask_meta.datasets import cate_names, feature_names

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            memory_limit=f"{args.memory_limit}GiB",
            resources={"threads": 1},
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        ddf = dd.read_parquet(files)
        features, cates = feature_names(ddf), cate_names(ddf)
        model = learner(args, backend, client)
        start = time.perf_counter()
        model.fit(ddf[features], ddf["y"], ddf["w"])
        fit_s = time.perf_counter() - start
        peaks = client.run(_peak_rss)
        cate = model.predict(ddf[features], is_oos=False)[:, :, 0]
        with dask.config.set({"optimization.tune.active": False}):
            truth = ddf[cates].to_dask_array(lengths=True)
        rmse = client.compute(da.sqrt(((cate - truth) ** 2).mean(axis=0)), sync=True)
        persisted = bool(model.fit_report_.attrs.get("persisted"))
    return {
        "backend": backend,
        "rows": len(files) * args.rows_per_partition,
        "fit_s": fit_s,
        "peak_rss_bytes": max(peaks.values()),
        "rmse": [float(r) for r in rmse],
        "persisted": persisted,
    }


def _file_name(i: int) -> str:
    """Names that sort in partition order, so the first files are the first rows."""
    return f"part.{i:06d}.parquet"


def exponent(points: list[tuple[int, float]]) -> float:
    import numpy as np

    if len(points) < 2:
        return float("nan")
    x = np.log([p[0] for p in points])
    y = np.log([p[1] for p in points])
    return float(np.polyfit(x, y, 1)[0])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sorted(args.rows)
    per_file = args.rows_per_partition
    if any(n % per_file for n in sizes):
        raise SystemExit(f"--rows must be multiples of --rows-per-partition ({per_file})")
    tmp = Path(tempfile.mkdtemp(prefix="dask-meta-scaling-"))
    data = args.data or tmp / "experiment.parquet"
    runs = []
    try:
        if not (data / "_done").exists():
            from distributed import Client, LocalCluster

            from dask_meta.datasets import make_experiment

            data.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            with (
                LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as c,
                Client(c),
            ):
                make_experiment(
                    sizes[-1],
                    args.features,
                    args.variants,
                    rows_per_partition=per_file,
                    seed=args.seed,
                ).to_parquet(
                    data, write_index=False, name_function=lambda i: f"part.{i:06d}.parquet"
                )
            (data / "_done").write_text(str(sizes[-1]))
            print(f"[scaling] wrote {sizes[-1]:,} rows in {time.perf_counter() - start:.0f} s")
        files = sorted(str(f) for f in data.glob("part.*.parquet"))
        for backend in ("lightgbm", "stream"):
            for n in sizes:
                if backend == "lightgbm" and n > args.lightgbm_max:
                    continue
                result = one_run(args, backend, files[: n // per_file])
                runs.append(result)
                print(
                    f"[scaling] {backend:<8} {n:>11,} rows: fit {result['fit_s']:7.1f} s, "
                    f"peak worker RSS {result['peak_rss_bytes'] / GIB:5.2f} GiB, RMSE "
                    f"{', '.join(f'{r:.4f}' for r in result['rmse'])}",
                    flush=True,
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\nDR-learner, {args.variants} variants, {args.features} features, {args.folds} folds; "
        f"LocalCluster 2 workers x 1 thread, {args.memory_limit} GiB each"
    )
    print(
        f"{'backend':<9} {'rows':>11} {'fit s':>8} {'s/M rows':>9} {'peak RSS GiB':>13} "
        f"{'persisted':>9}  RMSE"
    )
    for r in runs:
        print(
            f"{r['backend']:<9} {r['rows']:>11,} {r['fit_s']:>8.1f} "
            f"{r['fit_s'] / r['rows'] * 1e6:>9.2f} {r['peak_rss_bytes'] / GIB:>13.2f} "
            f"{r['persisted']!s:>9}  {', '.join(f'{v:.4f}' for v in r['rmse'])}"
        )
    exponents = {}
    for backend in ("lightgbm", "stream"):
        points = [(r["rows"], r["fit_s"]) for r in runs if r["backend"] == backend]
        exponents[backend] = exponent(points)
        print(f"{backend}: fit time ~ rows^{exponents[backend]:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "scaling",
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "runs": runs,
                "exponents": exponents,
            },
            indent=2,
        )
    )
    print(f"\nresults: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
