"""Scheduling overhead: a whole DR-learner fit with trivially cheap base models.

``DummyRegressor`` / ``DummyClassifier`` fit in microseconds, so the wall time of the fit is
dask-meta's own cost: the first pass over the data (folds, statistics), the planner's
submissions, the per-partition pseudo-outcomes of the treatment stage and the bookkeeping.
On a warm LocalCluster (1 worker x all cores; the first fit, which imports on the worker, is
reported apart), 10k rows x 5 features, 2 variants, 5 folds, numpy and Dask input, each plan.
Target: under 2 seconds.

    ./dev.sh bench overhead [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
from _cluster import local_client

TARGET_S = 2.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import dask.dataframe as dd
    import pandas as pd
    from sklearn.dummy import DummyClassifier, DummyRegressor

    from dask_meta import DRLearner

    cores = len(os.sched_getaffinity(0))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, 5))
    y = rng.standard_normal(args.rows)
    w = rng.integers(0, 2, args.rows)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)]).assign(y=y, w=w)
    ddf = dd.from_pandas(frame, npartitions=2)
    inputs = {
        "numpy": (X, y, w),
        "Dask DataFrame (2 partitions)": (ddf[[f"x{i}" for i in range(5)]], ddf["y"], ddf["w"]),
    }
    rows = []
    with local_client(1, cores) as client:

        def fit(data, plan) -> tuple[float, int]:
            learner = DRLearner(
                False,
                2,
                DummyRegressor,
                DummyRegressor,
                DummyClassifier,
                n_folds=5,
                client=client,
                plan=plan,
            )
            start = time.perf_counter()
            learner.fit(*data)
            return time.perf_counter() - start, len(learner.fit_report_)

        first, _ = fit(inputs["numpy"], None)
        for name, data in inputs.items():
            for plan in (None, "auto"):
                times, fits = [], 0
                for _ in range(args.repeats):
                    seconds, fits = fit(data, plan)
                    times.append(seconds)
                rows.append((name, str(plan), fits, statistics.median(times), max(times)))
    load = os.getloadavg()[0]
    print(
        f"DR-learner, Dummy base models, {args.rows:,} rows x 5 features, 2 variants, 5 folds; "
        f"{cores} cores; load average after {load:.2f}; first (cold) fit {first:.2f} s"
    )
    print(f"{'input':<30} {'plan':<6} {'fits':>5} {'median s':>9} {'max s':>7}")
    for name, plan, fits, median, worst in rows:
        print(f"{name:<30} {plan:<6} {fits:>5} {median:>9.2f} {worst:>7.2f}")
    ok = all(worst < TARGET_S for *_, worst in rows)
    print(f"target: every warm fit under {TARGET_S} s: {'PASS' if ok else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
