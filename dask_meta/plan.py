"""Parallelism plans: how many threads each base model gets and the two concurrency limits.

metalearners leaves its three levels of parallelism (model threads, ``n_jobs_cross_fitting``,
``n_jobs_base_learners``) to the user, who has to try several settings. A learner's ``plan``
argument makes that choice:

``None`` (default)
    From :data:`AUTO_FROM_ROWS` training rows the cost model below, which times no model
    when the fits are all of one model and one candidate wins however well its threads
    scale (:func:`choose_untimed`). Below it the planner's rule (``"rule"``): one thread per
    model when there are at least as many fits that may run at once as the cluster has
    threads, else the threads divided among them; no limits beyond the fit call's
    ``n_jobs_*`` arguments.
``"auto"``
    A cost model. Each base-model class is timed on a small calibration fit on one worker
    (a sample of the first training partition, at two sizes with one thread and with all of
    the worker's threads; tree ensembles grow 20 of their ``n_estimators`` and the times are
    scaled up; LightGBM models whose fits share a binned Dataset are timed on subsets of one,
    as they will fit): seconds = a + b x rows with one thread; with more threads only the per-row
    part runs faster (Amdahl), by the factor it gained at the larger timed size, so large
    fits gain more than the timed ones, interpolated linearly in the threads.
    Every candidate (threads per model from 1 to a worker's threads, and, when the fits
    would not fit in the workers' memory side by side, a cap on the fits in flight; one
    thread per model but more for the model kinds with the longest fits; for a fit of one
    stage, one thread per model but more for the fits left over by the full rounds,
    :func:`tail_of`) is scored by
    simulating the fit: the jobs of each stage longest-first, each where its threads are
    free first and never before a job ahead of it. The fastest candidate wins; within 2%,
    the one with fewer threads. Calibrations are kept per cluster and model, so later fits
    reuse them (on a training matrix up to 1.34x wider or narrower, the times scaled by the
    width).
:class:`Plan`
    Explicit settings.

The fit call's own ``n_jobs_cross_fitting`` / ``n_jobs_base_learners`` win over a plan's,
and threads set in a model's params (``n_jobs``, ``num_threads``...) win over the plan's for
that model. ``learner.fit_report_.attrs["plan"]`` states the plan used and why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dask_meta.cluster import ClusterShape

AUTO = "auto"
RULE = "rule"
#: with the default ``plan=None`` the cost model plans every fit of at least this many
#: training rows: its calibration (a few seconds, once per cluster and base-model class)
#: is small against such fits; smaller fits take the planner's rule, which costs nothing
AUTO_FROM_ROWS = 100_000

#: rows of the calibration fits, each size timed with one thread and with a worker's threads
#: (fewer rows when the partition is smaller)
CALIBRATION_ROWS = (5_000, 20_000)
#: share of a worker's memory limit that the fits in flight on it may take
MEMORY_SHARE = 0.5
#: bytes per training value of a fit in flight: the selected rows' copy, the feature matrix
#: and the model's own copy (LightGBM's binned data, gradients) with room to spare
BYTES_PER_VALUE = 24
#: candidates within this factor of the fastest count as about as fast: the one with fewer
#: threads wins
CLOSE_ENOUGH = 1.02
#: :func:`choose_untimed` scores the candidates at this many steps (and one) of a model's
#: speedup with a worker's threads, from none to linear
SPEEDUP_STEPS = 8


def _check_limit(name: str, value: Any) -> int | None:
    if value is None or value == -1:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be None, -1 or a positive int, got {value!r}")
    return value


@dataclass(frozen=True)
class Plan:
    """An explicit parallelism plan (``plan=Plan(threads_per_model=2)``).

    ``threads_per_model``: threads of every base model whose params do not set them (-1: all
    threads of a worker; ``None``: the planner's rule). ``n_jobs_cross_fitting`` and
    ``n_jobs_base_learners``: metalearners' two limits, used when the fit call leaves them
    ``None``.
    """

    threads_per_model: int | None = None
    n_jobs_cross_fitting: int | None = None
    n_jobs_base_learners: int | None = None

    def __post_init__(self) -> None:
        t = self.threads_per_model
        if t is not None and t != -1:
            if isinstance(t, bool) or not isinstance(t, int) or t < 1:
                raise ValueError(f"threads_per_model must be None, -1 or a positive int, got {t!r}")
        object.__setattr__(
            self,
            "n_jobs_cross_fitting",
            _check_limit("n_jobs_cross_fitting", self.n_jobs_cross_fitting),
        )
        object.__setattr__(
            self,
            "n_jobs_base_learners",
            _check_limit("n_jobs_base_learners", self.n_jobs_base_learners),
        )


def check_plan(plan: Any) -> None:
    """Constructor-time validation of a learner's ``plan`` argument."""
    if plan is None or plan in (AUTO, RULE) or isinstance(plan, Plan):
        return
    raise ValueError(
        f"plan must be None (the cost model from {AUTO_FROM_ROWS:,} training rows, else the "
        "planner's rule), 'auto' (the cost model), 'rule' (the planner's rule) or a "
        f"dask_meta.Plan, got {plan!r}"
    )


def uses_cost_model(plan: Any, n_rows: int) -> bool:
    """Whether a fit of ``n_rows`` training rows is planned by the cost model."""
    return plan == AUTO or (plan is None and n_rows >= AUTO_FROM_ROWS)


@dataclass(frozen=True)
class Calibration:
    """Timed fits of one base model: the cost model's input for that model.

    ``seconds_1``: one thread at the two sizes ``rows``; ``seconds_n``: ``threads`` threads
    at the larger size and ``seconds_n_small`` (when timed, reported) at the smaller one.
    Threads speed up the part of a fit that grows with its rows, not its fixed cost, so the
    speedup is worked out per row count (:meth:`speedup`).
    """

    model: str
    rows: tuple[int, int]
    seconds_1: tuple[float, float]
    threads: int
    seconds_n: float
    #: the times are those of fewer boosting rounds, multiplied by this (1: timed as given)
    rounds_scale: float = 1.0
    seconds_n_small: float | None = None

    @staticmethod
    def _line(rows: tuple[int, int], seconds: tuple[float, float]) -> tuple[float, float]:
        """Intercept and seconds per row through the two timed sizes."""
        (r0, r1), (s0, s1) = rows, seconds
        slope = s1 / max(r1, 1) if r1 <= r0 else max((s1 - s0) / (r1 - r0), 0.0)
        return max(s0 - slope * r0, 0.0), slope

    @property
    def slope(self) -> float:
        """Seconds per training row with one thread."""
        return self._line(self.rows, self.seconds_1)[1]

    @property
    def intercept(self) -> float:
        return self._line(self.rows, self.seconds_1)[0]

    def speedup(self, threads: int, rows: int | None = None) -> float:
        """Speedup at ``threads`` (interpolated linearly below the timed threads) for a fit
        of ``rows`` rows (the larger timed size when None).

        Threads speed up the part of a fit that grows with its rows, not its fixed cost
        (Amdahl): the one-thread line's intercept stays serial, and its per-row part at the
        larger timed size ran ``p`` times faster with the worker's threads, so a fit of
        ``rows`` rows takes ``a + b x rows / p``. Fits larger than the timed ones gain more,
        and at least what the larger timed size gained. (A line through the two many-thread
        times instead would turn a tenth of a second of noise in fits of a few thousand rows
        into a slowdown at a million rows; the two sizes' times are also what the one-thread
        line is drawn through.)
        """
        if self.threads <= 1 or threads <= 1:
            return 1.0
        measured = self.seconds_1[1] / max(self.seconds_n, 1e-9)
        if rows is None or self.seconds_n_small is None:
            # the larger size's speedup at every size (a calibration that timed only that)
            top = measured
        else:
            a, b = self.intercept, self.slope
            per_row_1 = b * self.rows[1]
            per_row_n = self.seconds_n - a
            p = per_row_1 / per_row_n if per_row_n > 0 and per_row_1 > 0 else self.threads
            p = min(max(p, 1.0), float(self.threads))
            top = (a + b * rows) / max(a + b * rows / p, 1e-9)
            if rows >= self.rows[1]:
                top = max(top, measured)
        top = min(max(top, 1.0), float(self.threads))
        share = (min(threads, self.threads) - 1) / (self.threads - 1)
        return 1.0 + (top - 1.0) * share

    def seconds(self, rows: int, threads: int) -> float:
        return (self.intercept + self.slope * rows) / self.speedup(threads, rows)


@dataclass(frozen=True)
class PlannedJob:
    """What the cost model knows of one fit before it runs."""

    stage: str
    group: tuple[Any, ...]
    rows: int
    model: str
    #: columns of its training matrix (for the memory estimate)
    columns: int
    #: threads fixed by the model's params (the plan does not change them)
    fixed_threads: int | None = None


@dataclass(frozen=True)
class Candidate:
    threads_per_model: int
    max_in_flight: int | None
    seconds: float
    memory_ok: bool
    #: model kinds whose fits get other threads than ``threads_per_model``
    threads_by_kind: tuple[tuple[str, int], ...] = ()
    #: the last fits (shortest), which get ``tail_threads`` threads each (:func:`tail_of`)
    tail_fits: int = 0
    tail_threads: int = 1

    def describe(self) -> str:
        text = f"{self.threads_per_model} thread{'s' if self.threads_per_model > 1 else ''}"
        text += "".join(f", {kind} {t}" for kind, t in self.threads_by_kind)
        if self.tail_fits:
            text += f", the last {self.tail_fits} fit(s) {self.tail_threads}"
        if self.max_in_flight:
            text += f" x at most {self.max_in_flight} in flight"
        return text


@dataclass(frozen=True)
class PlanChoice:
    """The plan a fit used, and why (``fit_report_.attrs["plan"]``)."""

    source: str
    threads_per_model: int | None
    n_jobs_cross_fitting: int | None
    n_jobs_base_learners: int | None
    reason: str
    estimated_seconds: float | None = None
    candidates: tuple[Candidate, ...] = ()
    calibrations: tuple[Calibration, ...] = field(default_factory=tuple)
    #: wall time of the calibration fits this fit ran (0 when it reused earlier ones)
    calibration_seconds: float = 0.0
    #: model kinds whose fits get other threads than ``threads_per_model`` (auto plan)
    threads_by_kind: dict[str, int] = field(default_factory=dict)
    #: the fit's last (shortest) fits, which get ``tail_threads`` threads each (auto plan,
    #: :func:`tail_of`)
    tail_fits: int = 0
    tail_threads: int = 1

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["candidates"] = [asdict(c) for c in self.candidates]
        out["calibrations"] = [asdict(c) for c in self.calibrations]
        return out


# --- the simulation -------------------------------------------------------------------------


def slots(shape: ClusterShape, threads: int) -> int:
    """Fits of ``threads`` threads that the cluster runs side by side."""
    return max(sum(c // threads for c in _capacities(shape)), 1)


def _capacities(shape: ClusterShape) -> list[int]:
    """Each worker's threads for fits (its ``threads`` resource where declared)."""
    return [
        int(w.threads_resource if w.threads_resource is not None else w.nthreads)
        for w in shape.workers
    ] or [1]


def job_threads(job: PlannedJob, threads: int, shape: ClusterShape) -> int:
    if job.fixed_threads is None:
        return threads
    return shape.max_threads if job.fixed_threads == -1 else job.fixed_threads


def _job_seconds(job: PlannedJob, calibrations: dict[str, Calibration], threads: int) -> float:
    """A job's estimated seconds on ``threads`` threads (its rows, for an untimed model)."""
    calibration = calibrations.get(job.model)
    return calibration.seconds(job.rows, threads) if calibration is not None else float(job.rows)


def simulate(
    jobs: Sequence[PlannedJob],
    calibrations: dict[str, Calibration],
    shape: ClusterShape,
    threads: int,
    max_in_flight: int | None = None,
    threads_by_kind: dict[str, int] | None = None,
    tail: tuple[int, int] = (0, 1),
) -> float:
    """Estimated wall time: each stage's jobs longest-first, in turn.

    Each job starts where its threads are free first, never before a job ahead of it (a
    worker runs its queued fits in order: a fit waiting for two threads holds back the
    one-thread fits behind it), and with at most ``max_in_flight`` fits at once. A job gets
    ``threads_by_kind`` of its model kind, else ``threads``; ``tail`` = (n, t): the last n
    jobs get t threads. Treatment-stage jobs wait for the nuisance stage here (the planner
    starts them earlier, as soon as their own inputs are done), which overestimates every
    candidate alike.
    """
    by_kind = threads_by_kind or {}
    capacities = _capacities(shape)
    #: per worker, when each of its threads is free, earliest first
    free = [[0.0] * max(c, 1) for c in capacities]
    for stage in dict.fromkeys(j.stage for j in jobs):
        start = max(f[-1] for f in free)
        free = [[start] * len(f) for f in free]
        timed = []
        for j in jobs:
            if j.stage == stage:
                t = job_threads(j, by_kind.get(j.group[1], threads), shape)
                timed.append((_job_seconds(j, calibrations, t), t, j))
        timed.sort(key=lambda x: (x[0], x[1]), reverse=True)
        n_tail, tail_threads = tail
        if n_tail:
            timed[-n_tail:] = [
                (_job_seconds(j, calibrations, tail_threads), tail_threads, j)
                for _, _, j in timed[-n_tail:]
            ]
        running: list[float] = []  # end times of the fits in flight
        for seconds, t, _ in timed:
            fitting = [i for i, c in enumerate(capacities) if c >= t] or [
                capacities.index(max(capacities))
            ]
            ready, worker = min((max(free[i][min(t, len(free[i])) - 1], start), i) for i in fitting)
            if max_in_flight is not None:
                running = sorted(e for e in running if e > ready)
                while len(running) >= max_in_flight:
                    ready = max(ready, running.pop(0))
                    running = [e for e in running if e > ready]
            need = min(t, len(free[worker]))
            free[worker] = sorted([ready + seconds] * need + free[worker][need:])
            running.append(ready + seconds)
            start = ready  # the next job does not start before this one
    return max(f[-1] for f in free)


def tail_of(jobs: Sequence[PlannedJob], shape: ClusterShape) -> tuple[int, int]:
    """The fits left over when the others run one thread each, and the threads each of them
    can take, for a fit of one stage whose threads the plan chooses: ``(0, 1)`` where none.

    With n fits of one thread each on s threads, the last n mod s of them run while the
    others' threads are idle: each of them may take s // (n mod s) threads instead (at most
    a worker's). Three fits on two threads, say, run as two one-thread fits side by side,
    then one of two threads: faster than all three with two threads (their speedup is below
    two) and than all three with one (the last fit would leave a thread idle).
    """
    if len({j.stage for j in jobs}) != 1 or any(j.fixed_threads is not None for j in jobs):
        return 0, 1
    n_slots = slots(shape, 1)
    left = len(jobs) % n_slots
    threads = min(shape.max_threads, n_slots // left) if left else 1
    return (left, threads) if threads > 1 else (0, 1)


def memory_per_fit(job: PlannedJob) -> float:
    return fit_bytes(job.rows, job.columns)


def fit_bytes(rows: int, columns: int) -> float:
    """The memory a fit of ``rows`` rows of ``columns`` features takes, about."""
    return float(rows) * (columns + 2) * BYTES_PER_VALUE


def _memory_limits(shape: ClusterShape | None) -> list[int]:
    """The workers' memory limits that are known (a limit of 0 is none)."""
    return [w.memory_limit for w in shape.workers if w.memory_limit > 0] if shape else []


def one_worker_holds(shape: ClusterShape | None, rows: int, columns: int) -> bool:
    """Whether a fit of ``rows`` rows fits in the smallest worker's share for fits
    (unknown memory limits: yes)."""
    limits = _memory_limits(shape)
    return not limits or fit_bytes(rows, columns) <= MEMORY_SHARE * min(limits)


def fits_in_memory(
    jobs: Sequence[PlannedJob], shape: ClusterShape, threads: int, max_in_flight: int | None
) -> bool:
    """Whether the largest fits, as many side by side as a worker runs, fit its memory."""
    limits = _memory_limits(shape)
    if not limits or not jobs:
        return True
    per_worker = max(c // threads for c in _capacities(shape))
    if max_in_flight is not None:
        per_worker = min(per_worker, max_in_flight)
    largest = sorted((memory_per_fit(j) for j in jobs), reverse=True)[: max(per_worker, 1)]
    return sum(largest) <= MEMORY_SHARE * min(limits)


def candidates(
    jobs: Sequence[PlannedJob],
    calibrations: dict[str, Calibration],
    shape: ClusterShape,
    tail_ok: bool = False,
) -> list[Candidate]:
    """Every candidate plan, each with its simulated wall time (``tail_ok``: see
    :func:`choose`)."""
    out = []
    for threads in range(1, shape.max_threads + 1):
        n_slots = slots(shape, threads)
        caps: Sequence[int | None] = [None]
        if not fits_in_memory(jobs, shape, threads, None):
            # fewer fits in flight than slots, down to one
            caps = list(range(n_slots - 1, 0, -1)) or [1]
        for cap in caps:
            ok = fits_in_memory(jobs, shape, threads, cap)
            seconds = simulate(jobs, calibrations, shape, threads, cap)
            out.append(Candidate(threads, cap, seconds, ok))
            if ok:
                break
    if out[0].memory_ok and out[0].max_in_flight is None:
        out += _mixed_candidates(jobs, calibrations, shape)
        n_tail, tail_threads = tail_of(jobs, shape) if tail_ok else (0, 1)
        if n_tail:
            seconds = simulate(jobs, calibrations, shape, 1, tail=(n_tail, tail_threads))
            out.append(Candidate(1, None, seconds, True, (), n_tail, tail_threads))
    return out


def _within_reach(scored: Sequence[Candidate]) -> list[Candidate]:
    """The candidates whose fits fit in memory (all, if none does) within
    :data:`CLOSE_ENOUGH` of the fastest of them."""
    feasible = [c for c in scored if c.memory_ok] or list(scored)
    fastest = min(c.seconds for c in feasible)
    return [c for c in feasible if c.seconds <= fastest * CLOSE_ENOUGH]


def _preference(c: Candidate) -> tuple[int, int]:
    """Among candidates about as fast, fewer threads (better parallel efficiency): one per
    model, then one per model but for some kinds, then more per model."""
    return c.threads_per_model, len(c.threads_by_kind)


def choose(
    jobs: Sequence[PlannedJob],
    calibrations: dict[str, Calibration],
    shape: ClusterShape,
    calibration_seconds: float = 0.0,
    tail_ok: bool = False,
) -> PlanChoice:
    """The auto plan: the fastest candidate whose fits fit in the workers' memory.

    ``calibration_seconds``: how long this fit spent timing base models (reported).
    ``tail_ok``: the planner can give the last fits more threads (:func:`tail_of`): every
    fit is in ``jobs`` and no limit holds them back.
    """
    scored = candidates(jobs, calibrations, shape, tail_ok)
    best = min(_within_reach(scored), key=lambda c: (*_preference(c), c.seconds))
    reason = _reason(best, scored, jobs, calibrations, shape, calibration_seconds)
    return _choice(best, reason, best.seconds, scored, calibrations, calibration_seconds)


def _choice(
    best: Candidate,
    reason: str,
    estimated_seconds: float | None,
    scored: Sequence[Candidate] = (),
    calibrations: dict[str, Calibration] | None = None,
    calibration_seconds: float = 0.0,
) -> PlanChoice:
    return PlanChoice(
        source=AUTO,
        threads_per_model=best.threads_per_model,
        n_jobs_cross_fitting=best.max_in_flight,
        n_jobs_base_learners=1 if best.max_in_flight is not None else None,
        reason=reason,
        estimated_seconds=estimated_seconds,
        candidates=tuple(scored),
        calibrations=tuple((calibrations or {}).values()),
        calibration_seconds=calibration_seconds,
        threads_by_kind=dict(best.threads_by_kind),
        tail_fits=best.tail_fits,
        tail_threads=best.tail_threads,
    )


def choose_untimed(
    jobs: Sequence[PlannedJob], shape: ClusterShape, tail_ok: bool = False
) -> PlanChoice | None:
    """The auto plan without timing the model, where the timing could not change it.

    When every fit is of one base model, the fits' costs are in proportion to their rows
    (the same seconds per row for all), so the calibration would only tell how much a
    model's threads speed it up: from not at all to linearly. This scores the candidates
    at :data:`SPEEDUP_STEPS` + 1 speedups over that range; a candidate within
    :data:`CLOSE_ENOUGH` of the fastest at every one of them wins (the fewest threads
    first, then the smallest shortfall), and no model is timed. Many equal fits on few
    threads, say, run fastest with one thread each however well threads scale, and three on
    two threads with the last on both. None where the fits are of several models, or where
    no candidate is close to the fastest at every speedup: then the calibration decides.
    """
    models = {j.model for j in jobs}
    if len(models) != 1:
        return None
    (model,) = models
    top = shape.max_threads
    #: each candidate (its seconds left out) that was close at every speedup so far, and
    #: its largest time over the fastest
    shortfall: dict[Candidate, float] | None = None
    for step in range(SPEEDUP_STEPS + 1):
        nominal = _nominal(model, top, 1.0 + (top - 1) * step / SPEEDUP_STEPS)
        close = _within_reach(candidates(jobs, {model: nominal}, shape, tail_ok))
        fastest = min(c.seconds for c in close)
        ratios = {replace(c, seconds=0.0): c.seconds / fastest for c in close}
        if shortfall is not None:
            ratios = {c: max(r, shortfall[c]) for c, r in ratios.items() if c in shortfall}
        shortfall = ratios
    if not shortfall:
        return None
    # the candidates in their order, so that ties go to the first
    best = min(shortfall, key=lambda c: (*_preference(c), shortfall[c]))
    reason = (
        f"{len(jobs)} fits on {shape.total_threads} threads in {len(shape.workers)} workers, "
        f"all of {model}: not timed, since {best.describe()} is within "
        f"{CLOSE_ENOUGH - 1:.0%} of the fastest candidate whether a model's threads speed "
        f"it up not at all or linearly (scored with the fits' costs in proportion to their "
        f"rows); {_chose(best)}"
    )
    return _choice(best, reason, None)


def _nominal(model: str, threads: int, speedup: float) -> Calibration:
    """A calibration of one microsecond per row, no fixed cost, ``speedup`` at ``threads``."""
    seconds = (CALIBRATION_ROWS[0] * 1e-6, CALIBRATION_ROWS[1] * 1e-6)
    return Calibration(model, CALIBRATION_ROWS, seconds, threads, seconds[1] / speedup)


def _mixed_candidates(
    jobs: Sequence[PlannedJob], calibrations: dict[str, Calibration], shape: ClusterShape
) -> list[Candidate]:
    """One thread per model, but more for the model kinds with the longest fits.

    A stage whose longest fit (a multi-class propensity model on every row, say) takes
    longer than the others together leaves threads idle at its end with one thread per
    model, and runs its short fits one after the other with a whole worker each. The kinds
    are taken longest fit first, one more at a time, each prefix at 2, 4, ... threads up to
    a worker's.
    """
    if shape.max_threads < 2:
        return []
    longest: dict[str, float] = {}
    for j in jobs:
        if j.fixed_threads is None:
            seconds = _job_seconds(j, calibrations, 1)
            longest[j.group[1]] = max(longest.get(j.group[1], 0.0), seconds)
    kinds = sorted(longest, key=lambda k: (-longest[k], k))
    options = [t for t in (2**i for i in range(1, 12)) if t < shape.max_threads]
    options.append(shape.max_threads)
    out = []
    for n_kinds in range(1, len(kinds)):  # every kind: a uniform candidate already
        for t in options:
            by_kind = {k: t for k in kinds[:n_kinds]}
            seconds = simulate(jobs, calibrations, shape, 1, None, by_kind)
            out.append(Candidate(1, None, seconds, True, tuple(sorted(by_kind.items()))))
    return out


def _reason(
    best: Candidate,
    candidates: Sequence[Candidate],
    jobs: Sequence[PlannedJob],
    calibrations: dict[str, Calibration],
    shape: ClusterShape,
    calibration_seconds: float = 0.0,
) -> str:
    largest = {
        c.model: max((j.rows for j in jobs if j.model == c.model), default=0)
        for c in calibrations.values()
    }
    costs = "; ".join(
        f"{c.model}: {c.slope * 1e6:.2f} us/row + {c.intercept:.2f} s with 1 thread, "
        f"speedup {c.speedup(c.threads):.2f} at {c.threads} threads on {c.rows[1]} rows"
        + (
            f", {c.speedup(c.threads, largest[c.model]):.2f} on {largest[c.model]}"
            if c.seconds_n_small is not None and largest[c.model]
            else ""
        )
        + (f" (timed with 1/{c.rounds_scale:g} of its rounds)" if c.rounds_scale != 1 else "")
        for c in calibrations.values()
    )
    others = ", ".join(
        f"{c.describe()}: {c.seconds:.1f} s" + ("" if c.memory_ok else " (too much memory)")
        for c in candidates
    )
    timed = (
        f" (timed in this fit: {calibration_seconds:.1f} s)"
        if calibration_seconds
        else " (reused from an earlier fit)"
    )
    return (
        f"{len(jobs)} fits on {shape.total_threads} threads in {len(shape.workers)} workers; "
        f"calibrated cost {costs or 'none (no local base models)'}"
        f"{timed if costs else ''}; estimated wall time "
        f"{others}; {_chose(best)}"
    )


def _chose(best: Candidate) -> str:
    limit = f", at most {best.max_in_flight} fits in flight (memory)" if best.max_in_flight else ""
    kinds = "".join(f", {t} for the {kind}" for kind, t in best.threads_by_kind)
    if best.tail_fits:
        kinds += f", {best.tail_threads} for the last {best.tail_fits} fit(s)"
    return f"chose {best.threads_per_model} thread(s) per model{kinds}{limit}"


def default_choice(
    threads: int | None, limits: tuple[int | None, int | None], concurrency: int, shape: Any
) -> PlanChoice:
    """How the planner's rule came out, for the report."""
    rule = (
        "one thread per model: at least as many fits may run at once as the cluster has threads"
        if threads == 1
        else f"the cluster's {shape.total_threads} threads divided among {concurrency} fits "
        "that may run at once"
    )
    return PlanChoice(
        source=RULE,
        threads_per_model=threads,
        n_jobs_cross_fitting=limits[0],
        n_jobs_base_learners=limits[1],
        reason=f"the planner's rule (plan='rule', or plan=None below {AUTO_FROM_ROWS:,} "
        f"training rows): {rule}; models whose params set their "
        "threads keep them",
    )


def explicit_choice(plan: Plan, threads: int | None, limits: tuple) -> PlanChoice:
    return PlanChoice(
        source="explicit",
        threads_per_model=threads,
        n_jobs_cross_fitting=limits[0],
        n_jobs_base_learners=limits[1],
        reason=f"explicit {plan!r}; the fit call's n_jobs arguments win over its limits",
    )


def concurrency(n_fits_per_group: dict[tuple[Any, ...], int], limits: tuple) -> int:
    """Most fits that may be in flight at once under the two limits (per stage, the max)."""
    cf, bl = limits
    best = 0
    for stage in {g[0] for g in n_fits_per_group}:
        sizes = sorted(
            (n if cf is None else min(n, cf) for g, n in n_fits_per_group.items() if g[0] == stage),
            reverse=True,
        )
        if bl is not None:
            sizes = sizes[:bl]
        best = max(best, sum(sizes))
    return max(best, 1)


def rule_threads(shape: ClusterShape, in_flight: int) -> int:
    """The planner's rule for models whose params leave their threads unset."""
    if in_flight >= shape.total_threads:
        return 1
    return max(1, min(shape.max_threads, math.floor(shape.total_threads / max(in_flight, 1))))
