"""Prediction with cross-fitted models: a block of rows, in-sample rows by the fold model that
did not see them, out-of-sample rows by the overall model or the fold models' mean or median."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from dask_meta._constants import MEAN, MEDIAN, NOT_IN_SPLIT, OVERALL
from dask_meta.backends.threads import THREADED_MODULES


def _model_output(
    model: Any, X: Any, method: str, n_outputs: int, name: str, fold: int | None
) -> np.ndarray:
    which = "overall model" if fold is None else f"fold {fold} model"
    try:
        out = np.asarray(getattr(model, method)(X), dtype=float)
    except Exception as exc:  # the base model's own error, told which model raised it
        exc.add_note(
            f"dask_meta: while predicting with the {name}'s {which} "
            f"({type(model).__name__}.{method}) on {len(X)} rows"
        )
        raise
    if out.size != len(X) * n_outputs or (out.ndim > 0 and out.shape[0] != len(X)):
        raise ValueError(
            f"the {name}'s {which} ({type(model).__name__}.{method}) returned an array of "
            f"shape {out.shape} for {len(X)} rows; expected ({len(X)},)"
            + (f" or ({len(X)}, {n_outputs})" if n_outputs > 1 else "")
        )
    return out.reshape(len(X), n_outputs)


def predict_block(
    fold_models: Sequence[Any],
    overall_model: Any,
    X: Any,
    fold_ids: np.ndarray | None,
    method: str,
    oos_method: str,
    n_outputs: int,
    name: str = "model",
) -> np.ndarray:
    """Predict a block of rows with a cross-fitted model: ``(n, n_outputs)``.

    Rows with a fold id >= 0 are in-sample: each is predicted by the fold model that did not
    see it. The other rows (all rows when ``fold_ids`` is None) are out-of-sample and use
    ``oos_method``: the overall model, or the mean or median of the fold models. A model
    whose output does not have one row per input row is an error naming it (``name``: the
    model kind and ordinal) and its fold.
    """
    # one thread: prediction tasks run one per partition on every worker thread (models
    # fitted with several threads would oversubscribe the cores and grow OpenMP pools on
    # task threads, see threads.on_threads); predictions do not depend on the thread count.
    # threadpool_limits costs ~5 ms a call: only for models that run threads of their own.
    threaded = any(
        type(m).__module__.startswith(THREADED_MODULES) for m in [*fold_models, overall_model]
    )
    with threadpool_limits(limits=1) if threaded else contextlib.nullcontext():
        return _predict_block(
            fold_models, overall_model, X, fold_ids, method, oos_method, n_outputs, name
        )


def _predict_block(
    fold_models: Sequence[Any],
    overall_model: Any,
    X: Any,
    fold_ids: np.ndarray | None,
    method: str,
    oos_method: str,
    n_outputs: int,
    name: str,
) -> np.ndarray:
    n = len(X)
    out = np.empty((n, n_outputs))
    values = None  # the rows as one C-contiguous array, where X is converted to one
    if any(_reads_rows(m) for m in [*fold_models, overall_model]):
        X, values = row_major(X)
    if fold_ids is None:
        oos = np.ones(n, dtype=bool)
    else:
        oos = fold_ids == NOT_IN_SPLIT
        for k, model in enumerate(fold_models):
            rows = np.flatnonzero(fold_ids == k)
            if len(rows):
                out[rows] = _model_output(
                    model, _predicted_rows(X, values, rows), method, n_outputs, name, k
                )
    if oos.any():
        X_oos = X if oos.all() else _predicted_rows(X, values, np.flatnonzero(oos))
        out[oos] = _predict_oos(
            fold_models, overall_model, X_oos, method, oos_method, n_outputs, name
        )
    return out


def _predict_oos(
    fold_models: Sequence[Any],
    overall_model: Any,
    X: Any,
    method: str,
    oos_method: str,
    n_outputs: int,
    name: str,
) -> np.ndarray:
    if oos_method == OVERALL:
        return _model_output(overall_model, X, method, n_outputs, name, None)
    stacked = np.stack(
        [_model_output(m, X, method, n_outputs, name, k) for k, m in enumerate(fold_models)],
        axis=-1,
    )
    if oos_method == MEAN:
        return np.mean(stacked, axis=-1)
    if oos_method == MEDIAN:
        return np.median(stacked, axis=-1)
    raise ValueError(f"oos_method={oos_method!r} is not one of 'overall', 'mean', 'median'")


#: libraries whose models predict from rows, the same values from any memory layout (trees
#: compare each value with thresholds): a block is converted to rows once for them
_ROW_READERS = ("lightgbm",)


def _reads_rows(model: Any) -> bool:
    """A model, or the estimator a wrapper (a pairs classifier) predicts with, of
    :data:`_ROW_READERS`."""
    inner = getattr(model, "estimator", None)
    return any(
        c.__module__.startswith(_ROW_READERS)
        for m in (model, inner)
        if m is not None
        for c in type(m).__mro__
    )


def row_major(X: Any) -> tuple[Any, np.ndarray | None]:
    """A DataFrame whose columns share one numeric dtype as a frame over one C-contiguous
    array, and that array; other matrices as they are, and None.

    pandas keeps each column's values contiguous; LightGBM predicts from rows, and copies a
    frame into a C-contiguous array on every call (twice for a frame of several blocks).
    Converted once, the frame and its row selections (:func:`_predicted_rows`) are predicted on
    without a copy, by each model and fold (in a worker every such copy is a fresh
    allocation that page-faults, see ``HASH_BLOCK_ROWS`` in :mod:`dask_meta.data`).
    """
    if not isinstance(X, pd.DataFrame) or not _numeric(X):
        return X, None
    values = X.to_numpy()
    # pandas 2.2 to 3.x: a frame's block manager tells whether it is one block
    if getattr(getattr(X, "_mgr", None), "is_single_block", False) and values.flags.c_contiguous:
        return X, values
    values = np.ascontiguousarray(values)
    return pd.DataFrame(values, index=X.index, columns=X.columns, copy=False), values


def _numeric(X: pd.DataFrame) -> bool:
    """Whether a frame has columns, all of one numpy numeric dtype."""
    dtypes = set(X.dtypes)
    dtype = dtypes.pop() if len(dtypes) == 1 else None
    return isinstance(dtype, np.dtype) and dtype.kind in "fiu"


def take_rows(X: Any, rows: np.ndarray) -> Any:
    """The rows (positions) of a design matrix, a DataFrame or an array."""
    if isinstance(X, pd.DataFrame):
        return X.iloc[rows]
    return X[rows]


def _predicted_rows(X: Any, values: np.ndarray | None, rows: np.ndarray) -> Any:
    """:func:`take_rows`, where the rows of a frame over one C-contiguous array ``values``
    (:func:`row_major`) are one too."""
    if values is None:
        return take_rows(X, rows)
    return pd.DataFrame(values[rows], index=X.index[rows], columns=X.columns, copy=False)
