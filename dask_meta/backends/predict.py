"""Prediction with cross-fitted models: a block of rows, in-sample rows by the fold model that
did not see them, out-of-sample rows by the overall model or the fold models' mean or median."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
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
    out = np.empty((len(X), n_outputs))
    ids = np.full(len(X), NOT_IN_SPLIT) if fold_ids is None else np.asarray(fold_ids)
    reads_rows = any(_reads_rows(m) for m in [*fold_models, overall_model])
    for fold, rows, X_rows in fold_groups(X, ids, reads_rows):
        if fold == NOT_IN_SPLIT:
            out[rows] = _predict_oos(
                fold_models, overall_model, X_rows, method, oos_method, n_outputs, name
            )
        else:
            out[rows] = _model_output(fold_models[fold], X_rows, method, n_outputs, name, fold)
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


def fold_groups(
    X: Any, fold_ids: np.ndarray, reads_rows: bool
) -> Iterator[tuple[int, np.ndarray, Any]]:
    """Per fold id of a block's rows, the rows' positions and their matrix: the folds in
    order, then the out-of-sample rows (``NOT_IN_SPLIT``).

    For models that read rows (``reads_rows``: LightGBM), a DataFrame whose columns share one
    numeric dtype is gathered once into one C-contiguous array in fold order, and each
    fold's matrix is a frame over a slice of it. pandas keeps each column's values
    contiguous; LightGBM predicts from rows, and copies a frame into a C-contiguous array on
    every call (twice for a frame of several blocks): gathered so, the block's rows are
    copied once for all of its folds (in a worker every such copy is a fresh allocation
    that page-faults, see ``HASH_BLOCK_ROWS`` in :mod:`dask_meta.data`). Trees give the
    same values from any layout; other models (a linear model's sums could round
    differently) and other matrices get each fold's rows taken as they are.
    """
    n = len(X)
    if n == 0:
        return
    # the folds' ids in order, the out-of-sample rows' last
    last = np.where(fold_ids == NOT_IN_SPLIT, fold_ids.max() + 1, fold_ids)
    if not (reads_rows and isinstance(X, pd.DataFrame) and _numeric(X)):
        for key in np.unique(last):
            rows = np.flatnonzero(last == key)
            yield int(fold_ids[rows[0]]), rows, X if len(rows) == n else take_rows(X, rows)
        return
    if (fold_ids == fold_ids[0]).all():
        values = X.to_numpy()
        # pandas 2.2 to 3.x: a frame's block manager tells whether it is one block
        single = getattr(getattr(X, "_mgr", None), "is_single_block", False)
        if not (single and values.flags.c_contiguous):
            values = np.ascontiguousarray(values)
            X = pd.DataFrame(values, index=X.index, columns=X.columns, copy=False)
        yield int(fold_ids[0]), np.arange(n), X
        return
    order = np.argsort(last, kind="stable")  # each fold's rows in their block order
    values = np.ascontiguousarray(np.take(X.to_numpy(), order, axis=0))
    sorted_ids = fold_ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    for start, end in zip(starts, [*starts[1:], n], strict=True):
        rows = order[start:end]
        frame = pd.DataFrame(values[start:end], index=X.index[rows], columns=X.columns, copy=False)
        yield int(sorted_ids[start]), rows, frame


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
