"""Input normalisation and alignment: one place at the edge (docs/architecture.md).

Whatever the user passes (pandas/numpy, Dask DataFrame/Series/Array), the rest of the
package sees one Dask DataFrame, the *training frame*: the feature columns, the outcome
``Y_COL``, the treatment ``W_COL`` and per-row fit parameters, all derived from one
expression lineage. Frames from the same lineage are combined with ``assign`` (dask-expr
keeps them aligned); other Dask inputs are combined partition by partition, positionally,
with their lengths checked. Index alignment across differently partitioned frames is never
used: with Dask's per-partition index it is silently wrong.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.dataframe.dask_expr import new_collection
from dask.dataframe.dask_expr._expr import are_co_aligned
from dask.dataframe.utils import has_known_categories

from dask_meta import runtime
from dask_meta._constants import RESERVED_PREFIX, ROWS_PER_PARTITION, W_COL, Y_COL


def is_dask(obj: Any) -> bool:
    return isinstance(obj, dd.DataFrame | dd.Series | da.Array)


@dataclass(frozen=True)
class Columns:
    """The feature columns of the training frame and how the user gave them."""

    #: training-frame column names, in the user's order
    names: tuple[Any, ...]
    #: True for numpy / Dask-array input: base models get numpy arrays
    as_numpy: bool
    #: the covariates' dtypes as seen at fit time (checked at predict time)
    dtypes: tuple[str, ...]
    #: categorical columns whose categories Dask did not know, with the categories found in
    #: all partitions at fit time: every partition is cast to them, at fit and predict time
    categories: tuple[tuple[Any, tuple[Any, ...]], ...] = ()

    def select(self, feature_set: Sequence[Any] | None, name: str) -> tuple[Any, ...]:
        """Resolve a ``feature_set`` (positions or column names) to training-frame columns."""
        if feature_set is None:
            return self.names
        items = list(feature_set)
        if not items:
            return ()
        if all(isinstance(f, int | np.integer) and not isinstance(f, bool) for f in items):
            bad = [f for f in items if not -len(self.names) <= int(f) < len(self.names)]
            if bad:
                raise ValueError(
                    f"feature_set for {name} has positions {bad} outside the "
                    f"{len(self.names)} columns of X"
                )
            return tuple(self.names[int(f)] for f in items)
        if all(isinstance(f, str) for f in items):
            if self.as_numpy:
                raise ValueError(
                    f"feature_set for {name} names columns {items}, but X has no column "
                    "names (numpy or Dask array input); use column positions"
                )
            missing = [f for f in items if f not in self.names]
            if missing:
                raise ValueError(
                    f"feature_set for {name} names columns {missing} that X does not have; "
                    f"X has {list(self.names)}"
                )
            return tuple(items)
        raise ValueError(
            f"feature_set for {name} must be all column positions (ints) or all column "
            f"names (strings), got {items!r}"
        )


@dataclass(frozen=True)
class Frame:
    """A normalised input: a Dask frame plus what is needed to return the right type."""

    frame: dd.DataFrame
    columns: Columns
    in_memory: bool
    #: in-memory input sent to the cluster (:func:`on_cluster`): ``frame`` as built on the
    #: client, whose graph holds the data themselves instead of the cluster's futures
    local: dd.DataFrame | None = None

    def detached(self, derived: dd.DataFrame) -> dd.DataFrame:
        """``derived`` (a lazy frame computed from ``frame``) on the data as built on the
        client, for what outlives the fit and its cluster (a fitted learner's fold frame):
        a pickled learner, or one predicting on another cluster, must not refer to this
        cluster's futures."""
        if self.local is None:
            return derived
        return new_collection(derived.expr.substitute(self.frame.expr, self.local.expr))


def numpy_names(n: int) -> tuple[str, ...]:
    return tuple(f"x{i}" for i in range(n))


def _n_partitions(n_rows: int) -> int:
    return max(1, math.ceil(n_rows / ROWS_PER_PARTITION))


def dtype_family(dtype: Any) -> str:
    """What a base model can make of a column of this dtype: ``"numeric"`` (numbers and
    bools, nullable ones too), ``"category"``, or what it cannot use as it is."""
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype) or (
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    ):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return "time"
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        return "text"
    return "other"


