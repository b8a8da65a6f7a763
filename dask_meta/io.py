"""Writing predictions from the cluster: :func:`write_predictions`.

A learner's ``predict`` on Dask input is a lazy array with one block per partition of X.
``write_predictions`` turns those blocks, partition by partition, into a Dask DataFrame
(optionally with columns of X such as a row id in front) and writes it to parquet on the
workers, one file per partition of X, so that nothing but the write's status comes back.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from dask_meta import runtime
from dask_meta._constants import OVERALL
from dask_meta._typing import Matrix
from dask_meta.data import _NO_TUNING, is_dask, on_cluster, partitions, prediction_frame
from dask_meta.staging import StagedDirectory

if TYPE_CHECKING:
    from dask_meta.learners.base import MetaLearner

#: to_parquet arguments write_predictions sets itself
_FIXED = ("compute", "compute_kwargs", "write_index")


class _PartName:
    """File names that sort lexicographically in partition order (``part.000012.parquet``):
    dask's default ``part.12.parquet`` sorts before ``part.2.parquet`` in readers other than
    Dask (pandas, pyarrow, Spark), which would shuffle the rows against X."""

    def __call__(self, i: int) -> str:
        return f"part.{i:06d}.parquet"


def prediction_columns(
    name: str, n_variants: int, n_outputs: int, classification: bool
) -> list[str]:
    """``{name}_k`` per variant k >= 1, or ``{name}_k_j`` per output j for classification."""
    if not classification:
        return [f"{name}_{k}" for k in range(1, n_variants)]
    return [f"{name}_{k}_{j}" for k in range(1, n_variants) for j in range(n_outputs)]


def _prediction_partition(
    block: np.ndarray, kept: pd.DataFrame | None, columns: list[str]
) -> pd.DataFrame:
    """One output partition: the kept columns of X, then the prediction (runs on a worker)."""
    values = np.asarray(block, dtype=float).reshape(len(block), len(columns))
    out = pd.DataFrame(values, columns=columns)
    if kept is None:
        return out
    if len(kept) != len(out):
        raise ValueError(
            f"a partition of X has {len(kept)} rows but its prediction {len(out)}; X must "
            "give the same partitions each time it is computed"
        )
    return pd.concat([kept.reset_index(drop=True), out], axis=1)


def _keep_list(keep: str | Sequence[str] | None, X: Any) -> list[str]:
    if keep is None:
        return []
    if not isinstance(X, dd.DataFrame):
        raise TypeError(
            f"keep={keep!r} needs X to be a Dask DataFrame holding those columns, got "
            f"{type(X).__name__}; pass keep=None for pandas, numpy or Dask array input"
        )
    names = [keep] if isinstance(keep, str) else list(keep)
    missing = [c for c in names if c not in X.columns]
    if missing:
        raise ValueError(
            f"keep names columns {missing} that X does not have; X has {list(X.columns)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"keep names a column more than once: {names}")
    return names


def write_predictions(
    learner: MetaLearner,
    X: Matrix,
    path: str | os.PathLike[str],
    *,
    is_oos: bool,
    oos_method: str = OVERALL,
    keep: str | Sequence[str] | None = None,
    name: str = "cate",
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    **to_parquet_kwargs: Any,
) -> str:
    """Write ``learner.predict(X, is_oos, oos_method)`` to parquet from the workers.

    One file per partition of X, rows in X's order; columns: those of X named in ``keep``
    (e.g. a row id; X must then be a Dask DataFrame), then ``{name}_1..{name}_{K-1}`` for
    regression or ``{name}_{k}_{j}`` (output j of variant k's CATE) for classification.
    X may hold more columns than the learner's features (those are selected); pandas or
    numpy X is split into partitions as ``fit`` splits in-memory input.

    The write runs on the learner's client and nothing but its status returns to the
    client. With ``keep``, X is computed twice per partition (features for the prediction,
    the kept columns for the output), so X must be deterministic (parquet files are).

    Files are named ``part.000000.parquet``, ... so that any reader sorts them in X's order
    (dask's own names do not; pass ``name_function`` to change).

    The write is all or nothing: the files go to a hidden sibling directory, which replaces
    ``path`` once every partition is written; if anything fails, the sibling is removed and
    ``path`` is as it was. An existing non-empty ``path`` is refused (before any work)
    unless ``overwrite=True``, which replaces it whole: no rows of an older, longer output
    stay readable beside the new ones. ``storage_options`` and ``to_parquet_kwargs`` go to
    ``dask.dataframe.to_parquet`` (``write_index`` and ``compute`` are set here). Returns
    ``path`` as a string.
    """
    fixed = [k for k in _FIXED if k in to_parquet_kwargs]
    if fixed:
        raise TypeError(
            f"write_predictions sets {fixed} itself (no index, computed on the learner's "
            "client); leave them out"
        )
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string (the column prefix), got {name!r}")
    kept = _keep_list(keep, X)
    # the learner's own errors first: not fitted, bad is_oos / oos_method
    learner._check_predict(is_oos, oos_method)
    target = StagedDirectory.claim(path, storage_options, overwrite)
    context = learner._fit_context
    assert context is not None
    features = list(context.columns.names)
    # X may carry more columns (a row id to keep): predict from the fitted features only
    wider = isinstance(X, dd.DataFrame | pd.DataFrame) and set(features) < set(X.columns)
    if isinstance(X, dd.DataFrame):
        source: Any = X[features] if wider else X
    elif is_dask(X):
        source = X
    else:
        # split in-memory X exactly as fit did and keep it on the cluster: a lazy Frame
        frame = prediction_frame(cast(Any, X)[features] if wider else X, context.columns)
        source = dataclasses.replace(on_cluster(frame, learner._predict_client()), in_memory=False)
    prediction = learner.predict(source, is_oos=is_oos, oos_method=oos_method)
    _, n_effects, n_outputs = prediction.shape
    columns = prediction_columns(name, n_effects + 1, n_outputs, learner.is_classification)
    clash = [c for c in kept if c in columns]
    if clash:
        raise ValueError(
            f"keep names columns {clash} that are also prediction columns; rename them in X "
            "or pass another name="
        )

    with dask.config.set(_NO_TUNING):
        blocks = list(prediction.to_delayed().ravel())
        kept_parts: list[Any] = partitions(cast(Any, X)[kept]) if kept else [None] * len(blocks)
        if len(kept_parts) != len(blocks):
            raise ValueError(
                f"X has {len(kept_parts)} partitions but its prediction {len(blocks)} blocks"
            )
        meta = _prediction_partition(
            np.empty((0, n_effects, n_outputs)),
            cast(Any, X)._meta[kept] if kept else None,
            columns,
        )
        token = runtime.new_token()
        parts = [
            dask.delayed(_prediction_partition)(
                block,
                part,
                columns,
                dask_key_name=runtime.task_key("prediction-partition", i, token),
            )
            for i, (block, part) in enumerate(zip(blocks, kept_parts, strict=True))
        ]
        out = dd.from_delayed(
            parts, meta=meta, verify_meta=False, prefix=runtime.task_key("prediction-frame")
        )
        to_parquet_kwargs.setdefault("name_function", _PartName())
        try:
            write = out.to_parquet(
                target.staging_url,
                write_index=False,
                compute=False,
                storage_options=storage_options,
                **to_parquet_kwargs,
            )
            runtime.compute_now(write, learner._predict_client())
        except BaseException:
            target.abandon()
            raise
    target.commit()
    return os.fspath(path)
