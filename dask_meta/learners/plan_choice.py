"""Threads per base model and the two limits of a fit run: a plan's, the rule's or the cost
model's (``plan="auto"``, docs/parallelism.md).

The auto plan times each local base-model class on a sample of the training data
(:meth:`dask_meta.planner.Planner.calibrate`) and simulates candidate plans
(:func:`dask_meta.plan.choose`); calibrations are kept per cluster and model for later fits.
The default plan (``plan=None`` from :data:`dask_meta.plan.AUTO_FROM_ROWS` rows) first tries
:func:`dask_meta.plan.choose_untimed`, which needs no timing when the fits are all of one
model and one candidate wins whatever its threads gain.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Sequence
from typing import Any

from dask_meta._constants import TREATMENT
from dask_meta.backends import (
    LOCAL,
    backend_of,
    requested_threads,
    thread_param_name,
)
from dask_meta.cluster import ClusterShape
from dask_meta.crossfit import train_rows
from dask_meta.learners.fit_run import Entries, FitRun, model_name
from dask_meta.plan import (
    AUTO,
    AUTO_FROM_ROWS,
    CALIBRATION_ROWS,
    Calibration,
    Plan,
    PlanChoice,
    PlannedJob,
    choose,
    choose_untimed,
    concurrency,
    default_choice,
    explicit_choice,
    rule_threads,
)
from dask_meta.planner import Job, Limits, resolve_threads


def choose_plan(
    run: FitRun,
    entries: Entries,
    auto: bool,
    built: Sequence[Job] = (),
) -> None:
    """Threads per model and the two limits: the plan's, the rule's or the cost model's.

    The fit call's limits win over a plan's; ``auto=True`` runs the cost model on the
    nuisance jobs already ``built`` (their specs are what the calibration fits time).
    """
    learner = run.learner
    shape = run.planner.shape
    assert shape is not None
    given = run.planner.limits
    # a bootstrap fits the learner's models once per replicate, side by side
    groups = {
        (learner._stage_of(e.kind), e.kind, e.ordinal, r): learner._cfe(e.kind, e.ordinal).n_models
        for stage_entries in entries.values()
        for e in stage_entries
        for r in range(run.n_fits)
    }
    if auto:
        # the planner gives the last fits more threads where they are all of the run's
        # fits (not a bootstrap's, fitted together), each local, and no limit of the fit
        # call holds them back
        tail_ok = (
            run.n_fits == 1
            and not entries[TREATMENT]
            and all(j.backend == LOCAL for j in built)
            and given.n_jobs_cross_fitting is None
            and given.n_jobs_base_learners is None
        )
        choice = _auto_plan(run, entries, built, shape, tail_ok)
        if choice is None:
            # nothing the cost model can time: the rule's choice stands
            assert run.plan_choice is not None
            run.plan_choice = dataclasses.replace(
                run.plan_choice,
                source=AUTO,
                reason="plan='auto' found no local base model to time; " + run.plan_choice.reason,
            )
            return
        limits = (
            given.n_jobs_cross_fitting
            if given.n_jobs_cross_fitting is not None
            else choice.n_jobs_cross_fitting,
            given.n_jobs_base_learners
            if given.n_jobs_base_learners is not None
            else choice.n_jobs_base_learners,
        )
        run.planner.limits = Limits(*limits)
        run.plan_threads = int(choice.threads_per_model or 1)
        run.plan_threads_by_kind = dict(choice.threads_by_kind)
        reason = choice.reason
        if learner.plan is None:
            reason = (
                f"plan=None and {run.training.n_rows:,} training rows (at least "
                f"{AUTO_FROM_ROWS:,}): the cost model; {reason}"
            )
        run.plan_choice = dataclasses.replace(
            choice, n_jobs_cross_fitting=limits[0], n_jobs_base_learners=limits[1], reason=reason
        )
        return
    plan = learner.plan if isinstance(learner.plan, Plan) else None
    limits = (given.n_jobs_cross_fitting, given.n_jobs_base_learners)
    if plan is not None:
        limits = (
            limits[0] if limits[0] is not None else plan.n_jobs_cross_fitting,
            limits[1] if limits[1] is not None else plan.n_jobs_base_learners,
        )
        run.planner.limits = Limits(*limits)
    in_flight = concurrency(groups, limits)
    threads = rule_threads(shape, in_flight)
    if plan is not None and plan.threads_per_model is not None:
        threads = resolve_threads(plan.threads_per_model, shape, 1, "plan.threads_per_model")
    run.plan_threads = threads
    if plan is not None:
        run.plan_choice = explicit_choice(plan, threads, limits)
    else:
        run.plan_choice = default_choice(threads, limits, in_flight, shape)


def _auto_plan(
    run: FitRun,
    entries: Entries,
    built: Sequence[Job],
    shape: ClusterShape,
    tail_ok: bool,
) -> PlanChoice | None:
    """The cost model: calibrate each local base-model class, then simulate candidates
    (``tail_ok``: see :func:`dask_meta.plan.choose`)."""
    learner = run.learner
    local = [j for j in built if j.backend == LOCAL]
    if not local:
        return None
    probe = local[0]
    regression_probe = next((j for j in local if not j.spec.is_classifier), probe)
    n_columns = max(len(probe.spec.design.columns), 1)
    planned: list[PlannedJob] = []
    specs: dict[str, tuple[Any, Job]] = {}
    for stage, stage_entries in entries.items():
        for e in stage_entries:
            cfe = learner._cfe(e.kind, e.ordinal)
            if backend_of(cfe.estimator_factory) != LOCAL:
                continue
            name = model_name(cfe.estimator_factory, cfe.estimator_params)
            if name not in specs:
                own = next((j for j in local if j.kind == e.kind), None)
                if own is not None:
                    specs[name] = (own.spec, own)
                else:
                    # a treatment-stage model: time it on a nuisance job's rows and target,
                    # on a binned Dataset if its fits will share one
                    design = learner._design(e.kind, run.data.columns)
                    spec = dataclasses.replace(
                        regression_probe.spec,
                        factory=cfe.estimator_factory,
                        params=dict(cfe.estimator_params),
                        thread_param=thread_param_name(cfe.estimator_factory, cfe.estimator_params),
                        is_classifier=False,
                        fit_params={},
                        row_params={},
                        classes=None,
                        bins=run.shared_bins_key(cfe, design),
                    )
                    specs[name] = (spec, regression_probe)
            split = run.assignment.refs.get((e.kind, e.ordinal))
            if split is None:
                continue
            rows = train_rows(split, run.assignment.fold_strata, cfe.n_folds)
            for fold, r in itertools.product(cfe.fitted_folds, range(run.n_fits)):
                # not the folds of n_folds 1, nor a skipped overall model; once per replicate
                planned.append(
                    PlannedJob(
                        stage=stage,
                        group=(stage, e.kind, e.ordinal, r),
                        rows=int(rows[fold]),
                        model=name,
                        columns=n_columns,
                        fixed_threads=requested_threads(cfe.estimator_params),
                    )
                )
    if not planned:
        return None
    if learner.plan is None:
        # the default plan times no model where the timings could not change its choice
        untimed = choose_untimed(planned, shape, tail_ok)
        if untimed is not None:
            run.calibrations = {}
            return untimed
    calibrations: dict[str, Calibration] = {}
    calibration_seconds = 0.0
    for name, (spec, job) in specs.items():
        start = time.perf_counter()
        calibration, measured = calibration_of(run, name, spec, job, n_columns, shape)
        if measured:
            calibration_seconds += time.perf_counter() - start
        if calibration is not None:
            calibrations[name] = calibration
    run.calibrations = calibrations
    return choose(planned, calibrations, shape, calibration_seconds, tail_ok)


#: calibrations by (scheduler, worker shape, model), each with the width it was timed at:
#: later fits reuse them
_CALIBRATIONS: dict[tuple, list[tuple[int, Calibration]]] = {}
#: a calibration is reused for training matrices up to this factor wider or narrower, its
#: times scaled by the width (a tree ensemble's histograms cost about as much per column)
WIDTH_REUSE = 1.34


def _reused(timed: list[tuple[int, Calibration]], n_columns: int) -> Calibration | None:
    """The calibration timed at the nearest width within :data:`WIDTH_REUSE`, scaled to it."""
    near = [
        (abs(math.log(n_columns / width)), width, c)
        for width, c in timed
        if max(n_columns / width, width / n_columns) <= WIDTH_REUSE
    ]
    if not near:
        return None
    _, width, calibration = min(near, key=lambda t: t[0])
    if width == n_columns:
        return calibration
    factor = n_columns / width
    return dataclasses.replace(
        calibration,
        seconds_1=(calibration.seconds_1[0] * factor, calibration.seconds_1[1] * factor),
        seconds_n=calibration.seconds_n * factor,
        seconds_n_small=(
            None if calibration.seconds_n_small is None else calibration.seconds_n_small * factor
        ),
    )


def calibration_of(
    run: FitRun, name: str, spec: Any, job: Job, n_columns: int, shape: ClusterShape
) -> tuple[Calibration | None, bool]:
    """Time one base model (once per cluster and model, and again for a matrix more than
    :data:`WIDTH_REUSE` times wider or narrower; later fits reuse it).

    Returns the calibration and whether it was timed now (False: reused)."""
    key = (
        run.client.scheduler.address if run.client.scheduler else None,
        tuple((w.address, w.nthreads, w.threads_resource) for w in shape.workers),
        name,
    )
    reused = _reused(_CALIBRATIONS.get(key, []), n_columns)
    if reused is not None:
        return reused, False
    extra = list(job.extra_parts[:1]) if job.extra_parts else []
    measured = run.planner.calibrate(spec, run.parts[0], extra, CALIBRATION_ROWS, run.seed)
    if measured is None:
        return None, True
    rows, seconds_1, seconds_n, scale = measured
    calibration = Calibration(
        name,
        (int(rows[0]), int(rows[1])),
        (float(seconds_1[0]), float(seconds_1[1])),
        shape.max_threads,
        float(seconds_n[1]),
        float(scale),
        float(seconds_n[0]),
    )
    _CALIBRATIONS.setdefault(key, []).append((n_columns, calibration))
    return calibration, True
