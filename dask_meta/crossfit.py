"""``CrossFitEstimator`` on Dask: ``n_folds`` fold models plus the overall model.

Semantics follow metalearners' ``CrossFitEstimator``: in-sample prediction
gives each row the prediction of the fold model that did not see it; out-of-sample
prediction uses the overall model or the mean / median of the fold models. Fits go through
the planner as futures (:func:`fit_estimators`, the one fit pipeline of
:mod:`dask_meta.training`); predictions are lazy, per partition (:mod:`dask_meta.prediction`).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client, Future
from sklearn.base import BaseEstimator, is_classifier, is_regressor

from dask_meta._constants import MEAN, MEDIAN, NUISANCE, OOS_METHODS, OVERALL, PARAM_PREFIX, Y_COL
from dask_meta._typing import Matrix, Vector
from dask_meta.backends import (
    COLLECTION,
    STREAM,
    Design,
    FitResult,
    FitSpec,
    RowSelection,
    backend_of,
    predict_block,
    requested_threads,
    thread_param_name,
    wrapped_estimator,
)
from dask_meta.cluster import cluster_shape, resolve_client
from dask_meta.data import is_dask, on_cluster, training_frame
from dask_meta.factories import check_factory, flatten
from dask_meta.folds import PartitionStats, SplitRef, SplitRequest
from dask_meta.loading import callable_params, check_loadable, model_objects
from dask_meta.planner import Job, Limits, Planner, fit_key, resolve_threads
from dask_meta.prediction import map_predict
from dask_meta.runtime import new_token
from dask_meta.training import (
    FitContext,
    FoldSettings,
    RowParams,
    assign_folds,
    place,
    rows_in_memory,
    sorted_values,
)

# --- the estimator ---------------------------------------------------------------------------


def validate_oos_method(oos_method: Any, enable_overall: bool, n_folds: int) -> None:
    if oos_method not in OOS_METHODS:
        raise ValueError(
            f"oos_method {oos_method!r} not supported. Supported values are {list(OOS_METHODS)}."
        )
    if oos_method == OVERALL and not enable_overall:
        raise ValueError(
            "oos_method='overall' needs the overall model, but enable_overall is False"
        )
    if n_folds == 1 and oos_method != OVERALL:
        raise ValueError(
            "Cross-fitting is deactivated (n_folds=1), so only oos_method='overall' can be used."
        )


class CrossFitEstimator:
    """``n_folds`` fold models plus (``enable_overall``) one model fitted on all rows.

    Same arguments and semantics as metalearners' ``CrossFitEstimator``; fitted through the
    dask-meta planner on Dask (or in-memory) data. ``fold_strategy``, ``fold_key`` and
    ``client`` are dask-meta's own keyword-only arguments.
    """

    def __init__(
        self,
        n_folds: int,
        estimator_factory: Any,
        estimator_params: dict | None = None,
        enable_overall: bool = True,
        random_state: int | None = None,
        *,
        fold_strategy: str = "partition",
        fold_key: str | None = None,
        client: Client | None = None,
    ):
        if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds <= 0:
            raise ValueError(f"n_folds needs to be a strictly positive integer but is {n_folds!r}.")
        if n_folds == 1 and not enable_overall:
            raise ValueError(
                "CrossFitting is deactivated as 'n_folds' is set to 1, but 'enable_overall' is "
                "set to 'False'. Set 'enable_overall' to True to deactivate cross-fitting."
            )
        check_factory(estimator_factory, "estimator_factory")
        self.n_folds = int(n_folds)
        # a partial of a class is that class with merged params (the same estimators)
        self.estimator_factory, self.estimator_params = flatten(
            estimator_factory, dict(estimator_params or {})
        )
        self.enable_overall = enable_overall
        self.random_state = random_state
        self.fold_strategy = fold_strategy
        self.fold_key = fold_key
        self.client = client
        requested_threads(self.estimator_params)  # validates the thread parameter early
        self._estimators: list[Any] = []
        self._overall_estimator: Any = None
        self._split: SplitRef | None = None
        self._context: FitContext | None = None
        self._n_classes: int | None = None
        self.classes_: np.ndarray | None = None
        self.fit_report_: pd.DataFrame | None = None
        #: the learner calls ``predict_proba`` on these models (a propensity model, or an
        #: outcome model of a classification learner): classes and probability columns, even
        #: if the estimator does not say it is a classifier (a duck-typed one)
        self._probabilities = False
        #: training rows no fold of ``cv`` held out (they have no in-sample prediction)
        self._unheld_rows = 0

    # sklearn's is_classifier / is_regressor read this
    @property
    def _estimator_type(self) -> str | None:
        return _estimator_type(self.estimator_factory, self.estimator_params)

    def __sklearn_tags__(self) -> Any:
        instance = _instance(self.estimator_factory, self.estimator_params)
        try:
            return instance.__sklearn_tags__()
        except AttributeError:  # a duck-typed estimator: sklearn's defaults, with its type
            tags = BaseEstimator().__sklearn_tags__()
            tags.estimator_type = self._estimator_type
            return tags

    @property
    def is_classifier(self) -> bool:
        return self._estimator_type == "classifier" or self._probabilities

    # equal by value, as metalearners' dataclass is: the same init parameters and the same
    # fitted models (fitted models compare as themselves, by identity)
    def _value(self) -> tuple:
        classes = None if self.classes_ is None else tuple(np.asarray(self.classes_).tolist())
        return (
            self.n_folds,
            self.estimator_factory,
            self.estimator_params,
            self.enable_overall,
            self.random_state,
            self.fold_strategy,
            self.fold_key,
            self.client,
            self._probabilities,
            self._estimators,
            self._overall_estimator,
            self._split,
            self._n_classes,
            classes,
        )

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, CrossFitEstimator)
        return self._value() == other._value()

    __hash__ = None  # type: ignore[assignment]  # mutable and equal by value

    def clone(self) -> CrossFitEstimator:
        """A new unfitted estimator with the same init parameters."""
        clone = CrossFitEstimator(
            n_folds=self.n_folds,
            estimator_factory=self.estimator_factory,
            estimator_params=self.estimator_params,
            enable_overall=self.enable_overall,
            random_state=self.random_state,
            fold_strategy=self.fold_strategy,
            fold_key=self.fold_key,
            client=self.client,
        )
        clone._probabilities = self._probabilities
        return clone

    def set_params(self, **params: Any) -> CrossFitEstimator:
        """Set init parameters (only those of ``__init__``); clears a previous fit."""
        allowed = {
            "n_folds",
            "estimator_factory",
            "estimator_params",
            "enable_overall",
            "random_state",
            "fold_strategy",
            "fold_key",
            "client",
        }
        unknown = set(params) - allowed
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}; allowed: {sorted(allowed)}")
        merged = {name: getattr(self, name) for name in allowed} | params
        probabilities = self._probabilities
        self.__init__(**merged)  # type: ignore[misc]
        self._probabilities = probabilities
        return self

    @property
    def fitted_folds(self) -> list[int | None]:
        """The models a fit trains: the fold models (if ``n_folds`` > 1), and ``None`` for
        the overall one (if enabled)."""
        folds: list[int | None] = list(range(self.n_folds)) if self.n_folds > 1 else []
        return [*folds, None] if self.enable_overall else folds

    @property
    def n_models(self) -> int:
        """How many models a fit trains (:attr:`fitted_folds`)."""
        return len(self.fitted_folds)

    @property
    def model_classes(self) -> set[type]:
        """The classes of the fitted models (what a prediction sends besides their state)."""
        return {type(m) for m in [*self._estimators, self._overall_estimator] if m is not None}

    @property
    def is_fitted(self) -> bool:
        return self._split is not None and (
            self._overall_estimator is not None or bool(self._estimators)
        )

    # -- jobs ------------------------------------------------------------------------------

    def fold_jobs(
        self,
        *,
        kind: str,
        ordinal: int,
        stage: str,
        design: Design,
        target: str,
        split: SplitRef,
        parts: Sequence[Future],
        extra_parts: Sequence[Future] = (),
        fit_params: dict[str, Any] | None = None,
        row_params: dict[str, str] | None = None,
        threads: int,
        train_rows: dict[int | None, int],
        token: str,
    ) -> list[Job]:
        """The fit jobs of this estimator: one per fold (if n_folds > 1) and the overall one."""
        thread_param = thread_param_name(self.estimator_factory, self.estimator_params)
        jobs = []
        for fold in self.fitted_folds:
            spec = FitSpec(
                factory=self.estimator_factory,
                params=self.estimator_params,
                design=design,
                target=target,
                rows=RowSelection(split.variants, split.fold_col, fold),
                threads=threads,
                thread_param=thread_param,
                fit_params=dict(fit_params or {}),
                row_params=dict(row_params or {}),
                is_classifier=self.is_classifier,
            )
            jobs.append(
                Job(
                    key=fit_key(kind, ordinal, fold, token),
                    stage=stage,
                    kind=kind,
                    ordinal=ordinal,
                    fold=fold,
                    spec=spec,
                    parts=parts,
                    extra_parts=extra_parts,
                    cost=float(train_rows.get(fold, 0)),
                )
            )
        return jobs

    def set_fitted(
        self,
        jobs: Sequence[Job],
        results: dict[str, FitResult],
        split: SplitRef,
        context: FitContext | None,
        name: str,
    ) -> None:
        """Install the fitted fold and overall models; check classifiers saw every class."""
        self.install([j.fold for j in jobs], [results[j.key] for j in jobs], split, context, name)

    def install(
        self,
        folds: Sequence[int | None],
        results: Sequence[FitResult],
        split: SplitRef,
        context: FitContext | None,
        name: str = "model",
    ) -> CrossFitEstimator:
        """Install fit results (fold ``k`` or ``None`` for the overall model) in fold order."""
        by_fold = dict(zip(folds, results, strict=True))
        fold_models = [by_fold[k].model for k in sorted(k for k in by_fold if k is not None)]
        overall = by_fold[None].model if None in by_fold else None
        if self.is_classifier:
            seen = [r.classes for r in results if r.classes is not None]
            classes = by_fold[None].classes if None in by_fold else None
            if classes is None:
                classes = np.unique(np.concatenate(seen))
            for fold, result in by_fold.items():
                got = result.classes
                if got is None or set(got.tolist()) != set(classes.tolist()):
                    raise ValueError(
                        f"fold {fold} of {name} saw the classes {got} but the whole data has "
                        f"{classes}; some folds in cross-fitting had fewer classes than the "
                        "overall data"
                    )
            self.classes_ = np.asarray(classes)
            self._n_classes = len(self.classes_)
        self._estimators = fold_models
        self._overall_estimator = overall
        self._split = split
        self._context = context
        self._name = name  # errors of its predictions name it
        return self

    # -- prediction ------------------------------------------------------------------------

    def _n_outputs(self, method: str) -> int:
        if method == "predict_proba" and self._n_classes:
            return self._n_classes
        return 1

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise ValueError(
                "This CrossFitEstimator is not fitted yet; call fit (or the learner's fit) first."
            )

    def check_predict_args(self, is_oos: bool, method: str, oos_method: str | None) -> str:
        """Validate ``is_oos``/``oos_method`` for ``method``; return the oos method to use."""
        self._check_fitted()
        if not isinstance(is_oos, bool | np.bool_):
            raise TypeError(f"is_oos must be a bool, got {is_oos!r}")
        if not is_oos:
            check_in_sample(self)
            if self.n_folds == 1:
                warnings.warn(
                    "Cross-fitting is deactivated. Using overall model for in sample predictions.",
                    stacklevel=3,
                )
            return OVERALL
        validate_oos_method(oos_method, self.enable_overall, self.n_folds)
        if oos_method == MEAN and method == "predict" and self.is_classifier:
            raise ValueError("Cannot create a mean of classes. Please use a different oos_method.")
        if oos_method == MEDIAN and method == "predict_proba":
            raise ValueError(
                "Cannot create median of class probabilities. Please use a different oos_method."
            )
        return str(oos_method)

    def block_predict(
        self,
        X: Matrix,
        folds: pd.DataFrame | None,
        method: str,
        oos_method: str,
    ) -> np.ndarray:
        """Predict one in-memory block ``(n, n_outputs)``; in-sample where ``folds`` says so."""
        fold_ids = None
        if folds is not None:
            assert self._split is not None
            if self.n_folds > 1:
                fold_ids = self._split.fold_ids(folds)
                if (fold_ids >= len(self._estimators)).any():
                    check_in_sample(self)
        return predict_block(
            self._estimators,
            self._overall_estimator,
            X,
            fold_ids,
            method,
            oos_method,
            self._n_outputs(method),
            # saved before models had names: "model"
            getattr(self, "_name", "model"),
        )

    def _predict(self, X: Any, is_oos: bool, method: str, oos_method: str | None) -> Any:
        oos = self.check_predict_args(is_oos, method, oos_method)
        assert self._context is not None
        n_out = self._n_outputs(method)
        design = Design(self._context.columns.names, self._context.columns.as_numpy)
        return map_predict(
            X,
            self._context,
            is_oos,
            model_partition,
            ModelPrediction(self, design, method, oos),
            (n_out,) if n_out > 1 else (),
            self.client,
            "crossfit-predict",
        )

    def predict(self, X: Matrix, is_oos: bool, oos_method: str | None = None, **kwargs: Any) -> Any:
        """Predict from X: in-sample (``is_oos=False``, exactly the training data) or not."""
        return self._predict(X, is_oos, "predict", oos_method)

    def predict_proba(self, X: Matrix, is_oos: bool, oos_method: str | None = None) -> Any:
        """Class probabilities ``(n, n_classes)``, in-sample or out-of-sample."""
        return self._predict(X, is_oos, "predict_proba", oos_method)

    def score(
        self,
        X: Matrix,
        y: Vector,
        is_oos: bool,
        oos_method: str | None = None,
        sample_weight: Any = None,
    ) -> float:
        """Accuracy for classifiers, R^2 for regressors (in-memory data)."""
        from sklearn.metrics import accuracy_score, r2_score

        if self.is_classifier:
            prediction = self._predict(X, is_oos, "predict_proba", oos_method)
            assert self.classes_ is not None
            labels = self.classes_[np.argmax(np.asarray(prediction), axis=1)]
            return float(accuracy_score(np.asarray(y), labels, sample_weight=sample_weight))
        if is_regressor(self):
            prediction = self.predict(X, is_oos, oos_method)
            return float(
                r2_score(np.asarray(y), np.asarray(prediction), sample_weight=sample_weight)
            )
        raise TypeError("score needs a classifier or a regressor")

    # -- standalone fit --------------------------------------------------------------------

    def fit(
        self,
        X: Matrix,
        y: Vector,
        fit_params: dict | None = None,
        n_jobs_cross_fitting: int | None = None,
        cv: Any = None,
    ) -> CrossFitEstimator:
        """Fit the fold models and the overall model through the planner.

        ``cv`` (in-memory X): one ``(train_indices, test_indices)`` pair per fold instead of
        ``fold_strategy``'s folds (see :func:`cv_fold_ids`).
        """
        fit_single(
            self, X, y, fit_params=fit_params, n_jobs_cross_fitting=n_jobs_cross_fitting, cv=cv
        )
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["client"] = None
        # every prediction ships the estimator to the workers, which need no fold frame (a
        # learner's own pickle keeps its context whole and relinks it on unpickling)
        if state.get("_context") is not None:
            state["_context"] = state["_context"].slim()
        return state


def check_in_sample(cfe: CrossFitEstimator) -> None:
    """Raise if some training rows were held out by no fold of ``cv`` (no in-sample model)."""
    unheld = getattr(cfe, "_unheld_rows", 0)  # saved before cv was taken: 0
    if unheld:
        raise ValueError(
            f"in-sample prediction (is_oos=False) of {getattr(cfe, '_name', 'the model')} "
            f"needs every training row in the test rows of one fold, but {unheld} rows are "
            "in no test set of the cv it was fitted with; use is_oos=True for them"
        )


@dataclass(frozen=True)
class ModelPrediction:
    """What :func:`model_partition` needs to predict with one cross-fit estimator."""

    model: CrossFitEstimator
    design: Design
    method: str
    oos_method: str


def model_partition(
    X: pd.DataFrame, folds: pd.DataFrame | None, bundle: ModelPrediction
) -> np.ndarray:
    """One cross-fit estimator's predictions for a partition (runs on a worker)."""
    return bundle.model.block_predict(
        bundle.design.matrix(X), folds, bundle.method, bundle.oos_method
    )


