"""Shared fixtures: one real LocalCluster (2 workers x 1 thread, ``threads`` declared)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dask
import numpy as np
import pytest
from distributed import Client

from dask_meta.cluster import start_local_cluster


@contextmanager
def own_client(workers: int = 2, threads: int = 1) -> Iterator[Client]:
    """A client of a LocalCluster of its own, ``threads`` declared: for tests that kill or
    break its workers, or need another shape than the session's."""
    with (
        start_local_cluster(workers, threads) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture(scope="session")
def cluster():
    with start_local_cluster(2, 1) as c:
        yield c


@pytest.fixture(scope="session")
def client(cluster):
    with Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture
def default_client(client):
    """The session client installed as the default client for the test."""
    with client.as_current():
        yield client


def make_linear_data(n=2_000, d=4, n_variants=3, seed=0, classification=False):
    """Small experiment with known linear effects: X, y, w and the true CATE (n, K-1)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w = rng.integers(0, n_variants, n)
    tau = np.stack([(k + 1) * X[:, k % d] for k in range(n_variants - 1)], axis=1)
    mu0 = X @ rng.uniform(-1, 1, d)
    effect = np.where(w > 0, tau[np.arange(n), np.maximum(w - 1, 0)], 0.0)
    y = mu0 + effect + rng.normal(0, 0.5, n)
    if classification:
        y = (y > np.median(y)).astype(int)
    return X, y, w, tau


@pytest.fixture(scope="session", autouse=True)
def _close_embedded_cluster():
    """Tests that pass no client may start dask-meta's embedded cluster: close it while
    pytest's output streams are still open."""
    yield
    from dask_meta import close_embedded

    close_embedded()


@pytest.fixture(autouse=True)
def _scheduler_setting_of_the_session():
    """Each test leaves Dask's ``scheduler`` setting as it found it. A client set as the
    default records the setting it replaces and restores it when closed; two such clients
    closed out of order leave "dask.distributed" behind with no client, and every later
    eager Dask call in the run fails with "no Client active"."""
    before = dask.config.get("scheduler", None)
    yield
    if dask.config.get("scheduler", None) != before:
        dask.config.set(scheduler=before)
