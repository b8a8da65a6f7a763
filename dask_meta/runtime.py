"""Every call to the Dask client: submit, compute, gather, persist, scatter, run, cancel.

The rest of the package builds plain task descriptions (``dask.delayed`` calls of
module-level functions, keyed with :func:`task_key`) and hands them to these functions; the
planner (:mod:`dask_meta.planner`) schedules the fits through them. So one search of this
file finds every way dask-meta puts work on a cluster, and every task it creates carries a
``dask_meta-<stage words>-...`` key that the dashboard groups by.

Keys are unique per call (a random token): the same data have the same graph keys in every
fit, and a key shared with another computation (a concurrent fit of a grid search, or an
earlier failed one whose futures an exception still holds) would be cancelled under it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import dask
from dask.delayed import Delayed
from distributed import Client, Future, as_completed

PREFIX = "dask_meta"


def new_token() -> str:
    """A short random token that makes a computation's keys its own."""
    return uuid.uuid4().hex[:10]


def words(name: str) -> str:
    """Dashboard-friendly key words: ``variant_outcome_model`` -> ``variant-outcome-model``.

    The dashboard groups tasks by the part of the key before the first word with a digit, so
    stages are named with words (``propensity``, ``outcome``), never ``mu0``.
    """
    return "-".join(part for part in name.replace("_", "-").split("-") if part)


def task_key(name: str, *parts: object) -> str:
    """``dask_meta-<name words>-<part>-<part>...``: the key of one task."""
    return "-".join([PREFIX, words(name), *(str(p) for p in parts)])


def keyed_tasks(
    func: Callable[..., Any],
    parts: Sequence[Any],
    name: str,
    *args: Any,
    pure: bool = True,
    **kwargs: Any,
) -> list[Delayed]:
    """One task ``func(part, *args, **kwargs)`` per partition, keyed
    ``dask_meta-<name>-<i>-<token>``."""
    token = new_token()
    return [
        dask.delayed(func, pure=pure)(
            *(part, *args), **kwargs, dask_key_name=task_key(name, i, token)
        )
        for i, part in enumerate(parts)
    ]


def gather_tasks(client: Client, tasks: Sequence[Any], **kwargs: Any) -> list[Any]:
    """Compute tasks on the cluster and bring their (small) results to the client.

    The futures are released once gathered; on an error or interrupt the tasks still
    running are cancelled first (their keys are this call's own, see :func:`task_key`).
    """
    futures = client.compute(list(tasks), **kwargs)
    try:
        return list(client.gather(futures))
    except BaseException:
        client.cancel(futures, force=True)
        raise
    finally:
        release(futures)


def compute(client: Client, obj: Any, **kwargs: Any) -> Any:
    """Start computing Dask collections or delayed tasks; futures, nothing gathered."""
    return client.compute(obj, **kwargs)


def compute_now(obj: Any, client: Client | None = None) -> Any:
    """The value of one collection, computed on ``client`` (or the default scheduler)."""
    if client is None:
        return dask.compute(obj)[0]
    future = client.compute(obj)
    try:
        return future.result()
    finally:
        future.release()


def submit(client: Client, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
    """One task of a function on the cluster (``key=``, ``resources=``, ... as in Dask)."""
    return client.submit(func, *args, **kwargs)


def persist(client: Client, obj: Any) -> Any:
    """Keep Dask collections in the cluster's memory (with their lineage)."""
    return client.persist(obj)


def upload(client: Client, frame: Any) -> Any:
    """Send a collection built from the client's memory (pandas or numpy input) to the
    cluster once: the collection comes back backed by futures, and later graphs refer to
    them instead of embedding the data again.

    The data travel inside the graph on purpose, not scattered: the scheduler keeps each
    partition's task, so a lost worker's partitions are recomputed as for any Dask input
    (scattered data would be lost with its worker). Dask's "Sending large graph" warning,
    whose advice is for data embedded again and again, is therefore not raised here.
    """
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1 PiB"}):
        return client.persist(frame)


def identity(obj: Any) -> Any:
    """The object itself: a task whose result is its argument (a partition or models kept
    on the cluster, with their lineage)."""
    return obj


def put(client: Client, obj: Any, key: str) -> Future:
    """One object of the client's memory (fitted models) on the cluster, once: later tasks
    refer to the future instead of each carrying the object.

    As the result of a task that returns it, not ``client.scatter``: scattered data has no
    lineage, so losing the worker that holds it would fail every task that needs it, while
    a task's result is recomputed elsewhere. Sent once on purpose, so Dask's "Sending large
    graph" warning is not raised (as for :func:`upload`).
    """
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1 PiB"}):
        return client.submit(identity, obj, key=key, pure=False)


def scheduler_address(client: Client | None) -> str | None:
    """The address of ``client``'s scheduler (None without a client)."""
    if client is None or client.scheduler is None:
        return None
    return str(client.scheduler.address)


def computing_client() -> Client | None:
    """The client that computes a lazy collection's ``.compute()`` here: the current or
    default one (None: Dask's local scheduler)."""
    try:
        return Client.current(allow_global=True)
    except ValueError:
        return None


def run_on_workers(
    client: Client,
    func: Callable[..., Any],
    *args: Any,
    on_error: Literal["raise", "return"] = "raise",
) -> dict[str, Any]:
    """``func(*args)`` once in every worker process (outside the task graph); with
    ``on_error="return"`` a worker's error is its answer instead of raised."""
    return client.run(func, *args, on_error=on_error)


def cancel(client: Client, futures: Sequence[Future]) -> None:
    """Stop tasks in flight and forget their results."""
    if futures:
        client.cancel(list(futures), force=True)


def release(futures: Sequence[Future]) -> None:
    """Drop this process's hold on results (others holding the same keys keep them)."""
    for future in futures:
        future.release()


def result(future: Future) -> Any:
    """Wait for one future and return its value (raising the task's error)."""
    return future.result()


def who_has(client: Client, futures: Sequence[Future]) -> dict[Any, Any]:
    """The workers that hold each future's result (a question to the scheduler, no task)."""
    return client.who_has(list(futures))


def worker_addresses(client: Client) -> list[str]:
    """The addresses of the cluster's workers, sorted (the client's view of the scheduler)."""
    return sorted(client.scheduler_info()["workers"])


def total_threads(client: Client) -> int:
    """The threads of all the cluster's workers (0 while it has none)."""
    return int(sum(client.nthreads().values()))


def held(client: Client, key: Any) -> Future:
    """A future for a result already on the cluster under ``key`` (computed by another call)."""
    return Future(key, client)


def completion_queue(client: Client) -> as_completed:
    """An ``as_completed`` queue on the client's event loop (the planner's sliding window)."""
    return as_completed(loop=client.loop)


@contextmanager
def as_current(client: Client | None) -> Iterator[None]:
    """Run eager Dask calls (e.g. a sort's divisions) on ``client``."""
    if client is None:
        yield
        return
    with client.as_current():
        yield
