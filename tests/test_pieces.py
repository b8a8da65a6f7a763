"""Large partitions read and predicted in pieces side by side.

X with fewer partitions than the cluster has threads (a parquet file of one row group is one
partition) is predicted in several tasks per partition, joined into one chunk per partition:
the same numbers, the same chunks, and in sample the same check of the training data. A fit
cuts such a training partition into pieces for its passes over the rows: the same models.
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import DRLearner, TLearner, data, prediction
from dask_meta.data import piece_counts
from dask_meta.planner import Planner


def test_piece_counts():
    # one partition of a million rows on two threads: two pieces
    assert piece_counts(1, 2, (1_000_000,)) == [2]
    # small partitions, or as many partitions as threads: not cut
    assert piece_counts(1, 2, (300,)) == [1]
    assert piece_counts(4, 2, (250_000,) * 4) == [1, 1, 1, 1]
    assert piece_counts(2, 4, (900_000, 100_000)) == [4, 1]
    # lengths unknown (out of sample): every partition shares the threads
    assert piece_counts(1, 4, None) == [4]
    assert piece_counts(3, 4, None) == [2, 2, 2]
    assert piece_counts(1, 1, None) == [1]


def _pandas_checksum(frame: pd.DataFrame, start: int = 0) -> int:
    """The fingerprint's definition, with pandas' hash of whole rows."""
    h = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    weights = np.arange(start + 1, start + len(h) + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return int((h * weights).sum(dtype=np.uint64))


def test_fingerprint_hashes_rows_as_pandas_does_without_copying_the_columns():
    """Column by column, the fingerprint is pandas' row hash of the chosen columns, for
    every kind of column, and the checksums of row ranges add up to the partition's."""
    rng = np.random.default_rng(0)
    n = 500
    frame = pd.DataFrame(
        {
            "f64": rng.normal(size=n),
            "f32": rng.normal(size=n).astype("float32"),
            "i64": rng.integers(-5, 5, n),
            "cat": pd.Categorical(rng.choice(["x", "y", "z"], n)),
            "obj": rng.choice(["p", "q"], n).astype(object),
            "bool": rng.random(n) > 0.5,
            "nullable": pd.array(rng.integers(0, 3, n), dtype="Int64"),
        }
    )
    frame.loc[3, "nullable"] = pd.NA
    assert data.partition_fingerprint(frame) == _pandas_checksum(frame)
    names = ("cat", "f64", "nullable")
    assert data.partition_fingerprint(frame, columns=names) == _pandas_checksum(frame[list(names)])
    # the column order counts
    assert data.partition_fingerprint(frame, columns=names[::-1]) != data.partition_fingerprint(
        frame, columns=names
    )
    pieces = [
        data.partition_fingerprint(frame.iloc[a:b], start=a, columns=names)
        for a, b in ((0, 170), (170, 333), (333, n))
    ]
    assert sum(pieces) % 2**64 == data.partition_fingerprint(frame, columns=names)
    assert data.partition_fingerprint(frame.iloc[:0], columns=names) == 0


def test_fingerprint_of_numeric_columns_is_pandas_hash_block_by_block(monkeypatch):
    """Numeric and boolean columns, hashed here a block of rows at a time, give pandas'
    row hashes, across blocks and pieces that start inside a block, with NaN and -0.0
    (which pandas canonicalises) and every integer and float width."""
    monkeypatch.setattr(data, "HASH_BLOCK_ROWS", 64)
    rng = np.random.default_rng(1)
    n = 1_000
    f64 = rng.normal(size=n)
    f64[[5, 70, 700]] = np.nan
    f64[[6, 71]] = -0.0
    f32 = rng.normal(size=n).astype("float32")
    f32[[8, 300]] = [np.nan, -0.0]
    frame = pd.DataFrame(
        {
            "f64": f64,
            "f32": f32,
            "i8": rng.integers(-100, 100, n).astype("int8"),
            "i32": rng.integers(-(2**31), 2**31 - 1, n).astype("int32"),
            "i64": rng.integers(-(2**62), 2**62, n),
            "u16": rng.integers(0, 2**16, n).astype("uint16"),
            "u64": rng.integers(0, 2**63, n).astype("uint64") * np.uint64(2),
            "bool": rng.random(n) > 0.5,
            "cat": pd.Categorical(rng.choice(["x", "y"], n)),
        }
    )
    # a strided column (a view of every other row), as a block of a wider frame can be
    frame["strided"] = np.ascontiguousarray(rng.normal(size=(n, 2)))[:, 1]
    assert data.partition_fingerprint(frame) == _pandas_checksum(frame)
    # a NaN of another bit pattern (negative, with a payload) hashes as NaN does
    other_nan = frame.copy()
    other_nan.loc[5, "f64"] = -np.float64(np.nan)
    assert data.partition_fingerprint(other_nan) == data.partition_fingerprint(frame)
    pieces = [
        data.partition_fingerprint(frame.iloc[a:b], start=a)
        for a, b in ((0, 100), (100, 131), (131, 640), (640, n))
    ]
    assert sum(pieces) % 2**64 == data.partition_fingerprint(frame)
    changed = frame.copy()
    changed.loc[999, "u16"] += 1
    assert data.partition_fingerprint(changed) != data.partition_fingerprint(frame)


