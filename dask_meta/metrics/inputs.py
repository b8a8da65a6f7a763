"""Input normalisation: the metrics' arguments -> one frame whose columns are roles.

Every metric takes numpy/pandas input or Dask Series/Arrays (all of one kind); numbers
(e.g. a known constant propensity) become constant columns. Errors name the user's argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.dataframe.dask_expr._expr import are_co_aligned

from dask_meta import runtime
from dask_meta.data import is_dask, n_partitions

# Columns of the internal frame (roles); user-facing names travel separately for errors.
_CATE, _Y, _W, _E, _MU0, _MU1 = "cate", "y", "w", "propensity", "mu0", "mu1"
_M, _PSEUDO, _YRES, _WRES = "outcome_estimates", "pseudo_outcomes", "y_res", "w_res"
_T, _POS = "t", "pos"


def _check_variant(variant: Any) -> int | None:
    if variant is None:
        return None
    if isinstance(variant, bool) or not isinstance(variant, int | np.integer) or variant < 1:
        raise ValueError(
            f"variant must be a treatment variant code >= 1 (0 is the control), got {variant!r}"
        )
    return int(variant)


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
            token=runtime.task_key("metrics-inputs", runtime.new_token()),
        )
    if scalars:
        frame = frame.assign(**scalars)
    return _Inputs(frame, names, in_memory=False)
