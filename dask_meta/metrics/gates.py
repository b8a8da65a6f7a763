"""``gates`` and ``calibration_score``: effects per CATE quantile group, and their calibration.

See "Is the heterogeneity real? BLP, GATES and calibration" in ``docs/evaluation.md``.
"""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from dask_meta._typing import Vector
from dask_meta.metrics.binned_curves import _quantile_edges, _sample_size
from dask_meta.metrics.heterogeneity import _check_alpha
from dask_meta.metrics.inputs import _CATE, _check_variant, _inputs
from dask_meta.metrics.moments import _group_moments, _merge_moments, _Moments
from dask_meta.metrics.runner import _first_pass, _Runner
from dask_meta.metrics.scores import _dr_rows, _dr_values
from dask_meta.metrics.validation import _merge_summaries, _summarise, _Summary, _validate

#: The columns of a :func:`gates` table.
GATES_COLUMNS = ("n", "cate_mean", "gate", "gate_se", "lower", "upper")


def _gate_sums(
    part: pd.DataFrame, variant: int | None, edges: np.ndarray
) -> tuple[_Summary, _Moments]:
    summary = _summarise(part, variant)
    cate, phi = _dr_rows(part, variant)
    group = np.searchsorted(edges, cate, side="left")  # group k holds (edges[k-1], edges[k]]
    return summary, _group_moments(cate, phi, group, len(edges) + 1, 2)


def _merge_gates(*parts: tuple[_Summary, _Moments]) -> tuple[_Summary, _Moments]:
    return _merge_summaries(*(s for s, _ in parts)), _merge_moments(*(m for _, m in parts))


def _check_edges(edges: Any) -> np.ndarray:
    values = np.asarray(edges, dtype=float) if not isinstance(edges, str) else np.array([])
    if values.ndim != 1 or len(values) == 0 or not np.all(np.isfinite(values)):
        raise ValueError(
            f"edges must be a 1-D array of finite, increasing inner cut points, got {edges!r}"
        )
    if np.any(np.diff(values) <= 0):
        raise ValueError(f"edges must be strictly increasing, got {values}")
    return values


def _table(moments: _Moments, alpha: float, edges: np.ndarray, how: str) -> pd.DataFrame:
    n = moments.n
    with np.errstate(divide="ignore", invalid="ignore"):
        cate_mean = np.where(n > 0, moments.mean[:, 0], np.nan)
        gate = np.where(n > 0, moments.mean[:, 1], np.nan)
        se = np.where(n > 0, np.sqrt(np.maximum(moments.sums[:, 0, 2], 0.0)) / n, np.nan)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    table = pd.DataFrame(
        {
            "n": n.astype(np.int64),
            "cate_mean": cate_mean,
            "gate": gate,
            "gate_se": se,
            "lower": gate - z * se,
            "upper": gate + z * se,
        },
        index=pd.RangeIndex(1, len(n) + 1, name="group"),
    )
    seen = np.flatnonzero(n > 0)
    total = n.sum()
    if total == 0:
        raise ValueError("no rows were scored: the inputs are empty")
    ate = float(np.sum(n[seen] * gate[seen]) / total)
    spread = np.sum(moments.sums[seen, 0, 2] + n[seen] * (gate[seen] - ate) ** 2)
    top, bottom = seen[-1], seen[0]
    difference, difference_se = math.nan, math.nan
    if top != bottom:  # one non-empty group has nothing to compare with
        difference = float(gate[top] - gate[bottom])
        difference_se = float(math.hypot(se[top], se[bottom]))
    stat = difference / difference_se if difference_se > 0 else math.nan
    table.attrs.update(
        {
            "ate": ate,
            "ate_se": float(math.sqrt(max(spread, 0.0)) / total),
            "difference": difference,
            "difference_se": difference_se,
            "difference_pvalue": math.erfc(abs(stat) / math.sqrt(2)),
            "difference_groups": (int(top) + 1, int(bottom) + 1),
            "alpha": alpha,
            "edges": edges.tolist(),
            "edges_from": how,
        }
    )
    return table


