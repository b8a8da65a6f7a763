"""Exact mode: the scored rows ranked by decreasing CATE, curve points and areas per partition.

See "Exact mode on Dask input" in ``docs/evaluation.md`` (section "How the metrics are
computed").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import dask
import numpy as np
import pandas as pd

from dask_meta import runtime
from dask_meta.metrics.curve_formulas import _CURVES, _Cells, _trapezoid
from dask_meta.metrics.inputs import _CATE, _POS, _T, _W, _Y, _Inputs
from dask_meta.metrics.runner import _Runner


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
    token = runtime.new_token()
    used = frame.map_partitions(
        _scored_rows, variant, meta=meta, token=runtime.task_key("metrics-scored-rows", token)
    )
    ordered = used.sort_values([_CATE, _POS], ascending=False)
    parts = runner.parts(ordered)
    summaries = [
        dask.delayed(_sorted_summary, pure=False)(
            p, dask_key_name=runtime.task_key("metrics-sorted-summary", i, token)
        )
        for i, p in enumerate(parts)
    ]
    states = dask.delayed(_partition_states, pure=False)(
        summaries, dask_key_name=runtime.task_key("metrics-offsets", token)
    )
    pieces = [
        dask.delayed(_exact_piece, pure=False)(
            p, states, i, want, dask_key_name=runtime.task_key("metrics-exact", i, token)
        )
        for i, p in enumerate(parts)
    ]
    return runner.gather(pieces)
