"""Layout independence: same data, same seed, same fold strategy -> the same
CATE, bit for bit, whatever the cluster's workers and threads, run after run; with "hash"
folds also whatever the partitioning of the input.

The data is a parquet dataset of several files read with ``dd.read_parquet``; the learners
run on three clusters created here: 1 worker x 1 thread, 1 worker x 2 threads and
2 workers x 1 thread.
"""

from __future__ import annotations

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from conftest import make_linear_data
from distributed import Client, LocalCluster
from lightgbm import LGBMRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import DRLearner, TLearner

FEATURES = ["f0", "f1", "f2", "f3"]
N = 3000
N_FILES = 5
LGBM = {
    "n_estimators": 20,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory):
    X, y, w, _ = make_linear_data(n=N, d=len(FEATURES), n_variants=3, seed=21)
    pdf = pd.DataFrame(X, columns=FEATURES)
    pdf["y"] = y
    pdf["w"] = w
    pdf["row_id"] = np.arange(N, dtype=np.int64)
    path = tmp_path_factory.mktemp("layout") / "data"
    dd.from_pandas(pdf, npartitions=N_FILES).to_parquet(path, write_index=False)
    assert len(list(path.glob("*.parquet"))) == N_FILES
    return path


def _cluster(n_workers: int, threads: int):
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads,
        resources={"threads": threads},
        dashboard_address=":0",
        processes=True,
    )
    # the client's periodic scheduler-info refresh races with scheduler_info(n_workers=-1)
    # (dask_meta.cluster.cluster_shape) and can leave it without workers
    with dask.config.set({"distributed.client.scheduler-info-interval": "1 hour"}):
        return cluster, Client(cluster, set_as_default=False)


@pytest.fixture(scope="module")
def one_worker_one_thread():
    cluster, client = _cluster(1, 1)
    with cluster, client:
        yield client


@pytest.fixture(scope="module")
def one_worker_two_threads():
    cluster, client = _cluster(1, 2)
    with cluster, client:
        yield client


@pytest.fixture(scope="module")
def two_workers_one_thread():
    cluster, client = _cluster(2, 1)
    with cluster, client:
        yield client


def _learner(name: str, client: Client, **kwargs):
    common = {"n_folds": 3, "random_state": 17, "client": client, **kwargs}
    if name == "T":
        return TLearner(False, 3, LGBMRegressor, nuisance_model_params=LGBM, **common)
    return DRLearner(
        False,
        3,
        LGBMRegressor,
        LGBMRegressor,
        LogisticRegression,
        nuisance_model_params=LGBM,
        treatment_model_params=LGBM,
        **common,
    )


def _fit_predict(name: str, client: Client, ddf: dd.DataFrame, columns, **kwargs):
    """Fit on (ddf[columns], y, w); in-sample and out-of-sample CATE, computed."""
    learner = _learner(name, client, **kwargs).fit(ddf[columns], ddf["y"], ddf["w"])
    in_sample = learner.predict(ddf[columns], is_oos=False)
    oos = learner.predict(ddf[columns], is_oos=True)
    assert isinstance(in_sample, da.Array) and isinstance(oos, da.Array)
    in_sample, oos = client.compute([in_sample, oos], sync=True)
    assert in_sample.shape == oos.shape == (N, 2, 1)
    assert np.isfinite(in_sample).all() and np.isfinite(oos).all()
    return in_sample, oos


def _assert_identical(a, b, what):
    if not np.array_equal(a, b):
        diff = np.abs(a - b)
        raise AssertionError(
            f"{what}: {int((diff > 0).sum())} of {diff.size} values differ, max {diff.max():.3g}"
        )


@pytest.fixture(scope="module")
def partition_runs(
    parquet_dir, one_worker_one_thread, one_worker_two_threads, two_workers_one_thread
):
    """{(learner, cluster, run): (in-sample CATE, out-of-sample CATE)}."""
    out = {}
    clusters = {
        "1x1": one_worker_one_thread,
        "1x2": one_worker_two_threads,
        "2x1": two_workers_one_thread,
    }
    for name in ("T", "DR"):
        for label, client in clusters.items():
            runs = (0, 1) if label == "1x2" else (0,)
            for run in runs:
                ddf = dd.read_parquet(parquet_dir)
                assert ddf.npartitions == N_FILES
                out[(name, label, run)] = _fit_predict(name, client, ddf, FEATURES)
    return out


@pytest.mark.parametrize("other", ["1x1", "2x1"])
@pytest.mark.parametrize("name", ["T", "DR"])
def test_same_cate_on_every_cluster_layout(partition_runs, name, other):
    in_a, oos_a = partition_runs[(name, "1x2", 0)]
    in_b, oos_b = partition_runs[(name, other, 0)]
    _assert_identical(in_a, in_b, f"{name} in-sample CATE, 1x2 vs {other}")
    _assert_identical(oos_a, oos_b, f"{name} out-of-sample CATE, 1x2 vs {other}")
    # the comparison is not vacuous: in-sample (cross-fitted) differs from out-of-sample
    assert not np.array_equal(in_a, oos_a)


@pytest.mark.parametrize("name", ["T", "DR"])
def test_same_cate_on_repeated_runs(partition_runs, name):
    in_0, oos_0 = partition_runs[(name, "1x2", 0)]
    in_1, oos_1 = partition_runs[(name, "1x2", 1)]
    _assert_identical(in_0, in_1, f"{name} in-sample CATE, run 0 vs run 1")
    _assert_identical(oos_0, oos_1, f"{name} out-of-sample CATE, run 0 vs run 1")


