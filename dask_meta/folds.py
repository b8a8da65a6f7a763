"""Cross-fitting folds: one abstraction, three strategies (docs/parallelism.md).

``"partition"`` (default)
    Per partition ``p``, ``numpy.random.default_rng([seed, key, p])``; folds are exactly
    balanced *globally* within every stratum (treatment variant, and outcome class for
    classification): a cheap first pass counts each stratum per partition, and each
    partition continues the round-robin where the previous partitions stopped, in a random
    order within the partition. Scales to any size; in-sample prediction needs the same
    partition layout, which is checked.
``"hash"`` with ``fold_key=``
    fold = seeded stable hash of a row-id column modulo ``n_folds``: folds survive
    repartitioning and re-reading.
``"sklearn"``
    ``w``/``y`` and global row positions on the client; scikit-learn's
    ``KFold``/``StratifiedKFold(shuffle=True, random_state)`` on exactly the row subsets
    metalearners uses, so folds (and results) match metalearners bit for bit.

Every cross-fit estimator gets a :class:`SplitRef`: a fold column of the training frame
(fold id per row, -1 for rows outside its split) and the treatment variants it trains on.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client
from sklearn.model_selection import KFold, StratifiedKFold

from dask_meta import runtime
from dask_meta._constants import FOLD_PREFIX, NOT_IN_SPLIT, W_COL, Y_COL
from dask_meta.data import partition_categories, partitions

STRATEGIES = ("partition", "hash", "sklearn")


def validate_strategy(fold_strategy: Any, fold_key: Any) -> None:
    if fold_strategy not in STRATEGIES:
        raise ValueError(f"fold_strategy must be one of {STRATEGIES}, got {fold_strategy!r}")
    if fold_strategy == "hash":
        if fold_key is None:
            raise ValueError('fold_strategy="hash" needs fold_key=<name of a row-id column of X>')
        if not isinstance(fold_key, str):
            raise TypeError(f"fold_key must be a column name (str), got {type(fold_key).__name__}")
    elif fold_key is not None:
        raise ValueError(f'fold_key is only used with fold_strategy="hash", not {fold_strategy!r}')


def _stable_int(text: str) -> int:
    return zlib.crc32(text.encode())


# --- the first pass: per-partition statistics ----------------------------------------------


@dataclass
class PartitionStats:
    n: int
    y_nan: int
    y_inf: int
    w_nan: int
    w_inf: int
    w_non_integer: int
    #: rows per stratum: (w,) for regression, (w, y) for classification
    strata: Counter
    #: hash strategy: rows per (fold column, fold, stratum)
    hash_strata: Counter = field(default_factory=Counter)
    w: np.ndarray | None = None
    y: np.ndarray | None = None
    #: categories of the categorical feature columns Dask does not know the categories of
    categories: dict[Any, list[Any]] = field(default_factory=dict)


def _w_as_int(w: pd.Series) -> np.ndarray:
    values = w.to_numpy()
    if values.dtype == bool:
        return values.astype(np.int64)
    if np.issubdtype(values.dtype, np.floating):
        return np.nan_to_num(values, nan=-1).astype(np.int64)
    return values.astype(np.int64)


def _strata(w: np.ndarray, y: np.ndarray | None) -> list[Hashable]:
    if y is None:
        return [(int(v),) for v in w]
    return list(zip(w.tolist(), y.tolist(), strict=True))


def _strata_codes(w: np.ndarray, y: np.ndarray | None) -> tuple[list[Hashable], np.ndarray]:
    """The distinct strata of :func:`_strata` (the same keys) and each row's index into
    them, without a Python object per row."""
    codes_w, uniques_w = pd.factorize(w)
    values_w = np.asarray(uniques_w).tolist()
    if y is None:
        return [(int(v),) for v in values_w], codes_w
    codes_y, uniques_y = pd.factorize(y)
    values_y = np.asarray(uniques_y).tolist()
    pairs, codes = np.unique(
        codes_w.astype(np.int64) * len(values_y) + codes_y, return_inverse=True
    )
    keys: list[Hashable] = [
        (values_w[p // len(values_y)], values_y[p % len(values_y)]) for p in pairs.tolist()
    ]
    return keys, codes.reshape(-1)


def _counts(keys: list[Hashable], codes: np.ndarray) -> Counter:
    """``Counter(_strata(w, y))`` from :func:`_strata_codes`, counted with numpy."""
    return Counter(dict(zip(keys, np.bincount(codes, minlength=len(keys)).tolist(), strict=True)))


def hash_folds(keys: pd.Series, seed: int, seed_key: str, n_folds: int) -> np.ndarray:
    # pandas' hash_key only salts object/string data: mix the salt into the row hashes
    salt = np.uint64(_stable_int(f"{seed}-{seed_key}"))
    h = pd.util.hash_pandas_object(keys, index=False).to_numpy()
    h = pd.util.hash_array(h ^ salt)
    return (h % np.uint64(n_folds)).astype(np.int16)


def _partition_stats(
    part: pd.DataFrame,
    classification: bool,
    hash_specs: tuple[tuple[str, str, int, int], ...],
    fold_key: str | None,
    keep_arrays: bool,
    categorical: tuple[Any, ...] = (),
) -> PartitionStats:
    y = part[Y_COL]
    w = part[W_COL]
    y_values = y.to_numpy()
    numeric_y = np.issubdtype(y_values.dtype, np.number)
    y_nan = int(y.isna().sum())
    y_inf = int(np.isinf(y_values).sum()) if numeric_y else 0
    w_values = w.to_numpy()
    w_nan = int(w.isna().sum())
    if np.issubdtype(w_values.dtype, np.floating):
        present = w_values[~np.isnan(w_values)]
        finite = present[np.isfinite(present)]
        w_non_integer = int((finite != np.round(finite)).sum())
        w_inf = len(present) - len(finite)
    else:
        w_non_integer = w_inf = 0
    w_int = _w_as_int(w)
    keys, codes = _strata_codes(w_int, y_values if classification else None)
    stats = PartitionStats(
        n=len(part),
        y_nan=y_nan,
        y_inf=y_inf,
        w_nan=w_nan,
        w_inf=w_inf,
        w_non_integer=w_non_integer,
        strata=_counts(keys, codes),
    )
    for column, seed_key, n_folds, seed in hash_specs:
        assert fold_key is not None
        folds = hash_folds(part[fold_key], seed, seed_key, n_folds)
        n_keys = len(keys)
        combined = folds.astype(np.int64) * n_keys + codes
        counts = np.bincount(combined, minlength=n_folds * n_keys)
        stats.hash_strata.update(
            {
                (column, fold, keys[code]): int(counts[fold * n_keys + code])
                for fold in range(n_folds)
                for code in range(n_keys)
                if counts[fold * n_keys + code]
            }
        )
    if keep_arrays:
        stats.w = w_int
        stats.y = y_values
    if categorical:
        stats.categories = partition_categories(part, categorical)
    return stats


def scan(
    client: Client,
    frame: dd.DataFrame,
    classification: bool,
    *,
    fold_key: str | None = None,
    hash_specs: tuple[tuple[str, str, int, int], ...] = (),
    keep_arrays: bool = False,
    categorical: tuple[Any, ...] = (),
) -> list[PartitionStats]:
    """One cheap pass over y and w (and the fold key): small statistics per partition.

    Only these statistics reach the client, plus, for the ``"sklearn"`` strategy (which
    needs them by definition), the 1-D ``w`` and ``y``, and the categories of the
    ``categorical`` columns (see :func:`dask_meta.data.with_categories`).
    """
    columns = [Y_COL, W_COL] + ([fold_key] if fold_key is not None else [])
    columns += [c for c in categorical if c not in columns]
    parts = partitions(frame[columns])
    # keys of its own per scan (runtime.keyed_tasks): concurrent fits of the same data (a
    # grid search) would otherwise share keys that one of them releases while the other submits
    tasks = runtime.keyed_tasks(
        _partition_stats,
        parts,
        "scan",
        classification,
        hash_specs,
        fold_key,
        keep_arrays,
        categorical,
    )
    return runtime.gather_tasks(client, tasks)


# --- split requests and assignment ----------------------------------------------------------


@dataclass(frozen=True)
class SplitRequest:
    """The split one cross-fit estimator needs.

    ``variants``: the treatment variants of its training rows (None: all rows).
    ``stratify``: for the ``"sklearn"`` strategy, the column to stratify on (``Y_COL`` or
    ``W_COL``; None: plain ``KFold``), exactly as metalearners chooses.
    ``seed_key``: for the ``"partition"``/``"hash"`` strategies, estimators with the same
    key share fold ids (synchronised cross-fitting).
    ``cross_predicts``: the estimator of a variant's rows predicts every row in-sample, of
    every variant, with the fold model that did not train on the row's fold (the
    ``"partition"``/``"hash"`` strategies give every row a fold); otherwise only its
    variants' rows are in-sample and the others are predicted by its overall model.
    """

    variants: tuple[int, ...] | None
    n_folds: int
    stratify: str | None
    seed_key: str
    #: the seed of an earlier fit whose folds must be reproduced (None: this fit's seed)
    seed: int | None = None
    cross_predicts: bool = False


@dataclass(frozen=True)
class SplitRef:
    """Where a fitted cross-fit estimator's folds live: a fold column and its variants.

    ``request`` and ``seed`` say how the column was made, so that a later fit on the same
    data (``fit_all_treatment``, reused models) can make the same column again.
    """

    fold_col: str
    variants: tuple[int, ...] | None
    n_folds: int
    request: SplitRequest | None = None
    seed: int | None = None

    @property
    def cross_predicts(self) -> bool:
        """Rows of other variants are predicted in-sample too (:class:`SplitRequest`)."""
        return self.request is not None and self.request.cross_predicts

    @property
    def covers_every_row(self) -> bool:
        """Every training row is predicted in-sample by a fold model: the estimator trains on
        all rows, or it :attr:`cross_predicts`; its overall model predicts none of them."""
        return self.variants is None or self.cross_predicts

    def fold_ids(self, fold_frame: pd.DataFrame) -> np.ndarray:
        """Fold id per row; -1 for rows this estimator predicts out-of-sample (those of
        other variants than its own, unless it :attr:`cross_predicts`)."""
        ids = fold_frame[self.fold_col].to_numpy().astype(np.int64)
        if not self.covers_every_row:
            assert self.variants is not None  # a split of all rows covers every row
            inside = np.isin(fold_frame[W_COL].to_numpy(), self.variants)
            ids = np.where(inside, ids, NOT_IN_SPLIT)
        return ids


@dataclass
class Assignment:
    #: the training frame with W cast to int and one column per distinct split
    frame: dd.DataFrame
    refs: dict[Hashable, SplitRef]
    #: rows per (fold column, fold, stratum), for the coverage check
    fold_strata: Counter
    fold_columns: tuple[str, ...]


def _rotation(seed: int, seed_key: str, stratum: Hashable, n_folds: int) -> int:
    return _stable_int(f"{seed}-{seed_key}-{stratum!r}") % n_folds


def _strata_rows(
    w: np.ndarray, y: np.ndarray | None
) -> tuple[list[Hashable], np.ndarray, np.ndarray]:
    """A partition's strata (:func:`_strata_codes`), each stratum's rows in row order and
    where each stratum's rows end in them: what every fold column of the partition starts
    from."""
    keys, codes = _strata_codes(w, y)
    rows_of = np.argsort(codes, kind="stable")
    ends = np.cumsum(np.bincount(codes, minlength=len(keys)))
    return keys, rows_of, ends


def _partition_fold_column(
    w: np.ndarray,
    y: np.ndarray | None,
    number: int,
    offsets: dict[Hashable, int],
    seed: int,
    seed_key: str,
    n_folds: int,
    strata: tuple[list[Hashable], np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Partition ``number``'s fold of each row; ``strata``: its :func:`_strata_rows`, when
    the caller has them already."""
    if n_folds == 1:
        # one fold: every row in it, whatever the permutation
        return np.zeros(len(w), dtype=np.int16)
    keys, rows_of, ends = strata if strata is not None else _strata_rows(w, y)
    rng = np.random.default_rng([seed, _stable_int(seed_key), number])
    folds = np.empty(len(w), dtype=np.int16)
    for code in sorted(range(len(keys)), key=lambda c: repr(keys[c])):
        s = keys[code]
        rows = rows_of[ends[code - 1] if code else 0 : ends[code]]
        order = rng.permutation(len(rows))
        start = offsets.get(s, 0) + _rotation(seed, seed_key, s, n_folds)
        folds[rows] = (start + order) % n_folds
    return folds


