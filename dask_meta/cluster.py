"""Clients and clusters: client resolution, the one LocalCluster factory, cluster shape.

``client=None`` resolves at fit time: the explicit argument, else the default client of
this process (``distributed.get_client()``), else an embedded ``LocalCluster`` sized to the
machine, with the ``threads`` resource declared. The embedded cluster is created at most
once per process, never at import, never replaces a default client, and is closed at exit.

Its worker is a process of its own, except when the fit runs in the top-level code of a
script without an ``if __name__ == "__main__":`` guard (:func:`unguarded_script`): a worker
process would import the script again (multiprocessing's spawn) and fail, so the worker's
threads run in this process instead. LightGBM and scikit-learn release the GIL while they
fit and predict, so the threads work in parallel as a worker process's would.

The ``dask-meta`` command line starts its clusters with the same factory,
:func:`start_local_cluster`, and connects, reports and closes through the small functions
below, so that everything that manages a cluster (as opposed to running work on it, see
:mod:`dask_meta.runtime`) is in this module.
"""

from __future__ import annotations

import ast
import atexit
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster

logger = logging.getLogger("dask_meta")

THREADS = "threads"

#: the environment variable worker processes read their ``distributed`` log level from
_WORKER_LOG_LEVEL = "DASK_LOGGING__DISTRIBUTED"

_embedded_lock = threading.Lock()


@dataclass(frozen=True)
class _Embedded:
    cluster: LocalCluster
    client: Client
    #: the worker runs as threads of this process (an unguarded script)
    in_process: bool


_embedded: _Embedded | None = None


@dataclass(frozen=True)
class WorkerShape:
    """What the planner needs to know about one worker."""

    address: str
    nthreads: int
    threads_resource: float | None
    memory_limit: int


@dataclass(frozen=True)
class ClusterShape:
    workers: tuple[WorkerShape, ...]

    @property
    def declares_threads(self) -> bool:
        return any(w.threads_resource is not None for w in self.workers)

    @property
    def total_threads(self) -> int:
        return sum(w.nthreads for w in self.workers)

    @property
    def max_threads(self) -> int:
        """The largest ``threads`` request one worker can meet."""
        if self.declares_threads:
            return int(max(w.threads_resource or 0 for w in self.workers))
        return max(w.nthreads for w in self.workers)

    @property
    def largest_worker(self) -> WorkerShape:
        return max(self.workers, key=lambda w: (w.threads_resource or 0, w.nthreads))


def cluster_shape(client: Client) -> ClusterShape:
    """Read the workers' threads, resources and memory from the scheduler."""
    # asked of the scheduler directly: the client's cached scheduler_info is refreshed in the
    # background without the worker list, and that refresh can overwrite a fresh copy
    info = client.sync(client.scheduler.identity, n_workers=-1)["workers"]  # type: ignore[union-attr]
    workers = tuple(
        WorkerShape(
            address=addr,
            nthreads=int(w.get("nthreads", 1)),
            threads_resource=(w.get("resources") or {}).get(THREADS),
            memory_limit=int(w.get("memory_limit") or 0),
        )
        for addr, w in sorted(info.items())
    )
    if not workers:
        raise RuntimeError(
            f"the Dask cluster behind client {client} has no workers; start workers or "
            "call client.wait_for_workers(n) before fitting"
        )
    return ClusterShape(workers)


#: client states that can still run work (a closing or closed client cannot)
_USABLE = ("newly-created", "connecting", "running")


def resolve_client(client: Client | None) -> Client:
    """Return the client to use: explicit, else the default one, else the embedded one."""
    if client is not None:
        if not isinstance(client, Client):
            raise TypeError(
                f"client must be a distributed.Client or None, got {type(client).__name__}"
            )
        if client.status not in _USABLE:
            raise ValueError(
                f"client is {client.status}: pass a running distributed.Client, or None for "
                "the default client (or dask-meta's embedded cluster)"
            )
        return client
    try:
        from distributed import get_client

        return get_client()
    except ValueError:
        return embedded_client()


def start_local_cluster(
    n_workers: int,
    threads_per_worker: int,
    memory_limit: str | int | float | None = None,
    *,
    quiet_workers: bool = False,
    processes: bool = True,
) -> LocalCluster:
    """A ``LocalCluster`` whose workers declare the ``threads`` resource (as many as their
    threads), with its dashboard on a free port.

    ``memory_limit``: per worker, as Dask reads it (``"4GiB"``, ``"auto"``: the machine's
    memory in proportion to the worker's threads); ``None``: ``LocalCluster``'s default,
    the machine's memory shared equally between the workers. ``quiet_workers``: the worker
    processes log only warnings of ``distributed`` (unless the environment sets their level).
    ``processes=False``: the workers run as threads of this process.
    """
    options: dict[str, Any] = {
        "n_workers": n_workers,
        "threads_per_worker": threads_per_worker,
        "resources": {THREADS: threads_per_worker},
        "dashboard_address": ":0",
        "processes": processes,
    }
    if memory_limit is not None:
        options["memory_limit"] = memory_limit
    if not quiet_workers:
        return LocalCluster(**options)
    # worker processes read their logging level from the environment they start in
    previous = os.environ.get(_WORKER_LOG_LEVEL)
    os.environ.setdefault(_WORKER_LOG_LEVEL, "warning")
    try:
        return LocalCluster(**options)
    finally:
        if previous is None:
            os.environ.pop(_WORKER_LOG_LEVEL, None)