def _data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    w = pd.Series(rng.integers(0, 2, n), name="w")
    y = pd.Series(X["a"] + w * (1 + X["b"]) + rng.normal(0, 0.3, n), name="y")
    return X, y, w


@pytest.fixture(scope="module")
def fitted(client):
    X, y, w = _data()
    one = [dd.from_pandas(v, npartitions=1) for v in (X, y, w)]
    learners = {
        "T": TLearner(False, 2, LinearRegression, n_folds=3, random_state=1, client=client),
        "T-LightGBM": TLearner(
            False,
            2,
            LGBMRegressor,
            nuisance_model_params={"n_estimators": 5, "verbose": -1, "min_child_samples": 5},
            n_folds=3,
            random_state=1,
            client=client,
        ),
        "DR": DRLearner(
            False,
            2,
            LinearRegression,
            LinearRegression,
            LogisticRegression,
            n_folds=3,
            random_state=1,
            client=client,
        ),
    }
    return one, {name: learner.fit(*one) for name, learner in learners.items()}


@pytest.mark.parametrize("name", ["T", "DR"])
@pytest.mark.parametrize("is_oos", [False, True])
def test_pieces_give_the_same_predictions_and_chunks(fitted, monkeypatch, name, is_oos):
    (X, _, _), learners = fitted
    learner = learners[name]
    with monkeypatch.context() as patch:  # not cut
        patch.setattr(prediction, "piece_counts", lambda n_parts, threads, lengths: [1] * n_parts)
        whole = learner.predict(X, is_oos=is_oos)
    monkeypatch.setattr(data, "MIN_PIECE_ROWS", 50)
    pieced = learner.predict(X, is_oos=is_oos)
    # the pieced graph has the pieces and their join; the result one chunk per partition
    assert any("join" in str(k) for k in pieced.__dask_graph__())
    assert len(pieced.__dask_graph__()) > len(whole.__dask_graph__())
    assert len(pieced.chunks[0]) == X.npartitions == 1
    np.testing.assert_allclose(pieced.compute(), whole.compute(), rtol=1e-12)


def test_pieces_still_recognise_other_data(fitted, monkeypatch):
    """A value changed in the second piece is a fingerprint mismatch, as without pieces."""
    (X, _, _), learners = fitted
    monkeypatch.setattr(data, "MIN_PIECE_ROWS", 50)
    other = X.compute()
    other.iloc[-1, 0] += 1.0
    with pytest.raises(ValueError, match="fingerprint mismatch"):
        learners["T"].predict(dd.from_pandas(other, npartitions=1), is_oos=False).compute()
    with pytest.raises(ValueError, match="partition 0 of X has 599 rows"):
        shorter = dd.from_pandas(other.iloc[:-1], npartitions=1)
        learners["T"].predict(shorter, is_oos=False).compute()


@pytest.mark.parametrize("name", ["T", "T-LightGBM", "DR"])
def test_a_fit_on_pieces_gives_the_same_models(fitted, monkeypatch, name):
    (X, y, w), learners = fitted
    cuts = []
    cut = Planner.cut_partitions

    def recorded(self, parts, counts, label):
        cuts.append(list(counts))
        return cut(self, parts, counts, label)

    monkeypatch.setattr(Planner, "cut_partitions", recorded)
    monkeypatch.setattr(data, "MIN_PIECE_ROWS", 50)
    learner = learners[name]
    pieced = type(learner)(**learner.init_args).fit(X, y, w)
    assert cuts == [[2]]  # one partition of 600 rows, two threads: two pieces
    for is_oos in (False, True):
        np.testing.assert_allclose(
            pieced.predict(X, is_oos=is_oos).compute(),
            learner.predict(X, is_oos=is_oos).compute(),
            rtol=1e-10,
        )