@pytest.fixture(scope="module")
def hash_runs(parquet_dir, two_workers_one_thread):
    """fold_strategy="hash" DR-learner CATE, by npartitions of the input (5: the files)."""
    columns = [*FEATURES, "row_id"]
    kwargs = {"fold_strategy": "hash", "fold_key": "row_id", "feature_set": FEATURES}
    out = {}
    for npartitions in (5, 1, 2, 7):
        ddf = dd.read_parquet(parquet_dir)
        if npartitions != N_FILES:
            ddf = ddf.repartition(npartitions=npartitions)
        assert ddf.npartitions == npartitions
        out[npartitions] = _fit_predict("DR", two_workers_one_thread, ddf, columns, **kwargs)
    return out


@pytest.mark.parametrize("npartitions", [1, 2, 7])
def test_hash_folds_survive_repartitioning(hash_runs, npartitions):
    """fold_strategy="hash": folds follow the row id, so the CATE does not depend on the
    partitioning; in-sample prediction uses the frame the learner was fitted on."""
    in_a, oos_a = hash_runs[N_FILES]
    in_b, oos_b = hash_runs[npartitions]
    _assert_identical(in_a, in_b, f"hash folds: in-sample CATE, 5 vs {npartitions} partitions")
    _assert_identical(
        oos_a, oos_b, f"hash folds: out-of-sample CATE, 5 vs {npartitions} partitions"
    )
    assert not np.array_equal(in_a, oos_a)


# --- memory layout of the partitions ----------------------------------------------------


def _unaligned_copy(part: pd.DataFrame) -> pd.DataFrame:
    """The same values in one float block that starts one byte off an 8-byte boundary, as
    buffers can arrive from another worker."""
    raw = bytearray(part.shape[0] * part.shape[1] * 8 + 1)
    block = np.ndarray(part.shape, dtype=float, buffer=raw, offset=1, order="F")
    block[:] = part.to_numpy(dtype=float)
    out = pd.DataFrame(block, columns=part.columns, copy=False)
    assert not out[out.columns[0]].to_numpy().flags.aligned
    return out


@pytest.mark.parametrize("is_oos", [True, False])
def test_cate_does_not_depend_on_buffer_alignment(two_workers_one_thread, is_oos):
    """Unaligned buffers make numpy/BLAS sum in another order; predictions must not
    change in the last bit with the alignment of the partitions they are given."""
    from sklearn.linear_model import LinearRegression

    client = two_workers_one_thread
    X, y, w, _ = make_linear_data(n=1200, d=len(FEATURES), n_variants=3, seed=5)
    pdf = pd.DataFrame(X, columns=FEATURES)
    pdf["y"] = y
    pdf["w"] = w
    ddf = dd.from_pandas(pdf, npartitions=3)
    learner = TLearner(False, 3, LinearRegression, n_folds=3, random_state=1, client=client).fit(
        ddf[FEATURES], ddf["y"], ddf["w"]
    )
    shifted = ddf[FEATURES].map_partitions(_unaligned_copy, meta=ddf[FEATURES]._meta)
    expected = client.compute(learner.predict(ddf[FEATURES], is_oos=is_oos), sync=True)
    for _ in range(3):
        got = client.compute(learner.predict(shifted, is_oos=is_oos), sync=True)
        _assert_identical(got, expected, f"CATE (is_oos={is_oos}) on unaligned partitions")


@pytest.mark.parametrize(
    "nullable",
    [
        pd.array([1.5, None, -0.5, 2.0] * 75, dtype="Float64"),
        pd.array([True, None, False, True] * 75, dtype="boolean"),
        pd.array([3, None, -1, 0] * 75, dtype="Int64"),
    ],
    ids=["Float64", "boolean", "Int64"],
)
def test_nullable_columns_with_missing_values(client, nullable):
    """pandas' nullable columns with missing values: in memory and on Dask the same CATE
    as the column in float64 with NaN (LightGBM reads the missing values), and
    scikit-learn's models name the NaN."""
    rng = np.random.default_rng(0)
    n = len(nullable)
    X = pd.DataFrame({"a": nullable, "b": rng.normal(size=n)})
    w = pd.Series(np.arange(n) % 2)
    y = pd.Series(X["b"] + w + rng.normal(size=n))
    as_floats = X.astype({"a": "float64"})

    def learner(factory):
        params = {"n_estimators": 5, "verbose": -1} if factory is LGBMRegressor else None
        return TLearner(
            False,
            2,
            factory,
            nuisance_model_params=params,
            n_folds=2,
            client=client,
            fold_strategy="sklearn",
        )

    expected = learner(LGBMRegressor).fit(as_floats, y, w).predict(as_floats, is_oos=True)
    for X_in, y_in, w_in in [
        (X, y, w),
        tuple(dd.from_pandas(v, npartitions=3) for v in (X, y, w)),
    ]:
        fitted = learner(LGBMRegressor).fit(X_in, y_in, w_in)
        np.testing.assert_allclose(np.asarray(fitted.predict(X_in, is_oos=True)), expected)
        # fitted on the nullable column, predicting on plain floats is the same schema
        np.testing.assert_allclose(fitted.predict(as_floats, is_oos=True), expected)
        with pytest.raises(Exception, match="Input X contains NaN"):
            learner(LinearRegression).fit(X_in, y_in, w_in)