def _estimator_type(factory: Any, params: dict[str, Any] | None = None) -> str | None:
    """'classifier' / 'regressor' / None for an estimator factory, without deprecated paths.

    A factory that is not a class (a function, a partial) is called once, with its params,
    to see what it builds. A streaming wrapper (dask-ml ``Incremental``) has the type of the
    estimator it wraps; a duck-typed estimator without scikit-learn tags is a classifier if
    it has ``predict_proba``.
    """
    if isinstance(factory, type):
        if backend_of(factory) == STREAM:
            return _estimator_type(type(wrapped_estimator(factory, params or {})))
        if factory.__module__.startswith("dask_ml.linear_model"):
            # dask-ml's GLMs carry no sklearn tags under scikit-learn >= 1.6
            return "classifier" if factory.__name__ == "LogisticRegression" else "regressor"
    instance = _instance(factory, params)
    if instance is not None:
        try:
            if is_classifier(instance):
                return "classifier"
            if is_regressor(instance):
                return "regressor"
        except AttributeError:  # no sklearn tags (a duck-typed estimator)
            pass
    # estimators without sklearn tags (dask-ml's GLMs) still declare the old attribute
    declared = getattr(instance if instance is not None else factory, "_estimator_type", None)
    if declared is None and hasattr(instance, "predict_proba"):
        return "classifier"
    return declared


