"""Plots of CATE estimates: Qini and uplift curves, the CATE distribution, GATES and
calibration, importances; and of a fit: the timeline of its base-model fits.

Every function returns a ``matplotlib.figure.Figure`` (drawn without pyplot, so no
backend or global figure state is involved; Jupyter displays it) or draws into ``ax``.
The numbers come from :mod:`dask_meta.metrics`, so Dask input is reduced on the cluster
and only curve points or histogram counts reach the client; :func:`plot_gates` and
:func:`plot_calibration` draw a table of :func:`dask_meta.metrics.gates`, and
:func:`plot_fit_timeline` a ``fit_report_``. matplotlib is optional:
``pip install "dask-meta[plots]"``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from dask_meta import metrics

__all__ = [
    "plot_calibration",
    "plot_cate_distribution",
    "plot_feature_importances",
    "plot_fit_timeline",
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


# --- the fit timeline --------------------------------------------------------------------------

#: The ``fit_report_`` columns a timeline needs.
TIMELINE_COLUMNS = ("key", "stage", "worker", "threads", "start", "end")
#: Fixed colours of the learners' two stages; other values get the next colours of tab10.
_STAGE_COLORS = {"nuisance": "tab:blue", "treatment": "tab:orange"}
_PALETTE = [f"tab:{c}" for c in ("green", "red", "purple", "brown", "pink", "olive", "cyan")]


def _fit_report(report: Any) -> pd.DataFrame:
    """The ``fit_report_`` of ``report`` (a report, or an object fitted with one), checked."""
    if isinstance(report, pd.DataFrame):
        frame = report
    elif hasattr(report, "fit_report_"):
        frame = report.fit_report_
        if frame is None:
            raise ValueError(
                f"report: this {type(report).__name__} has no fit_report_ yet; fit it first"
            )
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(
                f"report: {type(report).__name__}.fit_report_ is a "
                f"{type(frame).__name__}, not a DataFrame"
            )
    else:
        raise TypeError(
            "report must be a fit_report_ DataFrame, or a fitted learner, Bootstrap or "
            f"CrossFitEstimator, got {type(report).__name__}"
        )
    missing = [c for c in TIMELINE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"report lacks the columns {missing} of a fit_report_ (a timeline needs "
            f"{list(TIMELINE_COLUMNS)}: which worker ran each fit, on how many threads, "
            "from when to when)"
        )
    if frame.empty:
        raise ValueError("report has no fits to draw")
    times = frame[["start", "end"]]
    if not all(pd.api.types.is_numeric_dtype(times[c]) for c in times) or times.isna().any(
        axis=None
    ):
        raise ValueError("report: start and end must be numbers (seconds), without missing ones")
    if (frame["end"] < frame["start"]).any():
        raise ValueError("report: a fit ends before it starts (end < start)")
    threads = frame["threads"]
    if not pd.api.types.is_integer_dtype(threads) or (threads < 1).any():
        raise ValueError("report: threads must be positive integers")
    return frame


def _free_block(busy: list[float], start: float, t: int, limit: int) -> list[int] | None:
    """The lowest ``t`` adjacent lanes below ``limit`` that are free at ``start``."""
    for first in range(limit - t + 1):
        lanes = range(first, first + t)
        if all(i >= len(busy) or busy[i] <= start for i in lanes):
            return list(lanes)
    return None


def _pack_lanes(fits: pd.DataFrame, capacity: int | None) -> tuple[list[list[int]], int]:
    """Thread lanes for the fits of one worker, in order of start: each fit takes as many
    lanes as its threads, free from its start to its end. Adjacent lanes if possible, else
    any free ones within the worker's ``capacity``; more lanes than ``capacity`` only when
    the fits held more threads at once than the worker had. Returns the lanes of each fit
    (in the order of ``fits``) and the number of lanes used."""
    busy: list[float] = []  # per lane: when its last fit ends
    lanes: list[list[int]] = [[] for _ in range(len(fits))]
    starts, ends = fits["start"].to_numpy(float), fits["end"].to_numpy(float)
    threads = fits["threads"].to_numpy(int)
    for i in np.argsort(starts, kind="stable"):
        start, t = starts[i], int(threads[i])
        within = len(busy) + t if capacity is None else max(capacity, t)
        chosen = _free_block(busy, start, t, within)
        if chosen is None:
            free = [k for k in range(within) if k >= len(busy) or busy[k] <= start]
            chosen = free[:t] if len(free) >= t else None
        if chosen is None:  # oversubscribed: new lanes past the worker's threads
            chosen = _free_block(busy, start, t, len(busy) + t)
        assert chosen is not None
        busy.extend([0.0] * (max(chosen) + 1 - len(busy)))
        for k in chosen:
            busy[k] = ends[i]
        lanes[i] = chosen
    return lanes, len(busy)


def _runs(lanes: list[int]) -> list[tuple[int, int]]:
    """Adjacent lanes as (first, count) runs."""
    runs: list[tuple[int, int]] = []
    for k in sorted(lanes):
        if runs and runs[-1][0] + runs[-1][1] == k:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((k, 1))
    return runs


def _plan_title(plan: Any) -> str | None:
    """One line on the plan of ``fit_report_.attrs["plan"]``."""
    if not isinstance(plan, Mapping):
        return None
    parts = []
    threads = plan.get("threads_per_model")
    if threads is not None:
        parts.append(f"{threads} thread{'s' if threads != 1 else ''} per model")
    for kind, t in (plan.get("threads_by_kind") or {}).items():
        parts.append(f"{t} for the {kind}")
    if plan.get("tail_fits"):
        parts.append(f"{plan['tail_threads']} for the last {plan['tail_fits']} fit(s)")
    for limit in ("n_jobs_cross_fitting", "n_jobs_base_learners"):
        if plan.get(limit) is not None:
            parts.append(f"{limit}={plan[limit]}")
    return ", ".join([f"plan: {plan.get('source', '?')}", *parts])


def _capacities(
    frame: pd.DataFrame, worker_threads: int | Mapping[str, int] | None, workers: list[str]
) -> dict[str, int]:
    """The threads of each worker: ``worker_threads``, else those the report recorded."""
    if worker_threads is None:
        given = frame.attrs.get("worker_threads") or {}
    elif isinstance(worker_threads, Mapping):
        given = worker_threads
    elif isinstance(worker_threads, int | np.integer) and not isinstance(worker_threads, bool):
        given = dict.fromkeys(workers, worker_threads)
    else:
        raise TypeError(
            "worker_threads must be an int or a mapping worker -> threads, got "
            f"{type(worker_threads).__name__}"
        )
    for worker, threads in given.items():
        if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
            raise ValueError(
                f"worker_threads must be positive ints, got {threads!r} for {worker!r}"
            )
    return {str(worker): int(threads) for worker, threads in given.items()}


def _short_worker(worker: str) -> str:
    return worker.split("://", 1)[-1]


def plot_fit_timeline(
    report: Any,
    *,
    color_by: str = "stage",
    worker_threads: int | Mapping[str, int] | None = None,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """Timeline of a fit's base-model fits: one row per worker thread, one bar per fit.

    ``report``: a learner's ``fit_report_`` DataFrame, or a fitted learner, ``Bootstrap`` or
    ``CrossFitEstimator`` (its ``fit_report_``). Each bar runs from the fit's start to its
    end (seconds since the first fit started) and is coloured by ``color_by``, a column of
    the report: ``"stage"`` (nuisance, treatment), ``"model_kind"``, ``"replicate"`` of a
    bootstrap... The title gives the fit count and the plan (``fit_report_.attrs["plan"]``).

    The report says which worker ran each fit and how many threads it held, not which of
    the worker's threads: the lanes are assigned here, by greedy interval packing. In
    order of start, a fit of ``t`` threads takes the lowest ``t`` adjacent lanes of its
    worker that are free from its start (a bar ``t`` lanes tall); when only non-adjacent
    lanes are free, it takes those (one bar per run of adjacent lanes, all with the fit's
    key as their ``gid``). A worker has as many lanes as threads
    (``fit_report_.attrs["worker_threads"]``, recorded by the fits; ``worker_threads``
    overrides it, an int for every worker); lanes past them, labelled ``over``, appear only
    if the fits held more threads at once than the worker had. Without either, a worker has
    the lanes its fits needed. Fits that ran across the cluster (``lightgbm.dask`` and
    other collection models: worker ``"cluster"``) get lanes of their own.
    """
    frame = _fit_report(report)
    if color_by not in frame.columns:
        raise ValueError(
            f"color_by must be a column of the report, got {color_by!r}; "
            f"columns: {list(frame.columns)}"
        )
    workers = sorted(frame["worker"].astype(str).unique(), key=lambda w: (w == "cluster", w))
    capacities = _capacities(frame, worker_threads, workers)

    # lanes, worker by worker: (worker, lane) -> row of the plot, top to bottom
    row_of_fit: dict[int, list[int]] = {}  # by the fit's position in the report
    labels: list[str] = []
    boundaries: list[int] = []
    for worker in workers:
        on_worker = (frame["worker"].astype(str) == worker).to_numpy()
        fits = frame[on_worker]
        cap = capacities.get(worker)
        lanes, n_lanes = _pack_lanes(fits, cap)
        offset = len(labels)
        for position, fit_lanes in zip(np.flatnonzero(on_worker), lanes, strict=True):
            row_of_fit[int(position)] = [offset + k for k in fit_lanes]
        name = "cluster (all workers)" if worker == "cluster" else _short_worker(worker)
        for k in range(max(n_lanes, cap or 0)):
            lane = "over" if cap is not None and k >= cap else "thread"
            labels.append(f"{name} {lane} {k}" if len(workers) > 1 else f"{lane} {k}")
        boundaries.append(len(labels))

    t0 = float(frame["start"].min())
    # one colour per value, in order of appearance for the stages, else sorted
    codes, uniques = pd.factorize(frame[color_by], sort=color_by != "stage", use_na_sentinel=False)
    names = [str(v) for v in uniques]
    if color_by == "stage":
        others = iter(_PALETTE)
        colors = [_STAGE_COLORS.get(name) or next(others, "tab:gray") for name in names]
    else:
        colors = [f"C{k % 10}" for k in range(len(names))]

    n_rows = len(labels)
    fig, ax = _axes(ax, (8.0, max(2.4, 0.32 * n_rows + 1.5)))
    for code, (name, color) in enumerate(zip(names, colors, strict=True)):
        ys, heights, lefts, widths, gids = [], [], [], [], []
        for position in np.flatnonzero(codes == code):
            fit = frame.iloc[position]
            for first, count in _runs(row_of_fit[int(position)]):
                ys.append(first + count / 2)
                heights.append(count - 0.2)
                lefts.append(float(fit["start"]) - t0)
                widths.append(float(fit["end"]) - float(fit["start"]))
                gids.append(str(fit["key"]))
        bars = ax.barh(
            ys,
            widths,
            left=lefts,
            height=heights,
            color=color,
            edgecolor="white",
            linewidth=0.5,
            label=name,
        )
        for patch, gid in zip(bars.patches, gids, strict=True):
            patch.set_gid(gid)
    for boundary in boundaries[:-1]:
        ax.axhline(boundary, color="grey", linewidth=0.8)
    ax.set_ylim(n_rows, 0)
    ax.set_yticks(np.arange(n_rows) + 0.5, labels)
    span = float(frame["end"].max()) - t0
    ax.set_xlim(0, span * 1.02 if span > 0 else 1.0)
    ax.set_xlabel("seconds since the first fit started")
    ax.legend(title=color_by, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    if title is None:
        fits_line = f"{len(frame)} fits in {span:.2f} s"
        plan = _plan_title(frame.attrs.get("plan"))
        title = f"Fit timeline: {fits_line}" + (f"\n{plan}" if plan else "")
    ax.set_title("\n".join(textwrap.fill(line, 90) for line in title.split("\n")), fontsize=10)
    return fig
