"""Clients: an unusable one is a clear error; the embedded cluster comes back when lost."""

from __future__ import annotations

import time

import numpy as np
import pytest
from distributed import Client, LocalCluster
from sklearn.linear_model import LinearRegression

from dask_meta import TLearner, close_embedded, embedded_client
from dask_meta import cluster as cluster_module


def _data(n=200):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 2))
    w = rng.integers(0, 2, n)
    return X, X[:, 0] + w + rng.normal(size=n), w


def test_a_closed_client_is_a_clear_error_before_any_work():
    X, y, w = _data()
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster:
        client = Client(cluster, set_as_default=False)
        client.close()
    learner = TLearner(False, 2, LinearRegression, n_folds=2, client=client)
    with pytest.raises(ValueError, match=r"client is closed: pass a running distributed\.Client"):
        learner.fit(X, y, w)


def test_the_embedded_cluster_is_restarted_when_it_has_lost_its_workers():
    """The cluster dask-meta started itself loses its workers: the next fit starts a new
    one (and says so) instead of failing with "no workers"."""
    X, y, w = _data()
    close_embedded()
    try:
        first = embedded_client()
        cluster = cluster_module._embedded.cluster  # type: ignore[union-attr]
        cluster.scale(0)
        deadline = time.monotonic() + 30
        while first.scheduler_info(n_workers=-1)["workers"] and time.monotonic() < deadline:
            time.sleep(0.1)  # waiting for the scale-down with a deadline
        assert not first.scheduler_info(n_workers=-1)["workers"]
        cate = TLearner(False, 2, LinearRegression, n_folds=2).fit(X, y, w)
        assert cate.predict(X, is_oos=True).shape == (200, 1, 1)
        assert embedded_client() is not first and first.status == "closed"
    finally:
        close_embedded()
