"""Plots of CATE estimates: Qini and uplift curves, the CATE distribution, GATES and
calibration, importances.

Every function returns a ``matplotlib.figure.Figure`` (drawn without pyplot, so no
backend or global figure state is involved; Jupyter displays it) or draws into ``ax``.
The numbers come from :mod:`dask_meta.metrics`, so Dask input is reduced on the cluster
and only curve points or histogram counts reach the client; :func:`plot_gates` and
:func:`plot_calibration` draw a table of :func:`dask_meta.metrics.gates`. matplotlib is optional:
``pip install "dask-meta[plots]"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from dask_meta import metrics

__all__ = [
    "plot_calibration",
    "plot_cate_distribution",
    "plot_feature_importances",
    "plot_gates",
    "plot_qini",
    "plot_uplift",
]


def _axes(ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            'dask_meta.plots needs matplotlib: pip install "dask-meta[plots]"'
        ) from None
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _models(cate: Any) -> dict[str, Any]:
    if isinstance(cate, Mapping):
        if not cate:
            raise ValueError("cate is an empty mapping; give at least one model's CATE")
        return {str(k): v for k, v in cate.items()}
    return {"model": cate}


def _plot_curve(
    kind: str,
    y: Any,
    cate: Any,
    w: Any,
    *,
    perfect: bool | None,
    random: bool,
    negative_effect: bool,
    variant: int | None,
    method: metrics.Method,
    bins: Any,
    client: Any,
    ax: Any,
) -> Any:
    fig, ax = _axes(ax, (6.0, 4.5))
    curve = metrics.qini_curve if kind == "qini" else metrics.uplift_curve
    x_last, v_last = 0, 0.0
    for label, values in _models(cate).items():
        x, v = curve(y, values, w, variant=variant, method=method, bins=bins, client=client)
        ax.plot(x, v, label=label)
        x_last, v_last = x[-1], v[-1]
    if perfect is not False:
        try:
            if kind == "qini":
                xp, vp = metrics.perfect_qini_curve(
                    y, w, negative_effect=negative_effect, variant=variant, client=client
                )
            else:
                xp, vp = metrics.perfect_uplift_curve(y, w, variant=variant, client=client)
        except ValueError:
            if perfect:  # asked for explicitly: say why not
                raise
        else:
            ax.plot(xp, vp, label="perfect", color="tab:green", linestyle=":")
    if random:
        ax.plot([0, x_last], [0, v_last], label="random", color="black", linestyle="--")
    ax.set_xlabel("rows targeted, by decreasing CATE")
    ax.set_ylabel("Qini (incremental outcome)" if kind == "qini" else "uplift (cumulative gain)")
    ax.set_title("Qini curve" if kind == "qini" else "Uplift curve")
    ax.legend()
    return fig


def plot_qini(
    y: Any,
    cate: Any,
    w: Any,
    *,
    perfect: bool | None = None,
    random: bool = True,
    negative_effect: bool = True,
    variant: int | None = None,
    method: metrics.Method = "auto",
    bins: Any = metrics.DEFAULT_BINS,
    client: Any = None,
    ax: Any = None,
) -> Any:
    """Qini curve of one model, or of several (``cate`` a mapping name -> CATE).

    Lines: one per model, then the perfect curve (``perfect=None``: when ``y`` is binary;
    ``True``: required) and the random line. ``method``/``bins`` as in
    :func:`dask_meta.metrics.qini_curve`.
    """
    return _plot_curve(
        "qini",
        y,
        cate,
        w,
        perfect=perfect,
        random=random,
        negative_effect=negative_effect,
        variant=variant,
        method=method,
        bins=bins,
        client=client,
        ax=ax,
    )


def plot_uplift(
    y: Any,
    cate: Any,
    w: Any,
    *,
    perfect: bool | None = None,
    random: bool = True,
    variant: int | None = None,
    method: metrics.Method = "auto",
    bins: Any = metrics.DEFAULT_BINS,
    client: Any = None,
    ax: Any = None,
) -> Any:
    """Uplift (cumulative gain) curve of one or several models; see :func:`plot_qini`."""
    return _plot_curve(
        "uplift",
        y,
        cate,
        w,
        perfect=perfect,
        random=random,
        negative_effect=True,
        variant=variant,
        method=method,
        bins=bins,
        client=client,
        ax=ax,
    )


def plot_cate_distribution(
    cate: Any,
    *,
    bins: int = 50,
    value_range: tuple[float, float] | None = None,
    variant: int | None = None,
    client: Any = None,
    ax: Any = None,
) -> Any:
    """Histogram of the predicted CATE (one bar per bin), counted out of core."""
    counts, edges = metrics.cate_histogram(
        cate, bins=bins, value_range=value_range, variant=variant, client=client
    )
    fig, ax = _axes(ax, (6.0, 4.0))
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", edgecolor="white")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("predicted CATE")
    ax.set_ylabel("rows")
    ax.set_title("Distribution of the predicted CATE")
    return fig


def plot_feature_importances(
    importances: pd.Series | pd.DataFrame | list[pd.Series],
    *,
    top: int | None = None,
    ax: Any = None,
) -> Any:
    """Horizontal bars of feature importances, largest first.

    A Series gives one bar per feature; a DataFrame (features x models or variants) one
    group of bars per feature, one bar per column; a list of Series, as returned by
    ``learner.feature_importances()``, one column per variant (``variant 1``...). ``top``:
    keep the ``top`` features with the largest absolute importance (in any column).
    """
    if isinstance(importances, list):
        if not importances or not all(isinstance(s, pd.Series) for s in importances):
            raise TypeError("importances as a list must hold one pandas Series per variant")
        importances = pd.DataFrame({f"variant {k}": s for k, s in enumerate(importances, start=1)})
    if isinstance(importances, pd.Series):
        frame = importances.to_frame()
    elif isinstance(importances, pd.DataFrame):
        frame = importances
    else:
        raise TypeError(
            f"importances must be a pandas Series or DataFrame, got {type(importances).__name__}"
        )
    if frame.empty:
        raise ValueError("importances is empty")
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ValueError(f"top must be a positive int, got {top!r}")
    order = frame.abs().max(axis=1).sort_values(ascending=False).index
    frame = frame.loc[order[:top] if top is not None else order]
    n_features, n_columns = frame.shape
    fig, ax = _axes(ax, (6.0, max(2.5, 0.35 * n_features * max(1, n_columns) ** 0.5 + 1)))
    height = 0.8 / n_columns
    positions = np.arange(n_features)[::-1]  # largest at the top
    for j, column in enumerate(frame.columns):
        offset = (j - (n_columns - 1) / 2) * height
        label = None if isinstance(importances, pd.Series) else str(column)
        ax.barh(positions - offset, frame[column].to_numpy(), height=height, label=label)
    ax.set_yticks(positions, [str(f) for f in frame.index])
    ax.set_xlabel("importance")
    ax.set_title("Feature importances")
    if n_columns > 1:
        ax.legend()
    return fig


def _gates_table(table: Any) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(
            f"table must be the DataFrame of metrics.gates(), got {type(table).__name__}"
        )
    missing = [c for c in ("n", "cate_mean", "gate", "lower", "upper") if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the columns {missing} of a metrics.gates() table")
    rows = table[table["n"] > 0]
    if rows.empty:
        raise ValueError("table has no non-empty group")
    return rows


def _interval_label(table: pd.DataFrame) -> str:
    alpha = table.attrs.get("alpha")
    return "GATE" if alpha is None else f"GATE, {1 - alpha:.0%} interval"


def plot_gates(table: pd.DataFrame, *, predicted: bool = True, ax: Any = None) -> Any:
    """GATES of a :func:`dask_meta.metrics.gates` table: one point per group with its
    interval, the ATE (a dashed line) and, with ``predicted``, the mean predicted CATE of
    each group (crosses)."""
    rows = _gates_table(table)
    fig, ax = _axes(ax, (6.0, 4.0))
    groups = rows.index.to_numpy()
    gate = rows["gate"].to_numpy(dtype=float)
    bars = [gate - rows["lower"].to_numpy(dtype=float), rows["upper"].to_numpy(dtype=float) - gate]
    ax.errorbar(groups, gate, yerr=bars, fmt="o", capsize=4, label=_interval_label(rows))
    if predicted:
        ax.plot(groups, rows["cate_mean"].to_numpy(), "x", color="tab:orange", label="mean CATE")
    n = rows["n"].to_numpy(dtype=float)
    ate = float(np.sum(n * gate) / n.sum())
    ax.axhline(ate, color="black", linestyle="--", linewidth=1, label="ATE")
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.set_xticks(groups)
    ax.set_xlabel("group of the predicted CATE (1 = lowest)")
    ax.set_ylabel("average effect (mean DR score)")
    ax.set_title("Group average treatment effects (GATES)")
    ax.legend()
    return fig


def plot_calibration(table: pd.DataFrame, *, ax: Any = None) -> Any:
    """Calibration of a :func:`dask_meta.metrics.gates` table: each group's GATE (with its
    interval) against its mean predicted CATE, beside the 45-degree line of perfect
    calibration; the title gives :func:`dask_meta.metrics.calibration_score`."""
    rows = _gates_table(table)
    fig, ax = _axes(ax, (5.0, 5.0))
    predicted = rows["cate_mean"].to_numpy(dtype=float)
    gate = rows["gate"].to_numpy(dtype=float)
    lower, upper = rows["lower"].to_numpy(dtype=float), rows["upper"].to_numpy(dtype=float)
    ax.errorbar(
        predicted,
        gate,
        yerr=[gate - lower, upper - gate],
        fmt="o",
        capsize=4,
        label=_interval_label(rows),
    )
    ends = [float(min(predicted.min(), lower.min())), float(max(predicted.max(), upper.max()))]
    ax.plot(ends, ends, color="black", linestyle="--", linewidth=1, label="perfect calibration")
    ax.set_xlabel("mean predicted CATE of the group")
    ax.set_ylabel("GATE (mean DR score)")
    score = metrics.calibration_score(rows)
    ax.set_title(f"Calibration by CATE group (calibration R\u00b2 {score:.2f})")
    ax.legend()
    return fig
