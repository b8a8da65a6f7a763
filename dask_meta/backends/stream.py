"""The stream backend: a chain of ``partial_fit`` tasks, one partition of the job at a time.

For dask-ml ``Incremental`` around an estimator with ``partial_fit``: only one partition of a
job is in memory at a time, so the data can be of any size.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from dask_meta.backends.rows import PartitionRows
from dask_meta.backends.specs import FitResult, FitSpec, wrapped_estimator
from dask_meta.backends.threads import on_threads, worker_address
from dask_meta.factories import factory_name


@dataclass
class StreamState:
    """A streaming fit between two partitions: the model so far and what it has seen."""

    model: Any
    n_rows: int
    start: float
    classes: set = field(default_factory=set)


def stream_order(params: dict[str, Any], n_parts: int) -> list[int]:
    """The partition order of a streaming fit: dask-ml ``Incremental``'s block order."""
    order = list(range(n_parts))
    if params.get("shuffle_blocks", True):
        from sklearn.utils import check_random_state

        check_random_state(params.get("random_state")).shuffle(order)
    return order


def stream_step(
    spec: FitSpec,
    state: StreamState | None,
    final: bool,
    part: pd.DataFrame,
    *extra: pd.DataFrame,
) -> StreamState | FitResult:
    """``partial_fit`` the job's rows of one partition (runs on a worker).

    The first step clones the wrapped estimator; partitions without rows of the job pass
    the model through. The last step (``final``) returns the :class:`FitResult`.
    """
    return _step(spec, state, final, PartitionRows(part, extra))


def _step(
    spec: FitSpec, state: StreamState | None, final: bool, rows: PartitionRows
) -> StreamState | FitResult:
    """:func:`stream_step` on a partition joined with its derived columns already."""
    if state is None:
        from sklearn.base import clone

        state = StreamState(clone(wrapped_estimator(spec.factory, spec.params)), 0, time.time())
    X, y, fit_params = rows.arrays(spec)
    if len(y):
        on_threads(spec.threads, _partial_fit, spec, state.model, X, y, fit_params)
        state.n_rows += len(y)
        if spec.is_classifier:
            state.classes.update(np.unique(y).tolist())
    if not final:
        return state
    if state.n_rows == 0:
        raise ValueError(
            f"no training rows for {factory_name(spec.factory)} (target {spec.target}): the "
            "selection of rows for this model is empty"
        )
    # classes the rows showed: partial_fit's `classes` argument lists all classes up front
    classes = np.asarray(sorted(state.classes)) if spec.is_classifier else None
    return FitResult(state.model, state.n_rows, worker_address(), state.start, time.time(), classes)


def _partial_fit(spec: FitSpec, model: Any, X: Any, y: np.ndarray, fit_params: dict) -> None:
    with threadpool_limits(limits=spec.threads):
        model.partial_fit(X, y, **fit_params)


def fused_stream_step(
    specs: Sequence[FitSpec],
    states: Sequence[StreamState] | None,
    final: bool,
    part: pd.DataFrame,
    *extra: pd.DataFrame,
) -> list[Any]:
    """One partition for all fold models of a streaming estimator: one read, several fits.

    ``specs`` are the fits of one cross-fit estimator (its folds and overall model); each
    takes its own rows of the partition, as :func:`stream_step` would.
    """
    previous: Sequence[StreamState | None] = [None] * len(specs) if states is None else states
    rows = PartitionRows(part, extra)
    return [_step(spec, state, final, rows) for spec, state in zip(specs, previous, strict=True)]
