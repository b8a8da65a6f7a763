"""The rows a fit trains on: a job's selected rows of its partitions, and their arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dask_meta._constants import ROW_ID_COL, W_COL
from dask_meta.backends.predict import take_rows
from dask_meta.backends.specs import Design, FitSpec, RowSelection
from dask_meta.resampling import Resample


def aligned(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with memory-aligned column buffers (a copy only when needed).

    Partitions can arrive from another worker at unaligned byte offsets, and numpy sums in
    another order on unaligned buffers: results would differ in the last bit between runs.
    """
    for column in frame.columns:
        values = frame[column].to_numpy()
        if isinstance(values, np.ndarray) and not values.flags.aligned:
            return frame.copy(deep=True)
    return frame


def gather_rows(
    selection: RowSelection, parts: Sequence[pd.DataFrame], extra: Sequence[pd.DataFrame] = ()
) -> pd.DataFrame:
    """Concatenate the selected rows of all partitions, in partition order.

    ``extra`` holds per-partition frames of derived columns (same rows as ``parts``).
    """
    selected = []
    for i, part in enumerate(parts):
        if extra:
            part = pd.concat([part, extra[i].set_axis(part.index)], axis=1)
        keep = selection.mask(part)
        selected.append(part[keep] if not keep.all() else part)
    frame = pd.concat(selected, ignore_index=True) if len(selected) > 1 else selected[0]
    return aligned(frame.reset_index(drop=True))


class PartitionRows:
    """One partition and its derived columns, as the fits of a streaming step take their
    rows of it: joined once, each design's matrix built once and each replicate's counts
    drawn once for all of them (a fused step fits every fold model of an estimator, and a
    bootstrap's replicates, on the same partition)."""

    def __init__(self, part: pd.DataFrame, extra: Sequence[pd.DataFrame] = ()) -> None:
        if extra:
            part = pd.concat([part, *(e.set_axis(part.index) for e in extra)], axis=1)
        self.frame = part
        self._counts: dict[Resample, np.ndarray] = {}
        self._matrices: dict[Design, Any] = {}

    def counts(self, resample: Resample) -> np.ndarray:
        """The replicate's count of every row of the partition."""
        if resample not in self._counts:
            self._counts[resample] = resample.counts(self.frame[ROW_ID_COL].to_numpy())
        return self._counts[resample]

    def arrays(self, spec: FitSpec) -> tuple[Any, np.ndarray, dict[str, Any]]:
        """The job's rows of the partition: as :func:`training_arrays` of
        :func:`gather_rows`, from copies of the selected rows (so aligned)."""
        resample = spec.rows.resample
        counts = None if resample is None else self.counts(resample)
        positions = np.flatnonzero(spec.rows.mask(self.frame, counts))
        if spec.design not in self._matrices:
            w = self.frame[W_COL].to_numpy() if W_COL in self.frame.columns else None
            self._matrices[spec.design] = spec.design.matrix(self.frame, w)
        X = take_rows(self._matrices[spec.design], positions)
        y = self.frame[spec.target].to_numpy()[positions]
        return X, y, row_fit_params(spec, self.frame, positions, counts)


def training_arrays(spec: FitSpec, frame: pd.DataFrame) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """The feature matrix, target and fit parameters of a job's selected rows."""
    w = frame[W_COL].to_numpy() if W_COL in frame.columns else None
    X = spec.design.matrix(frame, w)
    y = frame[spec.target].to_numpy()
    return X, y, row_fit_params(spec, frame)


def row_fit_params(
    spec: FitSpec,
    frame: pd.DataFrame,
    positions: np.ndarray | None = None,
    counts: np.ndarray | None = None,
) -> dict[str, Any]:
    """The fit parameters of a job's rows (``positions`` of ``frame``, default all): its
    static ones, the per-row ones from their columns, and a bootstrap replicate's counts
    as ``sample_weight`` (times the given one; its selection kept the rows of positive
    count). ``counts``: the replicate's counts of every row of ``frame``, if drawn
    already."""

    def column(name: str) -> np.ndarray:
        values = frame[name].to_numpy()
        return values if positions is None else values[positions]

    fit_params = dict(spec.fit_params)
    for name, source in spec.row_params.items():
        fit_params[name] = column(source)
    if spec.rows.resample is not None:
        if counts is None:  # drawn for the job's rows only
            counts = spec.rows.resample.counts(column(ROW_ID_COL))
        elif positions is not None:
            counts = counts[positions]
        given = fit_params.get("sample_weight")
        fit_params["sample_weight"] = (
            counts if given is None else counts * np.asarray(given, dtype=float)
        )
    return fit_params