def _instance(factory: Any, params: dict[str, Any] | None) -> Any:
    """An estimator built by ``factory``: with its params first (a meta-estimator's class may
    need them, its ``estimator``), else without; None if neither works."""
    for kwargs in ({**(params or {})}, {}):
        try:
            return factory(**kwargs)
        except Exception:
            continue
    return None


def train_rows(split: SplitRef, fold_strata: Counter, n_folds: int) -> dict[int | None, int]:
    """Training rows per fold (and ``None``: the overall model) of one split, from the counts."""
    in_split: Counter = Counter()
    for (column, fold, stratum), count in fold_strata.items():
        if column != split.fold_col:
            continue
        if split.variants is not None and stratum[0] not in split.variants:
            continue
        in_split[fold] += count
    total = sum(in_split.values())
    rows: dict[int | None, int] = {k: total - in_split[k] for k in range(n_folds)}
    rows[None] = total
    return rows


def strata_of_fold(split: SplitRef, fold_strata: Counter, fold: int | None) -> Counter:
    """Rows per stratum in the training rows of one fold model (``None``: overall)."""
    out: Counter = Counter()
    for (column, k, stratum), count in fold_strata.items():
        if column != split.fold_col:
            continue
        if split.variants is not None and stratum[0] not in split.variants:
            continue
        if fold is None or k != fold:
            out[stratum] += count
    return out


