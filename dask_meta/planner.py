"""The planner: schedules the fits of one run on the cluster, through :mod:`dask_meta.runtime`.

It maps metalearners' three levels of parallelism onto Dask:

1. base-model threads -> every fit task requests ``resources={"threads": t}`` and the model
   gets ``t`` as its thread parameter and under ``threadpoolctl``;
2. cross-fitting -> ``n_jobs_cross_fitting``: at most that many fits (folds and overall
   model) of one cross-fit estimator in flight;
3. stage -> ``n_jobs_base_learners``: at most that many cross-fit estimators of one stage
   with fits in flight.

Both limits are enforced here on the client with a sliding window over ``as_completed``;
``None`` (or -1) means no limit beyond the cluster. Jobs that deferred jobs wait for run
first, then longest-expected-first. Every request is checked against the cluster before
anything is submitted, so a request no worker can meet raises instead of hanging. On any
exception or KeyboardInterrupt every future of the run is cancelled.
"""

from __future__ import annotations

import logging
import math
import operator
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.dataframe as dd
import pandas as pd
from dask.delayed import Delayed
from distributed import Client, Future, span
from distributed.scheduler import KilledWorker

from dask_meta import runtime
from dask_meta.backends import (
    COLLECTION,
    LOCAL,
    STREAM,
    FitResult,
    FitSpec,
    calibrate_fit,
    collection_rows,
    drop_bins,
    fit_collection,
    fit_local,
    fused_stream_step,
    pop_task_seconds,
    stream_order,
    stream_step,
    timed_task,
)
from dask_meta.cluster import THREADS, ClusterShape, cluster_shape
from dask_meta.data import Piece, partitions, rows_of
from dask_meta.factories import factory_name
from dask_meta.progress import fit_progress
from dask_meta.runtime import new_token, task_key

logger = logging.getLogger("dask_meta")

REPORT_COLUMNS = [
    "key",
    "stage",
    "model_kind",
    "ordinal",
    "fold",
    "worker",
    "threads",
    "rows",
    "submitted",
    "start",
    "end",
    "duration",
]


def fit_key(kind: str, ordinal: int, fold: int | None, token: str) -> str:
    fold_label = "overall" if fold is None else f"fold{fold}"
    return task_key(f"fit-{kind}", ordinal, fold_label, token)


@dataclass
class Job:
    """One base-model fit: a fold model or the overall model of one cross-fit estimator."""

    key: str
    stage: str
    kind: str
    ordinal: int
    fold: int | None
    spec: FitSpec
    parts: Sequence[Future | Delayed]
    extra_parts: Sequence[Future | Delayed] = ()
    cost: float = 1.0
    #: expected seconds per unit of ``cost``, relative (ordering only): the number of classes
    #: of a multi-class classifier (a boosted model grows a tree per class), or the auto
    #: plan's calibrated seconds per training row
    weight: float = 1.0
    #: ``"local"``, ``"stream"`` or ``"collection"`` (see :mod:`dask_meta.backends`)
    backend: str = LOCAL
    #: empty pandas frames (training partition, derived columns or None): the schema of a
    #: collection job's input
    meta: tuple[pd.DataFrame, pd.DataFrame | None] | None = None
    #: a fused streaming job: the fits (folds and overall model of one estimator) it runs
    #: in one chain, each partition read once for all of them
    members: Sequence[Job] = ()
    #: deferred jobs wait for this one (a nuisance fit that the treatment models' targets
    #: are derived from): it runs before the jobs nothing waits for, whatever their length
    blocks: bool = False
    #: the bootstrap replicate this fit belongs to (None: a learner's own fit)
    replicate: int | None = None

    @property
    def group(self) -> tuple[str, str, int, int | None]:
        """The cross-fit estimator the job fits a model of (the cross-fitting limit's unit)."""
        return (self.stage, self.kind, self.ordinal, self.replicate)


def describe(job: Job) -> str:
    """A job in words: ``treatment_model 0 fold 2``, ``propensity_model 0 overall model``."""
    if job.members:
        return f"{job.kind} {job.ordinal} (its {len(job.members)} fits, streamed together)"
    which = "overall model" if job.fold is None else f"fold {job.fold}"
    of = "" if job.replicate is None else f" of bootstrap replicate {job.replicate}"
    return f"{job.kind} {job.ordinal} {which}{of}"