def _assign_partition(
    part: pd.DataFrame,
    specs: tuple[tuple[str, str, int, int], ...],
    offsets: list[dict[Hashable, int]],
    classification: bool,
    fold_key: str | None,
    strategy: str,
    arrays: Any,
    starts: Sequence[int] | None,
    partition_info: dict | None = None,
) -> pd.DataFrame:
    number = partition_info["number"] if partition_info else 0
    # new columns, not new values: where pandas copies on write, the features stay the
    # partition's arrays (a deep copy costs a first write to every page of its memory)
    out = part.copy(deep=not copies_on_write())
    w = _w_as_int(part[W_COL])
    out[W_COL] = w
    y = part[Y_COL].to_numpy() if classification else None
    strata = None
    for column, seed_key, n_folds, seed in specs:
        if strategy == "partition":
            if strata is None and n_folds > 1:
                strata = _strata_rows(w, y)  # the same for every fold column
            out[column] = _partition_fold_column(
                w, y, number, offsets[number], seed, seed_key, n_folds, strata
            )
        elif strategy == "hash":
            assert fold_key is not None
            out[column] = hash_folds(part[fold_key], seed, seed_key, n_folds)
        else:
            assert starts is not None
            out[column] = arrays[column][starts[number] : starts[number] + len(part)]
    return out


