"""Poisson bootstrap weights, drawn per row without coordination or data movement.

Every row of the training frame gets an identity (:data:`~dask_meta._constants.ROW_ID_COL`):
its global row number, or, with ``fold_key``, a 64-bit hash of the key's value, so that
the identity survives repartitioning. A replicate's weight of a row is a Poisson(1) count
drawn from a hash of the row's identity and the replicate's seed: every task computes the
counts of its own rows, the same on any worker and in any partition layout, and nothing is
resampled or shuffled. Rows that share a ``fold_key`` value share their counts (a cluster
bootstrap over the key).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import dask.dataframe as dd
import numpy as np
import pandas as pd

from dask_meta._constants import ROW_ID_COL

#: P(K <= k) of a Poisson(1) count, k = 0..19; the tail beyond is below 2**-53, the
#: resolution of the uniform numbers drawn from the hashes
_POISSON_CDF = np.cumsum([math.exp(-1.0) / math.factorial(k) for k in range(20)])

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 that scatters near inputs."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX_1
        z = (z ^ (z >> np.uint64(27))) * _MIX_2
        return z ^ (z >> np.uint64(31))  # type: ignore[no-any-return]


def replicate_seeds(random_state: int | None, n_replicates: int) -> tuple[int, ...]:
    """One 64-bit seed per replicate, from the bootstrap's ``random_state``."""
    state = np.random.SeedSequence(random_state).generate_state(n_replicates, dtype=np.uint64)
    return tuple(int(s) for s in state)


@dataclass(frozen=True)
class Resample:
    """One bootstrap replicate: its rows' weights are Poisson(1) counts drawn from ``seed``."""

    seed: int

    def counts(self, ids: np.ndarray) -> np.ndarray:
        """The replicate's count of each row, from the rows' identities (float64)."""
        h = _splitmix64(_splitmix64(np.asarray(ids, dtype=np.uint64)) ^ np.uint64(self.seed))
        uniform = (h >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return np.searchsorted(_POISSON_CDF, uniform, side="right").astype(np.float64)


def _row_ids(
    part: pd.DataFrame,
    offsets: Sequence[int],
    fold_key: str | None,
    partition_info: dict | None = None,
) -> pd.DataFrame:
    out = part.copy()
    if fold_key is not None:
        ids = pd.util.hash_pandas_object(part[fold_key], index=False).to_numpy()
    else:
        start = offsets[partition_info["number"] if partition_info else 0]
        ids = np.arange(start, start + len(part), dtype=np.uint64)
    out[ROW_ID_COL] = ids
    return out


def with_row_ids(frame: dd.DataFrame, lengths: Sequence[int], fold_key: str | None) -> dd.DataFrame:
    """The training frame with each row's identity (``lengths``: rows per partition)."""
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int).tolist()
    meta = frame._meta.copy()
    meta[ROW_ID_COL] = np.array([], dtype=np.uint64)
    return frame.map_partitions(_row_ids, offsets, fold_key, meta=meta)