class FitKilledWorker(KilledWorker):
    """A fit job whose worker process died every time it ran it.

    Distributed gives up on a task after ``distributed.scheduler.allowed-failures`` worker
    deaths (``KilledWorker``, which this still is); this names the model, fold and task.
    """

    def __init__(self, task: Any, last_worker: Any, allowed_failures: int, job_key: str, job: str):
        # all five in args, so that the exception pickles like any other
        Exception.__init__(self, task, last_worker, allowed_failures, job_key, job)

    @classmethod
    def of(cls, job: Job, cause: KilledWorker) -> FitKilledWorker:
        return cls(cause.task, cause.last_worker, cause.allowed_failures, job.key, describe(job))

    @property
    def job_key(self) -> str:
        return str(self.args[3])

    @property
    def job(self) -> str:
        return str(self.args[4])

    def __str__(self) -> str:
        task = "" if self.task == self.job_key else f" at its input task {self.task!r}"
        return (
            f"the fit of {self.job} (task {self.job_key}) failed: {self.allowed_failures + 1} "
            f"workers died while running it{task}, the last one "
            f"{self.last_worker.address}. The base model's fit crashes its worker process "
            "(a segfault, os._exit, or more memory than the worker's limit); check the worker "
            "logs. Distributed gives up after distributed.scheduler.allowed-failures="
            f"{self.allowed_failures} deaths."
        )


@dataclass
class Deferred:
    """Jobs that can only be built once some other jobs are done (no stage barrier).

    ``build`` runs on the client with the results and the futures of the finished jobs and
    returns the new jobs (it may call :meth:`Planner.map_partitions` to derive per-partition
    inputs from the fit futures, which stay on the cluster).
    """

    after: frozenset[str]
    build: Callable[[dict[str, FitResult], dict[str, Future]], list[Job]]


@dataclass
class Limits:
    n_jobs_cross_fitting: int | None = None
    n_jobs_base_learners: int | None = None

    @staticmethod
    def _check(name: str, value: int | None) -> int | None:
        if value is None or value == -1:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be None, -1 or a positive int, got {value!r}")
        return value

    def __post_init__(self) -> None:
        self.n_jobs_cross_fitting = self._check("n_jobs_cross_fitting", self.n_jobs_cross_fitting)
        self.n_jobs_base_learners = self._check("n_jobs_base_learners", self.n_jobs_base_learners)


