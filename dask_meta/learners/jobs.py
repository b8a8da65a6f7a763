"""The jobs of a fit run: nuisance fits now, treatment fits as soon as their inputs exist.

:func:`plan_jobs` builds one job per fold model (and overall model) of every nuisance
cross-fit estimator, and a :class:`dask_meta.planner.Deferred` per treatment model: once the
nuisance models it needs are fitted, the planner calls its build, which maps the learner's
:class:`~dask_meta.learners.tables.Derivation` over the training partitions
(:mod:`dask_meta.learners.derive`) and returns the treatment model's jobs. There is no stage
barrier: each treatment model starts when its own nuisance models are done.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from distributed import Future

from dask_meta._constants import NUISANCE, TREATMENT
from dask_meta.backends import (
    COLLECTION,
    STREAM,
    FitResult,
    backend_of,
    bin_sample_rows,
    binning_cost,
    check_classes,
    requested_threads,
)
from dask_meta.crossfit import CrossFitEstimator, strata_of_fold, train_rows
from dask_meta.folds import SplitRef
from dask_meta.learners.checks import target_classes
from dask_meta.learners.derive import (
    DerivedTarget,
    Need,
    NeedPrediction,
    NeedSource,
    derive_from_predictions,
    derive_partition,
    predict_need_partition,
)
from dask_meta.learners.fit_run import Entries, FitRun, weigh
from dask_meta.learners.plan_choice import choose_plan
from dask_meta.learners.tables import Derivation, ModelEntry, derived_columns
from dask_meta.plan import one_worker_holds, uses_cost_model
from dask_meta.planner import Deferred, Job, expected, resolve_threads
from dask_meta.training import sorted_values

Owners = dict[Need, tuple[CrossFitEstimator, list[Job]]]


def plan_jobs(
    run: FitRun, entries: Entries, planned: FitRun | None = None
) -> tuple[list[Job], list[Deferred]]:
    """Jobs of the nuisance stage now; learners with a treatment stage add deferred ones.

    ``run.owners`` collects every cross-fit estimator the run fits, with its jobs (the
    treatment models' as their deferred builds run). A bootstrap replicate takes the plan
    chosen for its ``planned`` point fit (threads, limits, calibrations) instead of its own.
    """
    learner = run.learner
    jobs: list[Job] = []
    all_entries = entries[NUISANCE] + entries[TREATMENT]
    run.n_jobs_total = run.n_fits * sum(
        learner._cfe(e.kind, e.ordinal).n_models for e in all_entries
    )
    if planned is None:
        choose_plan(run, entries, auto=False)
    else:
        _take_plan(run, planned)
    run.bins_worth_sharing = bins_worth_sharing(run, all_entries)
    for e in entries[NUISANCE]:
        cfe_jobs, cfe = entry_jobs(run, e, run.parts)
        run.owners[(e.kind, e.ordinal)] = (cfe, cfe_jobs)
        jobs.extend(cfe_jobs)
    if uses_cost_model(learner.plan, run.training.n_rows):
        if planned is None:
            choose_plan(run, entries, auto=True, built=jobs)
        else:
            _take_plan(run, planned)
        for cfe, cfe_jobs in run.owners.values():
            if requested_threads(cfe.estimator_params) is None:
                for job in cfe_jobs:
                    if job.backend != COLLECTION:
                        job.spec = dataclasses.replace(job.spec, threads=run.threads_of(job.kind))
            weigh(run, cfe, cfe_jobs)
        if planned is None:
            _give_tail_threads(run)
    deferred = _treatment_plan(run, entries, dict(run.owners))
    awaited = frozenset().union(*(d.after for d in deferred))
    for job in jobs:
        job.blocks = job.key in awaited
    return jobs, deferred


def _give_tail_threads(run: FitRun) -> None:
    """The auto plan's last fits (:func:`dask_meta.plan.tail_of`): the shortest by their
    expected seconds, which the planner starts last, get the threads the others leave."""
    choice = run.plan_choice
    if choice is None or not choice.tail_fits:
        return
    owned = [(cfe, job) for cfe, cfe_jobs in run.owners.values() for job in cfe_jobs]
    owned.sort(key=lambda pair: expected(pair[1]))
    for cfe, job in owned[: choice.tail_fits]:
        job.spec = dataclasses.replace(job.spec, threads=choice.tail_threads)
        weigh(run, cfe, [job])


def _take_plan(run: FitRun, planned: FitRun) -> None:
    run.plan_threads = planned.plan_threads
    run.plan_threads_by_kind = dict(planned.plan_threads_by_kind)
    run.plan_choice = planned.plan_choice
    run.calibrations = planned.calibrations


def bins_worth_sharing(run: FitRun, entries: Sequence[ModelEntry]) -> set[str]:
    """The shared binned Datasets (their keys) that cost less to build than the Datasets
    their fits would build of their own rows (:func:`binning_cost`).

    A shared Dataset bins every row of the frame once and searches the bin bounds once;
    without it each fit bins its own rows and searches its own bounds. So it pays where rows
    are trained on more than once (folds, several model kinds on the same rows, a
    bootstrap's replicates), and where several fits of more rows than the bounds' sample
    would each search bounds (a T-learner's variant models without cross-fitting): there
    only if one worker holds the whole frame (:func:`one_worker_holds`), since each fit
    would otherwise hold its own rows only.

    The costs compared are one worker's: on a cluster of several workers each worker that
    fits these models builds the shared Dataset, side by side, where the fits' own Datasets
    would be spread over them (about the same wall time for a T-learner's variant models,
    less where rows are trained on more than once). The "sklearn" fold strategy always bins
    every fit on its own rows.
    """
    learner = run.learner
    own: dict[str, float] = {}
    trained: dict[str, int] = {}
    holds: dict[str, bool] = {}
    samples: dict[str, int] = {}
    for e in entries:
        cfe = learner._cfe(e.kind, e.ordinal)
        design = learner._design(e.kind, run.data.columns)
        key = run.bins_candidate_key(cfe, design)
        if key is None:
            continue
        split = run.assignment.refs[(e.kind, e.ordinal)]
        per_model = train_rows(split, run.assignment.fold_strata, cfe.n_folds)
        if key not in samples:  # models of one key bin alike
            samples[key] = bin_sample_rows(cfe.estimator_factory, cfe.estimator_params)
        sample = samples[key]
        # a bootstrap trains the model once per replicate too, on the same Dataset
        own[key] = own.get(key, 0.0) + run.n_fits * sum(
            binning_cost(per_model[fold], sample) for fold in cfe.fitted_folds
        )
        trained[key] = trained.get(key, 0) + run.n_fits * sum(
            per_model[fold] for fold in cfe.fitted_folds
        )
        holds[key] = one_worker_holds(run.planner.shape, run.n_rows, len(design.columns))
    return {
        key
        for key, cost in own.items()
        if cost > binning_cost(run.n_rows, samples[key])
        and (trained[key] > run.n_rows or holds[key])
    }


def entry_jobs(
    run: FitRun,
    entry: ModelEntry,
    parts: Sequence[Any],
    extra_parts: Sequence[Any] = (),
    extra_meta: pd.DataFrame | None = None,
) -> tuple[list[Job], CrossFitEstimator]:
    """The fit jobs of one cross-fit estimator (a clone of the learner's, fitted by the run)."""
    learner = run.learner
    stage = learner._stage_of(entry.kind)
    cfe = learner._cfe(entry.kind, entry.ordinal).clone()
    split = run.assignment.refs[(entry.kind, entry.ordinal)]
    backend = backend_of(cfe.estimator_factory)
    shape = run.planner.shape
    assert shape is not None
    if backend == COLLECTION:
        # the estimator runs on every worker with all their threads
        threads = shape.max_threads
    else:
        requested = requested_threads(cfe.estimator_params)
        threads = (
            resolve_threads(requested, shape, run.n_jobs_total, f"the {entry.kind} model")
            if requested is not None
            else run.threads_of(entry.kind)
        )
    fit_params = dict(run.static_params[(stage, entry.kind)])
    classes = None
    if cfe.is_classifier:
        whole = strata_of_fold(split, run.assignment.fold_strata, None)
        classes = np.asarray(sorted_values(target_classes(entry, whole)))
        check_classes(cfe.estimator_factory, classes, entry.kind)
    if backend == STREAM and classes is not None and "classes" not in fit_params:
        # partial_fit must be told every class on its first call
        fit_params["classes"] = classes
    jobs = cfe.fold_jobs(
        kind=entry.kind,
        ordinal=entry.ordinal,
        stage=stage,
        design=learner._design(entry.kind, run.data.columns),
        target=entry.target,
        split=split,
        parts=parts,
        extra_parts=extra_parts,
        fit_params=fit_params,
        row_params=run.row_params[(stage, entry.kind)],
        threads=threads,
        train_rows=train_rows(split, run.assignment.fold_strata, cfe.n_folds),
        token=run.job_token,
    )
    # LightGBM: subsets of one binned Dataset per worker, per fold and model kind
    bins = run.shared_bins_key(cfe, jobs[0].spec.design)
    run.shared_bins = run.shared_bins or bins is not None
    summed = entry.kind in run.sum_predictions and cfe.n_folds == 1
    for job in jobs:
        job.backend = backend
        job.meta = (run.assignment.frame._meta, extra_meta)
        rows = dataclasses.replace(job.spec.rows, resample=run.resample)
        job.spec = dataclasses.replace(
            job.spec, classes=classes, bins=bins, rows=rows, sum_predictions=summed
        )
        job.replicate = run.replicate
    weigh(run, cfe, jobs)
    return jobs, cfe


def collect(run: FitRun, results: dict[str, FitResult]) -> dict[Need, CrossFitEstimator]:
    """The run's cross-fit estimators, fitted from their jobs' results."""
    fitted = {}
    for (kind, ordinal), (cfe, jobs) in run.owners.items():
        name = f"{kind} {ordinal}" if run.learner._cardinality(kind) > 1 else kind
        cfe.set_fitted(jobs, results, run.assignment.refs[(kind, ordinal)], run.context, name)
        fitted[(kind, ordinal)] = cfe
    return fitted


# --- the treatment stage -----------------------------------------------------------------------


@dataclass
class _NeedContext:
    """Per fit: where the treatment models' nuisance estimators come from (``owners``: those
    fitted in this run, with their jobs), the reused ones put on the cluster, and the shared
    nuisance predictions."""

    run: FitRun
    owners: Owners
    scattered: dict[Need, Future] = field(default_factory=dict)
    predicted: dict[tuple[Need, str], list[Any]] = field(default_factory=dict)


def used_jobs(jobs: Sequence[Job], split: SplitRef) -> list[Job]:
    """The fit jobs of a nuisance estimator whose models its predictions on the training
    partitions use: the fold models where the split
    :attr:`~dask_meta.folds.SplitRef.covers_every_row`; else its overall model predicts the
    other variants' rows too, and one without cross-fitting has only the overall model."""
    folds = [job for job in jobs if job.fold is not None]
    if folds and split.covers_every_row:
        return folds
    return list(jobs)


def _after(run: FitRun, owners: Owners, needs: Sequence[Need]) -> frozenset[str]:
    """Keys of the fit jobs whose models ``needs`` predict the training partitions with, of
    those fitted in this run (reused models need none)."""
    refs = run.assignment.refs
    return frozenset(
        job.key
        for need in needs
        if need in owners
        for job in used_jobs(owners[need][1], refs[need])
    )


def _treatment_plan(run: FitRun, entries: Entries, owners: Owners) -> list[Deferred]:
    """Treatment jobs, each built as soon as the nuisance models it needs are fitted.

    Shared nuisance predictions (``Derivation.predicts``) are submitted as soon as their
    own nuisance model is fitted, ahead of the treatment models that combine them.
    """
    context = _NeedContext(run, owners)
    derivations = [(entry, run.learner._derivation(run, entry)) for entry in entries[TREATMENT]]
    deferred = []
    shared: dict[tuple[Need, str], Any] = {}
    for _, derivation in derivations:
        for need, (design, method) in zip(
            derivation.needs, derivation.predicts or (), strict=False
        ):
            shared.setdefault((need, method), design)
    for (need, method), design in shared.items():
        build = partial(_build_need_predictions, context, need, design, method)
        deferred.append(Deferred(_after(run, owners, (need,)), build))
    for entry, derivation in derivations:
        build = partial(_build_treatment_jobs, context, entry, derivation)
        deferred.append(Deferred(_after(run, owners, derivation.needs), build))
    return deferred


def _need_source(
    context: _NeedContext, need: Need, futures: dict[str, Future]
) -> tuple[NeedSource, list[Any]]:
    """What rebuilds a nuisance estimator on a worker, and its arguments: the fold results
    of a model fitted in this run, or the reused (prefitted) estimator put on the cluster."""
    run = context.run
    if need in context.owners:
        cfe, all_jobs = context.owners[need]
        split = run.assignment.refs[need]
        jobs = used_jobs(all_jobs, split)
        source = NeedSource(cfe.clone(), split, tuple(j.fold for j in jobs))
        return source, [futures[j.key] for j in jobs]
    if need not in context.scattered:
        reused = copy.copy(run.learner._cfe(*need))
        reused._split = run.assignment.refs[need]
        reused._context = None
        context.scattered[need] = run.planner.scatter(reused)
    return NeedSource(), [context.scattered[need]]


def _need_predictions(
    context: _NeedContext, need: Need, design: Any, method: str, futures: dict[str, Future]
) -> list[Any]:
    """Per training partition, the need's predictions (computed once, then shared)."""
    key = (need, method)
    if key not in context.predicted:
        source, source_args = _need_source(context, need, futures)
        context.predicted[key] = context.run.planner.map_partitions(
            predict_need_partition,
            context.run.parts,
            name=f"predict-{need[0]}",
            need=NeedPrediction(source, design, method),
            source_args=source_args,
        )
    return context.predicted[key]


def _build_need_predictions(
    context: _NeedContext,
    need: Need,
    design: Any,
    method: str,
    results: dict[str, FitResult],
    futures: dict[str, Future],
) -> list[Job]:
    _need_predictions(context, need, design, method, futures)
    return []


def _build_treatment_jobs(
    context: _NeedContext,
    entry: ModelEntry,
    derivation: Derivation,
    results: dict[str, FitResult],
    futures: dict[str, Future],
) -> list[Job]:
    run = context.run
    target, weight = derived_columns(entry)
    derived = DerivedTarget(
        derivation.fn,
        derivation.args,
        derivation.needs,
        target,
        weight if derivation.weight else None,
    )
    if derivation.predicts is not None:
        columns = [
            _need_predictions(context, need, design, method, futures)
            for need, (design, method) in zip(derivation.needs, derivation.predicts, strict=True)
        ]
        parts = run.planner.map_partitions(
            derive_from_predictions,
            run.parts,
            *columns,
            name=f"derive-{entry.kind}",
            derived=derived,
        )
    else:
        sources: list[NeedSource] = []
        source_args: list[Any] = []
        for need in derivation.needs:
            source, args = _need_source(context, need, futures)
            sources.append(source)
            source_args.extend(args)
        parts = run.planner.map_partitions(
            derive_partition,
            run.parts,
            name=f"derive-{entry.kind}",
            derived=derived,
            sources=tuple(sources),
            source_args=source_args,
        )
    extra_meta = pd.DataFrame(
        {c: pd.Series(dtype=float) for c in ([target, weight] if derivation.weight else [target])}
    )
    jobs, cfe = entry_jobs(run, entry, run.parts, parts, extra_meta=extra_meta)
    if derivation.weight:
        for job in jobs:
            job.spec.row_params["sample_weight"] = weight
    run.owners[(entry.kind, entry.ordinal)] = (cfe, jobs)
    return jobs
