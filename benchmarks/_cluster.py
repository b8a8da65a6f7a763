"""The benchmarks' one set-up of a LocalCluster, and their check that the machine is quiet."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def warm_up() -> None:
    """Runs on each worker: import what the fits need before anything is timed."""
    import lightgbm  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import dask_meta.backends  # noqa: F401


@contextmanager
def local_client(workers: int, threads: int, memory_limit: str | None = None) -> Iterator[Any]:
    """A warmed-up client of a LocalCluster of ``workers`` x ``threads``, each worker with a
    ``threads`` resource (the planner's base-model threads) and a dashboard on a free port."""
    from distributed import Client

    from dask_meta.cluster import start_local_cluster

    with (
        start_local_cluster(workers, threads, memory_limit) as cluster,
        Client(cluster) as client,
    ):
        client.run(warm_up)
        yield client


def machine_load() -> tuple[float, float, float]:
    """The load averages, with a warning when other work would distort the times."""
    load = os.getloadavg()
    if load[0] >= 0.5:
        print(
            f"warning: the machine is busy (load average {load[0]:.2f}); other work distorts "
            "the times, multi-threaded LightGBM most of all",
            file=sys.stderr,
        )
    return load
