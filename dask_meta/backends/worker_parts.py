"""One part per worker for ``lightgbm.dask``: a worker's rows as one float32 frame.

Each ``lightgbm.dask`` worker concatenates the parts it holds and keeps the result for the
whole fit; one float32 frame of a single block passes through that concatenation without a
copy (docs/out-of-core.md, "Memory of ``lightgbm.dask`` fits"). The functions that build a
worker's part run on that worker; :func:`one_part_per_worker` places them, from the client.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dask_meta import runtime


@dataclass(frozen=True)
class PartLayout:
    """The pieces of a worker's part ``[X, *columns]``: ``features`` become the float32 frame
    X, each of ``columns`` a Series."""

    features: tuple[Any, ...]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Float32Block:
    """One partition's features as a float32 matrix, and its 1-d columns."""

    features: np.ndarray
    columns: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class WorkerShare:
    """A worker's share of lazy partitions: the pickled graph that computes them (passed as
    bytes: as a graph argument, its tasks would run before the task that reads them) and the
    keys of the partitions, in order."""

    graph: bytes
    keys: tuple[Any, ...]
    layout: PartLayout


def _float32_block(part: pd.DataFrame, layout: PartLayout) -> Float32Block:
    """One partition: its features as a float32 matrix and its 1-d columns (on a worker)."""
    return Float32Block(
        part[list(layout.features)].to_numpy(dtype=np.float32),
        tuple(part[c].to_numpy() for c in layout.columns),
    )


def _worker_part(blocks: list[Float32Block], layout: PartLayout) -> list[Any]:
    """A worker's blocks as ``[X, *columns]``: X one float32 frame of a single block, the
    columns Series (on the worker that holds the blocks).

    Blocks that only ``blocks`` refers to are freed as they are copied: the frame's pages are
    committed as they are written, so joining needs one block more than the frame."""
    features, columns = list(layout.features), list(layout.columns)
    n = sum(len(block.features) for block in blocks)
    X = np.empty((n, len(features)), dtype=np.float32)
    values: list[list[np.ndarray]] = [[] for _ in columns]
    start = 0
    while blocks:
        block = blocks.pop(0)
        X[start : start + len(block.features)] = block.features
        start += len(block.features)
        for out, col in zip(values, block.columns):
            out.append(col)
        del block
    frame = pd.DataFrame(X, columns=pd.Index(features), copy=False)
    part = [frame] + [pd.Series(np.concatenate(v), name=c) for v, c in zip(values, columns)]
    _release_unused_memory()
    return part


def _cull(graph: dict[Any, Any], keys: Sequence[Any]) -> tuple[dict[Any, Any], set[Any]]:
    """The part of a graph (key -> task) that ``keys`` need, and the keys it refers to but
    does not define (results held by the cluster: persisted partitions, fitted models)."""
    needed: dict[Any, Any] = {}
    outside: set[Any] = set()
    stack = list(keys)
    while stack:
        key = stack.pop()
        if key in needed or key in outside:
            continue
        if key not in graph:
            outside.add(key)
            continue
        needed[key] = graph[key]
        stack.extend(graph[key].dependencies)
    return needed, outside


def _read_worker_part(share: WorkerShare, held: dict[Any, Any]) -> list[Any]:
    """A worker's share of partitions, computed here one at a time and joined as
    :func:`_worker_part` does: one partition in memory beside the share. ``held``: the values
    of the keys the share's graph refers to but does not define."""
    import cloudpickle
    import dask
    from dask._task_spec import DataNode

    tasks = cloudpickle.loads(share.graph)
    tasks.update({key: DataNode(key, value) for key, value in held.items()})
    blocks = []
    for key in share.keys:
        frame = dask.get(_cull(tasks, [key])[0], key)
        blocks.append(_float32_block(frame, share.layout))
        del frame
        _release_unused_memory()
    return _worker_part(blocks, share.layout)


