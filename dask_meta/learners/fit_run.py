"""One call to a learner's fit: the data on the cluster, its folds, the planner.

:meth:`FitRun.begin` checks what can be checked before any data is read (thread requests),
then takes the learner's data through the one fit pipeline of :mod:`dask_meta.training`
with the learner's checks (:mod:`dask_meta.learners.checks`). The jobs of the run are built
by :mod:`dask_meta.learners.jobs`, their threads and limits chosen by
:mod:`dask_meta.learners.plan_choice`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from distributed import Client

from dask_meta._constants import NUISANCE
from dask_meta._typing import Matrix, Vector
from dask_meta.backends import (
    LOCAL,
    THREAD_PARAMS,
    backend_of,
    bins_key,
    requested_threads,
    shares_bins,
)
from dask_meta.cluster import cluster_shape, resolve_client
from dask_meta.crossfit import CrossFitEstimator
from dask_meta.data import Frame, check_feature_dtypes, on_cluster, training_frame
from dask_meta.factories import factory_name
from dask_meta.folds import Assignment, SplitRequest
from dask_meta.learners.checks import (
    check_data,
    check_fold_coverage,
    check_input_dtypes,
    check_reused_data,
)
from dask_meta.learners.tables import ModelEntry
from dask_meta.loading import callable_params, check_loadable, model_objects
from dask_meta.plan import Calibration, Plan, PlanChoice
from dask_meta.planner import Job, Limits, Planner, resolve_threads
from dask_meta.resampling import Resample, with_row_ids
from dask_meta.runtime import new_token
from dask_meta.training import (
    FitContext,
    FoldSettings,
    RowParams,
    TrainingData,
    assign_folds,
    place,
    rows_in_memory,
)

Entries = dict[str, list[ModelEntry]]


@dataclass
class FitRun:
    """State of one call to fit: the learner, its training data on the cluster, the planner."""

    learner: Any
    client: Client
    planner: Planner
    training: TrainingData
    seed: int
    token: str
    #: per (stage, kind): {fit param name: training-frame column} for per-row params
    row_params: dict[tuple[str, str], dict[str, str]]
    static_params: dict[tuple[str, str], dict[str, Any]]
    n_jobs_total: int = 0
    #: threads of models whose params leave them unset (the plan's choice)
    plan_threads: int = 1
    #: model kinds whose fits get other threads than ``plan_threads`` (the auto plan's)
    plan_threads_by_kind: dict[str, int] = field(default_factory=dict)
    plan_choice: PlanChoice | None = None
    #: the auto plan's calibrations by model name (job ordering by expected seconds)
    calibrations: dict[str, Calibration] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    #: whether some LightGBM fits train on a shared binned Dataset
    shared_bins: bool = False
    #: the keys of the shared binned Datasets that save binning
    #: (:func:`dask_meta.learners.jobs.bins_worth_sharing`)
    bins_worth_sharing: set[str] = field(default_factory=set)
    #: the cross-fit estimators this run fits and their jobs, by (kind, ordinal)
    owners: dict[tuple[str, int], tuple[CrossFitEstimator, list[Job]]] = field(default_factory=dict)
    #: how many fits of the learner's models the planner runs together: 1, or a bootstrap's
    #: point fit and its replicates (:meth:`replicate`), which the plan is chosen for
    n_fits: int = 1
    #: a bootstrap replicate's number (from 0) and its weights; None for the point fit
    replicate: int | None = None
    resample: Resample | None = None
    #: model kinds whose models, if not cross-fitted, sum their predictions on their training
    #: rows as they are fitted (a bootstrap's in-sample ATE reads those sums)
    sum_predictions: frozenset[str] = frozenset()

    @property
    def job_token(self) -> str:
        """The token in this fit's job keys: a replicate's own, beside the run's."""
        return self.token if self.replicate is None else f"{self.token}r{self.replicate}"

    def replicate_of(self, learner: Any, number: int, resample: Resample) -> FitRun:
        """A bootstrap replicate of this run: another learner fitted on the same training
        data, folds, planner and shared bins, its rows weighted by ``resample``."""
        return dataclasses.replace(
            self, learner=learner, replicate=number, resample=resample, owners={}
        )

    # the training data's parts, as the jobs and derivations read them
    @property
    def data(self) -> Frame:
        return self.training.data

    @property
    def assignment(self) -> Assignment:
        return self.training.assignment

    @property
    def parts(self) -> list[Any]:
        return self.training.parts

    @property
    def context(self) -> FitContext:
        return self.training.context

    @property
    def persisted(self) -> bool:
        return self.training.persisted

    @property
    def n_rows(self) -> int:
        return self.training.n_rows

    def bins_candidate_key(self, cfe: CrossFitEstimator, design: Any) -> str | None:
        """The key of the binned Dataset a model's fits could share, or None if they must bin
        their own rows: LightGBM models on the local backend whose binning a shared Dataset
        reproduces; the "sklearn" strategy keeps metalearners' exact per-fit binning."""
        if backend_of(cfe.estimator_factory) != LOCAL or self.learner.fold_strategy == "sklearn":
            return None
        if not shares_bins(cfe.estimator_factory, cfe.estimator_params, design):
            return None
        return bins_key(self.token, cfe.estimator_factory, cfe.estimator_params, design)

    def shared_bins_key(self, cfe: CrossFitEstimator, design: Any) -> str | None:
        """The key of the binned Dataset a model's fits train on, or None if they bin their
        own rows: a candidate (:meth:`bins_candidate_key`) whose Dataset is worth sharing,
        where rows are trained on more than once."""
        key = self.bins_candidate_key(cfe, design)
        return key if key in self.bins_worth_sharing else None

    def threads_of(self, kind: str) -> int:
        """The plan's threads for fits of a model kind whose params leave them unset."""
        return self.plan_threads_by_kind.get(kind, self.plan_threads)

    @classmethod
    def begin(
        cls,
        learner: Any,
        X: Matrix,
        y: Vector,
        w: Vector,
        qualified: dict[str, dict[str, dict]],
        entries: Entries,
        limits: Limits,
        synchronize: bool,
        row_ids: bool = False,
    ) -> FitRun:
        """Check the requests, then the training frame on the cluster with its folds
        (``row_ids``: and each row's identity, which bootstrap replicates weigh rows by)."""
        client = resolve_client(learner.client)
        shape = cluster_shape(client)
        shipped: dict[str, Any] = {}
        for stage_entries in entries.values():
            for e in stage_entries:
                # a request no worker can meet fails here, before any data is read
                cfe = learner._cfe(e.kind, e.ordinal)
                params = cfe.estimator_params
                resolve_threads(requested_threads(params), shape, 1, f"the {e.kind} model")
                shipped |= model_objects(f"the {e.kind} model", cfe.estimator_factory, params)
        if isinstance(learner.plan, Plan) and learner.plan.threads_per_model is not None:
            resolve_threads(learner.plan.threads_per_model, shape, 1, "plan.threads_per_model")
        row_params = RowParams(rows_in_memory(X))
        per_row: dict[tuple[str, str], dict[str, str]] = {}
        static_params: dict[tuple[str, str], dict[str, Any]] = {}
        for stage, per_kind in qualified.items():
            for kind, params in per_kind.items():
                static_params[(stage, kind)], per_row[(stage, kind)] = row_params.split(params)
                shipped |= callable_params(
                    f"the fit params of the {kind} model", static_params[(stage, kind)]
                )
        check_loadable(client, shipped)
        data = on_cluster(training_frame(X, y, w, row_params.values), client)
        check_input_dtypes(data, learner.is_classification)
        check_feature_dtypes(
            data.columns,
            {
                c
                for e in entries.values()
                for m in e
                for c in learner._design(m.kind, data.columns).columns
            },
        )
        if learner.fold_strategy == "hash" and learner.fold_key not in data.columns.names:
            raise ValueError(
                f"fold_key={learner.fold_key!r} is not a column of X; X has "
                f"{list(data.columns.names)}"
            )
        seed = _seed_for_run(learner, entries)
        requests = split_requests(learner, entries, synchronize)
        folds = FoldSettings(
            learner.fold_strategy,
            learner.fold_key,
            seed,
            learner.random_state,
            learner.is_classification,
        )
        data, stats, assignment = assign_folds(
            client, data, requests, folds, lambda stats: check_data(learner, stats)
        )
        check_fold_coverage(learner, entries, assignment, requests)
        if row_ids:
            lengths = [s.n for s in stats]
            frame = with_row_ids(assignment.frame, lengths, learner.fold_key)
            assignment = dataclasses.replace(assignment, frame=frame)
        planner = Planner(client, limits, label=f"dask_meta-{type(learner).__name__}", shape=shape)
        persist = learner._persists(assignment.frame, sum(s.n for s in stats), shape)
        try:
            training = place(planner, data, stats, assignment, persist)
            check_reused_data(learner, training.context, entries)
        except BaseException:
            # the persisted frame would otherwise stay on the cluster for as long as the
            # exception (and its traceback, which holds the futures) lives
            planner.cancel_all()
            raise
        return cls(
            learner=learner,
            client=client,
            planner=planner,
            training=training,
            seed=seed,
            token=new_token(),
            row_params=per_row,
            static_params=static_params,
        )


