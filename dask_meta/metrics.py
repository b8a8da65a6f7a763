"""Uplift and policy metrics of CATE estimates, computed where the data live.

Every function takes the predicted CATE of one treatment variant against control, the
outcome ``y`` and the treatment ``w`` (``0`` = control, ``variant`` = the variant scored;
rows of other variants are ignored), as numpy/pandas or as Dask Series/Arrays (all of one
kind). In-memory input is computed in this process; Dask input runs on the cluster
(``client``, resolved like the learners': explicit, else the default client, else the
embedded LocalCluster) and only per-partition or per-bin statistics come back.

Conventions follow scikit-uplift 0.5.1 (``sklift.metrics``): argument order
``(y, cate, w)``, curves ``(x, values)`` with ``x`` the number of rows targeted, the
normalisation of ``qini_auc_score`` / ``uplift_auc_score`` and the table of
``uplift_by_percentile``. In exact mode the numbers equal scikit-uplift's (tested to 1e-10).

Ranking and ties (exact mode, as scikit-uplift)
    Rows are ranked by decreasing CATE. Rows with equal CATE form one group: the curve has a
    point only at the end of each group (after the origin ``(0, 0)``) and is linear in
    between, so the order of rows inside a group never matters. The AUC is the trapezoidal
    area of these points (``sklearn.metrics.auc``). ``uplift_by_percentile`` splits the
    ranking into ``bins`` equally large chunks (``numpy.array_split``); ties are ordered by
    decreasing row position, like scikit-uplift's reversed stable sort.

``method``: ``"exact"``, ``"binned"`` or ``"auto"`` (exact for in-memory input and for Dask
input of at most :data:`EXACT_MAX_ROWS` used rows, else binned).

Exact mode on Dask input
    The used rows (``w`` in ``{0, variant}``, with their position) are sorted by decreasing
    CATE on the cluster (Dask's distributed ``sort_values``). One task per sorted partition
    returns its totals and its first/last CATE value; a small task turns these into each
    partition's offsets (the cumulative sums before it), and one task per partition then
    evaluates its curve points with those offsets. A tie group split across partitions is
    merged (its end is the only point), so the result does not depend on where the sort
    puts partition boundaries. Scores return one number per partition; curves return their
    points, one per distinct CATE value, so exact *curves* (and tables) of Dask input are
    limited to :data:`EXACT_MAX_ROWS` used rows (scores are not limited).

Binned mode and its error bound
    A first, cheap pass validates the input and takes an evenly spaced sample of the sorted
    CATE of every partition; the weighted sample gives ``bins`` approximate quantiles of the
    CATE, the bin edges (or pass ``bins`` as explicit edges). A second pass computes, per
    bin and for treated and control rows, the counts, the sums of ``y``, of its positive and
    negative parts and of ``y^2``, and the smallest and largest ``y`` (and CATE); only these
    ``bins x 16`` numbers reach the client. Bins are intervals of CATE values,
    ``(edge[j-1], edge[j]]``, so a tie group is never split. Curves are evaluated at the bin
    boundaries from the cumulative bin sums.

    *Claim 1 (points exact).* A bin boundary is the end of a tie group, so the cumulative
    sums there are those of the exact curve at the same ``x``: the binned curve's points
    are points of the exact curve (bit for bit, for integer outcomes).

    *Claim 2 (AUC bound).* Let bin ``j`` hold ``m_j`` rows, start at the cumulative state
    ``A`` and end at ``B`` (values ``f(A)``, ``f(B)``). Every exact point inside the bin is
    ``f`` at ``A`` plus the sums over a prefix of the bin's rows. Per group (treated,
    control) the prefix has ``k`` of the bin's ``n`` rows and an outcome sum in
    ``[-sum(y-), sum(y+)]``, and the group's running mean ``Y / N`` is a weighted average of
    its mean before the bin and the mean of those ``k`` rows, so it lies between the former
    and the bin's smallest / largest ``y``. ``f`` is ``Y_t - (Y_c / N_c) N_t`` (Qini) or
    ``(Y_t / N_t - Y_c / N_c) N`` (uplift): sums, ranges of running means (a group that is
    still empty counts 0, as in scikit-uplift) and products of ranges, whose extremes are
    at corners, give a range ``[lo_j, hi_j]`` holding every exact point of the bin. The
    exact curve between ``A`` and ``B`` is piecewise linear through such points, so it stays
    in ``[lo_j, hi_j]``; the binned curve is the chord from ``f(A)`` to ``f(B)``. Hence the
    two differ by at most ``d_j = max(hi_j - min(f(A), f(B)), max(f(A), f(B)) - lo_j)`` at
    any ``x`` of the bin (0 for a bin of one CATE value: it is one tie group), and the areas
    by at most ``bound = sum_j m_j d_j``. The normalised scores divide by the exact
    ``AUC(perfect) - AUC(random)``, so their bound is ``bound / |AUC(perfect) - AUC(random)|``.
    With ``|y| <= M``, bins of about ``n / B`` rows and both groups present in every bin,
    ``d_j = O(M n / B)``, so ``bound = O(M n^2 / B)`` against areas of order ``M n^2``:
    the relative bound falls like ``1 / B``. It is a worst case over the order of the rows
    inside each bin (the actual error is usually far smaller), computed from the observed
    bin statistics, so it holds whatever the quality of the sampled quantiles.

``policy_value``, ``r_loss`` and ``dr_loss`` are one pass of per-partition sums (plus the
validation, which rides along in the same cheap pass).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.dataframe.dask_expr._expr import are_co_aligned

from dask_meta.cluster import resolve_client
from dask_meta.data import is_dask, n_partitions, partitions

__all__ = [
    "DEFAULT_BINS",
    "EXACT_MAX_ROWS",
    "cate_histogram",
    "dr_loss",
    "perfect_qini_curve",
    "perfect_uplift_curve",
    "policy_value",
    "qini_auc_score",
    "qini_curve",
    "r_loss",
    "uplift_auc_score",
    "uplift_by_percentile",
    "uplift_curve",
]

Method = Literal["auto", "exact", "binned"]
METHODS = ("auto", "exact", "binned")

#: ``method="auto"`` is exact for Dask input up to this many used rows; exact curves and
#: tables of Dask input (one point per distinct CATE value reaches the client) stop here.
EXACT_MAX_ROWS = 1_000_000
#: Bins of the binned mode.
DEFAULT_BINS = 1000

# Columns of the internal frame (roles); user-facing names travel separately for errors.
_CATE, _Y, _W, _E, _MU0, _MU1 = "cate", "y", "w", "propensity", "mu0", "mu1"
_M, _PSEUDO, _YRES, _WRES = "outcome_estimates", "pseudo_outcomes", "y_res", "w_res"
_T, _POS = "t", "pos"

#: At most this many distinct treatment values are reported in an error.
_MAX_W_VALUES = 32


# --- input normalisation (one place at the edge) ---------------------------------------------


def _check_variant(variant: Any) -> int | None:
    if variant is None:
        return None
    if isinstance(variant, bool) or not isinstance(variant, int | np.integer) or variant < 1:
        raise ValueError(
            f"variant must be a treatment variant code >= 1 (0 is the control), got {variant!r}"
        )
    return int(variant)


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


def _pick_cate(cate: Any, variant: int | None) -> Any:
    """A learner's CATE ``(n, n_variants - 1[, n_outputs])`` -> the column of ``variant``."""
    if isinstance(cate, pd.Series | pd.DataFrame | dd.Series | dd.DataFrame):
        return cate
    ndim = getattr(cate, "ndim", None)
    if ndim is None:
        cate = np.asarray(cate)
        ndim = cate.ndim
    if ndim == 3:
        outputs = cate.shape[2]
        if outputs not in (1, 2):
            raise ValueError(
                f"cate has {outputs} outputs per variant (shape {cate.shape}); pass the CATE "
                "of one output as a 1-D vector"
            )
        cate = cate[:, :, outputs - 1]  # binary classification: the effect on P(y = 1)
        ndim = 2
    if ndim == 2:
        n_cols = cate.shape[1]
        if n_cols == 1:
            return cate[:, 0]
        if variant is None:
            raise ValueError(
                f"cate has {n_cols} columns (one per treatment variant); name the variant "
                "to score with variant=k"
            )
        if variant > n_cols:
            raise ValueError(
                f"variant={variant} but cate has only {n_cols} columns (variants 1..{n_cols})"
            )
        return cate[:, variant - 1]
    return cate


