"""Sparse X (scipy.sparse csr, csc, coo) in memory: the same numbers as the dense matrix.

Row slices stay sparse on the client and are made dense per partition on the workers, in
the partitions of the dense path, so fits, predictions, evaluate and the ATE are identical.
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sps
from lightgbm import LGBMRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import DRLearner, TLearner
from dask_meta._constants import ROWS_PER_PARTITION
from dask_meta.data import _n_partitions, row_bounds, training_frame

LGBM = {"n_estimators": 10, "verbose": -1, "min_child_samples": 10}
FORMATS = ("csr", "csc", "coo")


def _data(n=600, d=6, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, d)) * (rng.random((n, d)) < 0.3)
    w = rng.integers(0, 2, n)
    y = dense @ np.arange(d) + w * (1 + dense[:, 0]) + rng.normal(0, 0.5, n)
    return dense, y, w


def _learner(name, factory, client):
    params = LGBM if factory is LGBMRegressor else {}
    if name == "T":
        return TLearner(
            False,
            2,
            factory,
            nuisance_model_params=params,
            n_folds=3,
            random_state=1,
            client=client,
        )
    return DRLearner(
        False,
        2,
        factory,
        factory,
        LogisticRegression,
        nuisance_model_params=params,
        treatment_model_params=params,
        n_folds=3,
        random_state=1,
        client=client,
    )


@pytest.mark.parametrize("factory", [LinearRegression, LGBMRegressor])
@pytest.mark.parametrize("name", ["T", "DR"])
def test_sparse_and_dense_give_identical_numbers(client, name, factory):
    dense, y, w = _data()
    reference = _learner(name, factory, client).fit(dense, y, w)
    cate_in = reference.predict(dense, is_oos=False)
    cate_oos = reference.predict(dense[:50], is_oos=True)
    scores = reference.evaluate(dense, y, w, is_oos=False)
    for fmt in FORMATS:
        X = getattr(sps, f"{fmt}_matrix")(dense)
        learner = _learner(name, factory, client).fit(X, y, w)
        np.testing.assert_array_equal(learner.predict(X, is_oos=False), cate_in)
        np.testing.assert_array_equal(learner.predict(X.tocsr()[:50], is_oos=True), cate_oos)
        assert learner.evaluate(X, y, w, is_oos=False) == scores
        if name == "DR":
            np.testing.assert_array_equal(
                learner.average_treatment_effect(X, y, w, is_oos=False),
                reference.average_treatment_effect(dense, y, w, is_oos=False),
            )
    # a model fitted on the dense matrix recognises the sparse one as its training data
    np.testing.assert_array_equal(reference.predict(sps.csr_array(dense), is_oos=False), cate_in)


def test_partitions_are_those_of_the_dense_path(client):
    """More rows than one partition holds: the same partitions, row for row."""
    n = ROWS_PER_PARTITION + 7
    rng = np.random.default_rng(1)
    dense = rng.normal(size=(n, 2)) * (rng.random((n, 2)) < 0.1)
    y, w = rng.normal(size=n), rng.integers(0, 2, n)
    from_dense = training_frame(dense, y, w).frame
    from_sparse = training_frame(sps.csr_matrix(dense), y, w).frame
    assert from_sparse.npartitions == from_dense.npartitions == 2
    for i in range(2):
        a, b = client.compute([from_dense.partitions[i], from_sparse.partitions[i]], sync=True)
        pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("n", [1, 10, 250_001, 500_001, 1_000_003])
def test_row_bounds_follow_from_pandas(n):
    frame = dd.from_pandas(
        pd.DataFrame({"a": np.zeros(n)}), npartitions=_n_partitions(n), sort=False
    )
    starts = [int(d) for d in frame.divisions[:-1]]
    assert [a for a, _ in row_bounds(n)] == starts
    assert row_bounds(n)[-1][1] == n
