"""What one base-model fit is: its backend, feature design, rows, and result.

:func:`backend_of` chooses the backend from the estimator class (see :mod:`dask_meta.backends`);
a :class:`FitSpec` holds everything a fit task needs apart from the data, and a
:class:`FitResult` what it gives back.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dask_meta._constants import NOT_IN_SPLIT, ROW_ID_COL, W_COL
from dask_meta.factories import factory_name, flatten
from dask_meta.resampling import Resample

LOCAL = "local"
STREAM = "stream"
COLLECTION = "collection"


def backend_of(factory: type) -> str:
    """Which backend fits estimators of this class (see :mod:`dask_meta.backends`)."""
    factory = flatten(factory, {})[0]  # a partial of a class: that class
    module, name = str(getattr(factory, "__module__", "")), factory_name(factory)
    if module.startswith("dask_ml.wrappers") and name == "Incremental":
        return STREAM
    if module.startswith("lightgbm") and name.startswith("DaskLGBM"):
        return COLLECTION
    if module.startswith("xgboost") and name.startswith("DaskXGB"):
        return COLLECTION
    if module.startswith("dask_ml.linear_model") and name in (
        "LinearRegression",
        "LogisticRegression",
        "PoissonRegression",
    ):
        return COLLECTION
    return LOCAL


def wrapped_estimator(factory: type, params: dict[str, Any]) -> Any:
    """The estimator a streaming wrapper (``Incremental(estimator=...)``) trains."""
    estimator = params.get("estimator")
    if estimator is None or not hasattr(estimator, "partial_fit"):
        raise TypeError(
            f"{factory_name(factory)} needs params={{'estimator': <estimator with partial_fit>}}, "
            f"got estimator={estimator!r}"
        )
    return estimator


def is_pairwise(factory: type) -> bool:
    """Whether ``factory`` is :class:`~dask_meta.PairwisePropensityClassifier` (one binary
    model per pair of variants, fitted on subsets of the same rows)."""
    return factory.__module__ == "dask_meta.models" and factory.__name__ == (
        "PairwisePropensityClassifier"
    )


def check_classes(factory: type, classes: np.ndarray, kind: str) -> None:
    """Reject a classifier that cannot learn these classes (before any fit)."""
    binary_only = factory.__module__.startswith("dask_ml.linear_model")
    if binary_only and (len(classes) != 2 or set(classes.tolist()) != {0, 1}):
        raise ValueError(
            f"the {kind} is dask-ml's {factory_name(factory)}, which learns two classes labelled 0 "
            f"and 1 only, but its target has the classes {classes.tolist()}; use a multi-class "
            "classifier (e.g. Incremental(SGDClassifier(loss='log_loss')) or "
            "lightgbm.dask.DaskLGBMClassifier)"
        )


def supports_sample_weight(factory: type, params: dict[str, Any] | None = None) -> bool:
    """Whether fits of this estimator class take a per-row ``sample_weight``."""
    backend = backend_of(factory)
    if backend == STREAM:
        inner = wrapped_estimator(factory, params or {})
        return "sample_weight" in inspect.signature(inner.partial_fit).parameters
    if backend == COLLECTION and factory.__module__.startswith("dask_ml"):
        return False  # dask-glm has no weights
    fit = getattr(factory, "fit", None)
    if fit is None:  # a function or another callable: the fit of what it builds
        try:
            fit = factory(**(params or {})).fit
        except Exception:
            return False
    return "sample_weight" in inspect.signature(fit).parameters


def is_categorical_aware(model: Any) -> bool:
    """Whether a model reads pandas ``category`` columns natively (metalearners' rule)."""
    name = type(model).__name__
    module = type(model).__module__
    if name in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"):
        return getattr(model, "categorical_features", None) == "from_dtype"
    if module.startswith("lightgbm") and name in ("LGBMClassifier", "LGBMRegressor"):
        return True
    if module.startswith("xgboost") and name in ("XGBClassifier", "XGBRegressor"):
        return bool(getattr(model, "enable_categorical", False))
    if module.startswith("glum"):
        return name in ("GeneralizedLinearRegressor", "GeneralizedLinearRegressorCV")
    return False


@dataclass(frozen=True)
class Design:
    """How the feature matrix a base model sees is built from a frame of rows.

    ``columns`` are training-frame columns (``()`` means one constant column, as
    metalearners does for ``feature_set=[]``); ``as_numpy`` hands the model a numpy array
    (numpy/Dask-array input) instead of a DataFrame. ``transform`` (optional, module-level)
    adds learner-specific columns such as the S-learner's treatment encoding; it gets the
    selected frame and the treatment vector.
    """

    columns: tuple[Any, ...]
    as_numpy: bool
    transform: Callable[..., Any] | None = None
    transform_args: tuple[Any, ...] = ()

    def matrix(self, frame: pd.DataFrame, w: np.ndarray | None = None) -> Any:
        if not self.columns and self.transform is None:
            return np.ones((len(frame), 1))
        X = frame[list(self.columns)]
        if self.transform is not None:
            return self.transform(X, w, self.as_numpy, *self.transform_args)
        return X.to_numpy() if self.as_numpy else X


@dataclass(frozen=True)
class RowSelection:
    """Which rows of the training frame a job trains on.

    ``variants``: keep rows whose treatment is in this set (``None``: all rows).
    ``fold_col``/``fold``: for a fold model, drop the rows of fold ``fold`` and the rows
    outside the split (fold id -1); for the overall model (``fold=None``) keep every row of
    the split.
    ``resample``: a bootstrap replicate's fit keeps the rows drawn at least once (a positive
    Poisson count, from the rows' identities), and each weighs its count (times any
    ``sample_weight``): the resampling bootstrap's training set, without the rows it would
    not draw.
    """

    variants: tuple[int, ...] | None = None
    fold_col: str | None = None
    fold: int | None = None
    resample: Resample | None = None

    def mask(self, frame: pd.DataFrame, counts: np.ndarray | None = None) -> np.ndarray:
        """The frame's rows of the selection; ``counts``: the replicate's counts of the
        frame's rows, if drawn already."""
        keep = np.ones(len(frame), dtype=bool)
        if self.variants is not None:
            keep &= np.isin(frame[W_COL].to_numpy(), self.variants)
        if self.fold_col is not None:
            folds = frame[self.fold_col].to_numpy()
            keep &= folds != NOT_IN_SPLIT
            if self.fold is not None:
                keep &= folds != self.fold
        if self.resample is not None:
            if counts is None:
                counts = self.resample.counts(frame[ROW_ID_COL].to_numpy())
            keep &= counts > 0
        return keep


@dataclass(frozen=True)
class FitSpec:
    """Everything one fit task needs, apart from the data."""

    factory: type
    params: dict[str, Any]
    design: Design
    target: str
    rows: RowSelection
    threads: int
    thread_param: str | None
    fit_params: dict[str, Any] = field(default_factory=dict)
    #: fit parameters given per row, read from these training-frame columns
    row_params: dict[str, str] = field(default_factory=dict)
    is_classifier: bool = False
    #: a classifier's classes, known from the first pass over the data (collection fits of
    #: models that do not record them)
    classes: np.ndarray | None = None
    #: key of the shared binned LightGBM Dataset this fit trains on (None: its own data)
    bins: str | None = None
    #: also sum each training row's bootstrap count times the model's prediction, from its
    #: training scores (:mod:`.scores`): a bootstrap's ATE then predicts the other rows only
    sum_predictions: bool = False


@dataclass
class FitResult:
    """What a fit gives back: the fitted model, its rows, where and when it ran (``worker``
    is ``None`` for collection fits, which run on the whole cluster), a classifier's
    classes and, if asked for and available, the sum of count x prediction over its training
    rows (:attr:`FitSpec.sum_predictions`)."""

    model: Any
    n_rows: int
    worker: str | None
    start: float
    end: float
    classes: np.ndarray | None = None
    prediction_sum: np.ndarray | None = None