def gates(
    cate: Vector,
    y: Vector | None = None,
    w: Vector | None = None,
    *,
    mu0: Any = None,
    mu1: Any = None,
    propensity: Any = None,
    pseudo_outcomes: Any = None,
    variant: int | None = None,
    n_groups: int = 5,
    edges: Any = None,
    alpha: float = 0.05,
    client: Any = None,
) -> pd.DataFrame:
    """Group average treatment effects (GATES) by quantile groups of the predicted CATE.

    The scored rows are split at the ``k / n_groups`` quantiles of the CATE into groups
    ``(edge[k-1], edge[k]]`` (a row equal to a cut point belongs to the lower group, so tied
    CATE values are never split), numbered 1 (lowest CATE) to ``n_groups``. Per group: its
    rows ``n``, the mean predicted CATE ``cate_mean``, the GATE (the mean of the DR scores
    ``phi``, computed as :func:`dr_loss` computes them, or ``pseudo_outcomes``), its
    standard error ``gate_se = sqrt(sum (phi - gate)^2) / n`` (the HC0 standard error of a
    regression on group dummies) and the normal ``1 - alpha`` interval ``lower``, ``upper``.

    ``table.attrs``: ``ate`` and ``ate_se`` (all scored rows), ``difference`` (highest
    minus lowest group's GATE, ``difference_groups``), ``difference_se`` (independent
    groups: the root of the summed variances) and its two-sided normal
    ``difference_pvalue``; ``edges`` (the inner cut points used), ``alpha`` and
    ``edges_from``: ``"exact quantiles"``, ``"sampled quantiles"`` or ``"given"``.

    Cut points: the inverted-CDF quantiles (``numpy.quantile(..., method="inverted_cdf")``)
    of the scored CATE: exact for in-memory input and for Dask partitions of up to 4,001
    scored rows, else from the evenly spaced sample of each partition that the binned
    metrics use (two passes: the sample and validation, then per-group moments). Ties at a
    quantile make cut points coincide: the table then has fewer groups (with a warning).
    ``edges``: give the inner cut points instead (for example quantiles of the CATE of the
    training rows, as EconML's ``evaluate_cal``); one pass, and groups may be empty (NaN).

    The same table is the calibration table: :func:`calibration_score` and
    :func:`dask_meta.plots.plot_calibration` read it.
    """
    variant = _check_variant(variant)
    if isinstance(n_groups, bool) or not isinstance(n_groups, int | np.integer) or n_groups < 2:
        raise ValueError(f"n_groups must be an int >= 2 (the number of groups), got {n_groups!r}")
    n_groups = int(n_groups)
    alpha = _check_alpha(alpha)
    given = None if edges is None else _check_edges(edges)
    values = _dr_values("gates", cate, y, w, mu0, mu1, propensity, pseudo_outcomes, variant)
    inputs = _inputs(values)
    runner = _Runner(inputs, client)
    if given is not None:
        summary, moments = runner.reduce("gates", _gate_sums, _merge_gates, variant, given)
        _validate(summary, inputs.names, variant)
        return _table(moments, alpha, given, "given")
    # in memory the sample is every row: the quantiles are exact
    sample = len(inputs.frame) + 1 if inputs.in_memory else _sample_size(n_groups)
    summary, _ = _first_pass(runner, variant, sample)
    if n_groups > summary.n_used:
        raise ValueError(f"n_groups={n_groups} is more than the {summary.n_used} rows scored")
    cuts = _quantile_edges(summary, n_groups)
    if len(cuts) + 1 < n_groups:
        warnings.warn(
            f"{inputs.names[_CATE]} has ties at its quantiles: {len(cuts) + 1} groups instead "
            f"of n_groups={n_groups}",
            stacklevel=2,
        )
    exact = all(weight == 1.0 for _, weight in summary.samples)
    summary, moments = runner.reduce("gates", _gate_sums, _merge_gates, variant, cuts)
    return _table(moments, alpha, cuts, "exact quantiles" if exact else "sampled quantiles")


def calibration_score(table: pd.DataFrame) -> float:
    """EconML's calibration R^2 (``DRTester.evaluate_cal``'s ``cal_r_squared``) of a
    :func:`gates` table.

    ``1 - sum_k p_k |gate_k - cate_mean_k| / sum_k p_k |gate_k - ate|`` with ``p_k`` the
    share of rows in group k and ``ate`` the mean DR score over all groups. 1: the mean
    predicted CATE of every group equals its GATE; 0: no better than predicting the ATE
    everywhere; below 0: worse. EconML's default is 4 groups (``gates(..., n_groups=4)``).
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be the DataFrame of gates(), got {type(table).__name__}")
    missing = [c for c in ("n", "cate_mean", "gate") if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the columns {missing} of a gates() table")
    rows = table[table["n"] > 0]
    if rows.empty:
        raise ValueError("table has no non-empty group")
    p = rows["n"].to_numpy(dtype=float) / rows["n"].sum()
    gate, predicted = rows["gate"].to_numpy(dtype=float), rows["cate_mean"].to_numpy(dtype=float)
    ate = float(np.sum(p * gate))
    return float(1 - np.sum(p * np.abs(gate - predicted)) / np.sum(p * np.abs(gate - ate)))
