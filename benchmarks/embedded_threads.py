"""The embedded cluster's two ways to run: a worker process, or threads of this process.

    ./dev.sh bench embedded_threads                         # T, X, DR at 1M rows, lazy parquet
    .venv/bin/python benchmarks/embedded_threads.py --rows 100000 --learners T   # a quick look

A script without an ``if __name__ == "__main__":`` guard gets dask-meta's embedded
``LocalCluster`` as threads of its own process (a worker process would import the script
again and fail); otherwise the worker is a process. This benchmark times the same fits both
ways, one after the other in one run: ``start_local_cluster(1, cores, processes=...)``, the
factory the embedded cluster uses, with the learners of the peers benchmark (LightGBM, 100
trees, 20 covariates, 3 variants, linear effects, ``--folds`` 5 folds, ``plan="auto"``), on
the parquet read lazily (``--inputs lazy``, default) or a pandas frame in the client's
memory (``pandas``: in threads it needs no copy to a worker process). Reported: the fit
times and their ratio, threads over process; the CATE must be identical.

Results: ``benchmarks/results/embedded_threads.json``, appended to
``embedded_threads.runs.json``.
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
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _cluster import machine_load, warm_up  # noqa: E402

RESULTS = HERE / "results" / "embedded_threads.json"
RUNS = HERE / "results" / "embedded_threads.runs.json"
MODES = ("process", "threads")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--learners", nargs="+", default=["T", "X", "DR"])
    parser.add_argument("--inputs", nargs="+", default=["lazy"], choices=("lazy", "pandas"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def learner_of(name: str, folds: int, seed: int, client: Any) -> Any:
    from lightgbm import LGBMClassifier, LGBMRegressor

    import dask_meta

    params = {"n_estimators": 100, "verbose": -1}
    models: dict[str, Any] = {"nuisance_model_params": params}
    factories: tuple[Any, ...] = (LGBMRegressor,)
    if name != "T":
        factories = (LGBMRegressor, LGBMRegressor, LGBMClassifier)
        models |= {"treatment_model_params": params, "propensity_model_params": params}
    return getattr(dask_meta, f"{name}Learner")(
        False, 3, *factories, n_folds=folds, random_state=seed, client=client, plan="auto", **models
    )


def fit_once(args: argparse.Namespace, mode: str, path: Path, source: str, name: str) -> dict:
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client

    from dask_meta.cluster import start_local_cluster
    from dask_meta.datasets import feature_names

    cores = len(os.sched_getaffinity(0))
    with (
        start_local_cluster(1, cores, processes=mode == "process") as cluster,
        Client(cluster) as client,
    ):
        client.run(warm_up)
        if source == "lazy":
            data: Any = dd.read_parquet(path)
        else:
            data = pd.read_parquet(path)
        features = feature_names(data)
        learner = learner_of(name, args.folds, args.seed, client)
        start = time.perf_counter()
        learner.fit(data[features], data["y"], data["w"])
        seconds = time.perf_counter() - start
        sample = data[features].head(2_000) if source == "lazy" else data[features].iloc[:2_000]
        cate = np.asarray(learner.predict(sample, is_oos=True))
        return {
            "mode": mode,
            "input": source,
            "learner": name,
            "fit_s": seconds,
            "cluster": learner.fit_report_.attrs.get("cluster"),
            "plan": learner.fit_report_.attrs.get("plan", {}).get("reason"),
            "cate_sample": cate,
        }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    load = machine_load()
    from dask_meta.datasets import make_experiment

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dask-meta-embedded-") as tmp:
        path = Path(tmp) / "experiment.parquet"
        make_experiment(args.rows, 20, 3, seed=args.seed).to_parquet(path, write_index=False)
        for source in args.inputs:
            for name in args.learners:
                pair = [fit_once(args, mode, path, source, name) for mode in MODES]
                same = bool(np.array_equal(pair[0]["cate_sample"], pair[1]["cate_sample"]))
                for r in pair:
                    r.pop("cate_sample")
                    r["same_cate"] = same
                rows += pair
                print(
                    f"[embedded] {name} {source}: process {pair[0]['fit_s']:.1f} s, threads "
                    f"{pair[1]['fit_s']:.1f} s, same CATE {same}",
                    file=sys.stderr,
                    flush=True,
                )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    record = {
        "benchmark": "embedded_threads",
        "date": date.today().isoformat(),
        "commit": commit,
        "machine": {
            "cores": len(os.sched_getaffinity(0)),
            "platform": platform.platform(),
            "load_average": load,
        },
        "command": "./dev.sh bench embedded_threads " + " ".join(sys.argv[1:]),
        "args": {k: str(v) for k, v in vars(args).items()},
        "results": rows,
    }
    args.results.write_text(json.dumps(record, indent=1) + "\n")
    if args.results == RESULTS:  # the history keeps the runs of the default output only
        runs = json.loads(RUNS.read_text()) if RUNS.exists() else []
        runs.append(record)
        RUNS.write_text(json.dumps(runs, indent=1) + "\n")
    print(f"\n{args.rows:,} rows, {len(os.sched_getaffinity(0))} cores\n")
    print("| learner | input | worker process s | threads in the process s | ratio | same CATE |")
    print("|---|---|---|---|---|---|")
    for i in range(0, len(rows), 2):
        p, t = rows[i], rows[i + 1]
        print(
            f"| {p['learner']} | {p['input']} | {p['fit_s']:.1f} | {t['fit_s']:.1f} | "
            f"{t['fit_s'] / p['fit_s']:.2f} | {p['same_cate']} |"
        )


if __name__ == "__main__":
    main()
