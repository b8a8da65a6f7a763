"""Qini and uplift curves, their normalised areas and the perfect curves (scikit-uplift's).

Conventions follow scikit-uplift 0.5.1 (``sklift.metrics``); see "How the metrics are
computed" in ``docs/evaluation.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dask_meta._typing import Vector
from dask_meta.metrics.binned_curves import _binned, _sample_size
from dask_meta.metrics.curve_formulas import (
    _CURVES,
    _Cells,
    _normalise,
    _perfect_curve,
    _qini_values,
    _trapezoid,
    _uplift_values,
)
from dask_meta.metrics.exact_curves import _exact, _Want
from dask_meta.metrics.inputs import _CATE, _W, _Y, _check_variant, _inputs, _pick_cate
from dask_meta.metrics.mode import (
    DEFAULT_BINS,
    Method,
    _check_bins,
    _check_method,
    _exact_limit,
    _resolve_method,
)
from dask_meta.metrics.runner import _add, _first_pass, _Runner
from dask_meta.metrics.validation import _used_rows


@dataclass(frozen=True)
class _CurveResult:
    x: np.ndarray
    values: dict[str, np.ndarray]
    area: dict[str, float]
    bound: dict[str, float]  # 0 in exact mode
    cells: _Cells
    y_binary: bool


def _curves(
    y: Any,
    cate: Any,
    w: Any,
    *,
    variant: Any,
    method: Any,
    bins: Any,
    client: Any,
    points: bool,
    binary_y: str | None = None,
) -> _CurveResult:
    variant = _check_variant(variant)
    method = _check_method(method)
    bins = _check_bins(bins)
    cate = _pick_cate(cate, variant)
    inputs = _inputs({_CATE: ("cate", cate), _Y: ("y", y), _W: ("w", w)})
    runner = _Runner(inputs, client)
    maybe_binned = method == "binned" or (method == "auto" and not inputs.in_memory)
    summary, resolved = _first_pass(
        runner, variant, _sample_size(bins) if maybe_binned else 0, binary_y
    )
    assert resolved is not None
    method = _resolve_method(method, inputs, summary.n_used)
    if method == "exact":
        if points:
            _exact_limit(inputs, summary.n_used, "curve")
        pieces = _exact(runner, resolved, _Want(areas=True, curves=points))
        area = {k: sum(p.areas[k] for p in pieces) for k in _CURVES}
        if points:
            pts = np.concatenate([np.zeros((3, 1))] + [p.points for p in pieces], axis=1)
        else:  # the origin and the last point only
            last = pieces[0].total[:, None]
            pts = np.array(
                [[0.0, last[0, 0]], [0.0, *_qini_values(last)], [0.0, *_uplift_values(last)]]
            )
        values = {"qini": pts[1], "uplift": pts[2]}
        exact_bound = {"qini": 0.0, "uplift": 0.0}
        cells = pieces[0].cells()
        return _CurveResult(
            pts[0].astype(np.int64), values, area, exact_bound, cells, summary.y_binary
        )
    binned = _binned(runner, summary, resolved, bins)
    states = binned.states()
    values = {k: f(states) for k, f in _CURVES.items()}
    x = states[0].astype(np.int64)
    area = {k: _trapezoid(states[0], v) for k, v in values.items()}
    bound = {k: binned.bound(k)[0] for k in _CURVES}
    return _CurveResult(x, values, area, bound, binned.cells(), summary.y_binary)


def _cell_sums(part: pd.DataFrame, variant: int) -> np.ndarray:
    used, t = _used_rows(part, variant)
    y = part[_Y].to_numpy(dtype=float)[used]
    return np.array([t.sum(), (1 - t).sum(), (y * t).sum(), (y * (1 - t)).sum()])


def _exact_cells(runner: _Runner, variant: int) -> _Cells:
    sums = runner.reduce("cells", _cell_sums, _add, variant)
    return _Cells(*(float(v) for v in sums))


_NEEDS_BINARY = (
    "the normalised score compares with scikit-uplift's perfect curve, which is defined for "
    "binary outcomes; pass normalize=False for the area between the model's and the random "
    "curve"
)


def qini_curve(
    y: Vector,
    cate: Vector,
    w: Vector,
    *,
    variant: int | None = None,
    method: Method = "auto",
    bins: int | Sequence[float] = DEFAULT_BINS,
    client: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve ``(x, values)``: ``Y_t - Y_c * N_t / N_c`` over the top ``x`` rows.

    As ``sklift.metrics.qini_curve`` (points at the ends of tie groups, origin first), for
    any numeric outcome. ``method="binned"``: the points at the bin boundaries, which are
    points of the exact curve (Claim 1 of "How the metrics are computed" in
    ``docs/evaluation.md``). ``bins``: a number of approximate-quantile bins, or increasing
    inner edges.
    """
    res = _curves(y, cate, w, variant=variant, method=method, bins=bins, client=client, points=True)
    return res.x, res.values["qini"]


