"""Fixtures of the parity suite: one real LocalCluster, and memos shared between tests.

This directory runs on its own, in the parity virtualenv (``./dev.sh parity``), so it
defines the cluster fixtures it needs here.
"""

from __future__ import annotations

import pytest
from distributed import Client, LocalCluster


@pytest.fixture(scope="session")
def cluster():
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        resources={"threads": 1},
        dashboard_address=":0",
        processes=True,
    ) as c:
        yield c


@pytest.fixture(scope="session")
def client(cluster):
    """The session's client. Not the process default: learners get ``client=`` explicitly."""
    with Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(2)  # on a busy machine the workers may register after this
        yield c


@pytest.fixture
def default_client(client):
    """The session client, also installed as the default client for the test, so that a
    plain ``.compute()`` of a lazy dask-meta output runs on the cluster, as for a user."""
    with client.as_current():
        yield client


@pytest.fixture(scope="session")
def memo():
    """A session-wide dict: reference data and metalearners' outputs, computed once and
    shared by the tests that give dask-meta the same rows as numpy, pandas or Dask."""
    return {}