def _release_unused_memory() -> None:
    """Hand freed memory back to the operating system before a gang fit: pyarrow's allocator
    (mimalloc or jemalloc) keeps what a parquet read freed (0.18 GiB after reading 4M rows of
    27 float64 columns), and glibc keeps its freed small blocks; both count against the
    worker's memory limit while LightGBM trains."""
    import contextlib
    import ctypes

    with contextlib.suppress(ImportError, AttributeError):  # pyarrow absent or < 9
        import pyarrow

        pyarrow.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _n_rows(part: list[Any]) -> int:
    return len(part[0])


def one_part_per_worker(
    client: Any, frame: Any, features: Sequence[Any], columns: Sequence[str], lazy: bool
) -> list[Any]:
    """``[X, *columns]`` of ``frame`` as Dask collections of one partition per worker, each
    in that worker's memory: X float32 features, then the columns.

    ``lazy`` partitions (read from the source) are split into one contiguous share per worker,
    and each worker computes its share itself, one partition at a time, into its frame: it
    never holds more than its share and one partition (results the graph refers to, such as
    fitted models, are passed in as futures). Persisted partitions are turned into float32
    blocks where they live, then each worker joins the blocks it holds. ``lightgbm.dask``
    trains each worker on the part it holds. X and the columns come from one task per
    partition: they cannot misalign.
    """
    import cloudpickle
    import dask.dataframe as dd
    from dask._task_spec import convert_legacy_graph
    from distributed import wait

    features, columns = list(features), list(columns)
    layout = PartLayout(tuple(features), tuple(columns))
    token = runtime.new_token()
    parts = frame.to_delayed()
    if not lazy:  # persisted: join the blocks where they are
        tasks = runtime.keyed_tasks(_float32_block, parts, "collection-float32-block", layout)
        blocks = runtime.compute(client, tasks)
        with runtime.as_current(client):
            wait(blocks)
        holders = runtime.who_has(client, blocks)
        by_worker: dict[str, list[Any]] = {}
        for block in blocks:
            by_worker.setdefault(sorted(holders[block.key])[0], []).append(block)
        joined = {
            w: runtime.submit(
                client,
                _worker_part,
                mine,
                layout,
                key=runtime.task_key("collection-join-blocks", i, token),
                workers=[w],
                allow_other_workers=True,
            )
            for i, (w, mine) in enumerate(by_worker.items())
        }
        del blocks, by_worker  # freed once joined: each worker then holds its part
    else:
        graph: dict[Any, Any] = {}
        for source in {id(p.__dask_graph__()): p.__dask_graph__() for p in parts}.values():
            graph.update(convert_legacy_graph(dict(source)))
        workers = runtime.worker_addresses(client)
        shares = [s for s in np.array_split(np.arange(len(parts)), len(workers)) if len(s)]
        joined = {}
        for i, (w, share) in enumerate(zip(workers, shares)):
            keys = [parts[j].key for j in share]
            needed, outside = _cull(graph, keys)
            held: dict[Any, Any] = {key: runtime.held(client, key) for key in outside}
            joined[w] = runtime.submit(
                client,
                _read_worker_part,
                WorkerShare(cloudpickle.dumps(needed), tuple(keys), layout),
                held,
                key=runtime.task_key("collection-read-share", i, token),
                workers=[w],
                allow_other_workers=True,
            )
    with runtime.as_current(client):
        wait(list(joined.values()))
    for part in joined.values():
        if part.status == "error":
            runtime.result(part)  # raises the worker's error here
    # a worker whose share selected no rows takes no part (LightGBM rejects empty data)
    counts = {
        w: runtime.submit(
            client, _n_rows, part, key=runtime.task_key("collection-part-rows", i, token)
        )
        for i, (w, part) in enumerate(joined.items())
    }
    sizes = {w: runtime.result(count) for w, count in counts.items()}
    runtime.release(list(counts.values()))
    joined = {w: part for w, part in joined.items() if sizes[w]}
    metas = [frame._meta[features].astype(np.float32)] + [frame._meta[c] for c in columns]
    out = []
    for i, meta in enumerate(metas):
        items = [
            runtime.submit(
                client,
                operator.getitem,
                part,
                i,
                key=runtime.task_key("collection-part-piece", i, j, token),
                workers=[w],
                allow_other_workers=True,
            )
            for j, (w, part) in enumerate(joined.items())
        ]
        out.append(dd.from_delayed(items, meta=meta))
    return out
