"""The one fit pipeline: the training frame on the cluster, its folds and its fingerprint.

Every fit goes through these steps, a learner's (:mod:`dask_meta.learners.fit_run`) as well as a
lone cross-fit estimator's or the explainer's surrogate models'
(:func:`dask_meta.crossfit.fit_estimators`):

1. :func:`split_fit_params`: per-row fit parameters (``sample_weight``) become columns of the
   training frame (:func:`dask_meta.data.training_frame`), the others stay parameters;
2. :func:`assign_folds`: one cheap pass over y and w (:func:`dask_meta.folds.scan`), the
   caller's checks of its statistics, one set of categories in every partition, then the
   fold columns (:func:`dask_meta.folds.assign`);
3. :func:`place`: the training frame kept in the cluster's memory (or read from its source
   for every pass, for data larger than memory), and a fingerprint per partition, which
   :class:`FitContext` keeps so that in-sample prediction recognises the training data.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client

from dask_meta import runtime
from dask_meta._constants import PARAM_PREFIX, ROW_ID_COL, W_COL
from dask_meta.cluster import ClusterShape
from dask_meta.data import (
    Columns,
    Frame,
    is_dask,
    n_rows_in_memory,
    narrow,
    partition_fingerprint,
    partitions,
    piece_counts,
    unknown_categoricals,
    with_categories,
)
from dask_meta.folds import (
    Assignment,
    PartitionStats,
    SplitRequest,
    assign,
    assign_given,
    hash_specs_for,
    scan,
)
from dask_meta.planner import Planner


@dataclass
class FitContext:
    """Shared by all cross-fit estimators of one fit: how to find a row's fold again.

    ``fold_frame`` is a lazy Dask frame (treatment and fold columns) with exactly the
    partitions of the training data; nothing of it is held in memory. In-sample prediction
    checks the partition count eagerly, and each partition's length and fingerprint in its
    task (:func:`check_partition`).
    """

    columns: Columns
    #: None in a slim context (:meth:`slim`)
    fold_frame: dd.DataFrame | None
    lengths: tuple[int, ...]
    fingerprints: tuple[int, ...]
    #: the fold frame kept in the fit cluster's memory, with that cluster's scheduler
    #: address, when the training data fit in memory: in-sample prediction there neither
    #: sends in-memory training data again (``fold_frame`` holds them in its graph) nor reads
    #: and assigns a parquet data set's folds again; not pickled
    held: tuple[str | None, dd.DataFrame] | None = None

    @property
    def n_rows(self) -> int:
        return sum(self.lengths)

    def folds_for(self, client: Any) -> dd.DataFrame:
        """The fold frame to read on ``client``'s cluster: the one held there, if any."""
        if self.held is not None and runtime.scheduler_address(client) == self.held[0]:
            return self.held[1]
        if self.fold_frame is None:
            raise ValueError(
                "in-sample prediction (is_oos=False) needs the fit's fold assignment, which a "
                "pickled CrossFitEstimator does not carry (a pickled learner does): predict "
                "in sample before pickling it, or save it with its save method"
            )
        return self.fold_frame

    def slim(self) -> FitContext:
        """Without the fold frame: what base models shipped to the workers carry (the fold
        frame of in-memory training data holds the data)."""
        return FitContext(self.columns, None, self.lengths, self.fingerprints)

    def __deepcopy__(self, memo: dict) -> FitContext:
        # immutable and shared by the estimators of a fit; its lazy frame cannot be deep-copied
        return self

    def __getstate__(self) -> dict[str, Any]:
        # another process, or another cluster: the fit cluster's futures mean nothing there
        return {**self.__dict__, "held": None}


def fold_columns(assignment: Assignment) -> list[str]:
    """The columns that find a training row's fold again: w, the folds' columns and a
    bootstrap's row identities (its in-sample estimates weigh rows by their counts)."""
    ids = [ROW_ID_COL] if ROW_ID_COL in assignment.frame.columns else []
    return [W_COL, *assignment.fold_columns, *ids]


