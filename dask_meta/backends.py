"""Base-model backends: how one base model is fitted and used on worker data (DESIGN §6).

The local backend fits any sklearn-like estimator inside one task, on the concatenated
rows of that job, with its thread parameter and ``threadpoolctl`` set to the threads the
task holds. Everything that runs on workers is a small module-level function taking plain
pandas/numpy, so it pickles by reference and can be tested without a cluster.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from dask_meta._constants import MEAN, MEDIAN, NOT_IN_SPLIT, OVERALL, W_COL

#: Names under which estimators take their thread count, in order of preference.
THREAD_PARAMS = ("n_jobs", "num_threads", "nthread", "thread_count", "n_threads")


def requested_threads(params: dict[str, Any]) -> int | None:
    """The thread count a user asked for in a model's params: ``None`` if unset, -1 = a worker."""
    for name in THREAD_PARAMS:
        value = params.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"model parameter {name}={value!r} must be an int")
        value = int(value)
        if value == -1 or value > 0:
            return value
        raise ValueError(
            f"model parameter {name}={value} is not supported: use a positive thread count "
            "or -1 for all threads of a worker"
        )
    return None


#: Libraries whose estimators run threads of their own unless told otherwise.
_THREADED_MODULES = ("lightgbm", "xgboost", "catboost", "sklearn.ensemble", "sklearn.neighbors")


def thread_param_name(factory: type, params: dict[str, Any]) -> str | None:
    """The parameter through which ``factory`` takes its thread count, if it has one.

    The user's own choice wins; otherwise only estimators known to start threads of their
    own get one (others, such as scikit-learn's linear models, are capped by threadpoolctl
    alone; setting their deprecated ``n_jobs`` would only warn).
    """
    for name in THREAD_PARAMS:
        if name in params:
            return name
    if not factory.__module__.startswith(_THREADED_MODULES):
        return None
    try:
        accepted = set(factory().get_params(deep=False))
    except Exception:
        accepted = set(inspect.signature(factory).parameters)
    for name in THREAD_PARAMS:
        if name in accepted:
            return name
    return None


def supports_sample_weight(factory: type) -> bool:
    return "sample_weight" in inspect.signature(factory.fit).parameters  # type: ignore[attr-defined]


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
    """

    variants: tuple[int, ...] | None = None
    fold_col: str | None = None
    fold: int | None = None

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        keep = np.ones(len(frame), dtype=bool)
        if self.variants is not None:
            keep &= np.isin(frame[W_COL].to_numpy(), self.variants)
        if self.fold_col is not None:
            folds = frame[self.fold_col].to_numpy()
            keep &= folds != NOT_IN_SPLIT
            if self.fold is not None:
                keep &= folds != self.fold
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


@dataclass
class FitResult:
    model: Any
    n_rows: int
    worker: str | None
    start: float
    end: float
    classes: np.ndarray | None = None


def _current_worker() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except ValueError:
        return None


def aligned(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with memory-aligned column buffers (a copy only when needed).

    Partitions can arrive from another worker at unaligned byte offsets, and numpy sums in
    another order on unaligned buffers: results would differ in the last bit between runs.
    """
    for column in frame.columns:
        values = frame[column].to_numpy()
        if isinstance(values, np.ndarray) and not values.flags.aligned:
            return frame.copy(deep=True)
    return frame


def gather_rows(
    selection: RowSelection, parts: Sequence[pd.DataFrame], extra: Sequence[pd.DataFrame] = ()
) -> pd.DataFrame:
    """Concatenate the selected rows of all partitions, in partition order.

    ``extra`` holds per-partition frames of derived columns (same rows as ``parts``).
    """
    selected = []
    for i, part in enumerate(parts):
        if extra:
            part = pd.concat([part, extra[i].set_axis(part.index)], axis=1)
        keep = selection.mask(part)
        selected.append(part[keep] if not keep.all() else part)
    frame = pd.concat(selected, ignore_index=True) if len(selected) > 1 else selected[0]
    return aligned(frame.reset_index(drop=True))


def fit_local(spec: FitSpec, n_parts: int, *parts: pd.DataFrame) -> FitResult:
    """Fit one base model on its rows (runs on a worker, holding ``spec.threads`` threads).

    ``parts`` are the training frame's partitions followed, if present, by as many
    partitions of derived columns.
    """
    start = time.time()
    frame = gather_rows(spec.rows, parts[:n_parts], parts[n_parts:])
    if len(frame) == 0:
        raise ValueError(
            f"no training rows for {spec.factory.__name__} (target {spec.target}): the "
            "selection of rows for this model is empty"
        )
    w = frame[W_COL].to_numpy() if W_COL in frame.columns else None
    X = spec.design.matrix(frame, w)
    y = frame[spec.target].to_numpy()
    fit_params = dict(spec.fit_params)
    for name, column in spec.row_params.items():
        fit_params[name] = frame[column].to_numpy()
    params = dict(spec.params)
    if spec.thread_param is not None:
        params[spec.thread_param] = spec.threads
    with threadpool_limits(limits=spec.threads):
        model = spec.factory(**params).fit(X, y, **fit_params)
    classes = np.asarray(model.classes_) if spec.is_classifier else None
    return FitResult(model, len(frame), _current_worker(), start, time.time(), classes)


# --- prediction ---------------------------------------------------------------------------


def _model_output(model: Any, X: Any, method: str, n_outputs: int) -> np.ndarray:
    out = np.asarray(getattr(model, method)(X), dtype=float)
    return out.reshape(len(out), n_outputs)


def predict_block(
    fold_models: Sequence[Any],
    overall_model: Any,
    X: Any,
    fold_ids: np.ndarray | None,
    method: str,
    oos_method: str,
    n_outputs: int,
) -> np.ndarray:
    """Predict a block of rows with a cross-fitted model: ``(n, n_outputs)``.

    Rows with a fold id >= 0 are in-sample: each is predicted by the fold model that did not
    see it. The other rows (all rows when ``fold_ids`` is None) are out-of-sample and use
    ``oos_method``: the overall model, or the mean or median of the fold models.
    """
    n = len(X)
    out = np.empty((n, n_outputs))
    if fold_ids is None:
        oos = np.ones(n, dtype=bool)
    else:
        oos = fold_ids == NOT_IN_SPLIT
        for k, model in enumerate(fold_models):
            rows = np.flatnonzero(fold_ids == k)
            if len(rows):
                out[rows] = _model_output(model, _take(X, rows), method, n_outputs)
    if oos.any():
        X_oos = X if oos.all() else _take(X, np.flatnonzero(oos))
        out[oos] = _predict_oos(fold_models, overall_model, X_oos, method, oos_method, n_outputs)
    return out


def _predict_oos(
    fold_models: Sequence[Any],
    overall_model: Any,
    X: Any,
    method: str,
    oos_method: str,
    n_outputs: int,
) -> np.ndarray:
    if oos_method == OVERALL:
        return _model_output(overall_model, X, method, n_outputs)
    stacked = np.stack([_model_output(m, X, method, n_outputs) for m in fold_models], axis=-1)
    if oos_method == MEAN:
        return np.mean(stacked, axis=-1)
    if oos_method == MEDIAN:
        return np.median(stacked, axis=-1)
    raise ValueError(f"oos_method={oos_method!r} is not one of 'overall', 'mean', 'median'")


def _take(X: Any, rows: np.ndarray) -> Any:
    if isinstance(X, pd.DataFrame):
        return X.iloc[rows]
    return X[rows]
