"""``cate_histogram``: the distribution of the predicted CATE, out of core."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from dask_meta._typing import Vector
from dask_meta.metrics.inputs import _CATE, _check_variant, _inputs, _pick_cate
from dask_meta.metrics.runner import _add, _first_pass, _Runner


def _histogram(part: pd.DataFrame, edges: np.ndarray) -> np.ndarray:
    return np.histogram(part[_CATE].to_numpy(dtype=float), bins=edges)[0].astype(np.int64)


def cate_histogram(
    cate: Vector,
    *,
    bins: int = 50,
    value_range: tuple[float, float] | None = None,
    variant: int | None = None,
    client: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, edges)`` of the predicted CATE, like ``numpy.histogram``, out of core.

    Equal-width bins over ``value_range`` (default: the CATE's min and max, from a first
    pass); one pass of per-partition counts.
    """
    variant = _check_variant(variant)
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    inputs = _inputs({_CATE: ("cate", _pick_cate(cate, variant))})
    runner = _Runner(inputs, client)
    if value_range is None:
        summary, _ = _first_pass(runner, None)
        value_range = (summary.cate_min, summary.cate_max)
    lo, hi = (float(v) for v in value_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(
            f"value_range must be finite (low, high) with low <= high, got {value_range}"
        )
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5  # numpy.histogram's choice for a constant
    edges = np.linspace(lo, hi, int(bins) + 1)
    counts = runner.reduce("histogram", _histogram, _add, edges)
    return np.asarray(counts, dtype=np.int64), edges
