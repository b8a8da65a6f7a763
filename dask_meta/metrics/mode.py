"""Exact or binned: the ``method`` argument, its limits and the ``bins`` argument.

See "How the metrics are computed" in ``docs/evaluation.md``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from dask_meta.metrics.inputs import _Inputs

Method = Literal["auto", "exact", "binned"]
METHODS = ("auto", "exact", "binned")

#: ``method="auto"`` is exact for Dask input up to this many used rows; exact curves and
#: tables of Dask input (one point per distinct CATE value reaches the client) stop here.
EXACT_MAX_ROWS = 1_000_000
#: Bins of the binned mode.
DEFAULT_BINS = 1000


def _check_method(method: Any) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    return str(method)


def _check_bins(bins: Any, name: str = "bins") -> int | np.ndarray:
    if isinstance(bins, int | np.integer) and not isinstance(bins, bool):
        if bins < 1:
            raise ValueError(f"{name} must be a positive number of bins, got {bins}")
        return int(bins)
    edges = np.asarray(bins, dtype=float) if not isinstance(bins, str) else np.array([])
    if edges.ndim != 1 or len(edges) == 0 or not np.all(np.isfinite(edges)):
        raise ValueError(
            f"{name} must be a number of bins or a 1-D array of finite, increasing inner bin "
            f"edges, got {bins!r}"
        )
    if np.any(np.diff(edges) <= 0):
        raise ValueError(f"{name} edges must be strictly increasing, got {edges}")
    return edges


def _resolve_method(method: str, inputs: _Inputs, n_used: int) -> str:
    if method == "auto":
        return "exact" if inputs.in_memory or n_used <= EXACT_MAX_ROWS else "binned"
    return method


def _exact_limit(inputs: _Inputs, n_used: int, what: str) -> None:
    if not inputs.in_memory and n_used > EXACT_MAX_ROWS:
        raise ValueError(
            f"an exact {what} of Dask input has up to one entry per row ({n_used} used rows > "
            f"EXACT_MAX_ROWS = {EXACT_MAX_ROWS}) and would be collected on the client; use "
            "method='binned' (or the scores, which are exact at any size)"
        )