def check_feature_dtypes(columns: Columns, used: Collection[Any]) -> None:
    """The ``used`` features are numbers, bools or categoricals: anything else fails inside
    the models (strings are parsed at fit and break predict; datetimes fail numpy's
    promotion). Other columns of X (a text ``fold_key``) may be anything."""
    bad = [
        (name, dtype)
        for name, dtype in zip(columns.names, columns.dtypes, strict=True)
        if name in set(used)
        and dtype_family(pd.api.types.pandas_dtype(dtype)) not in ("numeric", "category")
    ]
    if bad:
        shown = ", ".join(f"{name!r} ({dtype})" for name, dtype in bad)
        raise TypeError(
            f"X has columns that base models cannot use: {shown}; features must be numbers, "
            "bools or pandas 'category' (convert text with astype(float) or "
            "astype('category'), datetimes to numbers such as seconds since an epoch)"
        )


def _check_x_columns(columns: Any) -> None:
    if isinstance(columns, pd.MultiIndex):
        raise ValueError(
            "X has MultiIndex columns; give it one level of names, e.g. X.columns = "
            "['_'.join(map(str, c)) for c in X.columns]"
        )
    reserved = [c for c in columns if isinstance(c, str) and c.startswith(RESERVED_PREFIX)]
    if reserved:
        raise ValueError(
            f"X has columns {reserved}; names starting with {RESERVED_PREFIX!r} "
            "are reserved by dask_meta"
        )
    if len(set(columns)) != len(columns):
        raise ValueError("X has duplicate column names")


def from_polars(value: Any) -> Any:
    """A polars DataFrame or Series as pandas (names and dtypes kept, categoricals as
    pandas categoricals, as pandas input would be); anything else as it is."""
    if type(value).__module__.startswith("polars") and hasattr(value, "to_pandas"):
        return value.to_pandas()
    return value


def _vector_in_memory(v: Any, name: str, n: int) -> np.ndarray | pd.Series:
    v = from_polars(v)
    if is_dask(v):
        raise TypeError(
            f"{name} is a Dask collection but X is in memory; pass both as Dask collections "
            "or both in memory"
        )
    if isinstance(v, pd.DataFrame):
        if v.shape[1] != 1:
            raise ValueError(f"{name} must be one-dimensional, got a DataFrame of shape {v.shape}")
        v = v.iloc[:, 0]
    if isinstance(v, pd.Series):
        arr: Any = v.reset_index(drop=True)
    else:
        arr = np.asarray(v)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} rows but X has {n}; they must be equally long")
    return arr


def is_sparse(value: Any) -> bool:
    """Whether ``value`` is a scipy sparse matrix or array (csr, csc, coo...)."""
    return type(value).__module__.startswith("scipy.sparse")


def n_rows_in_memory(X: Any) -> int:
    """The rows of in-memory X (sparse matrices have no ``len``)."""
    return int(X.shape[0]) if is_sparse(X) else len(X)


def row_bounds(n_rows: int) -> list[tuple[int, int]]:
    """The rows of each partition of in-memory input: those of
    ``dd.from_pandas(..., npartitions=_n_partitions(n_rows), sort=False)`` (even splits)."""
    k = _n_partitions(n_rows)
    size, extra = divmod(n_rows, k)
    edges = np.cumsum([0] + [size + 1] * extra + [size] * (k - extra)).tolist()
    return list(itertools.pairwise(edges))


@dataclass(frozen=True)
class SparseRows:
    """One partition of sparse in-memory X: its rows (csr) and those of the vectors."""

    X: Any
    start: int
    names: tuple[str, ...]
    vectors: dict[str, Any]


def dense_partition(rows: SparseRows) -> pd.DataFrame:
    """A partition of sparse X made dense, with its vectors (runs on a worker): the same
    frame as that partition of the dense matrix."""
    index = pd.RangeIndex(rows.start, rows.start + rows.X.shape[0])
    out = pd.DataFrame(rows.X.toarray(), columns=list(rows.names), index=index)
    for column, values in rows.vectors.items():
        out[column] = values
    return out


def _sparse_frame(X: Any, vectors: dict[str, tuple[str, Any]]) -> Frame:
    """Sparse in-memory X as a Dask frame: row slices stay sparse on the client and are
    made dense per partition on the workers, with the partitions of the dense path."""
    if X.ndim != 2:
        raise ValueError(f"X must be two-dimensional, got a sparse array of shape {X.shape}")
    X = X.tocsr()  # row slices; no dense copy
    n = int(X.shape[0])
    if n == 0:
        raise ValueError("X has no rows")
    names = numpy_names(X.shape[1])
    # an absent vector is a constant 0 column, as in the dense path
    values: dict[str, np.ndarray] = {
        column: np.zeros(n, dtype=np.int64)
        if v is None
        else np.asarray(_vector_in_memory(v, arg, n))
        for column, (arg, v) in vectors.items()
    }
    meta = pd.DataFrame({name: np.array([], dtype=X.dtype) for name in names})
    for column, v in values.items():
        meta[column] = v[:0]
    parts = [
        SparseRows(X[a:b], a, names, {c: v[a:b] for c, v in values.items()})
        for a, b in row_bounds(n)
    ]
    frame = dd.from_map(dense_partition, parts, meta=meta, enforce_metadata=False)
    cols = Columns(names, True, tuple(str(meta[name].dtype) for name in names))
    return Frame(frame, cols, in_memory=True)