def local_client(cluster: LocalCluster, *, set_as_default: bool = True) -> Client:
    """A client of a cluster this process started."""
    return Client(cluster, set_as_default=set_as_default)


def connect_scheduler(address: str, *, timeout: str = "30s", wait: float = 60) -> Client:
    """A client of the running scheduler at ``address``, once a worker has joined it
    (``TimeoutError`` after ``wait`` seconds without one)."""
    client = Client(address, timeout=timeout, set_as_default=False)
    client.wait_for_workers(1, timeout=wait)
    return client


def dashboard_link(client: Client) -> str:
    """The address of the cluster's dashboard."""
    return str(client.dashboard_link)


def close_cluster(client: Client, cluster: LocalCluster | None = None) -> None:
    """Close the client, then the cluster if this process started one."""
    client.close()
    if cluster is not None:
        cluster.close()


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    strings = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and strings == ["__main__"] and isinstance(test.ops[0], ast.Eq)


def unguarded_script() -> bool:
    """Whether this call comes from the top-level code of the main script, outside an
    ``if __name__ == "__main__":`` block: a spawned worker process would run that code again
    while importing the script, and could not start.

    ``False`` without a main script (Jupyter, ``python -c``, the interactive interpreter)
    and for calls from other threads; ``True`` if the script's source cannot be read.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None:
        return False
    frame = sys._getframe()
    while frame is not None and not (
        frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>"
    ):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return False
    line = frame.f_lineno
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return True
    return not any(
        isinstance(node, ast.If)
        and _is_main_guard(node.test)
        and node.lineno <= line <= (node.end_lineno or node.lineno)
        for node in tree.body
    )


def embedded_client() -> Client:
    """Start (once) and return the embedded LocalCluster's client.

    One worker with threads = cores: memory is shared between the fits, start-up is fast,
    and LightGBM and scikit-learn release the GIL while fitting. The worker is a process,
    or threads of this process when called from an unguarded script (:func:`unguarded_script`).
    """
    global _embedded
    with _embedded_lock:
        if _embedded is not None and not _alive(_embedded.cluster, _embedded.client):
            # the user never chose this cluster: one that lost its workers (or was closed
            # behind dask-meta's back) is replaced, not handed to the next fit
            logger.warning("dask_meta's embedded LocalCluster lost its workers; restarting it")
            close_cluster(_embedded.client, _embedded.cluster)
            _embedded = None
        if _embedded is None:
            n = os.cpu_count() or 1
            in_process = unguarded_script()
            cluster = start_local_cluster(1, n, processes=not in_process)
            client = local_client(cluster, set_as_default=False)
            _embedded = _Embedded(cluster, client, in_process)
            atexit.register(close_embedded)
            logger.info(
                "dask_meta started an embedded LocalCluster (1 worker x %d threads%s); "
                "dashboard: %s",
                n,
                " in this process" if in_process else "",
                dashboard_link(client),
            )
        return _embedded.client


def describe(client: Client, shape: ClusterShape) -> str:
    """What a fit ran on (``fit_report_.attrs["cluster"]``): the embedded cluster and how
    its worker runs, or the given cluster's address and size."""
    threads = sum(w.nthreads for w in shape.workers)
    embedded = _embedded
    if embedded is not None and client is embedded.client:
        if not embedded.in_process:
            return f"embedded LocalCluster: 1 worker process x {threads} threads"
        return (
            f"embedded LocalCluster: 1 worker of {threads} threads in this process (the main "
            "script has no `if __name__ == '__main__':` guard around the fit)"
        )
    return f"{client.scheduler.address}: {len(shape.workers)} worker(s), {threads} threads"  # type: ignore[union-attr]


def _alive(cluster: LocalCluster, client: Client) -> bool:
    """Whether the embedded cluster can still run fits: client running, workers alive."""
    if client.status != "running" or cluster.status.name != "running":
        return False
    try:
        return bool(client.sync(client.scheduler.identity, n_workers=-1)["workers"])  # type: ignore[union-attr]
    except Exception:  # the scheduler is gone
        return False


def close_embedded() -> None:
    """Close the embedded cluster, if one was started."""
    global _embedded
    with _embedded_lock:
        if _embedded is not None:
            cluster, client = _embedded.cluster, _embedded.client
            _embedded = None
            close_cluster(client, cluster)
