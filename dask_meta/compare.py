"""``compare_plans``: fit one learner configuration under several parallelism plans, side by side.

No one setting of the three levels of parallelism (threads per model, fits per cross-fit
estimator, estimators per stage) suits every data set and cluster, so it pays to try several;
this tries them on the cluster at hand and returns a table: wall time, parallel efficiency
(core-seconds of the base-model fits over cores x wall time) and the peak memory of the
busiest worker, with the plan each fit used.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dask_meta import runtime
from dask_meta._typing import Matrix, Vector
from dask_meta.cluster import cluster_shape, resolve_client
from dask_meta.plan import AUTO, RULE, Plan, check_plan
from dask_meta.planner import parallel_efficiency

COLUMNS = [
    "plan",
    "source",
    "threads_per_model",
    "threads_by_kind",
    "tail",
    "n_jobs_cross_fitting",
    "n_jobs_base_learners",
    "wall_s",
    "efficiency",
    "peak_worker_memory_mib",
    "fits",
    "estimated_s",
    "calibration_s",
    "runs_s",
]


def _rss() -> int:
    """Runs on a worker: its process's resident memory in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


class _PeakMemory:
    """Samples every worker's resident memory in the background; keeps the peak per worker."""

    def __init__(self, client: Any, interval: float) -> None:
        self.client = client
        self.interval = interval
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dask-meta-peak-memory")

    def _sample(self) -> None:
        try:
            for worker, rss in runtime.run_on_workers(self.client, _rss).items():
                self.peak[worker] = max(self.peak.get(worker, 0), int(rss))
        except Exception:  # a worker leaving between samples is not this table's concern
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> _PeakMemory:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def default_plans(max_threads: int) -> list[Any]:
    """The planner's rule, the cost model, and the corners of the explicit settings."""
    plans: list[Any] = [RULE, AUTO]
    for threads in dict.fromkeys((1, max_threads)):
        plans.append(Plan(threads_per_model=threads))
    plans.append(
        Plan(threads_per_model=max_threads, n_jobs_cross_fitting=1, n_jobs_base_learners=1)
    )
    return plans


def _sampled(X: Any, y: Any, w: Any, sample: float | None, random_state: int) -> tuple:
    if sample is None:
        return X, y, w
    if isinstance(sample, bool) or not isinstance(sample, float | int) or not 0 < sample <= 1:
        raise ValueError(
            f"sample must be None (all rows) or a fraction of the rows in (0, 1], got {sample!r}"
        )
    if sample == 1:
        return X, y, w
    if all(hasattr(a, "dask") and hasattr(a, "sample") for a in (X, y, w)):
        # the same fraction and seed draw the same rows of aligned Dask frames and series,
        # partition by partition
        return tuple(a.sample(frac=float(sample), random_state=random_state) for a in (X, y, w))
    in_memory = (np.ndarray, pd.DataFrame, pd.Series)
    if all(isinstance(a, in_memory) for a in (X, y, w)):
        rng = np.random.default_rng(random_state)
        keep = np.sort(rng.choice(len(X), max(int(len(X) * sample), 1), replace=False))
        return tuple(a.iloc[keep] if hasattr(a, "iloc") else a[keep] for a in (X, y, w))
    raise TypeError(
        "sample needs X, y and w all in memory (numpy, pandas) or all Dask frames and series; "
        f"got {type(X).__name__}, {type(y).__name__} and {type(w).__name__}. Pass sample=None "
        "to compare the plans on all rows."
    )