def assemble(
    template: CrossFitEstimator, split: SplitRef, folds: Sequence[int | None], *results: FitResult
) -> CrossFitEstimator:
    """Rebuild a fitted estimator from fit results on a worker (no client round trip)."""
    return template.clone().install(folds, results, split, None)


# --- fitting estimators on their own (CrossFitEstimator.fit, the explainer's surrogates) ------


def cv_fold_ids(cv: Any, X: Any, y: Any, n_folds: int) -> tuple[np.ndarray, int] | None:
    """metalearners' ``cv`` as a fold id per row, and how many rows no fold holds out.

    ``cv`` is one ``(train_indices, test_indices)`` pair per fold (or a scikit-learn splitter,
    whose ``split(X, y)`` gives them), for in-memory X. Fold ``k`` trains on exactly its
    train rows, which must be the rows outside its test rows (the splits of KFold,
    StratifiedKFold, GroupKFold...), and in-sample prediction gives each row the model of the
    fold that holds it out. Rows in no test set are in every fold's training rows (the id
    ``n_folds``); in-sample prediction then raises, as metalearners does. ``None``: no
    cross-fitting (``n_folds`` = 1), where metalearners ignores ``cv``.
    """
    if is_dask(X):
        raise ValueError(
            "cv (index lists per fold) needs in-memory X (numpy, pandas, polars or "
            "scipy.sparse); for Dask input choose the folds with fold_strategy "
            "('partition', 'sklearn', or 'hash' with fold_key=<a row-id column of X>)"
        )
    n = rows_in_memory(X)
    assert n is not None
    if n_folds == 1:
        return None
    splitter = hasattr(cv, "split") and not isinstance(cv, str | bytes)
    if isinstance(cv, str | bytes | dict) or not (hasattr(cv, "__iter__") or splitter):
        raise TypeError(
            "cv must be a list of (train_indices, test_indices) pairs, one per fold, got "
            f"{type(cv).__name__}"
        )
    folds = list(cv.split(X, np.asarray(y)) if splitter else cv)
    if len(folds) != n_folds:
        raise ValueError(
            f"cv has {len(folds)} folds but n_folds is {n_folds}; pass one "
            "(train_indices, test_indices) pair per fold"
        )
    ids = np.full(n, n_folds, dtype=np.int64)
    for k, pair in enumerate(folds):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise TypeError(f"cv[{k}] must be a (train_indices, test_indices) pair, got {pair!r}")
        train, test = (_fold_rows(part, n, f"cv[{k}][{i}]") for i, part in enumerate(pair))
        held = ids[test] != n_folds
        if held.any() or len(np.unique(test)) != len(test):
            row = int(test[held][0]) if held.any() else int(test[0])
            raise ValueError(
                f"row {row} is in the test rows of more than one fold of cv (fold {k} and "
                f"{int(ids[row]) if held.any() else k}); dask_meta takes cv whose test rows "
                "do not overlap"
            )
        ids[test] = k
        outside = np.ones(n, dtype=bool)
        outside[test] = False
        in_train = np.zeros(n, dtype=bool)
        in_train[train] = True
        if len(train) != int(outside.sum()) or not np.array_equal(in_train, outside):
            raise ValueError(
                f"the train rows of fold {k} of cv are not the rows outside its test rows "
                f"({len(train)} train rows, {int(outside.sum())} outside the test rows); "
                "dask_meta trains each fold model on every row it does not hold out, as "
                "KFold, StratifiedKFold or GroupKFold splits do"
            )
    return ids, int((ids == n_folds).sum())