def _x_in_memory(X: Any) -> tuple[pd.DataFrame, Columns]:
    X = from_polars(X)
    if isinstance(X, pd.DataFrame):
        _check_x_columns(X.columns)
        pdf = X.reset_index(drop=True)
        cols = Columns(tuple(X.columns), False, tuple(str(t) for t in X.dtypes))
        return pdf, cols
    if isinstance(X, pd.Series):
        raise ValueError("X must be two-dimensional (a DataFrame or 2-D array), got a Series")
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"X must be two-dimensional, got an array of shape {arr.shape}")
    names = numpy_names(arr.shape[1])
    pdf = pd.DataFrame(arr, columns=list(names))
    cols = Columns(names, True, tuple(str(t) for t in pdf.dtypes))
    return pdf, cols


def _dask_x(X: Any) -> tuple[dd.DataFrame, Columns]:
    if isinstance(X, da.Array) and is_sparse(X._meta):
        raise TypeError(
            f"X is a Dask array of scipy sparse chunks ({type(X._meta).__name__}): dask-meta "
            "takes sparse X in memory (a scipy.sparse matrix, made dense per partition on "
            "the workers) or dense Dask chunks (X.map_blocks(lambda b: b.toarray()))"
        )
    if isinstance(X, dd.DataFrame):
        _check_x_columns(X.columns)
        cols = Columns(tuple(X.columns), False, tuple(str(t) for t in X.dtypes))
        return X, cols
    if isinstance(X, dd.Series):
        raise ValueError("X must be two-dimensional (a Dask DataFrame or 2-D array), got a Series")
    if X.ndim != 2:
        raise ValueError(f"X must be two-dimensional, got a Dask array with {X.ndim} dimensions")
    names = numpy_names(X.shape[1])
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    frame = dd.from_dask_array(X, columns=list(names))
    cols = Columns(names, True, tuple(str(t) for t in frame.dtypes))
    return frame, cols


def _dask_vector(v: Any, name: str) -> dd.Series:
    if isinstance(v, dd.DataFrame):
        if len(v.columns) != 1:
            raise ValueError(
                f"{name} must be one-dimensional, got a Dask DataFrame with columns "
                f"{list(v.columns)}"
            )
        return v[v.columns[0]]
    if isinstance(v, dd.Series):
        return v
    if isinstance(v, da.Array):
        if v.ndim == 2 and v.shape[1] == 1:
            v = v[:, 0]
        if v.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got a Dask array of {v.ndim} dims")
        series: dd.Series = dd.from_dask_array(v)  # type: ignore[assignment]
        return series
    raise TypeError(
        f"{name} must be a Dask Series or array when X is a Dask collection, got {type(v).__name__}"
    )


def _concat_partition(
    x: pd.DataFrame, *vectors: Any, columns: Sequence[str], args: Sequence[str]
) -> pd.DataFrame:
    """Positional, per-partition combination of X with its vectors (lengths checked).

    ``columns`` are the training-frame columns the vectors become; ``args`` the argument
    names the user passed them as (for errors).
    """
    out = x.reset_index(drop=True)
    for column, arg, v in zip(columns, args, vectors, strict=True):
        if len(v) != len(out):
            raise ValueError(
                f"{arg} and X are partitioned differently: a partition of X has {len(out)} "
                f"rows but the matching partition of {arg} has {len(v)}; derive X, y and w "
                "from one frame (ddf[features], ddf['y'], ddf['w'])"
            )
        out[column] = np.asarray(v)
    return out


