"""Fit and predict never bring the data to the client: only fitted models and
small statistics travel back. Measured by wrapping ``Client._gather``, which every
``Future.result()``, ``client.gather`` and ``compute`` goes through."""

from __future__ import annotations

import cloudpickle
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pytest
from dask.sizeof import sizeof
from distributed import Client
from sklearn.linear_model import LinearRegression

from dask_meta import TLearner
from dask_meta.datasets import cate_names, feature_names, make_experiment


def _received_size(obj) -> int:
    """Bytes of one gathered result: dask's sizeof, or its pickle when sizeof cannot see
    inside (fitted models, dataclasses of statistics)."""
    measured = sizeof(obj)
    if measured > 1_000_000:  # already large: no need to pickle it too
        return measured
    try:
        pickled = len(cloudpickle.dumps(obj))
    except Exception:
        pickled = 0
    return max(measured, pickled)


@pytest.fixture
def received(monkeypatch):
    """A list that collects the size of everything the client gathers during the test."""
    sizes: list[int] = []
    original = Client._gather

    async def metered(self, futures, *args, **kwargs):
        result = await original(self, futures, *args, **kwargs)
        sizes.append(_received_size(result))
        return result

    monkeypatch.setattr(Client, "_gather", metered)
    return sizes


def _data_bytes(client, ddf: dd.DataFrame) -> int:
    """Size of a frame, measured on the workers (one number travels back)."""
    per_partition = ddf.map_partitions(
        lambda p: int(p.memory_usage(deep=True, index=False).sum()), meta=(None, "int64")
    )
    return int(client.compute(per_partition.sum()).result())


@pytest.fixture(scope="module")
def experiment():
    ddf = make_experiment(n_rows=400_000, n_features=10, rows_per_partition=50_000, seed=3)
    assert ddf.npartitions == 8
    return ddf


def test_guard_sees_data_brought_to_the_client(default_client, experiment, received):
    """The meter works: computing (part of) the frame on purpose shows its full size."""
    client = default_client
    columns = [*feature_names(experiment), "y", "w"]
    part = experiment[columns].partitions[:2]  # 100k rows, about 10 MB, is enough to show it
    size = _data_bytes(client, part)
    received.clear()
    frame = part.compute()  # through the default client: Client.compute, then _gather
    assert len(frame) == 100_000
    assert size > 9e6
    assert sum(received) >= 0.9 * size


def test_fit_and_predict_keep_the_data_on_the_cluster(client, experiment, received):
    features = feature_names(experiment)
    size = _data_bytes(client, experiment[[*features, "y", "w"]])
    assert size > 30e6
    truth = client.compute(experiment[cate_names(experiment)].mean()).result().to_numpy()
    received.clear()

    X, y, w = experiment[features], experiment["y"], experiment["w"]
    with client.as_current():  # see test_planner.py::test_fit_with_explicit_non_default_client
        learner = TLearner(
            False, 3, LinearRegression, n_folds=2, random_state=0, client=client
        ).fit(X, y, w)
    after_fit = sum(received)
    oos = learner.predict(X, is_oos=True)
    in_sample = learner.predict(X, is_oos=False)
    assert isinstance(oos, da.Array) and isinstance(in_sample, da.Array)
    # one block per partition; out-of-sample lengths are only known once computed
    assert oos.numblocks[0] == in_sample.numblocks[0] == 8
    assert oos.shape[1:] == (2, 1)
    assert in_sample.shape == (400_000, 2, 1)
    oos_mean, in_sample_mean = client.compute([oos.mean(axis=0), in_sample.mean(axis=0)], sync=True)
    total = sum(received)
    # the estimates are right: linear effects, linear models, 400k rows
    np.testing.assert_allclose(oos_mean[:, 0], truth, atol=0.02)
    np.testing.assert_allclose(in_sample_mean[:, 0], truth, atol=0.02)
    # and only models and statistics came back: well under 1% of the data
    assert len(learner.fit_report_) == 3 * 3
    assert after_fit < 0.01 * size, f"fit brought {after_fit} bytes of {size} to the client"
    assert total < 0.01 * size, f"fit + predict brought {total} bytes of {size} to the client"


def test_partition_fit_never_computes_a_frame_on_the_client(client, monkeypatch, received):
    """With the "partition" strategy nothing in fit computes a Dask frame or series to the
    client: only per-partition tasks whose small results are gathered."""
    computed: list[str] = []

    def spy(kind, original):
        def wrapper(self, *args, **kwargs):
            computed.append(f"{kind}.compute")
            return original(self, *args, **kwargs)

        return wrapper

    for cls in (dd.DataFrame, dd.Series):
        monkeypatch.setattr(cls, "compute", spy(cls.__name__, cls.compute))
    original_compute = Client.compute

    def client_compute(self, collections, *args, **kwargs):
        items = collections if isinstance(collections, list | tuple) else [collections]
        computed.extend(
            f"Client.compute({type(c).__name__})"
            for c in items
            if isinstance(c, dd.DataFrame | dd.Series)
        )
        return original_compute(self, collections, *args, **kwargs)

    monkeypatch.setattr(Client, "compute", client_compute)

    ddf = make_experiment(n_rows=40_000, n_features=5, rows_per_partition=10_000, seed=4)
    features = feature_names(ddf)
    with client.as_current():
        learner = TLearner(
            False, 3, LinearRegression, n_folds=3, random_state=0, client=client
        ).fit(ddf[features], ddf["y"], ddf["w"])
    assert computed == [], computed
    assert learner._fit_context.lengths == (10_000,) * 4
    data = 40_000 * (len(features) + 2) * 8
    assert sum(received) < 0.05 * data, (sum(received), data)