def compare_plans(
    learner: Any,
    X: Matrix,
    y: Vector,
    w: Vector,
    plans: Sequence[Any] | None = None,
    sample: float | None = None,
    *,
    random_state: int = 0,
    warm_up: bool = True,
    interval: float = 0.25,
    repeats: int = 1,
) -> pd.DataFrame:
    """Fit ``learner``'s configuration once per plan on the same rows; one table row each.

    ``plans``: ``"rule"`` (the planner's rule), ``"auto"``, ``None`` (the default: the cost
    model from :data:`dask_meta.plan.AUTO_FROM_ROWS` training rows) or
    :class:`dask_meta.Plan` objects
    (default: the rule, auto, one thread per model, a whole worker per model, and a whole
    worker per model with one fit at a time). ``sample``: the fraction of rows to fit on
    (``None``: all). ``warm_up`` fits the first plan once, untimed, so that worker imports
    and first-call costs do not count against it. ``learner`` itself is not changed: each
    plan fits a new learner built from ``learner.init_args``. ``repeats``: fits per plan, one
    after the other (the plans in turn within each round, so that a slow spell of the machine
    does not fall on one plan's runs alone); each row is the plan's fastest run, and
    ``runs_s`` holds every run's wall time, in order.

    Columns: the plan and what it came to (``source``, ``threads_per_model``,
    ``threads_by_kind``: the model kinds the auto plan gave other threads, ``tail``: its
    last fits and their threads as ``(fits, threads)``, else None, and the two limits),
    ``wall_s``, ``efficiency``, ``peak_worker_memory_mib`` (the busiest worker's peak
    resident memory, sampled every ``interval`` seconds), ``fits`` and, for the auto
    plan, the cost model's ``estimated_s`` and ``calibration_s``, the part of ``wall_s``
    spent timing base models (0 when the cluster had timed them in an earlier fit; with
    ``repeats`` the auto plan's first run pays it and the later ones do not), and
    ``runs_s``.
    """
    client = resolve_client(learner.client)
    shape = cluster_shape(client)
    if plans is None:
        plans = default_plans(shape.max_threads)
    if not plans:
        raise ValueError("plans is empty: give at least one plan to compare")
    if isinstance(repeats, bool) or not isinstance(repeats, int | np.integer) or repeats < 1:
        raise ValueError(f"repeats must be a whole number of fits per plan, >= 1, got {repeats!r}")
    for plan in plans:
        check_plan(plan)
    X, y, w = _sampled(X, y, w, sample, random_state)
    cores = shape.total_threads
    args = dict(learner.init_args)

    def fitted(plan: Any) -> Any:
        return type(learner)(**{**args, "plan": plan, "client": client}).fit(X, y, w)

    if warm_up:
        fitted(plans[0])
    runs: list[list[dict]] = [[] for _ in plans]
    for _ in range(repeats):
        for i, plan in enumerate(plans):
            runs[i].append(_timed_run(plan, fitted, client, interval, cores))
    rows = []
    for plan_runs in runs:
        fastest = min(plan_runs, key=lambda r: r["wall_s"])
        rows.append({**fastest, "runs_s": [r["wall_s"] for r in plan_runs]})
    return pd.DataFrame(rows, columns=COLUMNS)


def _timed_run(plan: Any, fitted: Any, client: Any, interval: float, cores: int) -> dict:
    """One fit under ``plan``: its table row (without ``runs_s``)."""
    with _PeakMemory(client, interval) as memory:
        start = time.perf_counter()
        model = fitted(plan)
        wall = time.perf_counter() - start
    report = model.fit_report_
    chosen = report.attrs.get("plan", {})
    return {
        "plan": plan if isinstance(plan, str) else repr(plan),
        "source": chosen.get("source"),
        "threads_per_model": chosen.get("threads_per_model"),
        "threads_by_kind": chosen.get("threads_by_kind") or {},
        "tail": (
            (chosen["tail_fits"], chosen["tail_threads"]) if chosen.get("tail_fits") else None
        ),
        "n_jobs_cross_fitting": chosen.get("n_jobs_cross_fitting"),
        "n_jobs_base_learners": chosen.get("n_jobs_base_learners"),
        "wall_s": wall,
        "efficiency": parallel_efficiency(report, cores, wall),
        "peak_worker_memory_mib": max(memory.peak.values(), default=0) / 2**20,
        "fits": len(report),
        "estimated_s": chosen.get("estimated_seconds"),
        "calibration_s": chosen.get("calibration_seconds"),
    }
