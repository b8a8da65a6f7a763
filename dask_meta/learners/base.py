"""What a learner is: its model tables, its construction and validation, its public methods.

``MetaLearner`` is the shared base of the S-, T-, X-, R- and DR-learners. Each learner
declares small tables (:mod:`dask_meta.learners.tables`: which models, on which rows, with
which targets and splits, and how treatment targets derive from nuisance predictions) and
its per-partition prediction formulas. A call to fit is a
:class:`~dask_meta.learners.fit_run.FitRun` (the data on the cluster, its folds, its checks),
whose jobs :mod:`dask_meta.learners.jobs` builds and the planner runs; docs/architecture.md
follows one fit through these modules.
"""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from collections.abc import Collection
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client

from dask_meta import persistence
from dask_meta._constants import (
    NUISANCE,
    OOS_METHODS,
    OVERALL,
    PROPENSITY_MODEL,
    TREATMENT,
    TREATMENT_MODEL,
)
from dask_meta._typing import Matrix, Vector
from dask_meta.backends import Design, requested_threads
from dask_meta.cluster import ClusterShape, resolve_client
from dask_meta.crossfit import (
    CrossFitEstimator,
    ModelPrediction,
    fit_single,
    model_partition,
    validate_oos_method,
)
from dask_meta.data import Frame, check_columns, is_dask, on_cluster, training_frame
from dask_meta.evaluation import (
    Evaluated,
    PartitionPlan,
    check_items,
    default_metric,
    evaluate_data,
    response_method,
    validate_scoring,
)
from dask_meta.explain import Explainer, check_explainer_arguments, overall_models
from dask_meta.factories import check_factory
from dask_meta.folds import scan, validate_strategy
from dask_meta.learners._common import LinearCate
from dask_meta.learners.arguments import (
    check_enable_overall,
    check_model_types,
    check_prefitted,
    check_synchronize,
    combine_propensity,
    init_args,
    model_dict,
)
from dask_meta.learners.checks import check_input_dtypes, check_values
from dask_meta.learners.fit_run import FitRun
from dask_meta.learners.fitting import fit_stages
from dask_meta.learners.tables import Derivation, ModelEntry, ModelSpecification
from dask_meta.loading import check_loadable, class_objects, scorer_objects
from dask_meta.plan import check_plan
from dask_meta.planner import Limits
from dask_meta.prediction import PartitionFn, Prediction, map_predict
from dask_meta.registry import register
from dask_meta.training import FitContext, persists

__all__ = [
    "Derivation",
    "FitRun",
    "MetaLearner",
    "ModelEntry",
    "ModelSpecification",
    "check_oos_for",
    "n_outputs_of",
]

logger = logging.getLogger("dask_meta")


# --- resolving the constructor arguments -------------------------------------------------


