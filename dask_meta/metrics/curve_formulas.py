"""The curve formulas of scikit-uplift: Qini and uplift values, areas, perfect curves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# A cumulative state is an array (4, ...) of (rows, treated rows, sum y treated, sum y control).


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


def _qini_values(s: np.ndarray) -> np.ndarray:
    n, nt, yt, yc = s
    return yt - yc * _div(nt, n - nt)


def _uplift_values(s: np.ndarray) -> np.ndarray:
    n, nt, yt, yc = s
    return (_div(yt, nt) - _div(yc, n - nt)) * n


_CURVES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "qini": _qini_values,
    "uplift": _uplift_values,
}


def _trapezoid(x: np.ndarray, v: np.ndarray) -> float:
    """sklearn.metrics.auc on increasing x (numpy.trapezoid's expression)."""
    return float((np.diff(x) * (v[1:] + v[:-1]) / 2.0).sum())


def _curve_from_groups(groups: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Curve of tie groups given in ranking order by their stats (4, g); empty ones dropped."""
    groups = groups[:, groups[0] > 0]
    states = np.concatenate([np.zeros((4, 1)), np.cumsum(groups, axis=1)], axis=1)
    return states[0].astype(np.int64), _CURVES[kind](states)


@dataclass(frozen=True)
class _Cells:
    """Rows and positive outcomes of treated and control rows (binary y)."""

    n_t: float
    n_c: float
    y_t: float
    y_c: float


def _perfect_curve(cells: _Cells, kind: str, negative_effect: bool = True) -> tuple[Any, Any]:
    """scikit-uplift's perfect curves, from the four cells of a binary outcome."""
    tr1, tr0 = cells.y_t, cells.n_t - cells.y_t  # treated responders / non-responders
    ct1, ct0 = cells.y_c, cells.n_c - cells.y_c
    # a group's stats: (rows, treated rows, sum y treated, sum y control)
    g_tr1, g_tr0 = [tr1, tr1, tr1, 0.0], [tr0, tr0, 0.0, 0.0]
    g_ct1, g_ct0 = [ct1, 0.0, 0.0, ct1], [ct0, 0.0, 0.0, 0.0]
    if kind == "qini":
        if negative_effect:  # score y*t - y*(1-t): 1, 0, -1
            groups = [g_tr1, list(np.add(g_tr0, g_ct0)), g_ct1]
            return _curve_from_groups(np.array(groups, dtype=float).T, "qini")
        total = cells.y_t - cells.n_t * cells.y_c / cells.n_c
        n = cells.n_t + cells.n_c
        return np.array([0.0, total, n]), np.array([0.0, total, total])
    # uplift: score 2 * (y == t) + (y if control responders > treated non-responders else t)
    order = [g_tr1, g_ct0, g_ct1, g_tr0] if ct1 > tr0 else [g_tr1, g_ct0, g_tr0, g_ct1]
    return _curve_from_groups(np.array(order, dtype=float).T, "uplift")


def _normalise(kind: str, area: float, cells: _Cells, negative_effect: bool) -> tuple[float, float]:
    """(score, scale): score = (area - random) / (perfect - random), scale = 1 / |denom|.

    The random line ends where the perfect curve ends, as in scikit-uplift.
    """
    x_p, v_p = _perfect_curve(cells, kind, negative_effect)
    x_p = np.asarray(x_p, dtype=float)
    baseline = _trapezoid(np.array([0.0, x_p[-1]]), np.array([0.0, v_p[-1]]))
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = np.float64(_trapezoid(x_p, v_p) - baseline)
        return float((area - baseline) / denominator), float(1 / abs(denominator))