def fit_context(
    data: Frame,
    assignment: Assignment,
    lengths: Sequence[int],
    fingerprints: Sequence[int],
    client: Any = None,
    held_parts: Sequence[Any] | None = None,
) -> FitContext:
    """How to find a training row's fold again. When the training frame is on ``client``'s
    cluster, the fold columns are kept there too (:attr:`FitContext.held`), a few bytes a
    row: ``held_parts``, their partitions' futures, or for in-memory data sent there, the
    fold frame persisted."""
    columns = fold_columns(assignment)
    fold_frame = narrow(assignment.frame, columns)
    held = None
    if client is not None and held_parts is not None:
        held_frame = dd.from_delayed(
            list(held_parts), meta=fold_frame._meta, divisions=fold_frame.divisions
        )
        held = (runtime.scheduler_address(client), held_frame)
    elif client is not None and data.local is not None:
        held = (runtime.scheduler_address(client), runtime.persist(client, fold_frame))
    return FitContext(
        data.columns, data.detached(fold_frame), tuple(lengths), tuple(fingerprints), held
    )


def select_columns(part: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A partition's ``columns`` (runs on a worker)."""
    return part[columns]


def fingerprint_features(part: pd.DataFrame, names: tuple[Any, ...]) -> int:
    """A partition's fingerprint: a hash of its feature values (runs on a worker)."""
    return partition_fingerprint(part, columns=names)


def check_partition(
    X: pd.DataFrame,
    number: int,
    lengths: tuple[int, ...],
    fingerprints: tuple[int, ...],
    names: tuple[Any, ...],
) -> None:
    """Raise unless partition ``number`` of X is that partition of the training data."""
    check_length(len(X), number, lengths)
    check_fingerprint(partition_fingerprint(X, columns=names), number, fingerprints)


def check_length(n_rows: int, number: int, lengths: tuple[int, ...]) -> None:
    """Raise unless partition ``number`` of X has as many rows as the training data's."""
    if n_rows != lengths[number]:
        raise ValueError(
            f"is_oos=False needs exactly the training data, but partition {number} of X has "
            f"{n_rows} rows where the training data had {lengths[number]}; use is_oos=True "
            "for other data"
        )


def check_fingerprint(fingerprint: int, number: int, fingerprints: tuple[int, ...]) -> None:
    """Raise unless partition ``number`` of X has the training data's fingerprint."""
    if fingerprint != fingerprints[number]:
        raise ValueError(
            f"is_oos=False needs exactly the training data, but partition {number} of X holds "
            "other values than the training data (fingerprint mismatch); use is_oos=True for "
            "other data"
        )


def sorted_values(values: Any) -> list[Any]:
    """Treatment variants or classes in order, for messages (any mix of types)."""
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=repr)


# --- 1. fit parameters ------------------------------------------------------------------------


def rows_in_memory(X: Any) -> int | None:
    """The number of rows of in-memory X (None for Dask input, whose length is lazy)."""
    if is_dask(X):
        return None
    return n_rows_in_memory(X)


def _is_row_param(value: Any, n_rows: int | None) -> bool:
    if is_dask(value):
        return True
    if isinstance(value, str | bytes | dict) or not hasattr(value, "__len__"):
        return False
    try:
        return n_rows is not None and len(value) == n_rows and np.ndim(value) >= 1
    except TypeError:
        return False


#: fit parameters that are always one value per row (any other array-like parameter whose
#: length is not X's is passed to the models as it is)
PER_ROW_PARAMS = frozenset({"sample_weight"})


