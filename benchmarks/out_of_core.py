"""A DR-learner on parquet data larger than the cluster's memory.

Two scenarios, on a ``LocalCluster`` of 2 workers x 1 thread with a memory limit per worker
(default 1.5 GiB, the ``threads`` resource declared):

* ``--backend stream``: dask-ml ``Incremental`` around ``SGDRegressor`` (outcome and treatment
  models) and ``SGDClassifier(loss="log_loss")`` (propensity). The data set defaults to 3.1x
  the two memory limits together. dask-meta keeps the training frame on disk
  (``persist="auto"`` sees it cannot fit) and every model streams it one partition at a time.
* ``--backend lightgbm-dask``: ``lightgbm.dask.DaskLGBMRegressor``/``DaskLGBMClassifier``
  (each fit distributed over both workers). The data set defaults to 1.2x one worker's limit:
  larger than one worker, smaller than the cluster.

``--bootstraps N`` (default 0: the learner alone) fits ``Bootstrap(learner, n_bootstraps=N,
random_state=seed)`` instead: the point fit and N Poisson-weighted replicates in one planner
run. The streaming nuisance models of the point fit and of every replicate join one chain per
estimator (a partition is read once for all of them), but each replicate still runs its own
``partial_fit`` passes over every partition for each of its 24 models (3 variants, 3 folds:
6 estimators x 3 folds and an overall model), and its treatment models stream in chains of
their own. With the stream backend the data set then defaults to :data:`BOOTSTRAP_SIZE`
(1.1x) the two memory limits together: still larger than the cluster's memory, about a
third of the rows of the point fit's 3.1x. On the project's 2-core machine the point fit
alone took 860 s on 46.25M rows (185 partitions), and the 21 fits of 16.5M rows (66
partitions) took 41 minutes. The written CATE is the point fit's; the output adds the
bootstrap's ATE, its 95% percentile interval and its standard error.

Steps, each timed: generate the experiment with ``dask_meta.datasets.make_experiment`` and
write it to parquet from the cluster (skipped when ``--data`` already holds it); fit;
predict out-of-sample and write the CATE with ``dask_meta.write_predictions`` (the true CATE
columns kept beside it); evaluate: RMSE of the written CATE against the truth and the AIPW
ATE with its standard error (``DRLearner.average_treatment_effect``), both by reductions over
partitions. Nothing but small results reaches the client.

Memory is read from the workers themselves: each worker process's peak resident set size
(``getrusage``: the exact high-water mark since the worker started, no sampling), the
longest time a worker spent paused (its status, polled every 0.5 s) and the number of workers
that died (the nanny restarts them under new addresses).

    ./dev.sh bench out_of_core --backend stream
    ./dev.sh bench out_of_core --backend lightgbm-dask
    ./dev.sh bench out_of_core --backend stream --rows 2000000   # a quick look
    ./dev.sh bench out_of_core --backend stream --bootstraps 20   # 1.1x, about 45 minutes

Results go to ``benchmarks/results/out_of_core_{backend}.json`` (with ``--bootstraps``:
``out_of_core_{backend}_bootstrap.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "out_of_core_{backend}{suffix}.json"
GIB = 2**30
#: the data size of the stream backend as a multiple of the cluster's memory: alone, and
#: with ``--bootstraps`` (N + 1 fits, each streaming the data as the point fit does)
STREAM_SIZE = 3.1
BOOTSTRAP_SIZE = 1.1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("stream", "lightgbm-dask"), default="stream")
    parser.add_argument("--rows", type=int, default=None, help="default: from --size")
    parser.add_argument(
        "--size",
        type=float,
        default=None,
        help="data size in memory as a multiple of the cluster's memory (stream, default "
        f"{STREAM_SIZE}, with --bootstraps {BOOTSTRAP_SIZE}) or of one worker's memory "
        "(lightgbm-dask, default 1.2)",
    )
    parser.add_argument(
        "--bootstraps",
        type=int,
        default=0,
        help="fit a Bootstrap of this many replicates around the learner (0: the learner alone)",
    )
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--variants", type=int, default=3)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", type=float, default=1.5, help="GiB per worker")
    parser.add_argument("--rows-per-partition", type=int, default=250_000)
    parser.add_argument("--trees", type=int, default=50, help="lightgbm-dask n_estimators")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        default=4 * 2**20,
        help="the workers' MALLOC_MMAP_THRESHOLD_ in bytes (0: glibc's default): a fixed "
        "threshold keeps glibc from raising it after the first large free, so partitions "
        "and LightGBM's buffers are unmapped when freed instead of staying in the heap",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="parquet directory to reuse or create (default: a temporary one, deleted)",
    )
    return parser.parse_args(argv)


def row_bytes(args: argparse.Namespace) -> int:
    """In-memory bytes per row: features, w, y, true CATE and propensity columns (8 each)."""
    return 8 * (args.features + 2 + (args.variants - 1) + args.variants)


def default_rows(args: argparse.Namespace) -> int:
    if args.rows is not None:
        return args.rows
    limit = args.memory_limit * GIB
    if args.backend == "stream":
        target = size_of(args) * limit * args.workers
    else:
        target = size_of(args) * limit
    parts = -(-int(target / row_bytes(args)) // args.rows_per_partition)
    return parts * args.rows_per_partition


def size_of(args: argparse.Namespace) -> float:
    """The data size as a multiple of the cluster's (stream) or one worker's memory."""
    if args.size is not None:
        return args.size
    if args.backend == "stream":
        return BOOTSTRAP_SIZE if args.bootstraps else STREAM_SIZE
    return 1.2


def stream_models(seed: int) -> dict:
    """A DR-learner's models as dask-ml Incremental SGD (shared with scaling.py)."""
    from dask_ml.wrappers import Incremental
    from sklearn.linear_model import SGDClassifier, SGDRegressor

    def stream(estimator):
        return {"estimator": estimator, "shuffle_blocks": True, "random_state": seed}

    return {
        "nuisance_model_factory": Incremental,
        "nuisance_model_params": stream(SGDRegressor(random_state=seed)),
        "propensity_model_factory": Incremental,
        "propensity_model_params": stream(
            SGDClassifier(loss="log_loss", alpha=1e-3, random_state=seed)
        ),
        "treatment_model_factory": Incremental,
        "treatment_model_params": stream(SGDRegressor(alpha=1e-3, eta0=1e-3, random_state=seed)),
    }