def _in_memory(v: Any, arg: str) -> np.ndarray:
    if isinstance(v, pd.DataFrame):
        if v.shape[1] != 1:
            raise ValueError(f"{arg} must be one-dimensional, got a DataFrame of shape {v.shape}")
        v = v.iloc[:, 0]
    arr: np.ndarray = v.to_numpy() if isinstance(v, pd.Series) else np.asarray(v)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{arg} must be one-dimensional, got shape {arr.shape}")
    try:
        return arr.astype(float)
    except (TypeError, ValueError):
        raise ValueError(f"{arg} must be numeric, got dtype {arr.dtype}") from None


def _dask_series(v: Any, arg: str) -> dd.Series:
    if isinstance(v, dd.DataFrame):
        if len(v.columns) != 1:
            raise ValueError(
                f"{arg} must be one-dimensional, got a Dask DataFrame with columns "
                f"{list(v.columns)}"
            )
        v = v[v.columns[0]]
    if isinstance(v, da.Array):
        if v.ndim == 2 and v.shape[1] == 1:
            v = v[:, 0]
        if v.ndim != 1:
            raise ValueError(f"{arg} must be one-dimensional, got a Dask array of shape {v.shape}")
        v = dd.from_dask_array(v)
    dtype = v.dtype
    if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
        raise ValueError(f"{arg} must be numeric, got dtype {dtype}")
    return v  # type: ignore[no-any-return]


def _combine_partition(*parts: Any, roles: Sequence[str], args: Sequence[str]) -> pd.DataFrame:
    """Positional, per-partition combination of the inputs (lengths checked)."""
    n = len(parts[0])
    for part, arg in zip(parts[1:], args[1:], strict=True):
        if len(part) != n:
            raise ValueError(
                f"{arg} and {args[0]} are partitioned differently: a partition of {args[0]} has "
                f"{n} rows but the matching partition of {arg} has {len(part)}; derive them "
                "from one frame or chunk them alike"
            )
    return pd.DataFrame({r: np.asarray(p) for r, p in zip(roles, parts, strict=True)})


@dataclass(frozen=True)
class _Inputs:
    """The normalised inputs: one frame whose columns are roles, and the argument names."""

    frame: pd.DataFrame | dd.DataFrame
    names: dict[str, str]
    in_memory: bool


def _inputs(values: dict[str, tuple[str, Any]]) -> _Inputs:
    """``{role: (argument name, value)}`` -> one frame; ``None`` values are left out.

    Numbers (e.g. a known constant propensity) become constant columns.
    """
    given = {r: (a, v) for r, (a, v) in values.items() if v is not None}
    names = {r: a for r, (a, _) in given.items()}
    scalars = {r: float(v) for r, (a, v) in given.items() if not is_dask(v) and np.ndim(v) == 0}
    vectors = {r: (a, v) for r, (a, v) in given.items() if r not in scalars}
    dask_args = [a for a, v in vectors.values() if is_dask(v)]
    if dask_args and len(dask_args) != len(vectors):
        local = [a for a, v in vectors.values() if not is_dask(v)]
        raise TypeError(
            f"{dask_args} are Dask collections but {local} are in memory; pass all of them as "
            "Dask collections or all in memory"
        )
    if not dask_args:
        arrays = {r: _in_memory(v, a) for r, (a, v) in vectors.items()}
        lengths = {names[r]: len(x) for r, x in arrays.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"inputs must be equally long, got lengths {lengths}")
        n = next(iter(lengths.values()))
        if n == 0:
            raise ValueError(f"{next(iter(lengths))} has no rows")
        for r, value in scalars.items():
            arrays[r] = np.full(n, value)
        return _Inputs(pd.DataFrame(arrays), names, in_memory=True)

    series = {r: _dask_series(v, a) for r, (a, v) in vectors.items()}
    roles = list(series)
    first = series[roles[0]]
    if are_co_aligned(*[s.expr for s in series.values()]):
        frame = first.to_frame(name=roles[0]).assign(**{r: series[r] for r in roles[1:]})
    else:
        counts = {names[r]: n_partitions(s) for r, s in series.items()}
        if len(set(counts.values())) > 1:
            raise ValueError(
                f"inputs have different numbers of partitions {counts}; derive them from one "
                "frame (ddf['y'], ddf['w'], ...) or chunk them alike"
            )
        meta = pd.DataFrame({r: s._meta.reset_index(drop=True) for r, s in series.items()})
        frame = dd.map_partitions(
            _combine_partition,
            *series.values(),
            roles=roles,
            args=[names[r] for r in roles],
            meta=meta,
            align_dataframes=False,
        )
    if scalars:
        frame = frame.assign(**scalars)
    return _Inputs(frame, names, in_memory=False)