def _fold_rows(part: Any, n: int, name: str) -> np.ndarray:
    """One side of a fold of cv as row positions (integers, or a boolean mask of X's rows)."""
    rows = np.asarray(part)
    if rows.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array of row positions, got shape {rows.shape}")
    if rows.dtype == bool:
        if len(rows) != n:
            raise ValueError(f"{name} is a boolean mask of {len(rows)} rows but X has {n}")
        return np.flatnonzero(rows)
    if rows.size and not np.issubdtype(rows.dtype, np.integer):
        raise TypeError(f"{name} must hold integer row positions, got dtype {rows.dtype}")
    rows = rows.astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ValueError(
            f"{name} holds row positions outside 0..{n - 1} (min {rows.min()}, max "
            f"{rows.max()}); X has {n} rows"
        )
    return rows


def fit_single(
    cfe: CrossFitEstimator,
    X: Matrix,
    y: Vector,
    *,
    fit_params: dict | None = None,
    n_jobs_cross_fitting: int | None = None,
    feature_set: Any = None,
    kind: str = "model",
    ordinal: int = 0,
    cv: Any = None,
) -> CrossFitEstimator:
    """Fit one cross-fit estimator on (X, y) through the planner (all rows, its own CV, or
    the folds of ``cv``)."""
    fit_estimators(
        [cfe],
        X,
        [y],
        fit_params=fit_params,
        n_jobs_cross_fitting=n_jobs_cross_fitting,
        feature_set=feature_set,
        kind=kind,
        ordinals=[ordinal],
        cv=cv,
    )
    return cfe