def learner_for(args: argparse.Namespace, client):
    from dask_meta import DRLearner

    if args.backend == "stream":
        factories = stream_models(args.seed)
    else:
        from lightgbm.dask import DaskLGBMClassifier, DaskLGBMRegressor

        params = {"n_estimators": args.trees, "verbose": -1, "random_state": args.seed}
        factories = {
            "nuisance_model_factory": DaskLGBMRegressor,
            "nuisance_model_params": params,
            "propensity_model_factory": DaskLGBMClassifier,
            "propensity_model_params": params,
            "treatment_model_factory": DaskLGBMRegressor,
            "treatment_model_params": params,
        }
    return DRLearner(
        False,
        args.variants,
        **factories,
        n_folds=args.folds,
        random_state=args.seed,
        adaptive_clipping=True,
        client=client,
    )


def _peak_rss() -> int:
    """Runs on a worker: the peak resident set size of its process, in bytes."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class WorkerWatch:
    """Polls the scheduler for paused workers and for workers that came and went."""

    def __init__(self, client) -> None:
        self.client = client
        self.seen: set[str] = set(client.scheduler_info()["workers"])
        self.started = set(self.seen)
        self.paused_since: dict[str, float] = {}
        self.longest_pause = 0.0
        self.pauses = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                workers = self.client.scheduler_info()["workers"]
            except Exception:
                continue
            now = time.time()
            self.seen |= set(workers)
            for address, info in workers.items():
                if info.get("status") == "paused":
                    if address not in self.paused_since:
                        self.paused_since[address] = now
                        self.pauses += 1
                elif address in self.paused_since:
                    pause = now - self.paused_since.pop(address)
                    self.longest_pause = max(self.longest_pause, pause)

    def __enter__(self) -> WorkerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        now = time.time()
        for since in self.paused_since.values():
            self.longest_pause = max(self.longest_pause, now - since)

    @property
    def workers_lost(self) -> int:
        """Workers that were replaced (a nanny restarts a killed worker at a new address)."""
        return len(self.seen - self.started)


def run(args: argparse.Namespace, data: Path, out: Path) -> dict:
    import dask.dataframe as dd
    import numpy as np
    from distributed import Client, LocalCluster

    from dask_meta import Bootstrap, write_predictions
    from dask_meta.datasets import cate_names, feature_names, make_experiment

    rows = default_rows(args)
    if args.mmap_threshold:  # the worker processes inherit it
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            memory_limit=f"{args.memory_limit}GiB",
            resources={"threads": 1},
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
        WorkerWatch(client) as watch,
    ):
        print(f"[out-of-core] dashboard: {client.dashboard_link}", flush=True)
        times: dict[str, float] = {}
        if not (data / "_done").exists():
            start = time.perf_counter()
            experiment = make_experiment(
                rows,
                args.features,
                args.variants,
                rows_per_partition=args.rows_per_partition,
                seed=args.seed,
            )
            experiment.to_parquet(data, write_index=False)
            (data / "_done").write_text(str(rows))
            times["generate"] = time.perf_counter() - start
            print(f"[out-of-core] wrote {rows:,} rows in {times['generate']:.0f} s", flush=True)
        ddf = dd.read_parquet(data)
        features, cates = feature_names(ddf), cate_names(ddf)
        learner = learner_for(args, client)
        boot = None
        if args.bootstraps:
            boot = Bootstrap(learner, n_bootstraps=args.bootstraps, random_state=args.seed)

        start = time.perf_counter()
        (boot or learner).fit(ddf[features], ddf["y"], ddf["w"])
        times["fit"] = time.perf_counter() - start
        print(f"[out-of-core] fit {times['fit']:.0f} s", flush=True)
        bootstrap = {}
        if boot is not None:
            learner = boot.learner_  # the point fit: its CATE is written and evaluated
            start = time.perf_counter()
            interval = boot.ate_interval(0.05)
            times["ate_interval"] = time.perf_counter() - start
            bootstrap = {
                "bootstraps": args.bootstraps,
                "bootstrap_ate": [float(a) for a in np.ravel(boot.ate_)],
                "bootstrap_ate_interval": np.reshape(interval, (-1, 2)).tolist(),
                "bootstrap_ate_se": [float(s) for s in np.ravel(boot.ate_stderr_)],
                "bootstrap_shared_bins": bool(boot.fit_report_.attrs.get("shared_bins")),
            }

        start = time.perf_counter()
        # the estimate as estimate_k beside the true cate_k, row by row, in one file per partition
        write_predictions(
            learner, ddf[features + cates], out, is_oos=True, keep=cates, name="estimate"
        )
        times["predict_write"] = time.perf_counter() - start

        start = time.perf_counter()
        written = dd.read_parquet(out)
        sq = [((written[f"estimate_{c[5:]}"] - written[c]) ** 2).mean() for c in cates]
        rmse = [float(np.sqrt(v)) for v in client.compute(sq, sync=True)]
        ate, ate_se = learner.average_treatment_effect(
            ddf[features], ddf["y"], ddf["w"], is_oos=False
        )
        true_ate = client.compute([ddf[c].mean() for c in cates], sync=True)
        times["evaluate"] = time.perf_counter() - start

        peaks = client.run(_peak_rss)
        report = (boot or learner).fit_report_
    in_memory = rows * row_bytes(args)
    on_disk = sum(f.stat().st_size for f in data.glob("*.parquet"))
    return {
        "rows": rows,
        "partitions": ddf.npartitions,
        "data_bytes_in_memory": in_memory,
        "data_bytes_parquet": on_disk,
        "memory_limit_bytes": args.memory_limit * GIB,
        "data_over_cluster_memory": in_memory / (args.memory_limit * GIB * args.workers),
        "data_over_worker_memory": in_memory / (args.memory_limit * GIB),
        "times_s": times,
        "peak_rss_bytes": peaks,
        "longest_pause_s": watch.longest_pause,
        "pauses": watch.pauses,
        "workers_lost": watch.workers_lost,
        "rmse": rmse,
        "ate": [float(a) for a in np.ravel(ate)],
        "ate_se": [float(s) for s in np.ravel(ate_se)],
        "true_ate": [float(a) for a in true_ate],
        "fit_jobs": len(report),
        "fits": args.bootstraps + 1,
        **bootstrap,
        "persisted": bool(report.attrs.get("persisted", False)),
    }


def size_note(args: argparse.Namespace) -> str:
    """How the number of rows was chosen."""
    if args.rows is not None:
        return "rows given by --rows"
    of = "the cluster's memory" if args.backend == "stream" else "one worker's memory"
    if args.size is not None:
        return f"size {args.size}x {of}, from --size"
    if args.bootstraps and args.backend == "stream":
        return (
            f"size {BOOTSTRAP_SIZE}x {of}: the bootstrap's default ({STREAM_SIZE}x for the "
            f"learner alone), as the fit streams the data {args.bootstraps + 1} times"
        )
    return f"size {size_of(args)}x {of}: the default"


def table(args: argparse.Namespace, r: dict) -> str:
    gib = r["data_bytes_in_memory"] / GIB
    fitted = "DR-learner"
    if args.bootstraps:
        fitted = f"Bootstrap of a DR-learner ({args.bootstraps} replicates + the point fit)"
    lines = [
        f"{fitted}, {args.backend} base models, {r['rows']:,} rows x {args.features} "
        f"features, {args.variants} variants, {args.folds} folds; LocalCluster "
        f"{args.workers} workers x 1 thread, memory limit {args.memory_limit} GiB each, "
        f"MALLOC_MMAP_THRESHOLD_ {args.mmap_threshold or 'glibc default'}",
        "",
        f"data in memory       {gib:8.2f} GiB  ({r['data_over_cluster_memory']:.2f}x the "
        f"cluster's memory, {r['data_over_worker_memory']:.2f}x one worker's); parquet "
        f"{r['data_bytes_parquet'] / GIB:.2f} GiB in {r['partitions']} files; "
        f"{size_note(args)}",
    ]
    for step, seconds in r["times_s"].items():
        lines.append(f"{step:<20} {seconds:8.1f} s")
    for worker, peak in sorted(r["peak_rss_bytes"].items()):
        lines.append(
            f"peak RSS {worker:<24} {peak / GIB:6.2f} GiB "
            f"({peak / r['memory_limit_bytes']:.0%} of its limit)"
        )
    lines += [
        f"paused               {r['pauses']} times, longest {r['longest_pause_s']:.1f} s",
        f"workers lost         {r['workers_lost']}",
        f"RMSE vs true CATE    {', '.join(f'{v:.4f}' for v in r['rmse'])}",
        "ATE (AIPW) +- se     "
        + ", ".join(f"{a:.4f} +- {s:.4f}" for a, s in zip(r["ate"], r["ate_se"]))
        + f"   (true {', '.join(f'{a:.4f}' for a in r['true_ate'])})",
    ]
    if args.bootstraps:
        lines.append(
            "ATE (bootstrap) 95%  "
            + ", ".join(
                f"{a:.4f} [{lo:.4f}, {hi:.4f}] se {s:.4f}"
                for a, (lo, hi), s in zip(
                    r["bootstrap_ate"], r["bootstrap_ate_interval"], r["bootstrap_ate_se"]
                )
            )
            + f"   ({r['fit_jobs']} base-model fits)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="dask-meta-ooc-"))
    data = args.data or tmp / "experiment.parquet"
    data.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args, data, tmp / "cate.parquet")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = table(args, result)
    print()
    print(text)
    suffix = "_bootstrap" if args.bootstraps else ""
    path = Path(str(RESULTS).format(backend=args.backend, suffix=suffix))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "benchmark": "out_of_core",
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "machine": {"platform": platform.platform()},
                "versions": {
                    n: version(n)
                    for n in ("dask-meta", "dask", "distributed", "lightgbm", "scikit-learn")
                },
                "size": size_note(args),
                "result": result,
            },
            indent=2,
        )
    )
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
