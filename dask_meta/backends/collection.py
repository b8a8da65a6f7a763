"""The collection backend: the estimator's own distributed ``fit``, called from the client.

For ``lightgbm.dask.DaskLGBM*``, ``xgboost.dask.DaskXGB*`` and dask-ml's GLMs: the estimator
fits a lazy Dask frame of the job's rows (one :func:`collection_rows` task per partition),
spread over the workers by itself; the fitted model becomes an in-memory one
(:func:`to_local`) for predictions in partitions. These fits run one at a time: gang
trainers hang when they share workers with other fits (LightGBM#4942).
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import numpy as np
import pandas as pd

from dask_meta import runtime
from dask_meta.backends.rows import gather_rows, training_arrays
from dask_meta.backends.specs import FitResult, FitSpec
from dask_meta.backends.worker_parts import one_part_per_worker

#: Column names of the frame a collection fit reads (features keep their names).
FIT_Y = "__dask_meta_fit_y__"


def collection_rows(spec: FitSpec, part: pd.DataFrame, *extra: pd.DataFrame) -> pd.DataFrame:
    """One partition of a collection job's input: its selected rows, features, target and
    per-row fit parameters (runs on a worker)."""
    frame = gather_rows(spec.rows, [part], extra)
    X, y, fit_params = training_arrays(spec, frame)
    out = (
        X
        if isinstance(X, pd.DataFrame)
        else pd.DataFrame(np.asarray(X), columns=[f"x{i}" for i in range(np.asarray(X).shape[1])])
    )
    out = out.reset_index(drop=True).copy()
    out[FIT_Y] = y
    for name, values in fit_params.items():
        if isinstance(values, np.ndarray) and values.shape[:1] == (len(frame),):
            out[f"__dask_meta_fit_{name}__"] = values
    return out


def row_fit_params(spec: FitSpec) -> dict[str, str]:
    """Per-row fit parameters of a collection job and the columns that carry them (a
    bootstrap replicate's counts as ``sample_weight``)."""
    names = [*spec.row_params, *(["sample_weight"] if spec.rows.resample is not None else [])]
    return {name: f"__dask_meta_fit_{name}__" for name in dict.fromkeys(names)}


class NumpyInput:
    """A fitted model that only predicts numpy (dask-glm), usable on pandas partitions."""

    # saved models name their types by module: saved learners name this one
    # dask_meta.backends.NumpyInput, as dask_meta.persistence trusts it (re-exported there)
    __module__ = "dask_meta.backends"

    def __init__(self, model: Any) -> None:
        self.model = model
        if hasattr(model, "classes_"):
            self.classes_ = model.classes_

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.model.predict(np.asarray(X, dtype=float)))

    def predict_proba(self, X: Any) -> np.ndarray:
        proba = np.asarray(self.model.predict_proba(np.asarray(X, dtype=float)))
        if proba.ndim == 1:
            # dask-ml's LogisticRegression gives P(class 1) only
            proba = np.column_stack([1.0 - proba, proba])
        return proba


def to_local(model: Any) -> Any:
    """A collection estimator's fitted model as an in-memory model for partition predicts."""
    module, name = type(model).__module__, type(model).__name__
    if module.startswith("lightgbm"):
        return model.to_local()
    if module.startswith("xgboost"):
        import xgboost

        local_type = xgboost.XGBClassifier if "Classifier" in name else xgboost.XGBRegressor
        local = local_type()
        local.load_model(bytearray(model.get_booster().save_raw("json")))
        return local
    return NumpyInput(model)


def lightgbm_float32(factory: type, meta: pd.DataFrame) -> bool:
    """Whether a collection fit gives ``lightgbm.dask`` one float32 part per worker (all-numeric
    features) instead of the partitions as they are.

    Each ``lightgbm.dask`` worker holds its parts and concatenates them (``np.concatenate`` or
    ``pd.concat``) for the whole fit: two copies of its share of the rows. One float32 frame
    per worker, a single block, passes through that concatenation and LightGBM's conversion to
    numpy without a copy: one copy of half the size, a quarter of the memory of float64 parts.
    LightGBM bins the values, so float32 moves a value only where a bin bound falls between it
    and its float32 rounding. Categorical columns (the S-learner's treatment, categorical
    covariates) keep the pandas path, which declares them to LightGBM.
    """
    return factory.__module__.startswith("lightgbm") and all(
        pd.api.types.is_numeric_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype)
        for dtype in meta.dtypes
    )


def fit_collection(
    spec: FitSpec, client: Any, frame: Any, n_rows: int, lazy: bool = True
) -> FitResult:
    """Fit a collection estimator on a lazy Dask frame of :func:`collection_rows` (on the
    client; the estimator distributes its own work); ``lazy``: the frame's graph reads its
    rows from the source, no persisted partitions (futures) in it."""
    start = time.time()
    params = dict(spec.params)
    if "client" in inspect.signature(spec.factory.__init__).parameters:  # type: ignore[misc]
        params.setdefault("client", client)
    features = [
        c for c in frame.columns if c != FIT_Y and not str(c).startswith("__dask_meta_fit_")
    ]
    X, y = frame[features], frame[FIT_Y]
    fit_params: dict[str, Any] = dict(spec.fit_params)
    for name, column in row_fit_params(spec).items():
        fit_params[name] = frame[column]
    with runtime.as_current(client):
        if lightgbm_float32(spec.factory, frame._meta[features]):
            carried = row_fit_params(spec)
            columns = [FIT_Y, *carried.values()]
            X, y, *values = one_part_per_worker(client, frame, features, columns, lazy)
            fit_params.update(zip(carried, values))
        model = spec.factory(**params)
        if spec.factory.__module__.startswith("dask_ml"):
            # dask-glm needs arrays with known chunks, and numpy blocks
            X = X.to_dask_array(lengths=True).astype(float)
            y = y.to_dask_array(lengths=X.chunks[0])
        model.fit(X, y, **fit_params)
    local = to_local(model)
    classes = None
    if spec.is_classifier:
        if not hasattr(local, "classes_"):
            local.classes_ = spec.classes
        classes = np.asarray(local.classes_)
    return FitResult(local, n_rows, None, start, time.time(), classes)
