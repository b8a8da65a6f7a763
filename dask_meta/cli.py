"""The ``dask-meta`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence


def _demo(args: argparse.Namespace) -> int:
    import numpy as np
    from distributed import Client, LocalCluster

    from dask_meta import TLearner
    from dask_meta.datasets import cate_names, feature_names, make_experiment

    cluster = LocalCluster(
        n_workers=args.workers,
        threads_per_worker=args.threads,
        resources={"threads": args.threads},
        dashboard_address=":0",
    )
    client = Client(cluster)
    try:
        print(f"dask-meta demo: LocalCluster {args.workers} worker(s) x {args.threads} threads")
        print(f"dashboard: {client.dashboard_link}")
        data = make_experiment(args.rows, args.features, args.variants, seed=args.seed)
        features = feature_names(data)
        from lightgbm import LGBMRegressor

        learner = TLearner(
            is_classification=False,
            n_variants=args.variants,
            nuisance_model_factory=LGBMRegressor,
            nuisance_model_params={"n_estimators": 100, "verbose": -1},
            n_folds=args.folds,
            random_state=args.seed,
        )
        start = time.perf_counter()
        learner.fit(data[features], data["y"], data["w"])
        fit_time = time.perf_counter() - start
        cate = learner.predict(data[features], is_oos=False)[:, :, 0]
        truth = data[cate_names(data)].to_dask_array(lengths=True)
        rmse = np.sqrt(((cate - truth) ** 2).mean(axis=0)).compute()
        wall = time.perf_counter() - start
        report = learner.fit_report_
        assert report is not None
        print(
            f"T-learner, LightGBM, {args.rows:,} rows x {args.features} features, "
            f"{args.variants} variants, {args.folds} folds: {len(report)} fits"
        )
        for k, value in enumerate(rmse, start=1):
            print(f"  RMSE against the true CATE, variant {k} vs 0: {value:.4f}")
        print(f"  fit wall time {fit_time:.1f} s; fit + in-sample CATE + RMSE {wall:.1f} s")
        print(f"dashboard: {client.dashboard_link}")
    finally:
        client.close()
        cluster.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dask-meta", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="fit a learner on generated data on an embedded LocalCluster"
    )
    demo.add_argument("--rows", type=int, default=200_000)
    demo.add_argument("--features", type=int, default=20)
    demo.add_argument("--variants", type=int, default=3)
    demo.add_argument("--folds", type=int, default=5)
    demo.add_argument("--workers", type=int, default=1)
    demo.add_argument("--threads", type=int, default=2)
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "demo":
            return _demo(args)
    except Exception as exc:  # one-line reason, non-zero exit
        print(f"dask-meta {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