def fit_estimators(
    cfes: Sequence[CrossFitEstimator],
    X: Matrix,
    ys: Sequence[Any],
    *,
    fit_params: dict | None = None,
    n_jobs_cross_fitting: int | None = None,
    feature_set: Any = None,
    kind: str = "model",
    ordinals: Sequence[int] | None = None,
    target_names: Sequence[str] | None = None,
    cv: Any = None,
) -> None:
    """Fit cross-fit estimators of one configuration on X, each on its own target, in one run.

    X is read once: one training frame holds X and every target, and all the estimators'
    jobs go through one planner. ``cfes[i]`` is fitted on ``ys[i]``; several targets are for
    regressors only (e.g. one CATE surrogate per variant). ``target_names`` name the targets
    in errors (default ``y``). ``cv``: index lists per fold (:func:`cv_fold_ids`).
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
    given_ids = cv_fold_ids(cv, X, ys[0], cfe.n_folds) if cv is not None else None
    client = resolve_client(cfe.client)
    resolve_threads(
        requested_threads(cfe.estimator_params), cluster_shape(client), 1, f"the {kind} model"
    )
    row_params = RowParams(rows_in_memory(X))
    static, per_row = row_params.split(fit_params or {})
    check_loadable(
        client,
        model_objects(f"the {kind} model", cfe.estimator_factory, cfe.estimator_params)
        | callable_params(f"the fit params of the {kind} model", static),
    )
    targets = {f"{PARAM_PREFIX}target_{i}__": (names[i], v) for i, v in enumerate(ys[1:], 1)}
    data = on_cluster(
        training_frame(X, ys[0], None, row_params.values | targets, y_name=names[0]), client
    )
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

    def check_outcome(stats: list[PartitionStats]) -> None:
        y_nan = sum(s.y_nan for s in stats)
        if y_nan:
            raise ValueError(f"{names[0]} has {y_nan} missing values (NaN)")

    folds = FoldSettings(cfe.fold_strategy, cfe.fold_key, seed, cfe.random_state, classification)
    given: dict[Hashable, tuple[np.ndarray, int]] | None = (
        None
        if given_ids is None
        else {(kind, ordinal): (given_ids[0], cfe.n_folds) for ordinal in ordinals}
    )
    data, stats, assignment = assign_folds(client, data, requests, folds, check_outcome, given)
    split = assignment.refs[(kind, ordinals[0])]
    if classification and cfe.n_folds > 1:
        classes = {s[1] for s in strata_of_fold(split, assignment.fold_strata, None)}
        for k in range(cfe.n_folds):
            have = {s[1] for s, c in strata_of_fold(split, assignment.fold_strata, k).items() if c}
            if have != classes:
                raise ValueError(
                    f"the training rows of fold {k} lack the classes "
                    f"{sorted_values(classes - have)}; use fewer folds"
                )
    planner = Planner(client, Limits(n_jobs_cross_fitting, None), label="dask_meta-crossfit")
    try:
        training = place(planner, data, stats, assignment, persist=True)
        if target_names is not None:
            # named targets are estimates (CATE surrogates): metalearners rejects NaN and inf
            bad = sum(
                planner.gather_partitions(
                    _non_finite_counts, training.parts, "check-targets", columns=target_columns
                ),
                np.zeros(len(target_columns), dtype=np.int64),
            )
            for name, n_bad in zip(names, bad, strict=True):
                if n_bad:
                    raise ValueError(f"{name} has {n_bad} missing or infinite values")
        backend = backend_of(cfe.estimator_factory)
        assert planner.shape is not None
        threads = resolve_threads(
            requested_threads(cfe.estimator_params) if backend != COLLECTION else -1,
            planner.shape,
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
                parts=training.parts,
                fit_params=static,
                row_params=per_row,
                threads=threads,
                train_rows=train_rows(split, assignment.fold_strata, cfe.n_folds),
                token=token,
            )
            for each, ordinal, target in zip(cfes, ordinals, target_columns, strict=False)
        ]
        for job in (j for jobs in jobs_of for j in jobs):
            job.backend = backend
            job.meta = (assignment.frame._meta, None)
        results = planner.run([j for jobs in jobs_of for j in jobs])
        for each, ordinal, jobs in zip(cfes, ordinals, jobs_of, strict=True):
            each.set_fitted(jobs, results, assignment.refs[(kind, ordinal)], training.context, kind)
    except BaseException:
        # the persisted frame and any fits in flight go with the failure
        planner.cancel_all()
        raise
    finally:
        planner.release()
    report = planner.report_frame()
    for each in cfes:
        each.fit_report_ = report
        each._unheld_rows = 0 if given_ids is None else given_ids[1]


def _non_finite_counts(part: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    values = part[list(columns)].to_numpy(dtype=float)
    return (~np.isfinite(values)).sum(axis=0).astype(np.int64)