def combine(X: Any, vectors: dict[str, tuple[str, Any]]) -> Frame:
    """Build the training frame from X and named vectors ``{column: (argument name, v)}``."""
    if is_sparse(X):
        return _sparse_frame(X, vectors)
    if not is_dask(X):
        pdf, cols = _x_in_memory(X)
        n = len(pdf)
        for column, (arg, v) in vectors.items():
            pdf[column] = 0 if v is None else np.asarray(_vector_in_memory(v, arg, n))
        if n == 0:
            raise ValueError("X has no rows")
        frame = dd.from_pandas(pdf, npartitions=_n_partitions(n), sort=False)
        return Frame(frame, cols, in_memory=True)

    x_frame, cols = _dask_x(X)
    constants = {column: 0 for column, (_, v) in vectors.items() if v is None}
    if constants:
        x_frame = x_frame.assign(**constants)
    dvecs = {
        column: (arg, _dask_vector(v, arg)) for column, (arg, v) in vectors.items() if v is not None
    }
    exprs = [x_frame.expr] + [v.expr for _, v in dvecs.values()]
    if not dvecs or are_co_aligned(*exprs):
        frame = x_frame.assign(**{column: v for column, (_, v) in dvecs.items()})
        return Frame(frame, cols, in_memory=False)
    n_x = n_partitions(x_frame)
    for arg, v in dvecs.values():
        if n_partitions(v) != n_x:
            raise ValueError(
                f"X has {n_x} partitions but {arg} has {n_partitions(v)}; pass "
                "X, y and w derived from one frame (e.g. ddf[features], ddf['y'], ddf['w']) or "
                "with the same partitioning"
            )
    meta = x_frame._meta.reset_index(drop=True)
    for column, (_, v) in dvecs.items():
        meta[column] = np.asarray(v._meta)
    frame = dd.map_partitions(
        _concat_partition,
        x_frame,
        *[v for _, v in dvecs.values()],
        columns=list(dvecs),
        args=[arg for arg, _ in dvecs.values()],
        meta=meta,
        align_dataframes=False,
    )
    return Frame(frame, cols, in_memory=False)


def on_cluster(frame: Frame, client: Any) -> Frame:
    """``frame`` with in-memory input sent to the cluster once (:func:`runtime.upload`), so
    the passes over it (the scan, the fits, the predictions) do not each carry the data."""
    if not frame.in_memory or client is None:
        return frame
    return dataclasses.replace(frame, frame=runtime.upload(client, frame.frame), local=frame.frame)


def training_frame(
    X: Any, y: Any, w: Any, row_params: dict[str, Any] | None = None, y_name: str = "y"
) -> Frame:
    """The training frame of a fit: X's columns plus y, w and per-row fit parameters.

    ``w=None`` (a lone cross-fit estimator) gives a constant treatment column; ``y_name``
    names y in errors.
    """
    vectors: dict[str, tuple[str, Any]] = {Y_COL: (y_name, y), W_COL: ("w", w)}
    for column, (arg, v) in (row_params or {}).items():
        vectors[column] = (arg, v)
    return combine(X, vectors)


def prediction_frame(X: Any, columns: Columns) -> Frame:
    """Normalise X for prediction and check it has the columns the models were fitted on."""
    frame = combine(X, {})
    got = frame.columns
    check_columns(got, columns)
    if not columns.as_numpy and got.names != columns.names:
        frame = Frame(frame.frame[list(columns.names)], columns, frame.in_memory)
    if columns.categories:
        frame = Frame(_cast_categories(frame.frame, columns.categories), columns, frame.in_memory)
    return frame


def check_columns(got: Columns, columns: Columns) -> None:
    """X's columns against the fit's: the container, then names (missing and unexpected
    named), then each column's dtype family (:func:`dtype_family`)."""
    kind = {True: "an array", False: "a DataFrame"}
    if got.as_numpy != columns.as_numpy:
        raise ValueError(
            f"X is {kind[got.as_numpy]} but the learner was fitted on {kind[columns.as_numpy]}"
            + (f" with the columns {list(columns.names)}" if not columns.as_numpy else "")
        )
    if columns.as_numpy and len(got.names) != len(columns.names):
        raise ValueError(
            f"X has {len(got.names)} columns but the learner was fitted on {len(columns.names)}"
        )
    missing = [c for c in columns.names if c not in got.names]
    unexpected = [c for c in got.names if c not in columns.names]
    if missing or unexpected:
        problems = [f"lacks the columns {missing}"] if missing else []
        problems += [f"has the columns {unexpected}, unknown to the fit"] if unexpected else []
        raise ValueError(
            f"X {' and '.join(problems)}; the learner was fitted on {list(columns.names)}"
        )
    fitted = dict(zip(columns.names, columns.dtypes, strict=True))
    for name, dtype in zip(got.names, got.dtypes, strict=True):
        then = fitted[name]
        if dtype_family(pd.api.types.pandas_dtype(dtype)) != dtype_family(
            pd.api.types.pandas_dtype(then)
        ):
            raise TypeError(
                f"X column {name!r} has dtype {dtype} but the learner was fitted on {then}"
            )