# --- the cheap first pass: validation statistics ---------------------------------------------


@dataclass(frozen=True)
class _Summary:
    """Validation statistics of the rows seen, mergeable across partitions."""

    n_rows: int = 0
    n_used: int = 0
    nan: dict[str, int] = field(default_factory=dict)
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
    for s in summaries:
        for r, k in s.nan.items():
            nan[r] = nan.get(r, 0) + k
    w_values = frozenset().union(*(s.w_values for s in summaries))
    if len(w_values) > _MAX_W_VALUES:
        w_values = frozenset(sorted(w_values)[: _MAX_W_VALUES + 1])
    return _Summary(
        n_rows=sum(s.n_rows for s in summaries),
        n_used=sum(s.n_used for s in summaries),
        nan=nan,
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
) -> int | None:
    """Raise a ValueError naming the argument for bad input; return the variant scored.

    ``binary_y``: why a binary outcome is needed (None: it is not).
    """
    for role, count in summary.nan.items():
        if count:
            raise ValueError(
                f"{names[role]} has {count} missing values (NaN) among {summary.n_rows} rows; "
                "drop or impute them first"
            )
    if _W in names:
        values = sorted(summary.w_values)
        shown = values[:_MAX_W_VALUES] + (["..."] if len(values) > _MAX_W_VALUES else [])
        codes = [int(v) if float(v).is_integer() else v for v in shown]
        if any(not float(v).is_integer() or v < 0 for v in values):
            raise ValueError(
                f"{names[_W]} has values {codes}; expected treatment codes 0 (control), 1, 2, ..."
            )
        if variant is None:
            if not set(values) <= {0.0, 1.0}:
                raise ValueError(
                    f"{names[_W]} has values {codes}, more than a binary treatment; name the "
                    "variant to score against control 0 with variant=k (rows of other "
                    "variants are ignored)"
                )
            variant = 1
        for code, what in ((0, "control (0)"), (variant, f"variant {variant}")):
            if float(code) not in summary.w_values:
                raise ValueError(
                    f"{names[_W]} has no rows of {what}: it has values {codes}; the metrics "
                    "compare the variant with the control"
                )
    if _E in names and not (0 < summary.e_min and summary.e_max < 1):
        raise ValueError(
            f"{names[_E]} has values in [{summary.e_min:g}, {summary.e_max:g}]; propensity "
            "scores must lie strictly between 0 and 1 (clip them, e.g. to [0.01, 0.99])"
        )
    if binary_y is not None and not summary.y_binary:
        raise ValueError(f"{names[_Y]} has values other than 0 and 1; {binary_y}")
    return variant


# --- running per-partition functions ------------------------------------------------------


class _Runner:
    """Runs module-level partition functions on the in-memory frame, or as Dask tasks.

    Task keys read ``dask_meta-metrics-<step>-<token>-<i>`` (the dashboard groups by step).
    """

    def __init__(self, inputs: _Inputs, client: Any) -> None:
        self.inputs = inputs
        self.token = uuid.uuid4().hex[:12]
        self.client = None if inputs.in_memory else resolve_client(client)

    def _parts(self, frame: Any = None) -> list[Any]:
        frame = self.inputs.frame if frame is None else frame
        if self.client is None:
            return [frame]
        with self.client.as_current():  # divisions of a sort are computed eagerly
            return partitions(frame)

    def _compute(self, objs: list[Any]) -> list[Any]:
        assert self.client is not None
        futures = self.client.compute(objs)
        try:
            return list(self.client.gather(futures))
        except BaseException:
            self.client.cancel(futures)
            raise

    def reduce(
        self, step: str, func: Callable[..., Any], combine: Callable[..., Any], *args: Any
    ) -> Any:
        """``combine`` of ``func(partition, *args)`` over all partitions, as a tree of tasks."""
        parts = self._parts()
        if self.client is None:
            return combine(*[func(p, *args) for p in parts])
        level = [
            dask.delayed(func, pure=False)(
                p, *args, dask_key_name=f"dask_meta-metrics-{step}-{self.token}-{i}"
            )
            for i, p in enumerate(parts)
        ]
        depth = 0
        while len(level) > 1 or depth == 0:
            level = [
                dask.delayed(combine, pure=False)(
                    *level[i : i + 8],
                    dask_key_name=f"dask_meta-metrics-{step}-combine-{self.token}-{depth}-{i}",
                )
                for i in range(0, len(level), 8)
            ]
            depth += 1
        return self._compute(level)[0]


def _first_pass(
    runner: _Runner, variant: int | None, sample_size: int = 0, binary_y: str | None = None
) -> tuple[_Summary, int | None]:
    summary = runner.reduce("summary", _summarise, _merge_summaries, variant, sample_size)
    return summary, _validate(summary, runner.inputs.names, variant, binary_y=binary_y)


def _resolve_method(method: str, inputs: _Inputs, n_used: int) -> str:
    if method == "auto":
        return "exact" if inputs.in_memory or n_used <= EXACT_MAX_ROWS else "binned"
    return method


