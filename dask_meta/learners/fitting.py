"""One call to a learner's fit, from its arguments to the fitted models installed.

The run begins (:meth:`dask_meta.learners.fit_run.FitRun.begin`: data, folds, checks), its
jobs are built (:func:`dask_meta.learners.jobs.plan_jobs`) and run by the planner, and the
fitted cross-fit estimators are installed in the learner all at once, with the run's
``fit_report_``.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import pandas as pd

from dask_meta._constants import NUISANCE, TREATMENT
from dask_meta._typing import Matrix, Vector
from dask_meta.cluster import describe
from dask_meta.learners.arguments import parse_fit_params
from dask_meta.learners.fit_run import Entries, FitRun
from dask_meta.learners.jobs import collect, plan_jobs
from dask_meta.planner import Limits

logger = logging.getLogger("dask_meta")


def fit_entries(learner: Any, stages: tuple[str, ...], synchronize: bool) -> Entries:
    """The models a fit of ``stages`` trains (prefitted nuisance models are never refitted)."""
    return {
        NUISANCE: [
            e
            for e in learner._nuisance_entries(synchronize)
            if e.kind not in learner._prefitted_nuisance_models
        ]
        if NUISANCE in stages
        else [],
        TREATMENT: learner._treatment_entries(synchronize) if TREATMENT in stages else [],
    }


def fit_stages(
    learner: Any,
    X: Matrix,
    y: Vector,
    w: Vector,
    stages: tuple[str, ...],
    limits: Limits,
    fit_params: dict | None,
    synchronize: bool,
) -> None:
    """Fit the learner's models of ``stages``; install them only if everything succeeded.

    A failed or interrupted fit cancels its tasks and leaves the learner as it was.
    """
    qualified = qualified_fit_params(learner, fit_params)
    if TREATMENT in stages and NUISANCE not in stages:
        learner._require_nuisance_fitted()
    entries = fit_entries(learner, stages, bool(synchronize))
    run = FitRun.begin(learner, X, y, w, qualified, entries, limits, bool(synchronize))
    try:
        jobs, deferred = plan_jobs(run, entries)
        results = run.planner.run(jobs, deferred)
        fitted = collect(run, results)
    except BaseException:
        run.planner.cancel_all()
        raise
    finally:
        if run.shared_bins:
            run.planner.drop_bins(run.token)
        run.planner.release()
    install(run, fitted, stages, run_report(run))
    if run.shared_bins:
        logger.info(
            "LightGBM models of this fit trained on subsets of one binned Dataset per "
            "worker (bin bounds from all training rows, not each fit's own rows); "
            "fold_strategy='sklearn' bins every fit on its own rows, as metalearners does"
        )


def qualified_fit_params(learner: Any, fit_params: dict | None) -> dict[str, dict[str, dict]]:
    """``fit_params`` per stage and model kind, checked."""
    qualified = parse_fit_params(
        fit_params,
        learner.nuisance_model_specifications(),
        learner.treatment_model_specifications(),
    )
    learner._validate_fit_params(qualified)
    return qualified


def run_report(run: FitRun) -> pd.DataFrame:
    """``fit_report_``: one row per fit of the run's planner, with the run's facts."""
    report = run.planner.report_frame()
    report.attrs["wall_time"] = time.time() - run.started
    report.attrs["task_seconds"] = run.planner.task_seconds()
    report.attrs["shared_bins"] = run.shared_bins
    report.attrs["persisted"] = run.persisted
    if run.planner.shape is not None:
        report.attrs["cluster"] = describe(run.client, run.planner.shape)
    if run.plan_choice is not None:
        report.attrs["plan"] = run.plan_choice.as_dict()
    return report


def install(
    run: FitRun,
    fitted: dict[tuple[str, int], Any],
    stages: tuple[str, ...],
    report: pd.DataFrame,
) -> None:
    """Install a run's fitted models in its learner, all at once, with ``report``.

    New lists of models, never edited in place: a failure here leaves the learner as it was.
    """
    learner = run.learner
    nuisance = {kind: list(models) for kind, models in learner._nuisance_models.items()}
    treatment = {kind: list(models) for kind, models in learner._treatment_models.items()}
    for (kind, ordinal), cfe in fitted.items():
        (nuisance if kind in nuisance else treatment)[kind][ordinal] = cfe
    for owner, ref in run.assignment.refs.items():
        if owner not in fitted:
            # a reused model: its folds now live in this fit's fold frame
            kind, ordinal = owner  # type: ignore[misc]
            # a copy: the same fitted model may serve another learner with its own folds
            reused = copy.copy(learner._cfe(kind, ordinal))
            reused._split = ref
            reused._context = run.context
            (nuisance if kind in nuisance else treatment)[kind][ordinal] = reused
    if NUISANCE in stages and TREATMENT not in stages:
        # treatment models of an earlier fit do not belong to the new nuisance models
        treatment = {kind: [m.clone() for m in models] for kind, models in treatment.items()}
    previous = dict(learner.__dict__)
    try:
        learner._nuisance_models = nuisance
        learner._treatment_models = treatment
        learner._fit_context = run.context
        learner._seed = run.seed
        learner._client = run.client
        learner._after_fit(run, stages)
        learner.fit_report_ = report
    except BaseException:
        # the learner's own fit-time state (_after_fit) failed or was interrupted
        learner.__dict__.clear()
        learner.__dict__.update(previous)
        raise