def _seed_for_run(learner: Any, entries: Entries) -> int:
    if learner.random_state is not None:
        return int(learner.random_state)
    if learner._seed is not None and not entries[NUISANCE]:
        return int(learner._seed)
    return int(np.random.SeedSequence().entropy % (2**32))  # type: ignore[operator]


def split_requests(
    learner: Any, entries: Entries, synchronize: bool
) -> dict[Hashable, SplitRequest]:
    """The splits (fold columns) the run needs: reused models' own, then the new fits'."""
    requests: dict[Hashable, SplitRequest] = {}
    fitted_now = {(e.kind, e.ordinal) for es in entries.values() for e in es}
    # how this learner predicts with each of its nuisance models, reused ones too
    cross_predicts = {
        (e.kind, e.ordinal): e.cross_predicts for e in learner._nuisance_entries(synchronize)
    }
    for kind, models in learner._nuisance_models.items():
        for ordinal, cfe in enumerate(models):
            if (kind, ordinal) in fitted_now or not cfe.is_fitted:
                continue
            # reused: a prefitted model or one of an earlier fit_all_nuisance
            assert cfe._split is not None
            if cfe._split.request is None:
                raise ValueError(
                    f"the fitted {kind} model was fitted with cv= index lists, whose folds "
                    "this fit cannot draw again; fit it with the learner's folds (without cv)"
                )
            if cfe.fold_strategy != learner.fold_strategy:
                raise ValueError(
                    f"the fitted {kind} model was fitted with fold_strategy="
                    f"{cfe.fold_strategy!r}; this learner uses {learner.fold_strategy!r}. "
                    "Reused models must come from the same fold strategy."
                )
            request = dataclasses.replace(
                cfe._split.request,
                seed=cfe._split.seed,
                cross_predicts=cross_predicts[(kind, ordinal)],
            )
            if (
                request.variants is not None
                and not request.cross_predicts
                and cfe._overall_estimator is None
                and kind in learner._fit_needs_overall
            ):
                raise ValueError(
                    f"the fitted {kind} model has no overall model (enable_overall=False), "
                    f"which the {type(learner).__name__} needs to predict the other variants' "
                    "rows; refit it with enable_overall=True, or use cross_fit_all_rows=True"
                )
            requests[(kind, ordinal)] = request
    for stage_entries in entries.values():
        for e in stage_entries:
            cfe = learner._cfe(e.kind, e.ordinal)
            if e.split == "own":
                stratify = e.target if cfe.is_classifier else None
                seed_key = "sync" if synchronize else e.kind
            else:
                stratify = None
                seed_key = "sync"
            requests[(e.kind, e.ordinal)] = SplitRequest(
                variants=e.variants,
                n_folds=cfe.n_folds,
                stratify=stratify,
                seed_key=seed_key,
                cross_predicts=e.cross_predicts,
            )
    return requests


