"""Poisson bootstrap weights: their distribution, and that they follow rows, not layouts."""

from __future__ import annotations

import math

import dask.dataframe as dd
import numpy as np
import pandas as pd

from dask_meta._constants import ROW_ID_COL
from dask_meta.resampling import Resample, replicate_seeds, with_row_ids


def test_counts_are_poisson_one():
    """Over 200k rows: mean and variance 1, and P(k) = e^-1 / k! for k = 0..4 within 5
    standard errors of a binomial proportion."""
    counts = Resample(12345).counts(np.arange(200_000))
    n = len(counts)
    assert abs(counts.mean() - 1) < 5 / math.sqrt(n)
    assert abs(counts.var() - 1) < 5 * math.sqrt(2 / n) * 1.5
    for k in range(5):
        p = math.exp(-1) / math.factorial(k)
        assert abs(np.mean(counts == k) - p) < 5 * math.sqrt(p * (1 - p) / n), k


def test_replicates_are_independent_and_reproducible():
    ids = np.arange(100_000)
    seeds = replicate_seeds(7, 3)
    assert seeds == replicate_seeds(7, 3)
    assert len(set(seeds)) == 3 and seeds != replicate_seeds(8, 3)
    a, b = (Resample(s).counts(ids) for s in seeds[:2])
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(len(ids))
    np.testing.assert_array_equal(a, Resample(seeds[0]).counts(ids))
    # a row's count depends on its identity only, not on the rows beside it
    np.testing.assert_array_equal(Resample(seeds[0]).counts(ids[::-1]), a[::-1])


def test_row_ids_are_global_row_numbers_or_key_hashes_in_any_layout():
    frame = pd.DataFrame({"key": [f"u{i}" for i in range(50)], "v": np.arange(50.0)})
    by_position = []
    by_key = []
    for npartitions in (1, 3, 7):
        ddf = dd.from_pandas(frame, npartitions=npartitions)
        lengths = ddf.map_partitions(len).compute().tolist()
        by_position.append(with_row_ids(ddf, lengths, None).compute()[ROW_ID_COL].to_numpy())
        shuffled = dd.from_pandas(frame.sample(frac=1, random_state=npartitions), npartitions)
        lengths = shuffled.map_partitions(len).compute().tolist()
        keyed = with_row_ids(shuffled, lengths, "key").compute()
        by_key.append(keyed.set_index("key")[ROW_ID_COL].sort_index().to_numpy())
    for ids in by_position:
        np.testing.assert_array_equal(ids, np.arange(50, dtype=np.uint64))
    for ids in by_key[1:]:
        np.testing.assert_array_equal(ids, by_key[0])
    assert len(set(by_key[0].tolist())) == 50