def resolve_threads(requested: int | None, shape: ClusterShape, n_jobs: int, what: str) -> int:
    """Threads for one model: the user's request, checked, or the planner's choice.

    A positive request must fit on one worker (else ValueError: Dask would hang forever);
    -1 means all threads of the largest worker. Unset: one thread per model when there are
    at least as many jobs as cluster threads (fold-level parallelism is the most efficient
    use of the cores), else the cores divided among the jobs.
    """
    largest = shape.max_threads
    if requested == -1:
        return largest
    if requested is not None:
        if requested > largest:
            big = shape.largest_worker
            raise ValueError(
                f"{what} asks for {requested} threads per model, but the largest worker "
                f"({big.address}) has {largest} threads; no worker can run it. Lower the "
                "thread count in the model params (n_jobs / num_threads), use -1 for a whole "
                "worker, or add bigger workers."
            )
        return requested
    if n_jobs >= shape.total_threads:
        return 1
    return max(1, min(largest, shape.total_threads // max(n_jobs, 1)))


@dataclass
class Planner:
    """Submits fit jobs within the three limits and records ``fit_report_`` rows."""

    client: Client
    limits: Limits = field(default_factory=Limits)
    label: str = "dask_meta"
    shape: ClusterShape | None = None
    report: list[dict[str, Any]] = field(default_factory=list)
    #: futures of finished fit jobs, kept for deferred builds until :meth:`release`
    futures: dict[str, Future] = field(default_factory=dict)
    _owned: list[Future] = field(default_factory=list)
    #: partition order of each streaming job, drawn once
    _orders: dict[str, list[int]] = field(default_factory=dict)
    #: names the workers' totals of this planner's per-partition task seconds
    _work_token: str = field(default_factory=new_token)

    def __post_init__(self) -> None:
        if self.shape is None:
            self.shape = cluster_shape(self.client)
        if not self.shape.declares_threads:
            logger.warning(
                "no worker of this cluster declares the %r resource; dask_meta limits the "
                "threads in flight on the client instead. Start workers with "
                "resources={'threads': nthreads} (dask worker --resources threads=N) so the "
                "scheduler can place multi-threaded fits.",
                THREADS,
            )

    # -- data helpers (the only other submissions) ---------------------------------------

    def persist_partitions(self, frame: Any, name: str) -> list[Future]:
        """Compute a Dask frame's partitions on the cluster; one future per partition, in order.

        The futures keep their graph lineage, so a lost worker's partitions are recomputed.
        Their keys are this run's own: the same data has the same graph keys in every fit,
        and a key shared with another fit (concurrent, or an earlier failed one whose
        cancelled futures an exception still holds) would be cancelled under it or kept
        on the cluster by it.
        """
        token = new_token()
        parts = [
            dask.delayed(runtime.identity, pure=False)(part, dask_key_name=task_key(name, i, token))
            for i, part in enumerate(partitions(frame))
        ]
        logger.info("%s: keeping the %s in the cluster's memory", self.label, name)
        with span(self.label, "data", name):
            futures = runtime.compute(self.client, parts)
        self._owned.extend(futures)
        return list(futures)

    def cut_partitions(
        self, parts: Sequence[Future], counts: Sequence[int], name: str
    ) -> list[Future]:
        """Persisted partitions cut into pieces of rows (``counts[i]`` of partition ``i``),
        in row order: the passes over a few large partitions run as several tasks. The
        pieces replace the cut partitions in what this run owns; their lineage keeps them."""
        cut = {id(part) for part, count in zip(parts, counts, strict=True) if count > 1}
        if not cut:
            return list(parts)
        token = new_token()
        pieces: list[Future] = []
        created: list[Future] = []
        for i, (part, count) in enumerate(zip(parts, counts, strict=True)):
            if count == 1:
                pieces.append(part)
                continue
            for j in range(count):
                key = task_key(name, i, j, token)
                created.append(
                    runtime.submit(self.client, rows_of, part, Piece(i, j, count), key=key)
                )
                pieces.append(created[-1])
        self._owned = [f for f in self._owned if id(f) not in cut] + created
        return pieces

    def map_partitions(
        self, func: Callable[..., Any], *columns: Sequence[Any], name: str, **kwargs: Any
    ) -> list[Future]:
        """Run ``func(part_i, other_i, ..., **kwargs)`` per partition on the cluster.

        ``columns`` are equally long sequences (futures, delayed or plain values) zipped per
        partition. With delayed partitions (training data that is not persisted) the result
        stays lazy: delayed objects, computed again by every task that reads them.
        """
        token = new_token()
        out: list[Any] = []
        # one thread each, ahead of every fit: a prediction beside a fit that holds all of a
        # worker's threads would oversubscribe its cores (and slow the fit's OpenMP threads
        # for good), and the treatment fits waiting for it should not wait for unrelated fits
        placement: dict[str, Any] = {"priority": DERIVE_PRIORITY}
        if self.shape is not None and self.shape.declares_threads:
            placement["resources"] = {THREADS: 1}
        with span(self.label, "derive", name):
            for i, args in enumerate(zip(*columns, strict=True)):
                key = task_key(name, i, token)
                timed = (func, self._work_token, *args)
                if any(isinstance(a, Delayed) for a in args):
                    task = dask.delayed(timed_task, pure=True)
                    out.append(task(*timed, **kwargs, dask_key_name=key))
                else:
                    # kwargs may hold futures: submit resolves them (a partial would not)
                    out.append(
                        runtime.submit(
                            self.client, timed_task, *timed, key=key, **placement, **kwargs
                        )
                    )
        self._owned.extend(f for f in out if isinstance(f, Future))
        return out

    def gather_partitions(
        self, func: Callable[..., Any], parts: Sequence[Any], name: str, **kwargs: Any
    ) -> list[Any]:
        """Small per-partition results (checksums, statistics) on the client.

        Works on persisted and lazy partitions alike; a lazy partition is read, reduced and
        released, one task per partition, so only the small results are held.
        """
        tasks = runtime.keyed_tasks(func, parts, name, **kwargs)
        with span(self.label, "data", name):
            return runtime.gather_tasks(self.client, tasks)

    def scatter(self, obj: Any) -> Future:
        """Put one object (fitted models) on the cluster once (:func:`runtime.put`)."""
        future = runtime.put(self.client, obj, task_key("models", new_token()))
        self._owned.append(future)
        return future

    def calibrate(
        self, spec: FitSpec, part: Any, extra: Sequence[Any], sizes: tuple[int, int], seed: int
    ) -> Any:
        """Time one base model on a sample of a partition (the auto plan's cost model).

        The task holds all threads of a worker, so nothing else runs beside the timed fits.
        """
        assert self.shape is not None
        threads = self.shape.max_threads
        kwargs: dict[str, Any] = {}
        if self.shape.declares_threads:
            kwargs["resources"] = {THREADS: threads}
        key = task_key(f"calibrate-{factory_name(spec.factory)}", new_token())
        args = [spec, sizes, threads, seed, part, *extra]
        with span(self.label, "calibrate"):
            if any(isinstance(a, Delayed) for a in args):
                task = dask.delayed(calibrate_fit, pure=False)(*args, dask_key_name=key)
                future = runtime.compute(self.client, task, **kwargs)
            else:
                future = runtime.submit(
                    self.client, calibrate_fit, *args, key=key, pure=False, **kwargs
                )
        try:
            return runtime.result(future)
        finally:
            runtime.release([future])

    def task_seconds(self) -> float:
        """Seconds the workers spent in this planner's per-partition tasks (those of a lost
        worker are not counted), forgotten on the workers."""
        try:
            return float(
                sum(
                    runtime.run_on_workers(self.client, pop_task_seconds, self._work_token).values()
                )
            )
        except Exception as exc:  # a worker lost while the fit ended
            logger.debug("collecting the per-partition task seconds failed: %s", exc)
            return math.nan

    def drop_bins(self, token: str) -> None:
        """Free the shared binned Datasets a fit left on the workers."""
        try:
            runtime.run_on_workers(self.client, drop_bins, token)
        except Exception as exc:  # a lost worker took its Datasets with it
            logger.debug("dropping the binned Datasets of %s failed: %s", token, exc)

    def release(self) -> None:
        """Drop the references to data futures of this run (persisted training frame etc.)."""
        self._owned.clear()
        self.futures.clear()

    def cancel_all(self) -> None:
        owned = self._owned + list(self.futures.values())
        runtime.cancel(self.client, owned)
        self._owned.clear()
        self.futures.clear()

    # -- the submission loop -------------------------------------------------------------

    def validate(self, jobs: Iterable[Job]) -> None:
        assert self.shape is not None
        largest = self.shape.max_threads
        for job in jobs:
            if job.spec.threads > largest:
                raise ValueError(
                    f"job {job.key} asks for {job.spec.threads} threads but the largest "
                    f"worker ({self.shape.largest_worker.address}) has {largest}"
                )

    def run(self, jobs: Sequence[Job], deferred: Sequence[Deferred] = ()) -> dict[str, FitResult]:
        """Fit all jobs (and deferred ones once their inputs are done); results by key.

        Local jobs are one task each. A streaming job is a chain of tasks, one per
        partition, submitted one at a time, so that a job never has more than one partition
        in memory (and reads never run ahead of the model). A collection job starts only
        when nothing else of this fit is in flight and runs alone, from here.
        """
        assert self.shape is not None
        self.validate(jobs)
        progress_jobs = list(jobs)
        pending: list[Job] = sorted(fuse_streams(jobs, self.limits), key=_priority)
        waiting = list(deferred)
        results: dict[str, FitResult] = {}
        #: future -> (job, time submitted, index of the next stream step, worker placed on)
        in_flight: dict[Future, tuple[Job, float, int, str | None]] = {}
        per_group: Counter[tuple[Any, ...]] = Counter()
        threads_in_flight = 0
        #: threads of local fits in flight per worker they were placed on
        placed: Counter[str] = Counter()
        capacity = self.shape.total_threads * (2 if self.shape.declares_threads else 1)
        capacity = max(capacity, self.shape.max_threads)
        ac = runtime.completion_queue(self.client)
        progress = fit_progress(self.label, progress_jobs, len(waiting))

        def can_start(job: Job) -> bool:
            if threads_in_flight and threads_in_flight + job.spec.threads > capacity:
                return False
            cf = self.limits.n_jobs_cross_fitting
            if cf is not None and per_group[job.group] + _fits(job) > cf:
                return False
            bl = self.limits.n_jobs_base_learners
            if bl is not None and per_group[job.group] == 0:
                active = sum(1 for g, n in per_group.items() if n and g[0] == job.stage)
                if active >= bl:
                    return False
            return True

        def finish(job: Job, result: FitResult, future: Future | None, submitted: float) -> None:
            results[job.key] = result
            if future is not None:
                self.futures[job.key] = future
            else:
                self.futures[job.key] = self.scatter(result)
            self._record(job, result, submitted)
            progress.finished(job, len(waiting))
            build_ready()

        def reorder() -> set[str]:
            running = [job for job, *_ in in_flight.values()]
            return order_pending(pending, running, self.shape.total_threads)  # type: ignore[union-attr]

        def fill() -> None:
            nonlocal threads_in_flight
            first = reorder()
            i = 0
            while i < len(pending):
                job = pending[i]
                if job.backend == COLLECTION:
                    if in_flight:
                        return  # let the cluster drain: a collection fit runs alone
                    pending.pop(i)
                    submitted = time.time()
                    result = self._run_collection(job)
                    finish(job, result, None, submitted)
                    first = reorder()
                    i = 0
                    continue
                if can_start(job):
                    pending.pop(i)
                    worker = self._place(job, placed)
                    # the jobs before it in the order run first on a worker, too
                    future = self._submit(job, 0, worker=worker, first=job.key in first)
                    in_flight[future] = (job, time.time(), 1, worker)
                    if worker is not None:
                        placed[worker] += job.spec.threads
                    per_group[job.group] += _fits(job)
                    threads_in_flight += job.spec.threads
                    ac.add(future)
                else:
                    i += 1

        def build_ready() -> None:
            ready = [d for d in waiting if d.after <= results.keys()]
            for d in ready:
                waiting.remove(d)
                new_jobs = d.build(results, self.futures)
                self.validate(new_jobs)
                pending.extend(fuse_streams(new_jobs, self.limits))
                progress.added(new_jobs, len(waiting))

        try:
            build_ready()
            fill()
            while in_flight:
                future = next(ac)
                job, submitted, step, worker = in_flight.pop(future)
                if job.backend == STREAM and step < len(job.parts):
                    if future.status == "error":
                        self._raise_for(job, future)
                    following = self._submit(job, step, future)
                    in_flight[following] = (job, submitted, step + 1, None)
                    ac.add(following)
                    continue
                per_group[job.group] -= _fits(job)
                threads_in_flight -= job.spec.threads
                if worker is not None:
                    placed[worker] -= job.spec.threads
                result = self._raise_for(job, future)
                if job.members:
                    for i, (member, member_result) in enumerate(
                        zip(job.members, result, strict=True)
                    ):
                        finish(member, member_result, self._member(future, i, member), submitted)
                else:
                    finish(job, result, future, submitted)
                fill()
            if pending or waiting:
                raise RuntimeError(
                    "dask_meta planner stopped with unscheduled jobs: "
                    f"{[j.key for j in pending]} and {len(waiting)} deferred groups"
                )
        except BaseException:
            progress.close(failed=True)
            runtime.cancel(self.client, list(in_flight))
            self.cancel_all()
            raise
        progress.close()
        return results

    @staticmethod
    def _raise_for(job: Job, future: Future) -> Any:
        try:
            return runtime.result(future)
        except KilledWorker as exc:
            # the worker process died (crash, os._exit, out of memory) every time it ran
            # this job: say which model it was, not only a task key
            raise FitKilledWorker.of(job, exc) from exc
        except Exception as exc:
            exc.add_note(f"dask_meta: while fitting {describe(job)} (task {job.key})")
            raise

    def _member(self, fused: Future, index: int, member: Job) -> Future:
        """The future of one fit of a fused streaming job (its result, under its own key)."""
        return runtime.submit(
            self.client, operator.getitem, fused, index, key=member.key, pure=False
        )

    def _place(self, job: Job, placed: Counter[str]) -> str | None:
        """The worker for a local fit: the one with the most threads free of this run's fits.

        Left to itself the scheduler sends a task to a worker that holds its inputs, and
        in-memory data under ``ROWS_PER_PARTITION`` rows is one partition on one worker: every
        fit would queue there while the other workers wait for work stealing (seconds). The
        placement is loose (``allow_other_workers``): a lost worker's fits go elsewhere, and
        stealing may still move them. Streaming steps keep the scheduler's choice (each reads
        one partition, best where it is).
        """
        if job.backend != LOCAL:
            return None
        assert self.shape is not None
        declared = self.shape.declares_threads
        best: tuple[float, str] | None = None
        for w in self.shape.workers:
            capacity = (w.threads_resource or 0) if declared else w.nthreads
            if capacity < job.spec.threads:
                continue
            free = capacity - placed[w.address]
            if best is None or free > best[0]:
                best = (free, w.address)
        return None if best is None else best[1]

    def _submit(
        self,
        job: Job,
        step: int,
        previous: Future | None = None,
        worker: str | None = None,
        first: bool | None = None,
    ) -> Future:
        """Submit a local job, or step ``step`` of a streaming job (after ``previous``)."""
        kwargs: dict[str, Any] = {"priority": _scheduler_priority(job, first)}
        if worker is not None:
            kwargs["workers"] = [worker]
            kwargs["allow_other_workers"] = True
        if self.shape is not None and self.shape.declares_threads:
            kwargs["resources"] = {THREADS: job.spec.threads}
        if job.backend == STREAM:
            order = self._orders.get(job.key)
            if order is None:
                order = self._orders[job.key] = stream_order(job.spec.params, len(job.parts))
            index = order[step]
            final = step == len(job.parts) - 1
            extra = [job.extra_parts[index]] if job.extra_parts else []
            func: Callable[..., Any] = stream_step
            args: list[Any] = [job.spec, previous, final, job.parts[index], *extra]
            if job.members:
                func = fused_stream_step
                args[0] = [m.spec for m in job.members]
            key = job.key if final else f"{job.key}-part{index}"
        else:
            func = fit_local
            args = [job.spec, len(job.parts), *job.parts, *job.extra_parts]
            key = job.key
        with span(self.label, job.stage):
            if any(isinstance(a, Delayed) for a in args):
                # lazy training data: the task reads its partitions from the source
                task = dask.delayed(func, pure=False)(*args, dask_key_name=key)
                return runtime.compute(self.client, task, **kwargs)
            return runtime.submit(self.client, func, *args, key=key, pure=False, **kwargs)

    def _run_collection(self, job: Job) -> FitResult:
        """Fit a collection estimator on a lazy frame of the job's rows (blocks until done)."""
        assert job.meta is not None
        training_meta, extra_meta = job.meta
        meta = collection_rows(
            job.spec, training_meta, *([extra_meta] if extra_meta is not None else [])
        )
        tasks = [
            dask.delayed(collection_rows, pure=True)(
                job.spec, part, *([job.extra_parts[i]] if job.extra_parts else [])
            )
            for i, part in enumerate(job.parts)
        ]
        # verify_meta=False loses the futures of persisted partitions (dask 2026.8: "lost
        # dependencies" once to_dask_array(lengths=True) has run)
        frame = dd.from_delayed(tasks, meta=meta)
        # no span here: the estimator builds Dask collections, which ignore annotations
        try:
            lazy = not any(isinstance(p, Future) for p in (*job.parts, *job.extra_parts))
            return fit_collection(job.spec, self.client, frame, int(job.cost), lazy)
        except Exception as exc:
            exc.add_note(
                f"dask_meta: while fitting {describe(job)} "
                f"({factory_name(job.spec.factory)} on the cluster)"
            )
            raise

    def _record(self, job: Job, result: FitResult, submitted: float) -> None:
        self.report.append(
            {
                "key": job.key,
                "stage": job.stage,
                "model_kind": job.kind,
                "ordinal": job.ordinal,
                "fold": "overall" if job.fold is None else job.fold,
                "worker": result.worker if result.worker is not None else "cluster",
                "threads": job.spec.threads,
                "rows": result.n_rows,
                "submitted": submitted,
                "start": result.start,
                "end": result.end,
                "duration": result.end - result.start,
            }
        )

    def report_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.report, columns=REPORT_COLUMNS)
        frame = frame.sort_values("start", kind="stable").reset_index(drop=True)
        if self.shape is not None:
            # the threads of each worker: the lanes of a timeline of the fits
            frame.attrs["worker_threads"] = {w.address: w.nthreads for w in self.shape.workers}
        return frame


def _fits(job: Job) -> int:
    """Fits a job runs: its members for a fused streaming job, else one."""
    return len(job.members) or 1


def expected(job: Job) -> float:
    """A job's expected duration, in the units of its weight (rows, or seconds x 1e6)."""
    return job.cost * job.weight


def _priority(job: Job, first: bool | None = None) -> tuple[bool, float, str, int, int]:
    """Jobs that go ``first`` (by default those others wait for), then longest expected
    first; ties broken deterministically. A fit that no deferred job waits for (an overall
    nuisance model whose predictions no treatment target uses) then fills the cores while
    the treatment stage runs, instead of holding up the fits it does wait for."""
    fold = -1 if job.fold is None else job.fold
    first = job.blocks if first is None else first
    return (not first, -expected(job), job.kind, job.ordinal, fold)


def order_pending(pending: list[Job], running: Sequence[Job], threads: int) -> set[str]:
    """Sort ``pending`` into submission order; the keys of the jobs that go first.

    Jobs that deferred jobs wait for go first, and with them any job nothing waits for that
    is longer than the awaited work left (pending and running) per thread: started last, it
    would run alone at the end of the fit; started now, it takes one thread's share from
    the awaited jobs. Within each group, longest expected first.
    """
    awaited = [job for job in [*pending, *running] if job.blocks]
    per_thread = sum(expected(job) * job.spec.threads for job in awaited) / max(threads, 1)
    first = {job.key for job in pending if job.blocks or expected(job) > per_thread}
    pending.sort(key=lambda job: _priority(job, first=job.key in first))
    return first


#: scheduler priority of the per-partition predictions and derived targets: above every fit
DERIVE_PRIORITY = 10**14


def _scheduler_priority(job: Job, first: bool | None = None) -> int:
    """The same order for the scheduler (a higher priority runs first on a worker)."""
    first = job.blocks if first is None else first
    return int(min(expected(job), 1e12)) + (10**13 if first else 0)


def fuse_streams(jobs: Sequence[Job], limits: Limits) -> list[Job]:
    """One chain per streaming estimator instead of one per fold model (docs/out-of-core.md).

    The fold models and the overall model of a streaming estimator read the same partitions
    in the same order; fused, each partition is read once for all of them rather than once
    per fit. Without a cross-fitting limit a bootstrap's replicates of the estimator, which
    read those partitions too, join the same chain. Not when ``n_jobs_cross_fitting`` allows
    fewer fits of an estimator at once than it has.
    """
    cf = limits.n_jobs_cross_fitting
    groups: dict[tuple[Any, ...], list[Job]] = {}
    for job in jobs:
        if job.backend == STREAM and not job.members:
            groups.setdefault(job.group[:3] if cf is None else job.group, []).append(job)
    out = [job for job in jobs if job.backend != STREAM or job.members]
    for members in groups.values():
        first = members[0]
        fusable = (
            len(members) > 1
            and (cf is None or cf >= len(members))
            and all(
                m.parts is first.parts
                and m.extra_parts is first.extra_parts
                and m.spec.params == first.spec.params
                and m.spec.threads == first.spec.threads
                for m in members
            )
        )
        if not fusable:
            out.extend(members)
            continue
        token = first.key.rsplit("-", 1)[-1]
        out.append(
            Job(
                key=task_key(f"fit-{first.kind}", first.ordinal, "fused", token),
                stage=first.stage,
                kind=first.kind,
                ordinal=first.ordinal,
                fold=None,
                spec=first.spec,
                parts=first.parts,
                extra_parts=first.extra_parts,
                cost=sum(m.cost for m in members),
                weight=first.weight,
                backend=STREAM,
                meta=first.meta,
                members=list(members),
                blocks=any(m.blocks for m in members),
            )
        )
    return out


def parallel_efficiency(report: pd.DataFrame, cores: int, wall: float) -> float:
    """The fit's work in thread-seconds divided by (cores x wall time).

    The work is every model fit (its duration x its threads) and the per-partition
    predictions and derived targets that the treatment models train on (one thread each;
    ``report.attrs["task_seconds"]``, recorded by the learners' ``fit``). Time spent reading
    data, calibrating the plan, scheduling or idle is what lowers it.
    """
    if wall <= 0 or cores <= 0:
        return math.nan
    tasks = report.attrs.get("task_seconds", 0.0)
    tasks = 0.0 if tasks is None or math.isnan(tasks) else float(tasks)
    return float(((report["duration"] * report["threads"]).sum() + tasks) / (cores * wall))