def model_name(factory: type, params: dict[str, Any]) -> str:
    """A base model's class and params without its thread count (one calibration each)."""
    shown = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()) if k not in THREAD_PARAMS)
    return f"{factory_name(factory)}({shown})"


def weigh(run: FitRun, cfe: CrossFitEstimator, jobs: Sequence[Job]) -> None:
    """Expected seconds per training row, for longest-first ordering (docs/parallelism.md).

    With the auto plan's calibration: its estimate at the job's threads. Otherwise the rows
    alone, times the number of classes of a multi-class classifier (boosting grows one tree
    per class and round: a 3-variant LightGBM propensity model costs about three outcome
    models on as many rows).
    """
    calibration = run.calibrations.get(model_name(cfe.estimator_factory, cfe.estimator_params))
    for job in jobs:
        classes = job.spec.classes
        factor = float(len(classes)) if classes is not None and len(classes) > 2 else 1.0
        if calibration is not None:
            # microseconds per row, so that priorities stay large integers
            seconds = calibration.seconds(int(job.cost), job.spec.threads)
            job.weight = 1e6 * seconds / max(job.cost, 1.0)
        elif run.calibrations:
            # a model the cost model could not time: like the median calibrated one
            slopes = sorted(c.slope for c in run.calibrations.values())
            job.weight = 1e6 * slopes[len(slopes) // 2] * factor
        else:
            job.weight = factor