def uplift_curve(
    y: Vector,
    cate: Vector,
    w: Vector,
    *,
    variant: int | None = None,
    method: Method = "auto",
    bins: int | Sequence[float] = DEFAULT_BINS,
    client: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Uplift (cumulative gain) curve ``(x, values)``: ``(Y_t / N_t - Y_c / N_c) * x``.

    As ``sklift.metrics.uplift_curve``; see :func:`qini_curve` for ``method`` and ``bins``.
    """
    res = _curves(y, cate, w, variant=variant, method=method, bins=bins, client=client, points=True)
    return res.x, res.values["uplift"]


def _score(
    kind: str,
    y: Any,
    cate: Any,
    w: Any,
    *,
    negative_effect: bool,
    normalize: bool,
    variant: Any,
    method: Any,
    bins: Any,
    client: Any,
    return_bound: bool,
) -> float | tuple[float, float]:
    if not isinstance(negative_effect, bool):
        raise TypeError(f"negative_effect must be a bool, got {negative_effect!r}")
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {normalize!r}")
    res = _curves(
        y,
        cate,
        w,
        variant=variant,
        method=method,
        bins=bins,
        client=client,
        points=False,
        binary_y=_NEEDS_BINARY if normalize else None,
    )
    area, bound = res.area[kind], res.bound[kind]
    if normalize:
        value, scale = _normalise(kind, area, res.cells, negative_effect)
        bound *= scale
    else:  # the random line from the origin to the curve's last point
        value = area - _trapezoid(res.x[[0, -1]].astype(float), res.values[kind][[0, -1]])
    return (value, bound) if return_bound else value


def qini_auc_score(
    y: Vector,
    cate: Vector,
    w: Vector,
    *,
    negative_effect: bool = True,
    normalize: bool = True,
    variant: int | None = None,
    method: Method = "auto",
    bins: int | Sequence[float] = DEFAULT_BINS,
    client: Any = None,
    return_bound: bool = False,
) -> float | tuple[float, float]:
    """Normalised area under the Qini curve (Qini coefficient), as scikit-uplift.

    ``normalize=True`` (binary ``y``): ``(AUC - AUC_random) / (AUC_perfect - AUC_random)``
    with scikit-uplift's perfect curve (``negative_effect`` as in
    ``sklift.metrics.qini_auc_score``). ``normalize=False`` (any ``y``): ``AUC - AUC_random``,
    the area between the model's curve and the random line. ``return_bound=True`` returns
    ``(score, bound)``: ``|score - exact score| <= bound`` (0 in exact mode; in binned mode
    Claim 2 of "How the metrics are computed" in ``docs/evaluation.md``).
    """
    return _score(
        "qini",
        y,
        cate,
        w,
        negative_effect=negative_effect,
        normalize=normalize,
        variant=variant,
        method=method,
        bins=bins,
        client=client,
        return_bound=return_bound,
    )


def uplift_auc_score(
    y: Vector,
    cate: Vector,
    w: Vector,
    *,
    normalize: bool = True,
    variant: int | None = None,
    method: Method = "auto",
    bins: int | Sequence[float] = DEFAULT_BINS,
    client: Any = None,
    return_bound: bool = False,
) -> float | tuple[float, float]:
    """Normalised area under the uplift curve (AUUC), as ``sklift.metrics.uplift_auc_score``.

    See :func:`qini_auc_score` for ``normalize`` and ``return_bound``.
    """
    return _score(
        "uplift",
        y,
        cate,
        w,
        negative_effect=True,
        normalize=normalize,
        variant=variant,
        method=method,
        bins=bins,
        client=client,
        return_bound=return_bound,
    )


def _perfect(
    kind: str, y: Any, w: Any, variant: Any, client: Any, negative_effect: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    variant = _check_variant(variant)
    inputs = _inputs({_Y: ("y", y), _W: ("w", w)})
    runner = _Runner(inputs, client)
    why = "the perfect curve is defined for binary outcomes"
    _, resolved = _first_pass(runner, variant, 0, why)
    assert resolved is not None
    return _perfect_curve(_exact_cells(runner, resolved), kind, negative_effect)


def perfect_qini_curve(
    y: Vector,
    w: Vector,
    *,
    negative_effect: bool = True,
    variant: int | None = None,
    client: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``sklift.metrics.perfect_qini_curve`` for a binary ``y`` (one pass of four sums)."""
    return _perfect("qini", y, w, variant, client, negative_effect)


def perfect_uplift_curve(
    y: Vector, w: Any, *, variant: int | None = None, client: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """``sklift.metrics.perfect_uplift_curve`` for a binary ``y`` (one pass of four sums)."""
    return _perfect("uplift", y, w, variant, client)
