"""The shared ``MetaLearner`` machinery: argument resolution, validation, the fit run.

Learners differ only in small declared tables (which models, on which rows, with which
targets and splits) and in their per-partition prediction formulas; everything else lives
here, in the cross-fit estimator and in the planner.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client, Future

from dask_meta._constants import (
    NUISANCE,
    OOS_METHODS,
    OVERALL,
    PARAM_PREFIX,
    PROPENSITY_MODEL,
    TREATMENT,
    TREATMENT_MODEL,
    W_COL,
    Y_COL,
)
from dask_meta.backends import (
    COLLECTION,
    LOCAL,
    STREAM,
    THREAD_PARAMS,
    Design,
    FitResult,
    backend_of,
    bins_key,
    check_classes,
    requested_threads,
    shares_bins,
    thread_param_name,
)
from dask_meta.cluster import ClusterShape, cluster_shape, resolve_client
from dask_meta.crossfit import (
    CrossFitEstimator,
    FitContext,
    _estimator_type,
    fingerprint_features,
    fit_context,
    strata_of_fold,
    train_rows,
    validate_oos_method,
)
from dask_meta.data import (
    Frame,
    is_dask,
    partitions,
    reject_sparse,
    training_frame,
    unknown_categoricals,
    with_categories,
)
from dask_meta.evaluation import (
    Evaluated,
    PartitionPlan,
    check_items,
    default_metric,
    evaluate_partitions,
    response_method,
    validate_scoring,
)
from dask_meta.explain import (
    Explainer,
    check_explainer_arguments,
    overall_models,
)
from dask_meta.folds import (
    Assignment,
    PartitionStats,
    SplitRequest,
    assign,
    hash_specs_for,
    scan,
    validate_strategy,
)
from dask_meta.plan import (
    AUTO,
    CALIBRATION_ROWS,
    Calibration,
    Plan,
    PlanChoice,
    PlannedJob,
    check_plan,
    choose,
    concurrency,
    default_choice,
    explicit_choice,
    rule_threads,
)
from dask_meta.planner import Deferred, Job, Limits, Planner, new_token, resolve_threads

logger = logging.getLogger("dask_meta")


# --- per-model tables -----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpecification:
    """How many models of a kind a learner has and how they are used (metalearners' table)."""

    cardinality: Callable[[MetaLearner], int]
    predict_method: Callable[[MetaLearner], str]


@dataclass(frozen=True)
class ModelEntry:
    """One cross-fit estimator to fit: its rows, its target and its split."""

    kind: str
    ordinal: int
    variants: tuple[int, ...] | None
    target: str
    #: "own": metalearners' default CV for this model (stratified for classifiers);
    #: otherwise the name of a synchronised split shared with other models
    split: str = "own"


@dataclass(frozen=True)
class Derivation:
    """How a treatment model's target (and weight) come from nuisance predictions.

    ``fn(part, models, *args)`` runs per partition on the cluster, with the fitted nuisance
    models ``needs`` (``{(kind, ordinal): CrossFitEstimator}``) and the training partition
    (which holds y, w and the fold columns for in-sample predictions); it returns the target
    (NaN outside the model's rows) or a (target, weight) pair.
    """

    fn: Callable[..., Any]
    needs: tuple[tuple[str, int], ...]
    args: tuple[Any, ...] = ()
    weight: bool = False
    #: when set, one ``(design, method)`` per need: ``fn(part, predictions, *args)`` gets
    #: ``{need: (n, n_outputs) array}`` instead of the models, the need's predictions for every
    #: row of the partition (in-sample where the row is in its split, its overall model
    #: elsewhere). They are computed once per need and partition, as soon as that need is
    #: fitted, and shared by every treatment model that uses them.
    predicts: tuple[tuple[Any, str], ...] | None = None


def derived_columns(entry: ModelEntry) -> tuple[str, str]:
    stem = f"{PARAM_PREFIX}{entry.kind}_{entry.ordinal}"
    return f"{stem}_target__", f"{stem}_weight__"


def derive_partition(
    part: pd.DataFrame,
    *,
    fn: Callable[..., Any],
    fn_args: tuple[Any, ...],
    needs: tuple[tuple[str, int], ...],
    sources: list[Any],
    source_args: list[Any],
    target: str,
    weight: str | None,
) -> pd.DataFrame:
    """Derived columns of one training partition (runs on a worker)."""
    models = {}
    i = 0
    for need, source in zip(needs, sources, strict=True):
        models[need], i = _need_model(source, source_args, i)
    return _derived_frame(fn(part.reset_index(drop=True), models, *fn_args), target, weight)


def _need_model(source: Any, source_args: Sequence[Any], i: int) -> tuple[Any, int]:
    """A fitted nuisance estimator from its fold results (or as reused), and the next index."""
    from dask_meta.crossfit import assemble

    if source is None:
        return source_args[i], i + 1
    template, split, folds = source
    return assemble(template, split, folds, *source_args[i : i + len(folds)]), i + len(folds)


def predict_need_partition(
    part: pd.DataFrame, *, source: Any, source_args: list[Any], design: Any, method: str
) -> np.ndarray:
    """One nuisance estimator's predictions ``(n, n_outputs)`` for a training partition:
    in-sample for the rows in its split, from its overall model for the others."""
    model, _ = _need_model(source, source_args, 0)
    part = part.reset_index(drop=True)
    return model.block_predict(design.matrix(part), part, method, OVERALL)


def derive_from_predictions(
    part: pd.DataFrame,
    *predictions: np.ndarray,
    fn: Callable[..., Any],
    fn_args: tuple[Any, ...],
    needs: tuple[tuple[str, int], ...],
    target: str,
    weight: str | None,
) -> pd.DataFrame:
    """Derived columns of one training partition from shared nuisance predictions."""
    shared = dict(zip(needs, predictions, strict=True))
    return _derived_frame(fn(part.reset_index(drop=True), shared, *fn_args), target, weight)


@dataclass
class _NeedContext:
    """Per fit: where the treatment models' nuisance estimators come from (``owners``: those
    fitted in this run, with their jobs), the reused ones put on the cluster, and the shared
    nuisance predictions."""

    run: Any
    owners: dict[tuple[str, int], tuple[Any, list[Job]]]
    scattered: dict[tuple[str, int], Future] = field(default_factory=dict)
    predicted: dict[tuple[tuple[str, int], str], list[Any]] = field(default_factory=dict)


def _used_jobs(jobs: Sequence[Job]) -> list[Job]:
    """The fit jobs of a nuisance estimator whose models its predictions on the training
    partitions use: every row of an estimator that trains on all rows is in its split, so
    it is predicted in-sample by the fold models and its overall model predicts none; an
    estimator that trains on some rows (a variant's) predicts the others with its overall
    model, and one without cross-fitting has only the overall model."""
    folds = [job for job in jobs if job.fold is not None]
    if folds and all(job.spec.rows.variants is None for job in jobs):
        return folds
    return list(jobs)


def _after(
    owners: dict[tuple[str, int], tuple[Any, list[Job]]], needs: Sequence[tuple[str, int]]
) -> frozenset[str]:
    """Keys of the fit jobs whose models ``needs`` predict the training partitions with, of
    those fitted in this run (reused models need none)."""
    return frozenset(
        job.key for need in needs if need in owners for job in _used_jobs(owners[need][1])
    )


def _derived_frame(out: Any, target: str, weight: str | None) -> pd.DataFrame:
    if weight is None:
        return pd.DataFrame({target: np.asarray(out, dtype=float)})
    values, weights = out
    return pd.DataFrame(
        {target: np.asarray(values, dtype=float), weight: np.asarray(weights, dtype=float)}
    )


def _initialize_model_dict(argument: Any, expected_names: Collection[str]) -> dict:
    if isinstance(argument, dict) and set(argument.keys()) >= set(expected_names):
        return {key: argument[key] for key in expected_names}
    return {name: argument for name in expected_names}


def _combine_propensity_and_nuisance_specs(
    propensity_specs: Any, nuisance_specs: Any, nuisance_model_names: set[str]
) -> dict:
    if PROPENSITY_MODEL in nuisance_model_names:
        others = nuisance_model_names - {PROPENSITY_MODEL}
        return _initialize_model_dict(nuisance_specs, others) | {PROPENSITY_MODEL: propensity_specs}
    return _initialize_model_dict(nuisance_specs, nuisance_model_names)


def parse_fit_params(
    fit_params: dict | None, nuisance_names: Collection[str], treatment_names: Collection[str]
) -> dict[str, dict[str, dict]]:
    """Both forms of metalearners' ``fit_params``: flat (to every model) or qualified."""
    if fit_params is not None and not isinstance(fit_params, dict):
        raise TypeError(f"fit_params must be a dict or None, got {type(fit_params).__name__}")
    if not fit_params or (NUISANCE not in fit_params and TREATMENT not in fit_params):
        flat = dict(fit_params or {})
        return {
            NUISANCE: {k: dict(flat) for k in nuisance_names},
            TREATMENT: {k: dict(flat) for k in treatment_names},
        }
    out: dict[str, dict[str, dict]] = {
        NUISANCE: {k: {} for k in nuisance_names},
        TREATMENT: {k: {} for k in treatment_names},
    }
    for stage, names in ((NUISANCE, nuisance_names), (TREATMENT, treatment_names)):
        given = fit_params.get(stage) or {}
        if not isinstance(given, dict):
            raise TypeError(f"fit_params[{stage!r}] must be a dict of model kind -> params")
        for kind in names:
            if kind in given:
                out[stage][kind] = dict(given[kind])
    return out


def _is_row_param(value: Any, n_rows: int | None) -> bool:
    if is_dask(value):
        return True
    if isinstance(value, str | bytes | dict) or not hasattr(value, "__len__"):
        return False
    try:
        return n_rows is not None and len(value) == n_rows and np.ndim(value) >= 1
    except TypeError:
        return False


def _n_rows_in_memory(X: Any) -> int | None:
    if is_dask(X):
        return None
    reject_sparse(X, "X")
    return len(X)


# --- one fit run ----------------------------------------------------------------------------


@dataclass
class FitRun:
    """State of one call to fit: the data on the cluster, its folds, the planner."""

    client: Client
    planner: Planner
    data: Frame
    stats: list[PartitionStats]
    assignment: Assignment
    #: persisted partitions (futures) or, for data larger than memory, delayed ones
    parts: list[Any]
    context: FitContext
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
    #: the keys of the shared binned Datasets that save binning (:meth:`_bins_worth_sharing`)
    bins_worth_sharing: set[str] = field(default_factory=set)
    #: whether the training frame was kept in the cluster's memory (else read per pass)
    persisted: bool = True

    @property
    def n_rows(self) -> int:
        return sum(s.n for s in self.stats)

    def threads_of(self, kind: str) -> int:
        """The plan's threads for fits of a model kind whose params leave them unset."""
        return self.plan_threads_by_kind.get(kind, self.plan_threads)


def _stats_classes(stats: Sequence[PartitionStats]) -> dict[int, set]:
    per_variant: dict[int, set] = {}
    for s in stats:
        for stratum in s.strata:
            per_variant.setdefault(int(stratum[0]), set()).add(stratum[1])
    return per_variant


def _sorted_values(values: Collection[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=repr)


class MetaLearner(ABC):
    """Shared base of the S-, T-, X-, R- and DR-learners (metalearners' ``MetaLearner``).

    Constructor arguments are metalearners'; ``fold_strategy``, ``fold_key``, ``client``,
    ``persist`` and ``plan`` are dask-meta's own keyword-only arguments. As in metalearners,
    per-model arguments are resolved (and validated) at construction, so errors surface at
    once.
    """

    # -- declarations every learner makes ------------------------------------------------

    @classmethod
    @abstractmethod
    def nuisance_model_specifications(cls) -> dict[str, ModelSpecification]: ...

    @classmethod
    @abstractmethod
    def treatment_model_specifications(cls) -> dict[str, ModelSpecification]: ...

    @classmethod
    @abstractmethod
    def _supports_multi_treatment(cls) -> bool: ...

    @classmethod
    @abstractmethod
    def _supports_multi_class(cls) -> bool: ...

    @abstractmethod
    def _nuisance_entries(self, synchronize: bool) -> list[ModelEntry]:
        """The nuisance cross-fit estimators to fit: rows, target and split of each."""

    def _treatment_entries(self, synchronize: bool) -> list[ModelEntry]:
        return []

    def _outcome_predict_method(self) -> str:
        return "predict_proba" if self.is_classification else "predict"

    def _predict_method(self) -> str:
        return "predict"

    def _predict_proba_method(self) -> str:
        return "predict_proba"

    def _get_n_variants(self) -> int:
        return self.n_variants

    def _get_n_variants_minus_one(self) -> int:
        return self.n_variants - 1

    def _get_one(self) -> int:
        return 1

    # -- construction ----------------------------------------------------------------------

    def __init__(
        self,
        is_classification: bool,
        n_variants: int,
        nuisance_model_factory: Any = None,
        treatment_model_factory: Any = None,
        propensity_model_factory: type | None = None,
        nuisance_model_params: dict | None = None,
        treatment_model_params: dict | None = None,
        propensity_model_params: dict | None = None,
        fitted_nuisance_models: dict[str, list[CrossFitEstimator]] | None = None,
        fitted_propensity_model: CrossFitEstimator | None = None,
        feature_set: Any = None,
        n_folds: int | dict[str, int] = 10,
        random_state: int | None = None,
        *,
        fold_strategy: str = "partition",
        fold_key: str | None = None,
        client: Client | None = None,
        persist: bool | str = "auto",
        plan: Any = None,
        enable_overall: bool | dict[str, bool] = True,
    ):
        nuisance_specs = self.nuisance_model_specifications()
        treatment_specs = self.treatment_model_specifications()
        if isinstance(nuisance_model_factory, dict) and PROPENSITY_MODEL in nuisance_model_factory:
            raise ValueError(
                "Propensity model factory should be defined using propensity_model_factory "
                "and not nuisance_model_factory."
            )
        if isinstance(nuisance_model_params, dict) and PROPENSITY_MODEL in nuisance_model_params:
            raise ValueError(
                "Propensity model params should be defined using propensity_model_params "
                "and not nuisance_model_params."
            )
        if (
            PROPENSITY_MODEL in nuisance_specs
            and propensity_model_factory is None
            and fitted_propensity_model is None
        ):
            raise ValueError(
                "propensity_model_factory or fitted_propensity_model needs to be defined "
                f"as the {type(self).__name__} has a propensity model."
            )
        self._validate_n_variants(n_variants)
        if not isinstance(is_classification, bool | np.bool_):
            raise TypeError(f"is_classification must be a bool, got {is_classification!r}")
        validate_strategy(fold_strategy, fold_key)
        if random_state is not None and (
            isinstance(random_state, bool) or not isinstance(random_state, int | np.integer)
        ):
            raise TypeError(
                f"random_state must be an int or None, got {type(random_state).__name__}; it "
                "seeds the fold assignment (seed base models through their params)"
            )
        if not (isinstance(persist, bool | np.bool_) or persist == "auto"):
            raise ValueError(
                f"persist must be True, False or 'auto', got {persist!r}: True keeps the "
                "training frame in the cluster's memory during fit, False reads it from its "
                "source for every pass (data larger than the cluster's memory)"
            )
        check_plan(plan)
        self.is_classification = bool(is_classification)
        self.n_variants = n_variants
        self.fold_strategy = fold_strategy
        self.fold_key = fold_key
        self.client = client
        self.persist = persist
        self.plan = plan
        self.random_state = random_state

        names_n = set(nuisance_specs)
        names_t = set(treatment_specs)
        self.nuisance_model_factory = _combine_propensity_and_nuisance_specs(
            propensity_model_factory, nuisance_model_factory, names_n
        )
        self.nuisance_model_params = _combine_propensity_and_nuisance_specs(
            propensity_model_params or {}, nuisance_model_params or {}, names_n
        )
        self.treatment_model_factory = _initialize_model_dict(treatment_model_factory, names_t)
        self.treatment_model_params = _initialize_model_dict(treatment_model_params or {}, names_t)
        self.n_folds = _initialize_model_dict(n_folds, names_n | names_t)
        for kind, value in self.n_folds.items():
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
                raise ValueError(f"{kind} n_folds must be a positive int, got {value!r}")
        self.enable_overall = self._check_enable_overall(enable_overall, names_n | names_t)
        self.feature_set = _initialize_model_dict(feature_set, names_n | names_t)
        for kind, params in {**self.nuisance_model_params, **self.treatment_model_params}.items():
            if not isinstance(params, dict):
                raise TypeError(f"params for {kind} must be a dict, got {type(params).__name__}")
            requested_threads(params)

        self._nuisance_models: dict[str, list[CrossFitEstimator]] = {}
        self._prefitted_nuisance_models: set[str] = set()
        if fitted_nuisance_models is not None:
            allowed = names_n - {PROPENSITY_MODEL}
            if not set(fitted_nuisance_models) <= allowed:
                raise ValueError(
                    f"The keys present in fitted_nuisance_models should be a subset of {allowed}"
                )
            for kind, models in fitted_nuisance_models.items():
                self._check_prefitted(kind, models)
            self._nuisance_models |= copy.deepcopy(fitted_nuisance_models)
            self._prefitted_nuisance_models |= set(fitted_nuisance_models)
        if PROPENSITY_MODEL in names_n and fitted_propensity_model is not None:
            self._check_prefitted(PROPENSITY_MODEL, [fitted_propensity_model])
            self._nuisance_models[PROPENSITY_MODEL] = [copy.copy(fitted_propensity_model)]
            self._prefitted_nuisance_models.add(PROPENSITY_MODEL)
        for kind in names_n - self._prefitted_nuisance_models:
            if self.nuisance_model_factory[kind] is None:
                where = (
                    "propensity_model_factory or fitted_propensity_model"
                    if kind == PROPENSITY_MODEL
                    else "nuisance_model_factory or fitted_nuisance_models"
                )
                raise ValueError(
                    f"A model for the nuisance model {kind} needs to be defined in {where}."
                )
        for kind in names_t:
            if self.treatment_model_factory[kind] is None:
                raise ValueError(
                    f"A model for the treatment model {kind} needs to be defined in "
                    "treatment_model_factory."
                )
        self._nuisance_models |= {
            kind: [
                self._new_cfe(
                    kind, self.nuisance_model_factory[kind], self.nuisance_model_params[kind]
                )
                for _ in range(nuisance_specs[kind].cardinality(self))
            ]
            for kind in names_n - self._prefitted_nuisance_models
        }
        self._treatment_models: dict[str, list[CrossFitEstimator]] = {
            kind: [
                self._new_cfe(
                    kind, self.treatment_model_factory[kind], self.treatment_model_params[kind]
                )
                for _ in range(treatment_specs[kind].cardinality(self))
            ]
            for kind in names_t
        }
        self._validate_models()
        self._fit_context: FitContext | None = None
        self._seed: int | None = None
        self.fit_report_: pd.DataFrame | None = None
        self._run_owners: dict[tuple[str, int], tuple[CrossFitEstimator, list[Job]]] = {}

    def _new_cfe(self, kind: str, factory: Any, params: dict) -> CrossFitEstimator:
        if not isinstance(factory, type):
            raise TypeError(
                f"the factory for {kind} must be an estimator class (e.g. "
                f"lightgbm.LGBMRegressor), got {factory!r}"
            )
        return CrossFitEstimator(
            n_folds=self.n_folds[kind],
            estimator_factory=factory,
            estimator_params=params,
            enable_overall=self.enable_overall[kind],
            random_state=self.random_state,
            fold_strategy=self.fold_strategy,
            fold_key=self.fold_key,
            client=self.client,
        )

    #: nuisance kinds whose overall models the fit itself predicts with (on the rows of the
    #: other variants): their ``enable_overall`` cannot be False
    _fit_needs_overall: frozenset[str] = frozenset()

    def _check_enable_overall(self, value: Any, kinds: set[str]) -> dict[str, bool]:
        """``enable_overall`` per model kind: one bool, or a dict of some kinds (others True).

        metalearners' ``CrossFitEstimator`` argument, which its learners always leave True. An
        overall model is used only by out-of-sample predictions with ``oos_method="overall"``
        (and, for the X- and DR-learner's outcome models, by the fit); without it those
        predictions take ``"mean"`` or ``"median"`` and the fit saves one model per kind.
        """
        if isinstance(value, bool | np.bool_):
            by_kind = dict.fromkeys(kinds, bool(value))
        elif isinstance(value, dict):
            unknown = set(value) - kinds
            if unknown:
                raise ValueError(
                    f"enable_overall has unknown model kinds {sorted(unknown)}; "
                    f"{type(self).__name__} has {sorted(kinds)}"
                )
            for kind, flag in value.items():
                if not isinstance(flag, bool | np.bool_):
                    raise TypeError(f"enable_overall[{kind!r}] must be a bool, got {flag!r}")
            by_kind = {kind: bool(value.get(kind, True)) for kind in kinds}
        else:
            raise TypeError(
                f"enable_overall must be a bool or a dict of model kind to bool, got {value!r}"
            )
        for kind in sorted(kinds):
            if by_kind[kind]:
                continue
            if self.n_folds[kind] == 1:
                raise ValueError(
                    f"enable_overall is False for {kind}, whose n_folds is 1: without "
                    "cross-fitting the overall model is its only model"
                )
            if kind in self._fit_needs_overall:
                raise ValueError(
                    f"enable_overall cannot be False for {kind}: the {type(self).__name__}'s "
                    "fit predicts the other variants' rows with its overall models. Pass a "
                    "dict for the other kinds, e.g. enable_overall={'propensity_model': False}"
                )
        return by_kind

    def _check_prefitted(self, kind: str, models: Any) -> None:
        if not isinstance(models, list | tuple) or not all(
            isinstance(m, CrossFitEstimator) for m in models
        ):
            raise TypeError(
                f"fitted models for {kind} must be a list of dask_meta CrossFitEstimator "
                "(e.g. another learner's _nuisance_models[kind])"
            )
        expected = self.nuisance_model_specifications()[kind].cardinality(self)
        if len(models) != expected:
            raise ValueError(f"{kind} needs {expected} fitted models, got {len(models)}")
        for m in models:
            if not m.is_fitted:
                raise ValueError(f"the fitted models passed for {kind} are not fitted")

    @classmethod
    def _validate_n_variants(cls, n_variants: Any) -> None:
        if isinstance(n_variants, bool) or not isinstance(n_variants, int) or n_variants < 2:
            raise ValueError("n_variants needs to be an integer strictly greater than 1.")
        if n_variants > 2 and not cls._supports_multi_treatment():
            raise NotImplementedError(
                f"{cls.__name__} only supports binary treatment variants; n_variants={n_variants}"
            )

    def _validate_models(self) -> None:
        """Regressors where ``predict`` is used, classifiers where ``predict_proba`` is."""
        checks = [
            (kind, self._nuisance_models[kind][0], spec, "nuisance")
            for kind, spec in self.nuisance_model_specifications().items()
        ] + [
            (kind, self._treatment_models[kind][0], spec, "treatment")
            for kind, spec in self.treatment_model_specifications().items()
        ]
        for kind, cfe, spec, stage in checks:
            method = spec.predict_method(self)
            factory = cfe.estimator_factory
            cfe_type = _estimator_type(factory, cfe.estimator_params)
            if cfe_type == "classifier" and method == "predict":
                raise ValueError(
                    f"The {stage} model {kind} is supposed to be used with the predict method "
                    f"'predict' but {factory.__name__} is a classifier; pass a regressor."
                )
            if cfe_type == "regressor" and method == "predict_proba":
                raise ValueError(
                    f"The {stage} model {kind} is supposed to be used with the predict method "
                    f"'predict_proba' but {factory.__name__} is not a classifier; pass a "
                    "classifier."
                )

    @property
    def init_args(self) -> dict[str, Any]:
        """Arguments that rebuild an unfitted learner with the same configuration."""
        pre = self._prefitted_nuisance_models
        return {
            "is_classification": self.is_classification,
            "n_variants": self.n_variants,
            "nuisance_model_factory": {
                k: v
                for k, v in self.nuisance_model_factory.items()
                if k != PROPENSITY_MODEL and k not in pre
            },
            "treatment_model_factory": self.treatment_model_factory,
            "propensity_model_factory": (
                self.nuisance_model_factory.get(PROPENSITY_MODEL)
                if PROPENSITY_MODEL not in pre
                else None
            ),
            "nuisance_model_params": {
                k: v
                for k, v in self.nuisance_model_params.items()
                if k != PROPENSITY_MODEL and k not in pre
            },
            "treatment_model_params": self.treatment_model_params,
            "propensity_model_params": (
                self.nuisance_model_params.get(PROPENSITY_MODEL)
                if PROPENSITY_MODEL not in pre
                else None
            ),
            "fitted_nuisance_models": {
                k: copy.deepcopy(v)
                for k, v in self._nuisance_models.items()
                if k in pre and k != PROPENSITY_MODEL
            },
            "fitted_propensity_model": (
                copy.deepcopy(self._nuisance_models.get(PROPENSITY_MODEL))
                if PROPENSITY_MODEL in pre
                else None
            ),
            "feature_set": self.feature_set,
            "n_folds": self.n_folds,
            "random_state": self.random_state,
            "fold_strategy": self.fold_strategy,
            "fold_key": self.fold_key,
            "client": self.client,
            "persist": self.persist,
            "plan": self.plan,
            "enable_overall": self.enable_overall,
        }

    def save(self, path: Any, **kwargs: Any) -> str:
        """Save this fitted learner to a directory; ``dask_meta.load(path)`` loads it.

        Keyword arguments (``trusted``, ``folds``, ``overwrite``, ``storage_options``): see
        :func:`dask_meta.persistence.save`.
        """
        from dask_meta.persistence import save

        return save(self, path, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["client"] = None
        state.pop("_client", None)
        return state

    # -- fitting ---------------------------------------------------------------------------

    def fit(
        self,
        X: Any,
        y: Any,
        w: Any,
        n_jobs_cross_fitting: int | None = None,
        fit_params: dict | None = None,
        synchronize_cross_fitting: bool = True,
        n_jobs_base_learners: int | None = None,
    ) -> MetaLearner:
        """Fit all nuisance and treatment models.

        Unlike metalearners, ``None`` for the two ``n_jobs`` limits means "no limit beyond the
        cluster's resources" (metalearners: sequential); a positive int caps the fits in
        flight (per cross-fit estimator, and estimators per stage).
        """
        self._fit_stages(
            X,
            y,
            w,
            (NUISANCE, TREATMENT),
            n_jobs_cross_fitting,
            fit_params,
            synchronize_cross_fitting,
            n_jobs_base_learners,
        )
        return self

    def fit_all_nuisance(
        self,
        X: Any,
        y: Any,
        w: Any,
        n_jobs_cross_fitting: int | None = None,
        fit_params: dict | None = None,
        synchronize_cross_fitting: bool = True,
        n_jobs_base_learners: int | None = None,
    ) -> MetaLearner:
        """Fit all nuisance models (prefitted ones are never refitted)."""
        self._fit_stages(
            X,
            y,
            w,
            (NUISANCE,),
            n_jobs_cross_fitting,
            fit_params,
            synchronize_cross_fitting,
            n_jobs_base_learners,
        )
        return self

    def fit_all_treatment(
        self,
        X: Any,
        y: Any,
        w: Any,
        n_jobs_cross_fitting: int | None = None,
        fit_params: dict | None = None,
        synchronize_cross_fitting: bool = True,
        n_jobs_base_learners: int | None = None,
    ) -> MetaLearner:
        """Fit all treatment models; the nuisance models must be fitted on the same data."""
        if not self.treatment_model_specifications():
            return self
        self._fit_stages(
            X,
            y,
            w,
            (TREATMENT,),
            n_jobs_cross_fitting,
            fit_params,
            synchronize_cross_fitting,
            n_jobs_base_learners,
        )
        return self

    #: learners whose models share folds when ``synchronize_cross_fitting`` (X, R, DR)
    _synchronizes = False

    def _validate_fit_args(self, synchronize: Any) -> None:
        if not isinstance(synchronize, bool | np.bool_):
            raise TypeError(f"synchronize_cross_fitting must be a bool, got {synchronize!r}")
        if synchronize and self._synchronizes:
            values = set(self.n_folds.values())
            if len(values) > 1:
                raise ValueError(
                    "When using synchronization of cross-fitting, all provided n_folds values "
                    f"must be equal; got {self.n_folds}. Pass one n_folds or "
                    "synchronize_cross_fitting=False."
                )
            if min(values) < 2:
                raise ValueError(
                    "Need at least two folds to use synchronization of cross-fitting; pass "
                    "n_folds >= 2 or synchronize_cross_fitting=False."
                )

    def _fit_stages(
        self,
        X: Any,
        y: Any,
        w: Any,
        stages: tuple[str, ...],
        n_jobs_cross_fitting: int | None,
        fit_params: dict | None,
        synchronize: bool,
        n_jobs_base_learners: int | None,
    ) -> None:
        self._validate_fit_args(synchronize)
        limits = Limits(n_jobs_cross_fitting, n_jobs_base_learners)
        qualified = parse_fit_params(
            fit_params, self.nuisance_model_specifications(), self.treatment_model_specifications()
        )
        self._validate_fit_params(qualified)
        if TREATMENT in stages and NUISANCE not in stages:
            self._require_nuisance_fitted()
        entries = {
            NUISANCE: [
                e
                for e in self._nuisance_entries(bool(synchronize))
                if e.kind not in self._prefitted_nuisance_models
            ]
            if NUISANCE in stages
            else [],
            TREATMENT: self._treatment_entries(bool(synchronize)) if TREATMENT in stages else [],
        }
        run = self._begin_run(X, y, w, qualified, entries, limits, bool(synchronize))
        try:
            jobs, deferred, owners = self._plan_jobs(run, entries)
            results = run.planner.run(jobs, deferred)
            fitted = self._collect(run, owners, results)
        except BaseException:
            run.planner.cancel_all()
            raise
        finally:
            self._run_owners = {}
            if run.shared_bins:
                run.planner.drop_bins(run.token)
            run.planner.release()
        # install only once everything succeeded, and all at once: a failed or interrupted
        # fit leaves the learner as it was (new lists of models, never edited in place)
        nuisance = {kind: list(models) for kind, models in self._nuisance_models.items()}
        treatment = {kind: list(models) for kind, models in self._treatment_models.items()}
        for (kind, ordinal), cfe in fitted.items():
            (nuisance if kind in nuisance else treatment)[kind][ordinal] = cfe
        for owner, ref in run.assignment.refs.items():
            if owner not in fitted:
                # a reused model: its folds now live in this fit's fold frame
                kind, ordinal = owner  # type: ignore[misc]
                # a copy: the same fitted model may serve another learner with its own folds
                reused = copy.copy(self._cfe(kind, ordinal))
                reused._split = ref
                reused._context = run.context
                (nuisance if kind in nuisance else treatment)[kind][ordinal] = reused
        if NUISANCE in stages and TREATMENT not in stages:
            # treatment models of an earlier fit do not belong to the new nuisance models
            treatment = {kind: [m.clone() for m in models] for kind, models in treatment.items()}
        report = run.planner.report_frame()
        report.attrs["wall_time"] = time.time() - run.started
        report.attrs["task_seconds"] = run.planner.task_seconds()
        report.attrs["shared_bins"] = run.shared_bins
        report.attrs["persisted"] = run.persisted
        if run.plan_choice is not None:
            report.attrs["plan"] = run.plan_choice.as_dict()
        previous = dict(self.__dict__)
        try:
            self._nuisance_models = nuisance
            self._treatment_models = treatment
            self._fit_context = run.context
            self._seed = run.seed
            self._client = run.client
            self._after_fit(run, stages)
            self.fit_report_ = report
        except BaseException:
            # the learner's own fit-time state (_after_fit) failed or was interrupted
            self.__dict__.clear()
            self.__dict__.update(previous)
            raise
        if run.shared_bins:
            logger.info(
                "LightGBM models of this fit trained on subsets of one binned Dataset per "
                "worker (bin bounds from all training rows, not each fit's own rows); "
                "fold_strategy='sklearn' bins every fit on its own rows, as metalearners does"
            )

    def _after_fit(self, run: FitRun, stages: tuple[str, ...]) -> None:
        """Hook for learner state computed at fit time."""

    def _require_treatment_fitted(self) -> None:
        for kind, models in self._treatment_models.items():
            if not all(m.is_fitted for m in models):
                raise ValueError(
                    f"the treatment model {kind} is not fitted; call fit (or fit_all_treatment) "
                    "before predicting"
                )

    def _require_nuisance_fitted(self) -> None:
        for kind, models in self._nuisance_models.items():
            if not all(m.is_fitted for m in models):
                raise ValueError(
                    f"the nuisance model {kind} is not fitted; call fit_all_nuisance first"
                )

    def _validate_fit_params(self, qualified: dict[str, dict[str, dict]]) -> None:
        """Hook: learners reject fit params they cannot honour."""

    def _begin_run(
        self,
        X: Any,
        y: Any,
        w: Any,
        qualified: dict[str, dict[str, dict]],
        entries: dict[str, list[ModelEntry]],
        limits: Limits,
        synchronize: bool,
    ) -> FitRun:
        client = resolve_client(self.client)
        shape = cluster_shape(client)
        for stage_entries in entries.values():
            for e in stage_entries:
                # a request no worker can meet fails here, before any data is read
                params = self._cfe(e.kind, e.ordinal).estimator_params
                resolve_threads(requested_threads(params), shape, 1, f"the {e.kind} model")
        if isinstance(self.plan, Plan) and self.plan.threads_per_model is not None:
            resolve_threads(self.plan.threads_per_model, shape, 1, "plan.threads_per_model")
        n_mem = _n_rows_in_memory(X)
        row_columns: dict[int, str] = {}
        row_values: dict[str, tuple[str, Any]] = {}
        row_params: dict[tuple[str, str], dict[str, str]] = {}
        static_params: dict[tuple[str, str], dict[str, Any]] = {}
        for stage, per_kind in qualified.items():
            for kind, params in per_kind.items():
                static: dict[str, Any] = {}
                rows: dict[str, str] = {}
                for name, value in params.items():
                    if _is_row_param(value, n_mem):
                        column = row_columns.setdefault(
                            id(value), f"{PARAM_PREFIX}{len(row_columns)}__"
                        )
                        row_values[column] = (f"fit_params[{name!r}]", value)
                        rows[name] = column
                    else:
                        static[name] = value
                row_params[(stage, kind)] = rows
                static_params[(stage, kind)] = static
        data = training_frame(X, y, w, row_values)
        self._check_input_dtypes(data)
        if self.fold_strategy == "hash" and self.fold_key not in data.columns.names:
            raise ValueError(
                f"fold_key={self.fold_key!r} is not a column of X; X has {list(data.columns.names)}"
            )
        seed = self._seed_for_run(entries)
        requests = self._split_requests(entries, synchronize)
        hash_specs = hash_specs_for(requests, seed) if self.fold_strategy == "hash" else ()
        categorical = unknown_categoricals(data)
        stats = scan(
            client,
            data.frame,
            self.is_classification,
            fold_key=self.fold_key,
            hash_specs=hash_specs,
            keep_arrays=self.fold_strategy == "sklearn",
            categorical=categorical,
        )
        self._validate_data(stats)
        if categorical:
            # one set of categories in every partition: a fit's rows concatenate into one
            # categorical column, with the same codes as the same rows in one partition
            data = with_categories(data, [s.categories for s in stats])
        assignment = assign(
            self.fold_strategy,
            data.frame,
            stats,
            requests,
            seed=seed if self.fold_strategy != "sklearn" else self.random_state,  # type: ignore[arg-type]
            classification=self.is_classification,
            fold_key=self.fold_key,
        )
        self._check_fold_coverage(entries, assignment, requests)
        planner = Planner(client, limits, label=f"dask_meta-{type(self).__name__}", shape=shape)
        parts: list[Any]
        persisted = self._persists(assignment.frame, sum(s.n for s in stats), shape)
        try:
            if persisted:
                parts = planner.persist_partitions(assignment.frame, "training-frame")
            else:
                # larger than the cluster's memory: every pass reads the partitions from source
                parts = partitions(assignment.frame)
            fingerprints = planner.gather_partitions(
                fingerprint_features, parts, "fingerprint", names=data.columns.names
            )
            context = fit_context(data.columns, assignment, [s.n for s in stats], fingerprints)
            self._check_reused_data(context, entries)
        except BaseException:
            # the persisted frame would otherwise stay on the cluster for as long as the
            # exception (and its traceback, which holds the futures) lives
            planner.cancel_all()
            raise
        return FitRun(
            client=client,
            planner=planner,
            data=data,
            stats=stats,
            assignment=assignment,
            parts=parts,
            context=context,
            seed=seed,
            token=new_token(),
            row_params=row_params,
            static_params=static_params,
            persisted=persisted,
        )

    def _persists(self, frame: Any, n_rows: int, shape: ClusterShape) -> bool:
        """Whether fit keeps the training frame in the cluster's memory (``persist``).

        ``"auto"`` persists unless the frame would take more than a third of the workers'
        memory limits together (the rest is needed for the fits themselves).
        """
        if self.persist != "auto":
            return bool(self.persist)
        limit = sum(w.memory_limit for w in shape.workers)
        if limit <= 0:
            return True
        row_bytes = sum(
            dtype.itemsize if dtype.kind in "biufcmM" else 64 for dtype in frame._meta.dtypes
        )
        return n_rows * row_bytes <= limit / 3

    def _check_reused_data(self, context: FitContext, entries: dict[str, list[ModelEntry]]) -> None:
        """Reused models (prefitted, or of an earlier fit_all_nuisance) need the same data."""
        fitted_now = {(e.kind, e.ordinal) for es in entries.values() for e in es}
        for kind, models in self._nuisance_models.items():
            for ordinal, cfe in enumerate(models):
                if (kind, ordinal) in fitted_now or not cfe.is_fitted:
                    continue
                previous = cfe._context
                if previous is None:
                    continue
                if (
                    previous.lengths != context.lengths
                    or previous.fingerprints != context.fingerprints
                ):
                    what = (
                        "fitted_nuisance_models / fitted_propensity_model"
                        if kind in self._prefitted_nuisance_models
                        else "fit_all_nuisance"
                    )
                    raise ValueError(
                        f"the {kind} model comes from {what} on other data (partitions, "
                        "lengths or values differ); fit_all_treatment and reused models need "
                        "exactly the X, y and w they were fitted on"
                    )

    def _seed_for_run(self, entries: dict[str, list[ModelEntry]]) -> int:
        if self.random_state is not None:
            return int(self.random_state)
        if self._seed is not None and not entries[NUISANCE]:
            return self._seed
        return int(np.random.SeedSequence().entropy % (2**32))  # type: ignore[operator]

    def _check_input_dtypes(self, data: Frame) -> None:
        meta = data.frame._meta
        w_dtype = meta[W_COL].dtype
        if not (
            pd.api.types.is_integer_dtype(w_dtype)
            or pd.api.types.is_bool_dtype(w_dtype)
            or pd.api.types.is_float_dtype(w_dtype)
        ):
            raise TypeError(
                f"w has dtype {w_dtype}; the treatment must be integers 0..n_variants-1 "
                "(bool or integer-valued floats are accepted)"
            )
        y_dtype = meta[Y_COL].dtype
        numeric = pd.api.types.is_numeric_dtype(y_dtype) or pd.api.types.is_bool_dtype(y_dtype)
        if not numeric and not self.is_classification:
            raise TypeError(f"y has dtype {y_dtype}; a regression outcome must be numeric")

    def _validate_data(self, stats: Sequence[PartitionStats]) -> None:
        """Treatment and outcome checks of metalearners, from the first pass's statistics."""
        if not sum(s.n for s in stats):
            raise ValueError(
                f"X, y and w have no rows (all {len(stats)} partitions are empty); fit needs "
                "training data"
            )
        w_nan = sum(s.w_nan for s in stats)
        if w_nan:
            raise ValueError(f"w has {w_nan} missing values (NaN); every row needs a treatment")
        w_frac = sum(s.w_non_integer for s in stats)
        if w_frac:
            raise ValueError(
                f"w has {w_frac} non-integer values; treatment variants must be encoded as "
                f"0..{self.n_variants - 1}"
            )
        w_inf = sum(s.w_inf for s in stats)
        if w_inf:
            raise ValueError(
                f"w has {w_inf} infinite values; treatment variants must be encoded as "
                f"0..{self.n_variants - 1}"
            )
        y_nan = sum(s.y_nan for s in stats)
        if y_nan:
            raise ValueError(f"y has {y_nan} missing values (NaN); every row needs an outcome")
        y_inf = sum(s.y_inf for s in stats)
        if y_inf:
            raise ValueError(f"y has {y_inf} infinite values")
        found = set()
        for s in stats:
            found |= {int(st[0]) for st in s.strata}
        expected = set(range(self.n_variants))
        if found != expected:
            missing = sorted(expected - found)
            extra = sorted(found - expected)
            detail = []
            if missing:
                detail.append(f"variants {missing} are missing")
            if extra:
                detail.append(f"values {extra} are outside 0..{self.n_variants - 1}")
            raise ValueError(
                f"w has values {_sorted_values(found)}; expected 0..n_variants-1 = "
                f"{sorted(expected)} with every variant present ({'; '.join(detail)})"
            )
        if self.is_classification:
            per_variant = _stats_classes(stats)
            classes = set().union(*per_variant.values())
            if len(classes) > 2 and not self._supports_multi_class():
                raise ValueError(
                    f"{type(self).__name__} does not support multiclass classification. Yet we "
                    f"found {len(classes)} classes."
                )
            if len(classes) < 2:
                raise ValueError(
                    f"There is only one class present in the classification outcome: {classes}; "
                    "a classification needs at least two"
                )
            classes_0 = per_variant.get(0, set())
            for variant in sorted(per_variant):
                if per_variant[variant] != classes_0:
                    raise ValueError(
                        f"Variants 0 and {variant} have seen different sets of classification "
                        f"outcomes ({_sorted_values(classes_0)} vs "
                        f"{_sorted_values(per_variant[variant])}). Please check your data."
                    )

    # -- splits and jobs -------------------------------------------------------------------

    def _cfe(self, kind: str, ordinal: int) -> CrossFitEstimator:
        if kind in self._nuisance_models:
            return self._nuisance_models[kind][ordinal]
        return self._treatment_models[kind][ordinal]

    def _stage_of(self, kind: str) -> str:
        return NUISANCE if kind in self.nuisance_model_specifications() else TREATMENT

    def _split_requests(
        self, entries: dict[str, list[ModelEntry]], synchronize: bool
    ) -> dict[Hashable, SplitRequest]:
        requests: dict[Hashable, SplitRequest] = {}
        fitted_now = {(e.kind, e.ordinal) for es in entries.values() for e in es}
        for kind, models in self._nuisance_models.items():
            for ordinal, cfe in enumerate(models):
                if (kind, ordinal) in fitted_now or not cfe.is_fitted:
                    continue
                # reused: a prefitted model or one of an earlier fit_all_nuisance
                assert cfe._split is not None
                if cfe._split.request is None or cfe.fold_strategy != self.fold_strategy:
                    raise ValueError(
                        f"the fitted {kind} model was fitted with fold_strategy="
                        f"{cfe.fold_strategy!r}; this learner uses {self.fold_strategy!r}. "
                        "Reused models must come from the same fold strategy."
                    )
                request = cfe._split.request
                requests[(kind, ordinal)] = SplitRequest(
                    request.variants,
                    request.n_folds,
                    request.stratify,
                    request.seed_key,
                    cfe._split.seed,
                )
        for stage_entries in entries.values():
            for e in stage_entries:
                cfe = self._cfe(e.kind, e.ordinal)
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
                )
        return requests

    def _check_fold_coverage(
        self,
        entries: dict[str, list[ModelEntry]],
        assignment: Assignment,
        requests: dict[Hashable, SplitRequest],
    ) -> None:
        """Before any fit: every fold's training rows hold each variant and class they need."""
        for stage_entries in entries.values():
            for e in stage_entries:
                cfe = self._cfe(e.kind, e.ordinal)
                split = assignment.refs[(e.kind, e.ordinal)]
                whole = strata_of_fold(split, assignment.fold_strata, None)
                need_variants = {s[0] for s in whole}
                need_classes = self._target_classes(e, whole) if cfe.is_classifier else None
                folds = range(cfe.n_folds) if cfe.n_folds > 1 else []
                for k in folds:
                    strata = strata_of_fold(split, assignment.fold_strata, k)
                    have_variants = {s[0] for s in strata if strata[s]}
                    name = f"{e.kind} {e.ordinal}" if self._cardinality(e.kind) > 1 else e.kind
                    if not strata or sum(strata.values()) == 0:
                        raise ValueError(
                            f"fold {k} of {name} has no training rows; use fewer folds (n_folds)"
                        )
                    if have_variants != need_variants:
                        raise ValueError(
                            f"the training rows of fold {k} of {name} lack treatment variants "
                            f"{sorted(need_variants - have_variants)}; use fewer folds or check "
                            "the data"
                        )
                    if need_classes is not None:
                        have = self._target_classes(e, strata)
                        if have != need_classes:
                            raise ValueError(
                                f"the training rows of fold {k} of {name} lack the classes "
                                f"{_sorted_values(need_classes - have)} of its target; use fewer "
                                "folds, the 'partition' fold strategy (stratified), or "
                                "synchronize_cross_fitting=False"
                            )

    def _target_classes(self, entry: ModelEntry, strata: Counter) -> set:
        present = [s for s, c in strata.items() if c]
        if entry.target == W_COL:
            return {s[0] for s in present}
        return {s[1] for s in present if len(s) > 1}

    def _cardinality(self, kind: str) -> int:
        specs = self.nuisance_model_specifications() | self.treatment_model_specifications()
        return specs[kind].cardinality(self)

    def _design(self, kind: str, columns: Any = None) -> Design:
        assert self._fit_context is not None or columns is not None
        cols = columns if columns is not None else self._fit_context.columns  # type: ignore[union-attr]
        return Design(cols.select(self.feature_set[kind], kind), cols.as_numpy)

    def _plan_jobs(
        self, run: FitRun, entries: dict[str, list[ModelEntry]]
    ) -> tuple[
        list[Job], list[Deferred], dict[tuple[str, int], tuple[CrossFitEstimator, list[Job]]]
    ]:
        """Jobs of the nuisance stage now; learners with a treatment stage add deferred ones."""
        owners: dict[tuple[str, int], tuple[CrossFitEstimator, list[Job]]] = {}
        jobs: list[Job] = []
        all_entries = entries[NUISANCE] + entries[TREATMENT]
        run.n_jobs_total = sum(self._cfe(e.kind, e.ordinal).n_models for e in all_entries)
        self._choose_plan(run, entries, auto=False)
        run.bins_worth_sharing = self._bins_worth_sharing(run, all_entries)
        for e in entries[NUISANCE]:
            cfe_jobs, cfe = self._entry_jobs(run, e, run.parts)
            owners[(e.kind, e.ordinal)] = (cfe, cfe_jobs)
            jobs.extend(cfe_jobs)
        if self.plan == AUTO:
            self._choose_plan(run, entries, auto=True, built=jobs)
            for cfe, cfe_jobs in owners.values():
                if requested_threads(cfe.estimator_params) is None:
                    for job in cfe_jobs:
                        if job.backend != COLLECTION:
                            job.spec = dataclasses.replace(
                                job.spec, threads=run.threads_of(job.kind)
                            )
                _weigh(run, cfe, cfe_jobs)
        self._run_owners = owners
        deferred = self._treatment_plan(run, entries, owners, jobs)
        awaited = frozenset().union(*(d.after for d in deferred))
        for job in jobs:
            job.blocks = job.key in awaited
        return jobs, deferred, owners

    def _bins_worth_sharing(self, run: FitRun, entries: Sequence[ModelEntry]) -> set[str]:
        """The shared binned Datasets (their keys) whose fits train on more rows in all than
        the training frame has.

        A shared Dataset bins every row of the frame once; without it each fit bins its own
        rows. So it pays only where rows are trained on more than once: folds, or several
        model kinds on the same rows. A T-learner without cross-fitting trains each row once,
        and its fits bin their own rows instead (the "sklearn" fold strategy always does).
        """
        if self.fold_strategy == "sklearn":
            return set()
        rows: Counter[str] = Counter()
        for e in entries:
            cfe = self._cfe(e.kind, e.ordinal)
            design = self._design(e.kind, run.data.columns)
            if backend_of(cfe.estimator_factory) != LOCAL or not shares_bins(
                cfe.estimator_factory, cfe.estimator_params, design
            ):
                continue
            split = run.assignment.refs[(e.kind, e.ordinal)]
            per_model = train_rows(split, run.assignment.fold_strata, cfe.n_folds)
            rows[bins_key(run.token, cfe.estimator_factory, cfe.estimator_params, design)] += sum(
                per_model[fold] for fold in cfe.fitted_folds
            )
        return {key for key, n in rows.items() if n > run.n_rows}

    def _choose_plan(
        self,
        run: FitRun,
        entries: dict[str, list[ModelEntry]],
        auto: bool,
        built: Sequence[Job] = (),
    ) -> None:
        """Threads per model and the two limits: the plan's, the rule's or the cost model's.

        The fit call's limits win over a plan's; ``auto=True`` runs the cost model on the
        nuisance jobs already ``built`` (their specs are what the calibration fits time).
        """
        shape = run.planner.shape
        assert shape is not None
        given = run.planner.limits
        groups = {
            (self._stage_of(e.kind), e.kind, e.ordinal): self._cfe(e.kind, e.ordinal).n_models
            for stage_entries in entries.values()
            for e in stage_entries
        }
        if auto:
            choice = self._auto_plan(run, entries, built, shape)
            if choice is None:
                # nothing the cost model can time: the rule's choice stands
                assert run.plan_choice is not None
                run.plan_choice = dataclasses.replace(
                    run.plan_choice,
                    source=AUTO,
                    reason="plan='auto' found no local base model to time; "
                    + run.plan_choice.reason,
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
            run.plan_choice = dataclasses.replace(
                choice, n_jobs_cross_fitting=limits[0], n_jobs_base_learners=limits[1]
            )
            return
        plan = self.plan if isinstance(self.plan, Plan) else None
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
        self,
        run: FitRun,
        entries: dict[str, list[ModelEntry]],
        built: Sequence[Job],
        shape: ClusterShape,
    ) -> PlanChoice | None:
        """The cost model: calibrate each local base-model class, then simulate candidates."""
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
                cfe = self._cfe(e.kind, e.ordinal)
                if backend_of(cfe.estimator_factory) != LOCAL:
                    continue
                name = _model_name(cfe.estimator_factory, cfe.estimator_params)
                if name not in specs:
                    own = next((j for j in local if j.kind == e.kind), None)
                    if own is not None:
                        specs[name] = (own.spec, own)
                    else:
                        # a treatment-stage model: time it on a nuisance job's rows and target
                        spec = dataclasses.replace(
                            regression_probe.spec,
                            factory=cfe.estimator_factory,
                            params=dict(cfe.estimator_params),
                            thread_param=thread_param_name(
                                cfe.estimator_factory, cfe.estimator_params
                            ),
                            is_classifier=False,
                            fit_params={},
                            row_params={},
                            classes=None,
                            bins=None,
                        )
                        specs[name] = (spec, regression_probe)
                split = run.assignment.refs.get((e.kind, e.ordinal))
                if split is None:
                    continue
                rows = train_rows(split, run.assignment.fold_strata, cfe.n_folds)
                for fold in cfe.fitted_folds:  # not the folds of n_folds 1, nor a skipped overall
                    planned.append(
                        PlannedJob(
                            stage=stage,
                            group=(stage, e.kind, e.ordinal),
                            rows=int(rows[fold]),
                            model=name,
                            columns=n_columns,
                            fixed_threads=requested_threads(cfe.estimator_params),
                        )
                    )
        calibrations: dict[str, Calibration] = {}
        calibration_seconds = 0.0
        for name, (spec, job) in specs.items():
            start = time.perf_counter()
            calibration, measured = _calibration(run, name, spec, job, n_columns, shape)
            if measured:
                calibration_seconds += time.perf_counter() - start
            if calibration is not None:
                calibrations[name] = calibration
        if not planned:
            return None
        run.calibrations = calibrations
        return choose(planned, calibrations, shape, calibration_seconds)

    def _derivation(self, run: FitRun, entry: ModelEntry) -> Derivation:
        """How a treatment model's target comes from nuisance predictions (X, R, DR)."""
        raise NotImplementedError(f"{type(self).__name__} has no treatment models")

    def _treatment_plan(
        self,
        run: FitRun,
        entries: dict[str, list[ModelEntry]],
        owners: dict[tuple[str, int], tuple[CrossFitEstimator, list[Job]]],
        nuisance_jobs: list[Job],
    ) -> list[Deferred]:
        """Treatment jobs, each built as soon as the nuisance models it needs are fitted.

        Shared nuisance predictions (``Derivation.predicts``) are submitted as soon as their
        own nuisance model is fitted, ahead of the treatment models that combine them.
        """
        context = _NeedContext(run, dict(owners))
        derivations = [(entry, self._derivation(run, entry)) for entry in entries[TREATMENT]]
        deferred = []
        shared: dict[tuple[tuple[str, int], str], Any] = {}
        for _, derivation in derivations:
            for need, (design, method) in zip(
                derivation.needs, derivation.predicts or (), strict=False
            ):
                shared.setdefault((need, method), design)
        for (need, method), design in shared.items():
            build = partial(self._build_need_predictions, context, need, design, method)
            deferred.append(Deferred(_after(owners, (need,)), build))
        for entry, derivation in derivations:
            build = partial(self._build_treatment_jobs, context, entry, derivation)
            deferred.append(Deferred(_after(owners, derivation.needs), build))
        return deferred

    def _need_source(
        self, context: _NeedContext, need: tuple[str, int], futures: dict[str, Future]
    ) -> tuple[Any, list[Any]]:
        """What rebuilds a nuisance estimator on a worker: (template, split, folds) and the
        fold results, or ``None`` and the reused (prefitted) estimator put on the cluster."""
        run = context.run
        if need in context.owners:
            cfe, all_jobs = context.owners[need]
            jobs = _used_jobs(all_jobs)
            source = (cfe.clone(), run.assignment.refs[need], tuple(j.fold for j in jobs))
            return source, [futures[j.key] for j in jobs]
        if need not in context.scattered:
            reused = copy.copy(self._cfe(*need))
            reused._split = run.assignment.refs[need]
            reused._context = None
            context.scattered[need] = run.planner.scatter(reused)
        return None, [context.scattered[need]]

    def _need_predictions(
        self,
        context: _NeedContext,
        need: tuple[str, int],
        design: Any,
        method: str,
        futures: dict[str, Future],
    ) -> list[Any]:
        """Per training partition, the need's predictions (computed once, then shared)."""
        key = (need, method)
        if key not in context.predicted:
            source, source_args = self._need_source(context, need, futures)
            context.predicted[key] = context.run.planner.map_partitions(
                predict_need_partition,
                context.run.parts,
                name=f"predict-{need[0]}",
                source=source,
                source_args=source_args,
                design=design,
                method=method,
            )
        return context.predicted[key]

    def _build_need_predictions(
        self,
        context: _NeedContext,
        need: tuple[str, int],
        design: Any,
        method: str,
        results: dict[str, FitResult],
        futures: dict[str, Future],
    ) -> list[Job]:
        self._need_predictions(context, need, design, method, futures)
        return []

    def _build_treatment_jobs(
        self,
        context: _NeedContext,
        entry: ModelEntry,
        derivation: Derivation,
        results: dict[str, FitResult],
        futures: dict[str, Future],
    ) -> list[Job]:
        run = context.run
        target, weight = derived_columns(entry)
        if derivation.predicts is not None:
            columns = [
                self._need_predictions(context, need, design, method, futures)
                for need, (design, method) in zip(
                    derivation.needs, derivation.predicts, strict=True
                )
            ]
            derived = run.planner.map_partitions(
                derive_from_predictions,
                run.parts,
                *columns,
                name=f"derive-{entry.kind}",
                fn=derivation.fn,
                fn_args=derivation.args,
                needs=derivation.needs,
                target=target,
                weight=weight if derivation.weight else None,
            )
        else:
            derived = self._derive_from_models(
                context, derivation, futures, target, weight, entry.kind
            )
        return self._treatment_jobs(run, entry, derivation, derived, target, weight)

    def _derive_from_models(
        self,
        context: _NeedContext,
        derivation: Derivation,
        futures: dict[str, Future],
        target: str,
        weight: str,
        kind: str,
    ) -> list[Any]:
        sources: list[Any] = []
        source_args: list[Any] = []
        for need in derivation.needs:
            source, args = self._need_source(context, need, futures)
            sources.append(source)
            source_args.extend(args)
        return context.run.planner.map_partitions(
            derive_partition,
            context.run.parts,
            name=f"derive-{kind}",
            fn=derivation.fn,
            fn_args=derivation.args,
            needs=derivation.needs,
            sources=sources,
            source_args=source_args,
            target=target,
            weight=weight if derivation.weight else None,
        )

    def _treatment_jobs(
        self,
        run: FitRun,
        entry: ModelEntry,
        derivation: Derivation,
        derived: list[Any],
        target: str,
        weight: str,
    ) -> list[Job]:
        extra_meta = pd.DataFrame(
            {
                c: pd.Series(dtype=float)
                for c in ([target, weight] if derivation.weight else [target])
            }
        )
        jobs, cfe = self._entry_jobs(run, entry, run.parts, derived, extra_meta=extra_meta)
        if derivation.weight:
            for job in jobs:
                job.spec.row_params["sample_weight"] = weight
        self._run_owners[(entry.kind, entry.ordinal)] = (cfe, jobs)
        return jobs

    def _entry_jobs(
        self,
        run: FitRun,
        entry: ModelEntry,
        parts: Sequence[Any],
        extra_parts: Sequence[Any] = (),
        design: Design | None = None,
        extra_meta: pd.DataFrame | None = None,
    ) -> tuple[list[Job], CrossFitEstimator]:
        stage = self._stage_of(entry.kind)
        cfe = self._cfe(entry.kind, entry.ordinal).clone()
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
            classes = np.asarray(_sorted_values(self._target_classes(entry, whole)))
            check_classes(cfe.estimator_factory, classes, entry.kind)
        if backend == STREAM and classes is not None and "classes" not in fit_params:
            # partial_fit must be told every class on its first call
            fit_params["classes"] = classes
        jobs = cfe.fold_jobs(
            kind=entry.kind,
            ordinal=entry.ordinal,
            stage=stage,
            design=design or self._design(entry.kind, run.data.columns),
            target=entry.target,
            split=split,
            parts=parts,
            extra_parts=extra_parts,
            fit_params=fit_params,
            row_params=run.row_params[(stage, entry.kind)],
            threads=threads,
            train_rows=train_rows(split, run.assignment.fold_strata, cfe.n_folds),
            token=run.token,
        )
        bins = None
        if (
            backend == LOCAL
            and self.fold_strategy != "sklearn"
            and shares_bins(cfe.estimator_factory, cfe.estimator_params, jobs[0].spec.design)
        ):
            # LightGBM: one binned Dataset per worker, subsets per fold and model kind, where
            # rows are trained on more than once; the "sklearn" strategy keeps metalearners'
            # exact per-fit binning
            key = bins_key(
                run.token, cfe.estimator_factory, cfe.estimator_params, jobs[0].spec.design
            )
            if key in run.bins_worth_sharing:
                bins = key
                run.shared_bins = True
        for job in jobs:
            job.backend = backend
            job.meta = (run.assignment.frame._meta, extra_meta)
            job.spec = dataclasses.replace(job.spec, classes=classes, bins=bins)
        _weigh(run, cfe, jobs)
        return jobs, cfe

    def _collect(
        self,
        run: FitRun,
        owners: dict[tuple[str, int], tuple[CrossFitEstimator, list[Job]]],
        results: dict[str, FitResult],
    ) -> dict[tuple[str, int], CrossFitEstimator]:
        fitted = {}
        for (kind, ordinal), (cfe, jobs) in owners.items():
            name = f"{kind} {ordinal}" if self._cardinality(kind) > 1 else kind
            cfe.set_fitted(jobs, results, run.assignment.refs[(kind, ordinal)], run.context, name)
            fitted[(kind, ordinal)] = cfe
        return fitted

    # -- prediction ------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if self._fit_context is None:
            raise ValueError(
                f"This {type(self).__name__} is not fitted yet; call fit before predicting."
            )

    def _check_predict(self, is_oos: Any, oos_method: Any) -> None:
        self._check_fitted()
        if not isinstance(is_oos, bool | np.bool_):
            raise TypeError(f"is_oos must be a bool, got {is_oos!r}")
        if oos_method not in OOS_METHODS:
            raise ValueError(
                f"oos_method {oos_method!r} not supported. Supported values are "
                f"{list(OOS_METHODS)}."
            )

    def _check_model_ordinal(self, kind: str, ordinal: Any) -> None:
        cardinality = self._cardinality(kind)
        if (
            isinstance(ordinal, bool)
            or not isinstance(ordinal, int | np.integer)
            or not 0 <= ordinal < cardinality
        ):
            raise ValueError(
                f"model_ord for {kind} must be an int in 0..{cardinality - 1} (the "
                f"{type(self).__name__} has {cardinality} {kind}s), got {ordinal!r}"
            )

    # -- evaluation ------------------------------------------------------------------------

    def _scoring(self, scoring: dict | None) -> dict[str, list[Any]]:
        """metalearners' scoring: defaults per model kind, replaced by the user's per kind."""
        specs = self.nuisance_model_specifications() | self.treatment_model_specifications()
        defaults = {kind: [default_metric(s.predict_method(self))] for kind, s in specs.items()}
        return defaults | dict(scoring or {})

    def evaluate(
        self,
        X: Any,
        y: Any,
        w: Any,
        is_oos: bool,
        oos_method: str = OVERALL,
        scoring: dict | None = None,
    ) -> dict[str, float]:
        """Score every base model on the rows it models, as metalearners does (reference §2.6).

        Keys: ``{kind}_{scorer}`` (one model of a kind), ``{kind}_{i}_{scorer}`` (one per
        variant), ``{kind}_{k}_vs_0_{scorer}`` (treatment models), ``custom_scorer_{idx}``
        for callables. ``is_oos=False`` means X, y, w are exactly the training data (scores
        of cross-fitted predictions). Computed over partitions on the cluster: see
        :mod:`dask_meta.evaluation` for which scorers are summed and which are gathered.
        """
        self._check_predict(is_oos, oos_method)
        self._require_treatment_fitted()
        specs = self.nuisance_model_specifications() | self.treatment_model_specifications()
        validate_scoring(scoring, list(specs))
        plan = self._evaluation_plan(bool(is_oos), oos_method, self._scoring(scoring))
        check_items(plan.items)
        assert self._fit_context is not None
        context = self._fit_context
        data = training_frame(X, y, w)
        got = data.columns
        if got.as_numpy != context.columns.as_numpy or set(got.names) != set(context.columns.names):
            raise ValueError(
                f"X has the columns {list(got.names)} but the learner was fitted on "
                f"{list(context.columns.names)}"
            )
        frame_parts = partitions(data.frame)
        fold_parts = None
        if not is_oos:
            if len(frame_parts) != len(context.lengths):
                raise ValueError(
                    f"is_oos=False needs exactly the training data, but X has "
                    f"{len(frame_parts)} partitions where the training data had "
                    f"{len(context.lengths)}; use is_oos=True for other data"
                )
            fold_parts = partitions(context.fold_frame)
        return evaluate_partitions(self._predict_client(), frame_parts, fold_parts, context, plan)

    def _evaluation_plan(
        self, is_oos: bool, oos_method: str, scoring: dict[str, list[Any]]
    ) -> PartitionPlan:
        """Which models are scored on which rows against which targets (per learner)."""
        raise NotImplementedError(f"{type(self).__name__} does not define its evaluation")

    def _feature_names(self) -> tuple[Any, ...]:
        assert self._fit_context is not None
        return tuple(self._fit_context.columns.names)

    def _evaluated(
        self,
        kind: str,
        scoring: dict[str, list[Any]],
        ordinal: int = 0,
        index: str = "",
        key: str | None = None,
        oos: tuple[bool, str] | None = None,
    ) -> Evaluated:
        """An evaluated model of ``kind``; ``index`` is "" (one model), "k_" or "k_vs_0_".

        ``oos``: (is_oos, oos_method), checked against the model as its predict would.
        """
        specs = self.nuisance_model_specifications() | self.treatment_model_specifications()
        method = specs[kind].predict_method(self)
        cfe = self._cfe(kind, ordinal)
        if oos is not None:
            # what metalearners' scorers would call raises what it raises (e.g. no mean of
            # classes for accuracy out of sample)
            used = {m for m in map(response_method, scoring[kind]) if m is not None}
            for used_method in sorted(used) if cfe.is_classifier else [method]:
                cfe.check_predict_args(oos[0], used_method, oos[1])
        classes = np.asarray(cfe.classes_) if method == "predict_proba" else None
        return Evaluated(f"{kind}_{index}", method, classes, tuple(scoring[kind]), key)

    # -- explaining ------------------------------------------------------------------------

    def explainer(
        self,
        X: Any = None,
        cate_estimates: Any = None,
        cate_model_factory: Any = None,
        cate_model_params: dict | None = None,
    ) -> Explainer:
        """An :class:`~dask_meta.explain.Explainer` of this learner's CATE.

        With no arguments, the overall treatment models (R and DR only); with all of ``X``,
        ``cate_estimates`` and ``cate_model_factory``, surrogate models fitted on the
        estimates through the planner (Dask or in-memory data).
        """
        if check_explainer_arguments(X, cate_estimates, cate_model_factory):
            return Explainer.from_estimates(
                X,
                cate_estimates,
                cate_model_factory,
                cate_model_params,
                client=self._predict_client(),
                random_state=self.random_state,
            )
        if TREATMENT_MODEL not in self._treatment_models:
            raise ValueError(
                "The metalearner does not have treatment models; hence X, cate_estimates, "
                "and cate_model_factory need to be defined."
            )
        self._require_treatment_fitted()
        return Explainer(overall_models(self._treatment_models[TREATMENT_MODEL]))

    def feature_importances(
        self,
        feature_names: Collection[str] | None = None,
        normalize: bool = False,
        sort_values: bool = False,
        explainer: Explainer | None = None,
        X: Any = None,
        cate_estimates: Any = None,
        cate_model_factory: Any = None,
        cate_model_params: dict | None = None,
    ) -> list[pd.Series]:
        """Feature importances per non-control variant (metalearners' signature)."""
        if explainer is None:
            explainer = self.explainer(X, cate_estimates, cate_model_factory, cate_model_params)
        return explainer.feature_importances(
            normalize=normalize, feature_names=feature_names, sort_values=sort_values
        )

    def shap_values(
        self,
        X: Any,
        shap_explainer_factory: Any,
        shap_explainer_params: dict | None = None,
        explainer: Explainer | None = None,
        cate_estimates: Any = None,
        cate_model_factory: Any = None,
        cate_model_params: dict | None = None,
    ) -> list[Any]:
        """SHAP values per non-control variant on X (numpy for in-memory X, lazy for Dask)."""
        if explainer is None:
            explainer = self.explainer(
                None if cate_estimates is None else X,
                cate_estimates,
                cate_model_factory,
                cate_model_params,
            )
        return explainer.shap_values(X, shap_explainer_factory, shap_explainer_params)

    def _predict_client(self) -> Client:
        client = self.client or getattr(self, "_client", None)
        if client is not None and getattr(client, "status", "closed") == "running":
            return client
        return resolve_client(None)

    def _map(
        self,
        X: Any,
        is_oos: bool,
        fn: Callable[..., np.ndarray],
        bundle: Any,
        tail: tuple[int, ...],
        name: str,
    ) -> Any:
        from dask_meta.crossfit import map_predict

        assert self._fit_context is not None
        client = self._predict_client() if not is_dask(X) else None
        return map_predict(X, self._fit_context, is_oos, fn, bundle, tail, client, name)

    def predict_nuisance(
        self,
        X: Any,
        model_kind: str,
        model_ord: int,
        is_oos: bool,
        oos_method: str = OVERALL,
    ) -> Any:
        """Predict with one nuisance model: ``(n,)`` or ``(n, n_classes)``."""
        return self._predict_model(X, model_kind, model_ord, is_oos, oos_method, NUISANCE)

    def predict_treatment(
        self,
        X: Any,
        model_kind: str,
        model_ord: int,
        is_oos: bool,
        oos_method: str = OVERALL,
    ) -> Any:
        """Predict with one treatment model: ``(n,)``."""
        return self._predict_model(X, model_kind, model_ord, is_oos, oos_method, TREATMENT)

    def _predict_model(
        self, X: Any, kind: str, ordinal: int, is_oos: bool, oos_method: str, stage: str
    ) -> Any:
        specs = (
            self.nuisance_model_specifications()
            if stage == NUISANCE
            else self.treatment_model_specifications()
        )
        if kind not in specs:
            raise ValueError(
                f"{kind!r} is not a {stage} model of {type(self).__name__}; "
                f"expected one of {sorted(specs)}"
            )
        self._check_predict(is_oos, oos_method)
        self._check_model_ordinal(kind, ordinal)
        cfe = self._cfe(kind, ordinal)
        method = specs[kind].predict_method(self)
        oos = cfe.check_predict_args(is_oos, method, oos_method)
        n_out = cfe._n_outputs(method)
        design = self._design(kind)
        bundle = (cfe, design, method, oos)
        return self._map(
            X,
            is_oos,
            _single_model_partition,
            bundle,
            (n_out,) if n_out > 1 else (),
            f"{kind}-predict",
        )

    def fit_nuisance(
        self,
        X: Any,
        y: Any,
        model_kind: str,
        model_ord: int,
        fit_params: dict | None = None,
        n_jobs_cross_fitting: int | None = None,
        cv: Any = None,
    ) -> MetaLearner:
        """Fit one nuisance model on (X, y), y being that model's own target."""
        if model_kind not in self.nuisance_model_specifications():
            raise ValueError(f"{model_kind!r} is not a nuisance model of {type(self).__name__}")
        if model_kind in self._prefitted_nuisance_models:
            return self
        self._fit_one(X, y, model_kind, model_ord, fit_params, n_jobs_cross_fitting, cv)
        return self

    def fit_treatment(
        self,
        X: Any,
        y: Any,
        model_kind: str,
        model_ord: int,
        fit_params: dict | None = None,
        n_jobs_cross_fitting: int | None = None,
        cv: Any = None,
    ) -> MetaLearner:
        """Fit one treatment model on (X, y), y being that model's own target."""
        if model_kind not in self.treatment_model_specifications():
            raise ValueError(f"{model_kind!r} is not a treatment model of {type(self).__name__}")
        self._fit_one(X, y, model_kind, model_ord, fit_params, n_jobs_cross_fitting, cv)
        return self

    def _fit_one(
        self,
        X: Any,
        y: Any,
        kind: str,
        ordinal: int,
        fit_params: dict | None,
        n_jobs_cross_fitting: int | None,
        cv: Any,
    ) -> None:
        if cv is not None:
            raise ValueError(
                "cv is not supported by dask_meta; folds come from fold_strategy "
                "('partition', 'hash' or 'sklearn')"
            )
        cardinality = self._cardinality(kind)
        if not isinstance(ordinal, int) or not 0 <= ordinal < cardinality:
            raise ValueError(f"model_ord for {kind} must be in 0..{cardinality - 1}, got {ordinal}")
        cfe = self._cfe(kind, ordinal).clone()
        fit_single(
            cfe,
            X,
            y,
            fit_params=fit_params,
            n_jobs_cross_fitting=n_jobs_cross_fitting,
            feature_set=self.feature_set[kind],
            kind=kind,
            ordinal=ordinal,
        )
        models = self._nuisance_models if kind in self._nuisance_models else self._treatment_models
        models[kind][ordinal] = cfe


def _single_model_partition(X: pd.DataFrame, folds: pd.DataFrame | None, bundle: Any) -> np.ndarray:
    cfe, design, method, oos = bundle
    return cfe.block_predict(design.matrix(X), folds, method, oos)


def fit_single(
    cfe: CrossFitEstimator,
    X: Any,
    y: Any,
    *,
    fit_params: dict | None = None,
    n_jobs_cross_fitting: int | None = None,
    feature_set: Any = None,
    kind: str = "model",
    ordinal: int = 0,
) -> CrossFitEstimator:
    """Fit one cross-fit estimator on (X, y) through the planner (all rows, its own CV)."""
    fit_estimators(
        [cfe],
        X,
        [y],
        fit_params=fit_params,
        n_jobs_cross_fitting=n_jobs_cross_fitting,
        feature_set=feature_set,
        kind=kind,
        ordinals=[ordinal],
    )
    return cfe


def fit_estimators(
    cfes: Sequence[CrossFitEstimator],
    X: Any,
    ys: Sequence[Any],
    *,
    fit_params: dict | None = None,
    n_jobs_cross_fitting: int | None = None,
    feature_set: Any = None,
    kind: str = "model",
    ordinals: Sequence[int] | None = None,
    target_names: Sequence[str] | None = None,
) -> None:
    """Fit cross-fit estimators of one configuration on X, each on its own target, in one run.

    X is read once: one training frame holds X and every target, and all the estimators'
    jobs go through one planner. ``cfes[i]`` is fitted on ``ys[i]``; several targets are for
    regressors only (e.g. one CATE surrogate per variant). ``target_names`` name the targets
    in errors (default ``y``).
    """
    if len(cfes) != len(ys) or not cfes:
        raise ValueError("fit_estimators needs one target per estimator")
    cfe = cfes[0]
    ordinals = list(ordinals) if ordinals is not None else list(range(len(cfes)))
    names = list(target_names) if target_names is not None else ["y"] * len(cfes)
    if len(cfes) > 1 and cfe.is_classifier:
        raise ValueError("several targets in one fit are supported for regressors only")
    if fit_params is not None and not isinstance(fit_params, dict):
        raise TypeError(f"fit_params must be a dict or None, got {type(fit_params).__name__}")
    client = resolve_client(cfe.client)
    resolve_threads(
        requested_threads(cfe.estimator_params), cluster_shape(client), 1, f"the {kind} model"
    )
    n_mem = _n_rows_in_memory(X)
    static: dict[str, Any] = {}
    row_params: dict[str, str] = {}
    row_values: dict[str, tuple[str, Any]] = {}
    for name, value in (fit_params or {}).items():
        if _is_row_param(value, n_mem):
            column = f"{PARAM_PREFIX}{len(row_values)}__"
            row_values[column] = (f"fit_params[{name!r}]", value)
            row_params[name] = column
        else:
            static[name] = value
    targets = {f"{PARAM_PREFIX}target_{i}__": (names[i], v) for i, v in enumerate(ys[1:], 1)}
    data = training_frame(X, ys[0], None, row_values | targets, y_name=names[0])
    target_columns = [Y_COL, *targets]
    classification = cfe.is_classifier
    seed = (
        int(cfe.random_state)
        if cfe.random_state is not None
        else int(np.random.SeedSequence().entropy % (2**32))  # type: ignore[operator]
    )
    request = SplitRequest(
        variants=None,
        n_folds=cfe.n_folds,
        stratify=Y_COL if classification else None,
        seed_key=kind,
    )
    requests: dict[Hashable, SplitRequest] = {(kind, ordinal): request for ordinal in ordinals}
    categorical = unknown_categoricals(data)
    stats = scan(
        client,
        data.frame,
        classification,
        fold_key=cfe.fold_key,
        hash_specs=hash_specs_for(requests, seed) if cfe.fold_strategy == "hash" else (),
        keep_arrays=cfe.fold_strategy == "sklearn",
        categorical=categorical,
    )
    y_nan = sum(s.y_nan for s in stats)
    if y_nan:
        raise ValueError(f"{names[0]} has {y_nan} missing values (NaN)")
    if categorical:
        # as in a learner's fit: the same categories in every partition (see _begin_run)
        data = with_categories(data, [s.categories for s in stats])
    assignment = assign(
        cfe.fold_strategy,
        data.frame,
        stats,
        requests,
        seed=seed if cfe.fold_strategy != "sklearn" else cfe.random_state,  # type: ignore[arg-type]
        classification=classification,
        fold_key=cfe.fold_key,
    )
    split = assignment.refs[(kind, ordinals[0])]
    if classification and cfe.n_folds > 1:
        classes = {s[1] for s in strata_of_fold(split, assignment.fold_strata, None)}
        for k in range(cfe.n_folds):
            have = {s[1] for s, c in strata_of_fold(split, assignment.fold_strata, k).items() if c}
            if have != classes:
                raise ValueError(
                    f"the training rows of fold {k} lack the classes "
                    f"{_sorted_values(classes - have)}; use fewer folds"
                )
    planner = Planner(client, Limits(n_jobs_cross_fitting, None), label="dask_meta-crossfit")
    try:
        parts = planner.persist_partitions(assignment.frame, "training-frame")
        if target_names is not None:
            # named targets are estimates (CATE surrogates): metalearners rejects NaN and inf
            bad = sum(
                planner.gather_partitions(
                    _non_finite_counts, parts, "check-targets", columns=target_columns
                ),
                np.zeros(len(target_columns), dtype=np.int64),
            )
            for name, n_bad in zip(names, bad):
                if n_bad:
                    raise ValueError(f"{name} has {n_bad} missing or infinite values")
        fingerprints = planner.gather_partitions(
            fingerprint_features, parts, "fingerprint", names=data.columns.names
        )
        context = fit_context(data.columns, assignment, [s.n for s in stats], fingerprints)
        backend = backend_of(cfe.estimator_factory)
        threads = resolve_threads(
            requested_threads(cfe.estimator_params) if backend != COLLECTION else -1,
            planner.shape,  # type: ignore[arg-type]
            cfe.n_models,
            f"the {kind} model",
        )
        if backend == STREAM and classification and "classes" not in static:
            whole = strata_of_fold(split, assignment.fold_strata, None)
            static = {**static, "classes": np.asarray(sorted({s[1] for s in whole}))}
        design = Design(data.columns.select(feature_set, kind), data.columns.as_numpy)
        token = new_token()
        jobs_of = [
            each.fold_jobs(
                kind=kind,
                ordinal=ordinal,
                stage=NUISANCE,
                design=design,
                target=target,
                split=assignment.refs[(kind, ordinal)],
                parts=parts,
                fit_params=static,
                row_params=row_params,
                threads=threads,
                train_rows=train_rows(split, assignment.fold_strata, cfe.n_folds),
                token=token,
            )
            for each, ordinal, target in zip(cfes, ordinals, target_columns)
        ]
        for job in (j for jobs in jobs_of for j in jobs):
            job.backend = backend
            job.meta = (assignment.frame._meta, None)
        results = planner.run([j for jobs in jobs_of for j in jobs])
        for each, ordinal, jobs in zip(cfes, ordinals, jobs_of):
            each.set_fitted(jobs, results, assignment.refs[(kind, ordinal)], context, kind)
    except BaseException:
        # the persisted frame and any fits in flight go with the failure (see _fit_stages)
        planner.cancel_all()
        raise
    finally:
        planner.release()
    report = planner.report_frame()
    for each in cfes:
        each.fit_report_ = report


def _non_finite_counts(part: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    values = part[list(columns)].to_numpy(dtype=float)
    return (~np.isfinite(values)).sum(axis=0).astype(np.int64)


def n_outputs_of(learner: MetaLearner, kind: str) -> int:
    cfe = learner._cfe(kind, 0)
    method = (learner.nuisance_model_specifications() | learner.treatment_model_specifications())[
        kind
    ].predict_method(learner)
    return cfe._n_outputs(method)


def check_oos_for(cfe: CrossFitEstimator, method: str, oos_method: str) -> None:
    """Validate an oos_method used for the out-of-split rows of an in-sample prediction."""
    validate_oos_method(oos_method, cfe.enable_overall, cfe.n_folds)
    if oos_method == "median" and method == "predict_proba":
        raise ValueError(
            "Cannot create median of class probabilities. Please use a different oos_method."
        )


def _weigh(run: FitRun, cfe: CrossFitEstimator, jobs: Sequence[Job]) -> None:
    """Expected seconds per training row, for longest-first ordering (DESIGN §5).

    With the auto plan's calibration: its estimate at the job's threads. Otherwise the rows
    alone, times the number of classes of a multi-class classifier (boosting grows one tree
    per class and round: a 3-variant LightGBM propensity model costs about three outcome
    models on as many rows).
    """
    calibration = run.calibrations.get(_model_name(cfe.estimator_factory, cfe.estimator_params))
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


def _model_name(factory: type, params: dict[str, Any]) -> str:
    """A base model's class and params without its thread count (one calibration each)."""
    shown = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()) if k not in THREAD_PARAMS)
    return f"{factory.__name__}({shown})"


def _calibration(
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
