"""The cheap first pass: validation statistics of the rows, merged across partitions.

One pass of :func:`_summarise` per partition finds missing values, bad treatment codes and
propensities, whether the outcome is binary, and samples the CATE for the binned mode's
quantile edges; :func:`_validate` turns the merged statistics into errors that name the
argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dask_meta.metrics.inputs import _CATE, _E, _W, _Y

#: At most this many distinct treatment values are reported in an error.
_MAX_W_VALUES = 32


@dataclass(frozen=True)
class _Summary:
    """Validation statistics of the rows seen, mergeable across partitions."""

    n_rows: int = 0
    n_used: int = 0
    nan: dict[str, int] = field(default_factory=dict)
    inf: dict[str, int] = field(default_factory=dict)
    w_values: frozenset[float] = frozenset()
    y_binary: bool = True
    e_min: float = math.inf
    e_max: float = -math.inf
    cate_min: float = math.inf
    cate_max: float = -math.inf
    #: evenly spaced order statistics of the used CATE of each partition, with their weight
    samples: tuple[tuple[np.ndarray, float], ...] = ()


def _merge_summaries(*summaries: _Summary) -> _Summary:
    nan: dict[str, int] = {}
    inf: dict[str, int] = {}
    for s in summaries:
        for r, k in s.nan.items():
            nan[r] = nan.get(r, 0) + k
        for r, k in s.inf.items():
            inf[r] = inf.get(r, 0) + k
    w_values = frozenset().union(*(s.w_values for s in summaries))
    if len(w_values) > _MAX_W_VALUES:
        w_values = frozenset(sorted(w_values)[: _MAX_W_VALUES + 1])
    return _Summary(
        n_rows=sum(s.n_rows for s in summaries),
        n_used=sum(s.n_used for s in summaries),
        nan=nan,
        inf=inf,
        w_values=w_values,
        y_binary=all(s.y_binary for s in summaries),
        e_min=min(s.e_min for s in summaries),
        e_max=max(s.e_max for s in summaries),
        cate_min=min(s.cate_min for s in summaries),
        cate_max=max(s.cate_max for s in summaries),
        samples=tuple(x for s in summaries for x in s.samples),
    )


def _used_rows(part: pd.DataFrame, variant: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(mask of the rows scored, treatment indicator of those rows)."""
    if _W not in part:
        return np.ones(len(part), dtype=bool), np.zeros(0)
    w = part[_W].to_numpy(dtype=float)
    treated = w == (1 if variant is None else variant)
    if variant is None:  # only binary w passes validation: all rows are scored
        return np.ones(len(w), dtype=bool), treated.astype(float)
    used = (w == 0) | treated
    return used, treated[used].astype(float)


def _summarise(part: pd.DataFrame, variant: int | None, sample_size: int = 0) -> _Summary:
    nan = {r: int(part[r].isna().sum()) for r in part.columns}
    inf = {
        r: int(np.isinf(part[r].to_numpy(dtype=float, na_value=np.nan)).sum())
        for r in part.columns
        if pd.api.types.is_numeric_dtype(part[r].dtype)
    }
    used, _ = _used_rows(part, variant)
    n_used = int(used.sum())
    w_values: frozenset[float] = frozenset()
    if _W in part:
        w_values = frozenset(float(v) for v in np.unique(part[_W].to_numpy(dtype=float))[:64])
    y_binary = True
    if _Y in part:
        y = part[_Y].to_numpy(dtype=float)[used]
        y_binary = bool(np.all((y == 0) | (y == 1)))
    e_min, e_max = math.inf, -math.inf
    if _E in part and n_used:
        e = part[_E].to_numpy(dtype=float)[used]
        e = e[~np.isnan(e)]
        if len(e):
            e_min, e_max = float(e.min()), float(e.max())
    cate_min, cate_max = math.inf, -math.inf
    samples: tuple[tuple[np.ndarray, float], ...] = ()
    if _CATE in part and n_used:
        c = part[_CATE].to_numpy(dtype=float)[used]
        c = c[~np.isnan(c)]
        if len(c):
            cate_min, cate_max = float(c.min()), float(c.max())
            if sample_size:
                k = min(len(c), sample_size)
                positions = np.linspace(0, len(c) - 1, k).round().astype(np.int64)
                samples = ((np.sort(c)[positions], len(c) / k),)
    return _Summary(
        len(part),
        n_used,
        nan,
        inf,
        w_values,
        y_binary,
        e_min,
        e_max,
        cate_min,
        cate_max,
        samples,
    )


def _validate(
    summary: _Summary,
    names: dict[str, str],
    variant: int | None,
    *,
    binary_y: str | None = None,
    groups_required: bool = True,
    propensity_divides: bool = True,
) -> int | None:
    """Raise a ValueError naming the argument for bad input; return the variant scored.

    ``binary_y``: why a binary outcome is needed (None: it is not). The R-loss scores rows
    one by one and does not divide by the propensity, so it passes
    ``groups_required=False`` (a binary ``w`` without a named variant may lack rows of
    either group; a named variant still needs rows of its own and of control) and
    ``propensity_divides=False`` (propensities of 0 or 1 are allowed).
    """
    for role, count in summary.nan.items():
        if count:
            raise ValueError(
                f"{names[role]} has {count} missing values (NaN) among {summary.n_rows} rows; "
                "drop or impute them first"
            )
    for role, count in summary.inf.items():
        if count:
            raise ValueError(
                f"{names[role]} has {count} infinite values among {summary.n_rows} rows; "
                "every value must be finite"
            )
    if _W in names:
        values = sorted(summary.w_values)
        shown = values[:_MAX_W_VALUES] + (["..."] if len(values) > _MAX_W_VALUES else [])
        codes = [int(v) if float(v).is_integer() else v for v in shown]
        if any(not float(v).is_integer() or v < 0 for v in values):
            raise ValueError(
                f"{names[_W]} has values {codes}; expected treatment codes 0 (control), 1, 2, ..."
            )
        named = variant is not None
        if variant is None:
            if not set(values) <= {0.0, 1.0}:
                raise ValueError(
                    f"{names[_W]} has values {codes}, more than a binary treatment; name the "
                    "variant to score against control 0 with variant=k (rows of other "
                    "variants are ignored)"
                )
            variant = 1
        for code, what in ((0, "control (0)"), (variant, f"variant {variant}")):
            if (groups_required or named) and float(code) not in summary.w_values:
                raise ValueError(
                    f"{names[_W]} has no rows of {what}: it has values {codes}; the metrics "
                    "compare the variant with the control"
                )
    if _E in names and propensity_divides and not (0 < summary.e_min and summary.e_max < 1):
        raise ValueError(
            f"{names[_E]} has values in [{summary.e_min:g}, {summary.e_max:g}]; propensity "
            "scores must lie strictly between 0 and 1 (clip them, e.g. to [0.01, 0.99])"
        )
    if _E in names and not propensity_divides and not (0 <= summary.e_min <= summary.e_max <= 1):
        raise ValueError(
            f"{names[_E]} has values in [{summary.e_min:g}, {summary.e_max:g}]; propensity "
            "scores must lie between 0 and 1"
        )
    if binary_y is not None and not summary.y_binary:
        raise ValueError(f"{names[_Y]} has values other than 0 and 1; {binary_y}")
    return variant


def _merge_sums(*parts: tuple[_Summary, np.ndarray]) -> tuple[_Summary, np.ndarray]:
    """Merge the ``(summary, sums)`` of the one-pass metrics (policy value, losses)."""
    return _merge_summaries(*(s for s, _ in parts)), np.sum([a for _, a in parts], axis=0)