# --- categorical columns whose categories differ between partitions ---------------------------


def unknown_categoricals(data: Frame) -> tuple[Any, ...]:
    """Feature columns of categorical dtype whose categories Dask does not know.

    A parquet dataset written file by file has them: each partition carries its own
    categories, so the same value has other codes in other partitions, and concatenating
    partitions (a fit's rows) falls back to object dtype.
    """
    meta = data.frame._meta
    return tuple(
        c
        for c in data.columns.names
        if isinstance(meta[c].dtype, pd.CategoricalDtype) and not has_known_categories(meta[c])
    )


def partition_categories(part: pd.DataFrame, columns: Sequence[Any]) -> dict[Any, list[Any]]:
    """The categories of the categorical ``columns`` in one partition (runs on a worker)."""
    return {c: part[c].cat.categories.tolist() for c in columns}


def with_categories(data: Frame, found: Sequence[dict[Any, list[Any]]]) -> Frame:
    """The training frame with the categories of every partition (``found``) in every one.

    Categories are sorted (first seen, partition by partition, for ordered categoricals), so
    the same rows give the same dtype however they are partitioned.
    """
    meta = data.frame._meta
    categories = []
    for column in unknown_categoricals(data):
        seen: dict[Any, None] = {}
        for per_partition in found:
            seen.update(dict.fromkeys(per_partition.get(column, [])))
        values = list(seen)
        if not meta[column].dtype.ordered:
            try:
                values = sorted(values)
            except TypeError:
                values = sorted(values, key=repr)
        categories.append((column, tuple(values)))
    if not categories:
        return data
    columns = dataclasses.replace(data.columns, categories=tuple(categories))
    return Frame(_cast_categories(data.frame, columns.categories), columns, data.in_memory)


def _dtypes_of(
    categories: tuple[tuple[Any, tuple[Any, ...]], ...], ordered: dict[Any, bool]
) -> dict[Any, pd.CategoricalDtype]:
    return {
        c: pd.CategoricalDtype(list(values), ordered=ordered.get(c, False))
        for c, values in categories
    }


def _cast_partition(part: pd.DataFrame, dtypes: dict[Any, pd.CategoricalDtype]) -> pd.DataFrame:
    present = {c: t for c, t in dtypes.items() if c in part.columns}
    return part.astype(present) if present else part


def _cast_categories(
    frame: dd.DataFrame, categories: tuple[tuple[Any, tuple[Any, ...]], ...]
) -> dd.DataFrame:
    meta = frame._meta
    ordered = {
        c: bool(getattr(meta[c].dtype, "ordered", False)) for c, _ in categories if c in meta
    }
    dtypes = _dtypes_of(categories, ordered)
    return frame.map_partitions(
        _cast_partition, dtypes, meta=_cast_partition(meta, dtypes), align_dataframes=False
    )


#: dask-expr "tunes" a read_parquet under any other operation by fusing files into fewer
#: partitions, by a factor that depends on the columns kept and on what sits on top. The same
#: files would then be partitioned differently at fit and at predict time; every graph
#: dask-meta builds from user data is therefore optimised with tuning off, so partitions are
#: the files / row groups the user's collection has.
_NO_TUNING = {"optimization.tune.active": False}


def partitions(frame: dd.DataFrame | dd.Series) -> list[Any]:
    """The partitions of a Dask collection as delayed objects, one per physical partition."""
    with dask.config.set(_NO_TUNING):
        return list(frame.to_delayed(optimize_graph=True))


def n_partitions(frame: dd.DataFrame | dd.Series) -> int:
    with dask.config.set(_NO_TUNING):
        return int(frame.optimize().npartitions)


def narrow(frame: dd.DataFrame, columns: Sequence[Any]) -> dd.DataFrame:
    """Select ``columns`` (partitions stay those of ``frame``: see :func:`partitions`)."""
    return frame[list(columns)]


#: rows hashed at a time by :func:`partition_fingerprint`, in three buffers allocated once:
#: no temporary of a column's length is allocated, which in a worker page-faults (Dask's
#: nanny sets ``MALLOC_TRIM_THRESHOLD_``, which pins glibc's mmap threshold at 128 KiB)
HASH_BLOCK_ROWS = 32_768


