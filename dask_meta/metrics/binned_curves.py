"""Binned mode: per-bin sums between approximate CATE quantiles, and the error bound.

See "Binned mode and its error bound" in ``docs/evaluation.md`` (section "How the metrics
are computed").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dask_meta.metrics.curve_formulas import _CURVES, _Cells, _div
from dask_meta.metrics.inputs import _CATE, _Y
from dask_meta.metrics.runner import _Runner
from dask_meta.metrics.validation import _Summary, _used_rows

# Per-bin statistics, rows of a (16, bins) array: sums, then minima, then maxima.
_SUM_ROWS = ("n_t", "n_c", "y_t", "y_c", "yp_t", "yn_t", "yp_c", "yn_c", "y2_t", "y2_c")
_MIN_ROWS = ("min", "ymin_t", "ymin_c")
_MAX_ROWS = ("max", "ymax_t", "ymax_c")
_BIN_ROWS = _SUM_ROWS + _MIN_ROWS + _MAX_ROWS


def _bin_stats(part: pd.DataFrame, variant: int, edges: np.ndarray) -> np.ndarray:
    used, t = _used_rows(part, variant)
    c = part[_CATE].to_numpy(dtype=float)[used]
    y = part[_Y].to_numpy(dtype=float)[used]
    n_bins = len(edges) + 1
    b = np.searchsorted(edges, c, side="left")  # bin j holds (edges[j-1], edges[j]]
    ctrl = 1 - t
    yp, yn = np.maximum(y, 0), np.minimum(y, 0)
    weights = (t, ctrl, y * t, y * ctrl, yp * t, yn * t, yp * ctrl, yn * ctrl, y * y * t)
    rows = [np.bincount(b, weights=wt, minlength=n_bins) for wt in (*weights, y * y * ctrl)]
    lo, hi = np.full((3, n_bins), np.inf), np.full((3, n_bins), -np.inf)
    treated = t == 1
    for k, (mask, values) in enumerate(((slice(None), c), (treated, y), (~treated, y))):
        np.minimum.at(lo[k], b[mask], values[mask])
        np.maximum.at(hi[k], b[mask], values[mask])
    return np.vstack([np.stack(rows), lo, hi])


def _merge_bins(*stats: np.ndarray) -> np.ndarray:
    n_sums, n_mins = len(_SUM_ROWS), len(_MIN_ROWS)
    sums = np.sum([s[:n_sums] for s in stats], axis=0)
    lo = np.min([s[n_sums : n_sums + n_mins] for s in stats], axis=0)
    hi = np.max([s[n_sums + n_mins :] for s in stats], axis=0)
    return np.vstack([sums, lo, hi])


def _quantile_edges(summary: _Summary, n_bins: int) -> np.ndarray:
    """Inner edges at the approximate ``j / n_bins`` quantiles of the sampled CATE."""
    if not summary.samples:
        return np.zeros(0)
    values = np.concatenate([v for v, _ in summary.samples])
    weights = np.concatenate([np.full(len(v), wt) for v, wt in summary.samples])
    order = np.argsort(values, kind="mergesort")
    values, cum = values[order], np.cumsum(weights[order])
    targets = cum[-1] * np.arange(1, n_bins) / n_bins
    idx = np.minimum(np.searchsorted(cum, targets, side="left"), len(values) - 1)
    edges = np.unique(values[idx])
    return edges[edges < values[-1]]  # an edge at the maximum would leave an empty top bin


def _sample_size(bins: int | np.ndarray) -> int:
    return 0 if isinstance(bins, np.ndarray) else max(4 * bins, 4000) + 1


@dataclass(frozen=True)
class _Binned:
    """Per-bin statistics in ranking order (highest CATE first), empty bins dropped."""

    stats: dict[str, np.ndarray]

    @classmethod
    def from_array(cls, array: np.ndarray) -> _Binned:
        array = array[:, ::-1]
        array = array[:, array[0] + array[1] > 0]
        return cls(dict(zip(_BIN_ROWS, array, strict=True)))

    def states(self) -> np.ndarray:
        """Cumulative states (4, bins + 1) at the bin boundaries, origin first."""
        s = self.stats
        groups = np.stack([s["n_t"] + s["n_c"], s["n_t"], s["y_t"], s["y_c"]])
        return np.concatenate([np.zeros((4, 1)), np.cumsum(groups, axis=1)], axis=1)

    def cells(self) -> _Cells:
        s = self.stats
        return _Cells(s["n_t"].sum(), s["n_c"].sum(), s["y_t"].sum(), s["y_c"].sum())

    def bound(self, kind: str) -> tuple[float, np.ndarray]:
        """(area bound, per-bin bound of |exact - binned| between boundaries).

        Claim 2 of "How the metrics are computed" in ``docs/evaluation.md`` proves it.
        """
        s, before = self.stats, self.states()[:, :-1]
        values = _CURVES[kind](self.states())
        f_a, f_b = values[:-1], values[1:]
        n0, nt0, yt0, yc0 = before
        nc0 = n0 - nt0
        rt_lo, rt_hi = _ratio_range(
            yt0, nt0, s["yn_t"], s["yp_t"], s["n_t"], s["ymin_t"], s["ymax_t"]
        )
        rc_lo, rc_hi = _ratio_range(
            yc0, nc0, s["yn_c"], s["yp_c"], s["n_c"], s["ymin_c"], s["ymax_c"]
        )
        if kind == "qini":
            g_lo, g_hi = _product_range(rc_lo, rc_hi, nt0, nt0 + s["n_t"])
            lo = yt0 + s["yn_t"] - g_hi
            hi = yt0 + s["yp_t"] - g_lo
        else:
            m = s["n_t"] + s["n_c"]
            lo, hi = _product_range(rt_lo - rc_hi, rt_hi - rc_lo, n0, n0 + m)
        dev = np.maximum(hi - np.minimum(f_a, f_b), np.maximum(f_a, f_b) - lo)
        dev = np.where(s["min"] == s["max"], 0.0, np.maximum(dev, 0.0))
        rows = s["n_t"] + s["n_c"]
        return float((rows * dev).sum()), dev


def _ratio_range(
    y0: np.ndarray,
    n0: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    n: np.ndarray,
    y_min: np.ndarray,
    y_max: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Range of a group's running mean ``(y0 + a) / (n0 + k)`` inside a bin (0 when empty).

    ``a`` is the outcome sum of ``k`` of the bin's ``n`` rows of the group, so it lies in
    ``[lo, hi]`` (the sums of the negative and positive parts), and the mean is a weighted
    average of ``y0 / n0`` and the mean of those rows, which lies in ``[y_min, y_max]``. Both
    ranges hold; their intersection is returned.
    """
    d_lo, d_hi = np.maximum(n0, 1), np.maximum(n0 + n, 1)
    corners = np.stack([(y0 + lo) / d_lo, (y0 + lo) / d_hi, (y0 + hi) / d_lo, (y0 + hi) / d_hi])
    before = _div(y0, n0)
    seen = n0 > 0
    m_lo = np.where(seen, np.minimum(before, y_min), y_min)
    m_hi = np.where(seen, np.maximum(before, y_max), y_max)
    r_lo = np.maximum(corners.min(axis=0), m_lo)
    r_hi = np.minimum(corners.max(axis=0), m_hi)
    r_lo = np.where(seen, r_lo, np.minimum(r_lo, 0))  # the group may still be empty: 0
    r_hi = np.where(seen, r_hi, np.maximum(r_hi, 0))
    never = ~seen & (n == 0)
    return np.where(never, 0.0, r_lo), np.where(never, 0.0, r_hi)


def _product_range(
    a_lo: np.ndarray, a_hi: np.ndarray, b_lo: np.ndarray, b_hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    corners = np.stack([a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi])
    return corners.min(axis=0), corners.max(axis=0)


def _binned(runner: _Runner, summary: _Summary, variant: int, bins: Any) -> _Binned:
    edges = bins if isinstance(bins, np.ndarray) else _quantile_edges(summary, bins)
    array = runner.reduce("bins", _bin_stats, _merge_bins, variant, edges)
    return _Binned.from_array(array)