# --- curve values (the formulas of scikit-uplift) ---------------------------------------------

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


# --- exact mode ---------------------------------------------------------------------------


def _cumulative(part: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(CATE, treatment, cumulative states (4, n)) of a partition sorted by decreasing CATE."""
    c = part[_CATE].to_numpy(dtype=float)
    y = part[_Y].to_numpy(dtype=float)
    t = part[_T].to_numpy(dtype=float)
    states = np.stack(
        [
            np.arange(1, len(c) + 1, dtype=float),
            np.cumsum(t),
            np.cumsum(np.where(t == 1, y, 0.0)),
            np.cumsum(np.where(t == 1, 0.0, y)),
        ]
    )
    return c, t, states


def _group_ends(c: np.ndarray) -> np.ndarray:
    return np.r_[np.flatnonzero(c[1:] != c[:-1]), len(c) - 1]


@dataclass(frozen=True)
class _SortedSummary:
    """What the partitions around a sorted partition need to know of it."""

    n: int
    totals: np.ndarray  # (4,) its cumulative state at its end
    before_last: np.ndarray  # (4,) its state before its last tie group
    first: float
    last: float
    n_groups: int
    first_counts: np.ndarray  # (3,) rows, treated, control rows of its first tie group
    last_counts: np.ndarray  # (3,) the same of its last tie group
    first_pos: tuple[float, float]  # (min, max) position of the rows of those groups
    last_pos: tuple[float, float]


def _group_counts(t: np.ndarray) -> np.ndarray:
    return np.array([len(t), t.sum(), len(t) - t.sum()], dtype=np.int64)


def _sorted_summary(part: pd.DataFrame) -> _SortedSummary:
    zeros = np.zeros(4)
    if len(part) == 0:
        none = np.zeros(3, dtype=np.int64)
        return _SortedSummary(0, zeros, zeros, math.nan, math.nan, 0, none, none, (0, 0), (0, 0))
    c, t, states = _cumulative(part)
    pos = part[_POS].to_numpy(dtype=float)
    ends = _group_ends(c)
    first_end, last_start = ends[0], (ends[-2] + 1 if len(ends) > 1 else 0)
    before = states[:, last_start - 1] if last_start > 0 else zeros
    first_rows, last_rows = pos[: first_end + 1], pos[last_start:]
    return _SortedSummary(
        n=len(c),
        totals=states[:, -1],
        before_last=before,
        first=float(c[0]),
        last=float(c[-1]),
        n_groups=len(ends),
        first_counts=_group_counts(t[: first_end + 1]),
        last_counts=_group_counts(t[last_start:]),
        first_pos=(float(first_rows.min()), float(first_rows.max())),
        last_pos=(float(last_rows.min()), float(last_rows.max())),
    )


_NO_SHIFT = np.zeros(3, dtype=np.int64)


@dataclass(frozen=True)
class _PartState:
    """Where a sorted partition sits in the global ranking."""

    offset: np.ndarray  # (4,) cumulative state before its first row
    previous: np.ndarray  # (4,) the last curve point before its first point
    continues: bool  # its last tie group goes on in the next partition(s)
    total: np.ndarray  # (4,) the state after all partitions
    # rank shifts (among all, treated, control rows) of the rows of its first / last tie
    # group when that group spans partitions: rows of equal CATE are ranked by decreasing
    # position, as scikit-uplift does
    first_shift: np.ndarray = field(default_factory=lambda: _NO_SHIFT)
    last_shift: np.ndarray = field(default_factory=lambda: _NO_SHIFT)


def _partition_states(summaries: Sequence[_SortedSummary]) -> list[_PartState]:
    """Offsets, previous curve point and tie-group continuation of every sorted partition."""
    zeros = np.zeros(4)
    total = np.sum([s.totals for s in summaries], axis=0) if summaries else zeros
    states = [_PartState(zeros, zeros, False, total)] * len(summaries)
    nonempty = [i for i, s in enumerate(summaries) if s.n]
    offset, previous = zeros, zeros
    for k, i in enumerate(nonempty):
        s = summaries[i]
        nxt = summaries[nonempty[k + 1]] if k + 1 < len(nonempty) else None
        continues = nxt is not None and s.last == nxt.first
        states[i] = _PartState(offset, previous, continues, total)
        if not continues:
            previous = offset + s.totals
        elif s.n_groups > 1:
            previous = offset + s.before_last
        offset = offset + s.totals
    # tie groups spanning partitions: rank their pieces by decreasing position
    # a run: the partition whose last group continues, partitions of that value alone, and the
    # partition where the group ends (which may start the next run)
    k = 0
    while k < len(nonempty):
        if not states[nonempty[k]].continues:
            k += 1
            continue
        run = [nonempty[k]]
        k += 1
        while summaries[nonempty[k]].n_groups == 1 and states[nonempty[k]].continues:
            run.append(nonempty[k])
            k += 1
        run.append(nonempty[k])
        _shift_run(run, summaries, states)
    return states


def _shift_run(
    run: list[int], summaries: Sequence[_SortedSummary], states: list[_PartState]
) -> None:
    """Rank shifts of a tie group spread over the partitions ``run`` (in sort order)."""
    last = len(run) - 1
    counts = [
        summaries[i].first_counts if j == last else summaries[i].last_counts
        for j, i in enumerate(run)
    ]
    ranges = [
        summaries[i].first_pos if j == last else summaries[i].last_pos for j, i in enumerate(run)
    ]
    if all(ranges[j][0] > ranges[j + 1][1] for j in range(last)):
        return  # already in decreasing position
    if not all(ranges[j][1] < ranges[j + 1][0] for j in range(last)):
        raise RuntimeError(
            "dask_meta.metrics: a tie group of equal CATE spans sorted partitions with "
            "interleaved row positions; please report this"
        )
    # increasing positions: the pieces come in reverse partition order
    for j, i in enumerate(run):
        shift = np.sum(counts[j + 1 :], axis=0, dtype=np.int64) - np.sum(
            counts[:j], axis=0, dtype=np.int64
        )
        states[i] = replace(
            states[i],
            first_shift=shift if j > 0 else states[i].first_shift,
            last_shift=shift if j < last else states[i].last_shift,
        )


@dataclass(frozen=True)
class _Want:
    """What the exact pass computes per partition."""

    areas: bool = False
    curves: bool = False
    #: (bins, strategy) of uplift_by_percentile
    percentile: tuple[int, str] | None = None


@dataclass(frozen=True)
class _ExactPiece:
    areas: dict[str, float]
    points: np.ndarray  # (3, m): x, qini, uplift at the curve points of the partition
    chunks: np.ndarray | None  # (6, bins) stats of uplift_by_percentile's chunks
    total: np.ndarray  # (4,) the state after all rows

    def cells(self) -> _Cells:
        n, n_t, y_t, y_c = (float(v) for v in self.total)
        return _Cells(n_t, n - n_t, y_t, y_c)


def _split_ids(ranks: np.ndarray, n: int, bins: int) -> np.ndarray:
    """The chunk of each rank under numpy.array_split(range(n), bins)."""
    q, r = divmod(n, bins)
    big = (q + 1) * r
    return np.where(ranks < big, ranks // (q + 1), r + (ranks - big) // max(q, 1)).astype(np.int64)


def _chunk_stats(ids: np.ndarray, y: np.ndarray, t: np.ndarray, bins: int) -> np.ndarray:
    c = 1 - t
    weights = (t, c, y * t, y * c, y * y * t, y * y * c)
    return np.stack([np.bincount(ids, weights=wt, minlength=bins)[:bins] for wt in weights])


def _row_shifts(c: np.ndarray, state: _PartState) -> np.ndarray:
    """(3, n) rank shifts (all, treated, control) of a sorted partition's rows."""
    shift = np.zeros((3, len(c)), dtype=np.int64)
    first_rows = int(np.searchsorted(-c, -c[0], side="right"))
    if first_rows == len(c):  # one tie group: at most one of the shifts is set
        shift[:] = (state.first_shift if state.first_shift.any() else state.last_shift)[:, None]
        return shift
    last_rows = len(c) - int(np.searchsorted(-c, -c[-1], side="left"))
    shift[:, :first_rows] = state.first_shift[:, None]
    shift[:, len(c) - last_rows :] = state.last_shift[:, None]
    return shift


def _exact_piece(part: pd.DataFrame, states: Sequence[_PartState], i: int, want: _Want) -> Any:
    state = states[i]
    chunks = None
    if want.percentile is not None:
        chunks = np.zeros((6, want.percentile[0]))
    if len(part) == 0:
        return _ExactPiece({"qini": 0.0, "uplift": 0.0}, np.zeros((3, 0)), chunks, state.total)
    c, t, local = _cumulative(part)
    ends = _group_ends(c)
    if state.continues:
        ends = ends[:-1]
    points = state.offset[:, None] + local[:, ends]
    with_previous = np.concatenate([state.previous[:, None], points], axis=1)
    areas: dict[str, float] = {}
    values = {}
    for kind, f in _CURVES.items():
        v = f(with_previous)
        values[kind] = v[1:]
        if want.areas:
            areas[kind] = _trapezoid(with_previous[0], v)
    curve = np.zeros((3, 0))
    if want.curves:
        curve = np.stack([points[0], values["qini"], values["uplift"]])
    if want.percentile is not None:
        bins, strategy = want.percentile
        n, n_t = int(state.total[0]), int(state.total[1])
        y = part[_Y].to_numpy(dtype=float)
        shift = _row_shifts(c, state)
        if strategy == "overall":
            ranks = int(state.offset[0]) + np.arange(len(c)) + shift[0]
            ids = _split_ids(ranks, n, bins)
        else:  # ranks inside each group
            treated = t == 1
            rank_t = int(state.offset[1]) + np.cumsum(treated) - 1 + shift[1]
            rank_c = int(state.offset[0] - state.offset[1]) + np.cumsum(~treated) - 1 + shift[2]
            ids = np.where(
                treated, _split_ids(rank_t, n_t, bins), _split_ids(rank_c, n - n_t, bins)
            )
        chunks = _chunk_stats(ids, y, t, bins)
    return _ExactPiece(areas, curve, chunks, state.total)


def _sorted_in_memory(inputs: _Inputs, variant: int) -> pd.DataFrame:
    frame = inputs.frame
    assert isinstance(frame, pd.DataFrame)
    w = frame[_W].to_numpy(dtype=float)
    used = np.flatnonzero((w == 0) | (w == variant))
    c = frame[_CATE].to_numpy(dtype=float)[used]
    order = used[np.argsort(c, kind="mergesort")[::-1]]  # scikit-uplift's ranking
    return pd.DataFrame(
        {
            _CATE: frame[_CATE].to_numpy(dtype=float)[order],
            _Y: frame[_Y].to_numpy(dtype=float)[order],
            _T: (w[order] == variant).astype(float),
            _POS: order.astype(float),
        }
    )


def _scored_rows(
    part: pd.DataFrame, variant: int, partition_info: dict[str, Any] | None = None
) -> pd.DataFrame:
    """The rows of control and ``variant`` with their treatment and a unique position
    (partition number in the high bits: it orders like the rows of the input)."""
    w = part[_W].to_numpy(dtype=float)
    used = np.flatnonzero((w == 0) | (w == variant))
    number = 0 if partition_info is None else int(partition_info["number"])
    return pd.DataFrame(
        {
            _CATE: part[_CATE].to_numpy(dtype=float)[used],
            _Y: part[_Y].to_numpy(dtype=float)[used],
            _T: (w[used] == variant).astype(float),
            _POS: (np.int64(number) << np.int64(32)) + used.astype(np.int64),
        }
    )


def _exact(runner: _Runner, variant: int, want: _Want) -> list[_ExactPiece]:
    """The exact pass: sort (in memory, or on the cluster), offsets, per-partition pieces."""
    if runner.client is None:
        part = _sorted_in_memory(runner.inputs, variant)
        states = _partition_states([_sorted_summary(part)])
        return [_exact_piece(part, states, 0, want)]
    frame: Any = runner.inputs.frame
    meta = pd.DataFrame({_CATE: [0.0], _Y: [0.0], _T: [0.0], _POS: [0]}).iloc[:0]
    used = frame.map_partitions(_scored_rows, variant, meta=meta)
    ordered = used.sort_values([_CATE, _POS], ascending=False)
    parts = runner._parts(ordered)
    token = runner.token
    summaries = [
        dask.delayed(_sorted_summary, pure=False)(
            p, dask_key_name=f"dask_meta-metrics-sorted-summary-{token}-{i}"
        )
        for i, p in enumerate(parts)
    ]
    states = dask.delayed(_partition_states, pure=False)(
        summaries, dask_key_name=f"dask_meta-metrics-offsets-{token}"
    )
    pieces = [
        dask.delayed(_exact_piece, pure=False)(
            p, states, i, want, dask_key_name=f"dask_meta-metrics-exact-{token}-{i}"
        )
        for i, p in enumerate(parts)
    ]
    return runner._compute(pieces)


def _exact_limit(inputs: _Inputs, n_used: int, what: str) -> None:
    if not inputs.in_memory and n_used > EXACT_MAX_ROWS:
        raise ValueError(
            f"an exact {what} of Dask input has up to one entry per row ({n_used} used rows > "
            f"EXACT_MAX_ROWS = {EXACT_MAX_ROWS}) and would be collected on the client; use "
            "method='binned' (or the scores, which are exact at any size)"
        )


# --- binned mode ---------------------------------------------------------------------------

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
        """(area bound, per-bin bound of |exact - binned| between boundaries): Claim 2."""
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


# --- curves and scores ---------------------------------------------------------------------


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


def _add(*arrays: np.ndarray) -> np.ndarray:
    return np.sum(arrays, axis=0)  # type: ignore[no-any-return]


def _exact_cells(runner: _Runner, variant: int) -> _Cells:
    sums = runner.reduce("cells", _cell_sums, _add, variant)
    return _Cells(*(float(v) for v in sums))


_NEEDS_BINARY = (
    "the normalised score compares with scikit-uplift's perfect curve, which is defined for "
    "binary outcomes; pass normalize=False for the area between the model's and the random "
    "curve"
)


def qini_curve(
    y: Any,
    cate: Any,
    w: Any,
    *,
    variant: int | None = None,
    method: Method = "auto",
    bins: int | Sequence[float] = DEFAULT_BINS,
    client: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve ``(x, values)``: ``Y_t - Y_c * N_t / N_c`` over the top ``x`` rows.

    As ``sklift.metrics.qini_curve`` (points at the ends of tie groups, origin first), for
    any numeric outcome. ``method="binned"``: the points at the bin boundaries, which are
    points of the exact curve (see the module docstring). ``bins``: a number of
    approximate-quantile bins, or increasing inner edges.
    """
    res = _curves(y, cate, w, variant=variant, method=method, bins=bins, client=client, points=True)
    return res.x, res.values["qini"]


def uplift_curve(
    y: Any,
    cate: Any,
    w: Any,
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
    y: Any,
    cate: Any,
    w: Any,
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
    ``(score, bound)``: ``|score - exact score| <= bound`` (0 in exact mode; Claim 2 of the
    module docstring in binned mode).
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
    y: Any,
    cate: Any,
    w: Any,
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
    y: Any,
    w: Any,
    *,
    negative_effect: bool = True,
    variant: int | None = None,
    client: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``sklift.metrics.perfect_qini_curve`` for a binary ``y`` (one pass of four sums)."""
    return _perfect("qini", y, w, variant, client, negative_effect)


def perfect_uplift_curve(
    y: Any, w: Any, *, variant: int | None = None, client: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """``sklift.metrics.perfect_uplift_curve`` for a binary ``y`` (one pass of four sums)."""
    return _perfect("uplift", y, w, variant, client)


# --- uplift by percentile ------------------------------------------------------------------


def _percentile_labels(bins: int, string: bool) -> list[Any]:
    p = [round(k * 100 / bins) for k in range(1, bins + 1)]
    if not string:
        return p
    return [f"0-{p[0]}"] + [f"{p[i]}-{p[i + 1]}" for i in range(len(p) - 1)]


def _percentile_table(
    stats: np.ndarray, labels: list[Any], y_binary: bool, std: bool, total: bool
) -> pd.DataFrame:
    if total:
        stats = np.concatenate([stats, stats.sum(axis=1, keepdims=True)], axis=1)
        labels = [*labels, "total"]
    nt, nc, yt, yc, y2t, y2c = stats
    with np.errstate(divide="ignore", invalid="ignore"):
        rt, rc = yt / nt, yc / nc
        if y_binary:  # scikit-uplift's formula
            vt, vc = rt * ((1 - rt) / nt), rc * ((1 - rc) / nc)
        else:
            vt, vc = (y2t / nt - rt**2) / nt, (y2c / nc - rc**2) / nc
    table = pd.DataFrame(
        {
            "n_treatment": nt.astype(np.int32),
            "n_control": nc.astype(np.int32),
            "response_rate_treatment": rt,
            "response_rate_control": rc,
            "uplift": rt - rc,
        },
        index=pd.Index(labels, name="percentile"),
    )
    if std:
        table["std_treatment"] = np.sqrt(vt)
        table["std_control"] = np.sqrt(vc)
        table["std_uplift"] = np.sqrt(vt + vc)
    return table


def uplift_by_percentile(
    y: Any,
    cate: Any,
    w: Any,
    *,
    strategy: Literal["overall", "by_group"] = "overall",
    bins: int = 10,
    std: bool = False,
    total: bool = False,
    string_percentiles: bool = True,
    variant: int | None = None,
    method: Method = "auto",
    client: Any = None,
) -> pd.DataFrame:
    """Uplift per percentile of the predicted CATE, as ``sklift.metrics.uplift_by_percentile``.

    Rows: the ``bins`` percentiles from the highest CATE down; columns ``n_treatment``,
    ``n_control``, ``response_rate_treatment``, ``response_rate_control`` (outcome means),
    ``uplift`` and, with ``std=True``, ``std_treatment``, ``std_control``, ``std_uplift``
    (standard errors of the means; scikit-uplift's ``r (1 - r) / n`` for binary ``y``).

    Exact mode equals scikit-uplift (``strategy`` ``"overall"``: equal chunks of the
    ranking; ``"by_group"``: equal chunks of each group's ranking), except the ``total``
    row's standard errors, which are those of the whole sample (scikit-uplift adds up the
    per-percentile ones). Binned mode (``"overall"`` only): the chunks are intervals of CATE
    between approximate quantiles, so ties stay together and the chunks are only about
    equally large (their counts are exact); the labels are the actual shares of rows.
    """
    variant = _check_variant(variant)
    how = _check_method(method)
    if strategy not in ("overall", "by_group"):
        raise ValueError(f"strategy must be 'overall' or 'by_group', got {strategy!r}")
    if how == "binned" and strategy != "overall":
        raise ValueError("method='binned' supports strategy='overall' only")
    for name, flag in (("std", std), ("total", total), ("string_percentiles", string_percentiles)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be a bool, got {flag!r}")
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive int (the number of percentiles), got {bins!r}")
    bins = int(bins)
    cate = _pick_cate(cate, variant)
    inputs = _inputs({_CATE: ("cate", cate), _Y: ("y", y), _W: ("w", w)})
    runner = _Runner(inputs, client)
    sample = 0 if how == "exact" else _sample_size(bins)
    summary, resolved = _first_pass(runner, variant, sample)
    assert resolved is not None
    if bins >= summary.n_used:
        raise ValueError(f"bins={bins} must be smaller than the {summary.n_used} rows scored")
    how = _resolve_method(how, inputs, summary.n_used)
    if how == "binned":
        if strategy != "overall":
            raise ValueError("method='binned' supports strategy='overall' only")
        binned = _binned(runner, summary, resolved, bins)
        s = binned.stats
        stats = np.stack([s["n_t"], s["n_c"], s["y_t"], s["y_c"], s["y2_t"], s["y2_c"]])
        shares = np.cumsum(s["n_t"] + s["n_c"]) / summary.n_used
        ends = [round(100 * v) for v in shares]
        labels: list[Any] = ends
        if string_percentiles:
            labels = [f"{a}-{b}" for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        return _percentile_table(stats, labels, summary.y_binary, std, total)
    _exact_limit(inputs, summary.n_used, "table")
    pieces = _exact(runner, resolved, _Want(percentile=(bins, strategy)))
    stats = np.sum([p.chunks for p in pieces], axis=0)
    labels = _percentile_labels(bins, string_percentiles)
    return _percentile_table(stats, labels, summary.y_binary, std, total)


# --- policy value and losses (one pass of sums) ----------------------------------------------


def _policy_sums(
    part: pd.DataFrame, variant: int | None, threshold: float
) -> tuple[_Summary, np.ndarray]:
    summary = _summarise(part, variant)
    used, t = _used_rows(part, variant)
    c = part[_CATE].to_numpy(dtype=float)[used]
    y = part[_Y].to_numpy(dtype=float)[used]
    treat = (c > threshold).astype(float)
    mu0 = part[_MU0].to_numpy(dtype=float)[used] if _MU0 in part else np.zeros(len(y))
    mu1 = part[_MU1].to_numpy(dtype=float)[used] if _MU1 in part else np.zeros(len(y))
    e = part[_E].to_numpy(dtype=float)[used] if _E in part else None
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = treat * mu1 + (1 - treat) * mu0
        r_t = treat * t * (y - mu1) / (1.0 if e is None else e)
        r_c = (1 - treat) * (1 - t) * (y - mu0) / (1.0 if e is None else 1 - e)
    sums = np.array([len(y), t.sum(), direct.sum(), r_t.sum(), r_c.sum()])
    return summary, sums


def _loss_sums(part: pd.DataFrame, variant: int | None, kind: str) -> tuple[_Summary, np.ndarray]:
    summary = _summarise(part, variant)
    used, t = _used_rows(part, variant)

    def col(role: str) -> np.ndarray:
        return part[role].to_numpy(dtype=float)[used]

    tau = col(_CATE)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "r" and _YRES in part:
            residual = col(_YRES) - tau * col(_WRES)
        elif kind == "r":
            residual = (col(_Y) - col(_M)) - tau * (t - col(_E))
        elif _PSEUDO in part:
            residual = col(_PSEUDO) - tau
        else:
            y, mu0, mu1, e = col(_Y), col(_MU0), col(_MU1), col(_E)
            pseudo = mu1 - mu0 + t * (y - mu1) / e - (1 - t) * (y - mu0) / (1 - e)
            residual = pseudo - tau
    return summary, np.array([len(tau), float(np.sum(residual**2))])


def _merge_sums(*parts: tuple[_Summary, np.ndarray]) -> tuple[_Summary, np.ndarray]:
    return _merge_summaries(*(s for s, _ in parts)), np.sum([a for _, a in parts], axis=0)


def policy_value(
    y: Any,
    cate: Any,
    w: Any,
    *,
    threshold: float = 0.0,
    propensity: Any = None,
    mu0: Any = None,
    mu1: Any = None,
    variant: int | None = None,
    client: Any = None,
) -> float:
    """Estimated mean outcome of the policy "treat with ``variant`` where CATE > threshold".

    Over the rows with ``w`` in ``{0, variant}`` (``n`` rows, ``t = 1{w = variant}``,
    ``pi = 1{cate > threshold}``, ``e`` the propensity):

    * IPW (no ``mu0``/``mu1``): ``mean(pi t y / e + (1 - pi)(1 - t) y / (1 - e))``;
    * AIPW / doubly robust (``mu0`` and ``mu1``, outcome predictions under control and under
      the variant): ``mean(pi (mu1 + t (y - mu1) / e) + (1 - pi)(mu0 + (1 - t)(y - mu0) /
      (1 - e)))``.

    ``propensity``: ``P(w = variant | x, w in {0, variant})`` per row, or one number (a
    randomised experiment); ``None`` uses the observed share of the variant, which is right
    for a randomised experiment with a constant assignment probability.
    """
    variant = _check_variant(variant)
    if (mu0 is None) != (mu1 is None):
        raise ValueError("pass both mu0 and mu1 (outcome predictions) for the AIPW value")
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number, got {threshold!r}") from None
    cate = _pick_cate(cate, variant)
    inputs = _inputs(
        {
            _CATE: ("cate", cate),
            _Y: ("y", y),
            _W: ("w", w),
            _E: ("propensity", propensity),
            _MU0: ("mu0", mu0),
            _MU1: ("mu1", mu1),
        }
    )
    runner = _Runner(inputs, client)
    summary, sums = runner.reduce("policy", _policy_sums, _merge_sums, variant, threshold)
    _validate(summary, inputs.names, variant)
    n, n_t, direct, r_t, r_c = sums
    a, b = (1.0, 1.0) if propensity is not None else (n / n_t, n / (n - n_t))
    return float((direct + a * r_t + b * r_c) / n)


def _root(mean: float, squared: bool) -> float:
    return mean if squared else math.sqrt(mean)


def r_loss(
    cate_estimates: Any,
    outcome_estimates: Any = None,
    propensity_scores: Any = None,
    outcomes: Any = None,
    treatments: Any = None,
    *,
    outcome_residuals: Any = None,
    treatment_residuals: Any = None,
    variant: int | None = None,
    squared: bool = False,
    client: Any = None,
) -> float:
    """R-loss of CATE estimates, on Dask or in memory.

    ``sqrt(mean(((y - m) - tau (t - e))^2))`` as ``metalearners``' (and ``dask_meta``'s)
    ``r_loss`` with the same positional arguments; ``squared=True`` gives the mean itself.
    ``treatments`` may hold several variants: rows of ``w`` in ``{0, variant}`` are scored with
    ``t = 1{w = variant}`` and ``propensity_scores`` ``P(w = variant | x, w in {0, variant})``.
    Or pass the residuals ``outcome_residuals = y - m`` and ``treatment_residuals = t - e``
    (every row is then scored).
    """
    variant = _check_variant(variant)
    residuals = outcome_residuals is not None or treatment_residuals is not None
    plain = [outcome_estimates, propensity_scores, outcomes, treatments]
    if residuals:
        if (
            outcome_residuals is None
            or treatment_residuals is None
            or any(v is not None for v in plain)
        ):
            raise ValueError(
                "pass either outcome_residuals and treatment_residuals, or outcome_estimates, "
                "propensity_scores, outcomes and treatments"
            )
        values = {
            _CATE: ("cate_estimates", _pick_cate(cate_estimates, variant)),
            _YRES: ("outcome_residuals", outcome_residuals),
            _WRES: ("treatment_residuals", treatment_residuals),
        }
    else:
        if any(v is None for v in plain):
            raise ValueError(
                "r_loss needs outcome_estimates, propensity_scores, outcomes and treatments "
                "(or outcome_residuals and treatment_residuals)"
            )
        values = {
            _CATE: ("cate_estimates", _pick_cate(cate_estimates, variant)),
            _M: ("outcome_estimates", outcome_estimates),
            _E: ("propensity_scores", propensity_scores),
            _Y: ("outcomes", outcomes),
            _W: ("treatments", treatments),
        }
    inputs = _inputs(values)
    runner = _Runner(inputs, client)
    summary, (n, total) = runner.reduce("r-loss", _loss_sums, _merge_sums, variant, "r")
    _validate(summary, inputs.names, variant)
    return _root(total / n, squared)


def dr_loss(
    cate: Any,
    y: Any = None,
    w: Any = None,
    *,
    mu0: Any = None,
    mu1: Any = None,
    propensity: Any = None,
    pseudo_outcomes: Any = None,
    variant: int | None = None,
    squared: bool = False,
    client: Any = None,
) -> float:
    """DR-loss: ``sqrt(mean((phi - cate)^2))`` against the doubly robust pseudo-outcomes.

    ``phi = mu1 - mu0 + t (y - mu1) / e - (1 - t)(y - mu0) / (1 - e)`` on the rows of ``w`` in
    ``{0, variant}``, ``t = 1{w = variant}``, ``e`` = ``propensity`` (per row or one number);
    or pass ``pseudo_outcomes`` directly (every row is scored). ``squared=True``: the mean.
    """
    variant = _check_variant(variant)
    if pseudo_outcomes is not None:
        if any(v is not None for v in (y, w, mu0, mu1, propensity)):
            raise ValueError("pass either pseudo_outcomes, or y, w, mu0, mu1 and propensity")
        values = {
            _CATE: ("cate", _pick_cate(cate, variant)),
            _PSEUDO: ("pseudo_outcomes", pseudo_outcomes),
        }
    else:
        missing = [
            n
            for n, v in (("y", y), ("w", w), ("mu0", mu0), ("mu1", mu1), ("propensity", propensity))
            if v is None
        ]
        if missing:
            raise ValueError(f"dr_loss needs {missing} (or pseudo_outcomes)")
        values = {
            _CATE: ("cate", _pick_cate(cate, variant)),
            _Y: ("y", y),
            _W: ("w", w),
            _MU0: ("mu0", mu0),
            _MU1: ("mu1", mu1),
            _E: ("propensity", propensity),
        }
    inputs = _inputs(values)
    runner = _Runner(inputs, client)
    summary, (n, total) = runner.reduce("dr-loss", _loss_sums, _merge_sums, variant, "dr")
    _validate(summary, inputs.names, variant)
    return _root(total / n, squared)


# --- distribution of the CATE ----------------------------------------------------------------


def _histogram(part: pd.DataFrame, edges: np.ndarray) -> np.ndarray:
    return np.histogram(part[_CATE].to_numpy(dtype=float), bins=edges)[0].astype(np.int64)


def cate_histogram(
    cate: Any,
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