def partition_fingerprint(
    part: pd.DataFrame, start: int = 0, columns: Sequence[Any] | None = None
) -> int:
    """A checksum of a partition's values (row order matters), to recognise training data.

    Each row's hash is pandas' ``hash_pandas_object`` of the row (of ``columns``, default
    all), computed column by column: the columns are not copied into a frame of their own.
    Numeric and boolean columns are hashed here as pandas hashes them, a block of rows at a
    time; other kinds by pandas. Rows weigh by their position: the checksum of rows
    ``start:`` of a partition, computed with that ``start``, adds up (modulo 2**64) with
    those of the other row ranges to the partition's checksum.
    """
    names = list(part.columns if columns is None else columns)
    n = len(part)
    if n == 0:
        return 0
    sources = [_hash_source(part[name]) for name in names]
    block = min(n, HASH_BLOCK_ROWS)
    row, column, spare = (np.empty(block, dtype=np.uint64) for _ in range(3))
    positions = np.arange(1, block + 1, dtype=np.uint64)
    total = np.uint64(0)
    with np.errstate(over="ignore"):
        for first in range(0, n, block):
            size = min(block, n - first)
            h, c = row[:size], column[:size]
            # CPython's tuple hash of the row's column hashes, as pandas combines them
            h.fill(0x345678)
            mult = np.uint64(1000003)
            for i, (values, hashed) in enumerate(sources):
                if hashed:
                    h ^= values[first : first + size]
                else:
                    _hash_numeric(values[first : first + size], c, spare[:size])
                    h ^= c
                h *= mult
                inverse = len(names) - i
                mult += np.uint64(82520 + inverse + inverse)
            h += np.uint64(97531)
            np.add(positions[:size], np.uint64(start + first), out=c)
            h *= c
            total += h.sum(dtype=np.uint64)
    return int(total)


def _hash_source(column: pd.Series) -> tuple[np.ndarray, bool]:
    """A column's numeric or boolean values, hashed a block at a time; or pandas' hashes
    of the whole column (other kinds); with whether they are hashes already."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf" and dtype.itemsize <= 8:
        return column.to_numpy(), False
    return pd.util.hash_pandas_object(column, index=False).to_numpy(), True


def _hash_numeric(values: np.ndarray, out: np.ndarray, spare: np.ndarray) -> None:
    """``out[:] =`` pandas' hash of each numeric or boolean value (its bits as an unsigned
    64-bit integer, NaN and -0.0 canonicalised, then splitmix64's finaliser), in place."""
    if values.dtype.kind == "b":
        np.copyto(out, values, casting="unsafe")
    else:
        bits = values.view(f"u{values.dtype.itemsize}")
        np.copyto(out, bits, casting="unsafe")
        if values.dtype.kind == "f":
            nan = np.isnan(values)
            if nan.any():
                out[nan] = np.array(np.nan, dtype=values.dtype).view(bits.dtype)
            out[out == np.array(-0.0, dtype=values.dtype).view(bits.dtype)] = 0
    for shift, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, None)):
        np.right_shift(out, np.uint64(shift), out=spare)
        out ^= spare
        if factor is not None:
            out *= np.uint64(factor)


#: rows below which a partition is not cut into pieces
MIN_PIECE_ROWS = 20_000


@dataclass(frozen=True)
class Piece:
    """Rows ``[n * index // count, n * (index + 1) // count)`` of partition ``number`` (of
    ``n`` rows): a large partition is read or predicted in ``count`` tasks side by side."""

    number: int
    index: int = 0
    count: int = 1

    def rows(self, n: int) -> slice:
        return slice(n * self.index // self.count, n * (self.index + 1) // self.count)


def piece_counts(n_parts: int, threads: int, lengths: tuple[int, ...] | None) -> list[int]:
    """How many pieces each partition is cut into: with fewer partitions than the cluster's
    threads, large ones are cut so that every thread works (a parquet file of one row group
    is one partition of a million rows). ``lengths``: the partitions' rows, when known;
    otherwise each is assumed large enough."""
    if threads <= 1 or n_parts >= threads:
        return [1] * n_parts
    if lengths is None:
        return [-(-threads // n_parts)] * n_parts
    share = max(MIN_PIECE_ROWS, -(-sum(lengths) // threads))
    return [max(1, min(threads, round(n / share))) for n in lengths]


def rows_of(part: pd.DataFrame, piece: Piece) -> pd.DataFrame:
    """A piece of a partition (runs on a worker)."""
    return part.iloc[piece.rows(len(part))]