def copies_on_write() -> bool:
    """Whether pandas copies on write (always from pandas 3): a frame that shares another's
    arrays then never writes into them."""
    return int(pd.__version__.split(".")[0]) >= 3 or pd.get_option("mode.copy_on_write") is True


def _meta_with(frame: dd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    meta = frame._meta.copy()
    meta[W_COL] = meta[W_COL].astype(np.int64)
    for c in columns:
        meta[c] = np.array([], dtype=np.int16)
    return meta


def _effective_seed(request: SplitRequest, seed: int | None) -> int | None:
    return request.seed if request.seed is not None else seed


def hash_specs_for(
    requests: dict[Hashable, SplitRequest], seed: int = 0
) -> tuple[tuple[str, str, int, int], ...]:
    """Fold columns of the ``"partition"``/``"hash"`` strategies: one per
    (seed key, n_folds, seed); each spec is (column, seed key, n_folds, seed)."""
    keys = sorted(
        {(r.seed_key, r.n_folds, int(_effective_seed(r, seed) or 0)) for r in requests.values()}
    )
    return tuple((f"{FOLD_PREFIX}{i}__", k, n, sd) for i, (k, n, sd) in enumerate(keys))


def assign(
    strategy: str,
    frame: dd.DataFrame,
    stats: list[PartitionStats],
    requests: dict[Hashable, SplitRequest],
    *,
    seed: int | None,
    classification: bool,
    fold_key: str | None = None,
) -> Assignment:
    """Add the fold columns the requested splits need to the (lazy) training frame.

    ``seed`` is the fit's seed (for ``"sklearn"``: metalearners' ``random_state``, which may
    be None); requests that carry their own seed reproduce an earlier fit's folds.
    """
    if strategy == "sklearn":
        return _assign_sklearn(frame, stats, requests, seed, classification)
    specs = hash_specs_for(requests, int(seed or 0))
    column_of = {(k, n, sd): c for c, k, n, sd in specs}
    refs = {}
    for owner, r in requests.items():
        sd = int(_effective_seed(r, seed) or 0)
        refs[owner] = SplitRef(column_of[(r.seed_key, r.n_folds, sd)], r.variants, r.n_folds, r, sd)
    offsets: list[dict[Hashable, int]] = []
    running: Counter = Counter()
    for s in stats:
        offsets.append(dict(running))
        running.update(s.strata)
    fold_strata: Counter = Counter()
    if strategy == "partition":
        for column, seed_key, n_folds, sd in specs:
            for stratum, count in running.items():
                start = _rotation(sd, seed_key, stratum, n_folds)
                for k in range(n_folds):
                    # rows i in [0, count) with (start + i) % n_folds == k
                    first = (k - start) % n_folds
                    fold_strata[(column, k, stratum)] = (
                        0 if first >= count else (count - 1 - first) // n_folds + 1
                    )
    else:
        for s in stats:
            fold_strata.update(s.hash_strata)
    columns = [c for c, _, _, _ in specs]
    with_folds = frame.map_partitions(
        _assign_partition,
        specs,
        offsets,
        classification,
        fold_key,
        strategy,
        None,
        None,
        meta=_meta_with(frame, columns),
    )
    return Assignment(with_folds, refs, fold_strata, tuple(columns))


def _sklearn_folds(
    w: np.ndarray, y: np.ndarray, request: SplitRequest, seed: int | None
) -> np.ndarray:
    n = len(w)
    folds = np.full(n, NOT_IN_SPLIT, dtype=np.int16)
    rows = (
        np.arange(n) if request.variants is None else np.flatnonzero(np.isin(w, request.variants))
    )
    if request.n_folds == 1:
        # one model on every row of the split: nothing to draw (KFold needs two splits)
        folds[rows] = 0
        return folds
    if request.stratify is None:
        splitter: Any = KFold(n_splits=request.n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(rows)
    else:
        target = (w if request.stratify == W_COL else y)[rows]
        splitter = StratifiedKFold(n_splits=request.n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(rows, target)
    for k, (_, test) in enumerate(splits):
        folds[rows[test]] = k
    return folds


def _assign_sklearn(
    frame: dd.DataFrame,
    stats: list[PartitionStats],
    requests: dict[Hashable, SplitRequest],
    seed: int | None,
    classification: bool,
) -> Assignment:
    w = np.concatenate([s.w for s in stats if s.w is not None])
    y = np.concatenate([s.y for s in stats if s.y is not None])
    identities: dict[tuple, str] = {}
    arrays: dict[str, np.ndarray] = {}
    refs: dict[Hashable, SplitRef] = {}
    for owner, r in requests.items():
        sd = _effective_seed(r, seed)
        identity = (r.variants, r.n_folds, r.stratify, sd)
        if identity not in identities:
            column = f"{FOLD_PREFIX}{len(identities)}__"
            identities[identity] = column
            arrays[column] = _sklearn_folds(w, y, r, sd)
        refs[owner] = SplitRef(identities[identity], r.variants, r.n_folds, r, sd)
    return _with_fold_arrays(frame, stats, arrays, refs, classification)


def assign_given(
    frame: dd.DataFrame,
    stats: list[PartitionStats],
    given: dict[Hashable, tuple[np.ndarray, int]],
    classification: bool,
) -> Assignment:
    """Fold columns given per row (``cv=`` index lists): owner -> (fold id of every row,
    n_folds). A row's id is the fold that holds it out; ``n_folds`` marks rows no fold holds
    out, which every fold model trains on. Such splits cannot be drawn again
    (``SplitRef.request`` is None)."""
    arrays: dict[str, np.ndarray] = {}
    refs: dict[Hashable, SplitRef] = {}
    for i, (owner, (ids, n_folds)) in enumerate(given.items()):
        column = f"{FOLD_PREFIX}{i}__"
        arrays[column] = np.asarray(ids, dtype=np.int16)
        refs[owner] = SplitRef(column, None, n_folds)
    return _with_fold_arrays(frame, stats, arrays, refs, classification)


def _with_fold_arrays(
    frame: dd.DataFrame,
    stats: list[PartitionStats],
    arrays: dict[str, np.ndarray],
    refs: dict[Hashable, SplitRef],
    classification: bool,
) -> Assignment:
    """The training frame with fold columns made on the client (one id per row, in row
    order), and their rows per (column, fold, stratum)."""
    w = np.concatenate([s.w for s in stats if s.w is not None])
    y = np.concatenate([s.y for s in stats if s.y is not None])
    strata = _strata(w, y if classification else None)
    fold_strata: Counter = Counter()
    for column, ids in arrays.items():
        inside = ids != NOT_IN_SPLIT
        fold_strata.update(
            (column, int(f), s)
            for f, s, i in zip(ids.tolist(), strata, inside.tolist(), strict=True)
            if i
        )
    starts = np.concatenate([[0], np.cumsum([s.n for s in stats])[:-1]]).tolist()
    specs = tuple((c, "", 0, 0) for c in arrays)
    with_folds = frame.map_partitions(
        _assign_partition,
        specs,
        None,
        classification,
        None,
        "sklearn",
        dask.delayed(arrays, name=f"dask_meta-folds-{dask.base.tokenize(arrays)}"),
        starts,
        meta=_meta_with(frame, list(arrays)),
    )
    return Assignment(with_folds, refs, fold_strata, tuple(arrays))