@dataclass
class RowParams:
    """Per-row fit parameters of one fit, as columns of its training frame.

    ``values`` (column -> (argument name, value)) go to :func:`dask_meta.data.training_frame`;
    the same array passed to several models becomes one column.
    """

    n_rows: int | None
    values: dict[str, tuple[str, Any]] = field(default_factory=dict)
    _columns: dict[int, str] = field(default_factory=dict)

    def split(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """``params`` as (static params, {param name: training-frame column})."""
        static: dict[str, Any] = {}
        rows: dict[str, str] = {}
        for name, value in params.items():
            if not _is_row_param(value, self.n_rows):
                if name in PER_ROW_PARAMS and value is not None:
                    self._refuse(name, value)
                static[name] = value
                continue
            column = self._columns.setdefault(id(value), f"{PARAM_PREFIX}{len(self._columns)}__")
            self.values[column] = (f"fit_params[{name!r}]", value)
            rows[name] = column
        return static, rows

    def _refuse(self, name: str, value: Any) -> None:
        """A per-row parameter that is not one value per row of X, in the user's terms."""
        if self.n_rows is None:
            raise TypeError(
                f"fit_params[{name!r}] is in memory but X is a Dask collection; pass it as a "
                "Dask Series or Array with X's partitions (e.g. a column of the same frame)"
            )
        got = np.shape(value)
        raise ValueError(
            f"fit_params[{name!r}] has shape {got} but X has {self.n_rows} rows; pass one "
            "value per row of X"
        )


# --- 2. folds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldSettings:
    """How a fit draws its folds (the learner's or the cross-fit estimator's arguments)."""

    strategy: str
    fold_key: str | None
    #: the fit's seed (hash and partition strategies)
    seed: int
    #: the "sklearn" strategy's seed: metalearners' random_state, which may be None
    random_state: int | None
    classification: bool


def assign_folds(
    client: Client,
    data: Frame,
    requests: dict[Hashable, SplitRequest],
    folds: FoldSettings,
    check: Callable[[list[PartitionStats]], None],
    given: dict[Hashable, tuple[np.ndarray, int]] | None = None,
) -> tuple[Frame, list[PartitionStats], Assignment]:
    """The first pass over the data, ``check`` of its statistics, then the fold columns.

    ``given``: fold ids per row for some owners (``cv=`` index lists, see
    :func:`dask_meta.folds.assign_given`), which replace ``requests`` and the strategy.

    Categorical columns whose categories differ between partitions get the union of them
    in every partition: a fit's rows concatenate into one categorical column, with the same
    codes as the same rows in one partition.
    """
    categorical = unknown_categoricals(data)
    stats = scan(
        client,
        data.frame,
        folds.classification,
        fold_key=folds.fold_key,
        hash_specs=(
            hash_specs_for(requests, folds.seed)
            if folds.strategy == "hash" and given is None
            else ()
        ),
        keep_arrays=folds.strategy == "sklearn" or given is not None,
        categorical=categorical,
    )
    check(stats)
    if categorical:
        data = with_categories(data, [s.categories for s in stats])
    if given is not None:
        return data, stats, assign_given(data.frame, stats, given, folds.classification)
    assignment = assign(
        folds.strategy,
        data.frame,
        stats,
        requests,
        seed=folds.random_state if folds.strategy == "sklearn" else folds.seed,
        classification=folds.classification,
        fold_key=folds.fold_key,
    )
    return data, stats, assignment


# --- 3. on the cluster ------------------------------------------------------------------------


def persists(persist: bool | str, frame: dd.DataFrame, n_rows: int, shape: ClusterShape) -> bool:
    """Whether fit keeps the training frame in the cluster's memory (``persist``).

    ``"auto"`` persists unless the frame would take more than a third of the workers'
    memory limits together (the rest is needed for the fits themselves).
    """
    if persist != "auto":
        return bool(persist)
    limit = sum(w.memory_limit for w in shape.workers)
    if limit <= 0:
        return True
    row_bytes = sum(
        dtype.itemsize if dtype.kind in "biufcmM" else 64 for dtype in frame._meta.dtypes
    )
    return n_rows * row_bytes <= limit / 3


@dataclass
class TrainingData:
    """The training frame of one fit on the cluster, with its folds and fingerprint."""

    data: Frame
    stats: list[PartitionStats]
    assignment: Assignment
    #: persisted partitions (futures) or, for data larger than memory, delayed ones
    parts: list[Any]
    context: FitContext
    persisted: bool

    @property
    def n_rows(self) -> int:
        return sum(s.n for s in self.stats)


def place(
    planner: Planner,
    data: Frame,
    stats: list[PartitionStats],
    assignment: Assignment,
    persist: bool,
) -> TrainingData:
    """Keep the training frame on the cluster (or read it per pass) and fingerprint it.

    The planner owns the persisted partitions: cancelling it frees them.
    """
    if persist:
        parts = planner.persist_partitions(assignment.frame, "training-frame")
    else:
        # larger than the cluster's memory: every pass reads the partitions from source
        parts = partitions(assignment.frame)
    fingerprints = planner.gather_partitions(
        fingerprint_features, parts, "fingerprint", names=data.columns.names
    )
    lengths = [s.n for s in stats]
    held_parts = None
    if persist:
        # the fold columns of the persisted partitions, for in-sample prediction after the
        # fit: not read and assigned from source again
        columns = fold_columns(assignment)
        held_parts = planner.map_partitions(
            select_columns, parts, name="fold-frame", columns=columns
        )
    context = fit_context(data, assignment, lengths, fingerprints, planner.client, held_parts)
    if persist and planner.shape is not None:
        # a few large partitions (a parquet file of one row group): the fit's passes over
        # the rows (in-sample predictions, derived targets) run on every thread
        counts = piece_counts(len(parts), planner.shape.total_threads, tuple(lengths))
        parts = planner.cut_partitions(parts, counts, "training-pieces")
    return TrainingData(data, stats, assignment, parts, context, persist)