class MetaLearner(ABC):
    """Shared base of the S-, T-, X-, R- and DR-learners (metalearners' ``MetaLearner``).

    Constructor arguments are metalearners'; ``fold_strategy``, ``fold_key``, ``client``,
    ``persist`` and ``plan`` are dask-meta's own keyword-only arguments. As in metalearners,
    per-model arguments are resolved (and validated) at construction, so errors surface at
    once.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register(cls)

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
        self.nuisance_model_factory = combine_propensity(
            propensity_model_factory, nuisance_model_factory, names_n
        )
        self.nuisance_model_params = combine_propensity(
            propensity_model_params or {}, nuisance_model_params or {}, names_n
        )
        self.treatment_model_factory = model_dict(treatment_model_factory, names_t)
        self.treatment_model_params = model_dict(treatment_model_params or {}, names_t)
        self.n_folds = model_dict(n_folds, names_n | names_t)
        for kind, value in self.n_folds.items():
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
                raise ValueError(f"{kind} n_folds must be a positive int, got {value!r}")
        self.enable_overall = check_enable_overall(self, enable_overall, names_n | names_t)
        self.feature_set = model_dict(feature_set, names_n | names_t)
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
                check_prefitted(self, kind, models)
            self._nuisance_models |= copy.deepcopy(fitted_nuisance_models)
            self._prefitted_nuisance_models |= set(fitted_nuisance_models)
        if PROPENSITY_MODEL in names_n and fitted_propensity_model is not None:
            check_prefitted(self, PROPENSITY_MODEL, [fitted_propensity_model])
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

    def _new_cfe(self, kind: str, factory: Any, params: dict) -> CrossFitEstimator:
        check_factory(factory, f"the factory for {kind}")
        cfe = CrossFitEstimator(
            n_folds=self.n_folds[kind],
            estimator_factory=factory,
            estimator_params=params,
            enable_overall=self.enable_overall[kind],
            random_state=self.random_state,
            fold_strategy=self.fold_strategy,
            fold_key=self.fold_key,
            client=self.client,
        )
        specs = self.nuisance_model_specifications() | self.treatment_model_specifications()
        cfe._probabilities = specs[kind].predict_method(self) == "predict_proba"
        return cfe

    def _validate_models(self) -> None:
        """Regressors where ``predict`` is used, classifiers where ``predict_proba`` is."""
        check_model_types(self)

    @property
    def _fit_needs_overall(self) -> frozenset[str]:
        """Nuisance kinds whose overall models the fit itself predicts with (on the rows of
        the other variants): their ``enable_overall`` cannot be False."""
        return frozenset()

    @classmethod
    def _validate_n_variants(cls, n_variants: Any) -> None:
        if isinstance(n_variants, bool) or not isinstance(n_variants, int) or n_variants < 2:
            raise ValueError("n_variants needs to be an integer strictly greater than 1.")
        if n_variants > 2 and not cls._supports_multi_treatment():
            raise NotImplementedError(
                f"{cls.__name__} only supports binary treatment variants; n_variants={n_variants}"
            )

    @property
    def init_args(self) -> dict[str, Any]:
        """Arguments that rebuild an unfitted learner with the same configuration."""
        return init_args(self)

    def save(self, path: Any, **kwargs: Any) -> str:
        """Save this fitted learner to a directory; ``dask_meta.load(path)`` loads it.

        Keyword arguments (``trusted``, ``folds``, ``overwrite``, ``storage_options``): see
        :func:`dask_meta.persistence.save`.
        """
        return persistence.save(self, path, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["client"] = None
        state.pop("_client", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # the cross-fit estimators pickle a slim context: give them the learner's whole one
        cfes = {**self._nuisance_models, **self._treatment_models}
        if self._fit_context is None:
            return
        for cfe in (cfe for per_kind in cfes.values() for cfe in per_kind):
            context = cfe._context
            if context is not None and context.fingerprints == self._fit_context.fingerprints:
                cfe._context = self._fit_context

    # -- fitting ---------------------------------------------------------------------------

    def fit(
        self,
        X: Matrix,
        y: Vector,
        w: Vector,
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
        X: Matrix,
        y: Vector,
        w: Vector,
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
        X: Matrix,
        y: Vector,
        w: Vector,
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
        check_synchronize(self, synchronize)

    def _fit_stages(
        self,
        X: Matrix,
        y: Vector,
        w: Vector,
        stages: tuple[str, ...],
        n_jobs_cross_fitting: int | None,
        fit_params: dict | None,
        synchronize: bool,
        n_jobs_base_learners: int | None,
    ) -> None:
        self._validate_fit_args(synchronize)
        limits = Limits(n_jobs_cross_fitting, n_jobs_base_learners)
        fit_stages(self, X, y, w, stages, limits, fit_params, bool(synchronize))

    def _after_fit(self, run: FitRun, stages: tuple[str, ...]) -> None:
        """Hook for learner state computed at fit time."""

    def _persists(self, frame: Any, n_rows: int, shape: ClusterShape) -> bool:
        """Whether fit keeps a training frame of ``n_rows`` in the cluster's memory
        (``persist``; see :func:`dask_meta.training.persists`)."""
        return persists(self.persist, frame, n_rows, shape)

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

    def _cfe(self, kind: str, ordinal: int) -> CrossFitEstimator:
        if kind in self._nuisance_models:
            return self._nuisance_models[kind][ordinal]
        return self._treatment_models[kind][ordinal]

    def _stage_of(self, kind: str) -> str:
        return NUISANCE if kind in self.nuisance_model_specifications() else TREATMENT

    def _cardinality(self, kind: str) -> int:
        specs = self.nuisance_model_specifications() | self.treatment_model_specifications()
        return specs[kind].cardinality(self)

    def _design(self, kind: str, columns: Any = None) -> Design:
        assert self._fit_context is not None or columns is not None
        cols = columns if columns is not None else self._fit_context.columns  # type: ignore[union-attr]
        return Design(cols.select(self.feature_set[kind], kind), cols.as_numpy)

    def _derivation(self, run: FitRun, entry: ModelEntry) -> Derivation:
        """How a treatment model's target comes from nuisance predictions (X, R, DR)."""
        raise NotImplementedError(f"{type(self).__name__} has no treatment models")

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
        X: Matrix,
        y: Vector,
        w: Vector,
        is_oos: bool,
        oos_method: str = OVERALL,
        scoring: dict | None = None,
    ) -> dict[str, float]:
        """Score every base model on the rows it models, as metalearners does.

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
        client = self._predict_client()
        used = {kind: scorers for kind, scorers in (scoring or {}).items() if kind in specs}
        check_loadable(client, self._model_classes() | scorer_objects(used))
        # a model of one variant's rows has no score without them (metalearners raises)
        data = self._labelled_frame(X, y, w, client, self._models_per_variant)
        return evaluate_data(client, data, bool(is_oos), self._fit_context, plan)

    #: whether some base models train on (and are scored on) one variant's rows
    _models_per_variant = True

    def _labelled_frame(
        self, X: Matrix, y: Vector, w: Vector, client: Client, every_variant: bool
    ) -> Frame:
        """X, y and w of ``evaluate`` and the ATE: X against the fit's columns and dtypes,
        then the values fit checks in y and w (a cheap pass over them), with
        ``every_variant`` present if asked."""
        assert self._fit_context is not None
        data = training_frame(X, y, w)
        check_columns(data.columns, self._fit_context.columns)
        check_input_dtypes(data, self.is_classification)
        data = on_cluster(data, client)
        stats = scan(client, data.frame, self.is_classification)
        check_values(self, stats, every_variant=every_variant)
        return data

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
        X: Matrix | None = None,
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
            assert X is not None
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
        columns = None if self._fit_context is None else self._fit_context.columns
        return Explainer(overall_models(self._treatment_models[TREATMENT_MODEL]), columns)

    def feature_importances(
        self,
        feature_names: Collection[str] | None = None,
        normalize: bool = False,
        sort_values: bool = False,
        explainer: Explainer | None = None,
        X: Matrix | None = None,
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
        X: Matrix,
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

    def _running_client(self) -> Client | None:
        client = self.client or getattr(self, "_client", None)
        running = client is not None and getattr(client, "status", "closed") == "running"
        return client if running else None

    def _predict_client(self) -> Client:
        return self._running_client() or resolve_client(None)

    def _model_classes(self) -> dict[str, type]:
        """The fitted models' classes, which every prediction sends (see :mod:`loading`)."""
        cfes = {**self._nuisance_models, **self._treatment_models}
        return {
            name: cls
            for kind, per_kind in cfes.items()
            for cfe in per_kind
            for name, cls in class_objects(f"the {kind} model", cfe.model_classes).items()
        }

    def _map(
        self,
        X: Any,
        is_oos: bool,
        fn: PartitionFn,
        bundle: Any,
        tail: tuple[int, ...],
        name: str,
    ) -> Any:
        """``fn(X_part, folds_part, bundle)`` over X's partitions (see :func:`map_predict`)."""
        assert self._fit_context is not None
        client = self._predict_client() if not is_dask(X) else None
        if (known := client or self._running_client()) is not None:
            check_loadable(known, self._model_classes())
        context = self._fit_context
        return map_predict(X, context, is_oos, fn, bundle, tail, client, name, threads_of=known)

    def predict(self, X: Matrix, is_oos: bool, oos_method: str = OVERALL) -> Any:
        """The CATE of every variant against variant 0: ``(n, n_variants - 1, n_outputs)``.

        For classification the S- and T-learner give the difference of every class's
        probability; the X-, R- and DR-learner ``[-tau, tau]`` for the positive class, as
        metalearners does.
        """
        return self._map_prediction(X, is_oos, self._cate(is_oos, oos_method))

    def _map_prediction(self, X: Any, is_oos: bool, prediction: Prediction) -> Any:
        return self._map(
            X, is_oos, prediction.fn, prediction.bundle, prediction.tail, prediction.name
        )

    @abstractmethod
    def _cate(self, is_oos: bool, oos_method: str) -> Prediction:
        """The CATE prediction that ``predict`` maps over X (each learner's own)."""

    #: the model kinds of :meth:`_linear_cate`, known before the fit
    _linear_cate_kinds: tuple[str, ...] = ()

    def _linear_cate(self, oos_method: str) -> LinearCate | None:
        """The CATE as a sum of single models' predictions, if it is one."""
        return None

    def predict_nuisance(
        self,
        X: Matrix,
        model_kind: str,
        model_ord: int,
        is_oos: bool,
        oos_method: str = OVERALL,
    ) -> Any:
        """Predict with one nuisance model: ``(n,)`` or ``(n, n_classes)``."""
        return self._predict_model(X, model_kind, model_ord, is_oos, oos_method, NUISANCE)

    def predict_treatment(
        self,
        X: Matrix,
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
        return self._map(
            X,
            is_oos,
            model_partition,
            ModelPrediction(cfe, self._design(kind), method, oos),
            (n_out,) if n_out > 1 else (),
            f"{kind}-predict",
        )

    def fit_nuisance(
        self,
        X: Matrix,
        y: Vector,
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
        X: Matrix,
        y: Vector,
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
        X: Matrix,
        y: Vector,
        kind: str,
        ordinal: int,
        fit_params: dict | None,
        n_jobs_cross_fitting: int | None,
        cv: Any,
    ) -> None:
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
            cv=cv,
        )
        models = self._nuisance_models if kind in self._nuisance_models else self._treatment_models
        models[kind][ordinal] = cfe


def n_outputs_of(learner: MetaLearner, kind: str) -> int:
    cfe = learner._cfe(kind, 0)
    method = (learner.nuisance_model_specifications() | learner.treatment_model_specifications())[
        kind
    ].predict_method(learner)
    return cfe._n_outputs(method)


def check_oos_for(
    cfe: CrossFitEstimator, method: str, oos_method: str, is_oos: bool = True
) -> None:
    """Validate the oos_method a prediction uses: for every row out of sample, or for the
    out-of-split rows in-sample (none where the split covers every row)."""
    if not is_oos and cfe._split is not None and cfe._split.covers_every_row:
        return
    validate_oos_method(oos_method, cfe.enable_overall, cfe.n_folds)
    if oos_method == "median" and method == "predict_proba":
        raise ValueError(
            "Cannot create median of class probabilities. Please use a different oos_method."
        )
