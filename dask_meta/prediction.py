"""Predicting lazily, partition by partition, with fitted models.

Every prediction of dask-meta (a learner's CATE, conditional average outcomes, one base
model's predictions) is a per-partition function mapped over X by :func:`map_predict`: Dask
in gives a lazy Dask array with one chunk per partition, in-memory input a numpy array
computed on the cluster. In-sample prediction (``is_oos=False``) also reads the fit's fold
columns and checks each partition against the training data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
from distributed import Client

from dask_meta import runtime
from dask_meta.backends import aligned
from dask_meta.data import (
    Frame,
    Piece,
    on_cluster,
    partition_fingerprint,
    partitions,
    piece_counts,
    prediction_frame,
    rows_of,
)
from dask_meta.training import FitContext, check_fingerprint, check_length, check_partition

PartitionFn = Callable[[pd.DataFrame, pd.DataFrame | None, Any], np.ndarray]


@dataclass(frozen=True)
class Prediction:
    """One prediction of a fitted learner, before it is mapped over X: its per-partition
    function, the models that function reads (``bundle``), the shape of one row's output
    and the task name. A learner's ``predict`` maps its CATE prediction; a bootstrap maps
    those of all its replicates in one task per partition."""

    fn: PartitionFn
    bundle: Any
    tail: tuple[int, ...]
    name: str


def _oos_block(
    X: pd.DataFrame,
    fn: PartitionFn,
    bundle: Any,
    anchor: Any,
    tail: tuple[int, ...],
    piece: Piece,
) -> np.ndarray:
    X = rows_of(X, piece)
    out = np.asarray(fn(aligned(X.reset_index(drop=True)), None, bundle), dtype=float)
    return out.reshape((len(X), *tail))


def _in_sample_block(
    X: pd.DataFrame,
    folds: pd.DataFrame,
    fn: PartitionFn,
    bundle: Any,
    anchor: Any,
    tail: tuple[int, ...],
    piece: Piece,
    check: FitContext,
) -> tuple[np.ndarray, int]:
    """A piece's predictions and its part of the partition's fingerprint (``check``: the
    fit's slim context, which knows the training partitions' lengths and fingerprints)."""
    check_length(len(X), piece.number, check.lengths)
    rows = piece.rows(len(X))
    X = X.iloc[rows]
    fingerprint = partition_fingerprint(X, start=rows.start, columns=check.columns.names)
    out = np.asarray(
        fn(X.reset_index(drop=True), folds.iloc[rows].reset_index(drop=True), bundle),
        dtype=float,
    )
    return out.reshape((len(X), *tail)), fingerprint


def _join_pieces(blocks: list[np.ndarray]) -> np.ndarray:
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=0)


def _join_in_sample(
    pieces: list[tuple[np.ndarray, int]], number: int, check: FitContext
) -> np.ndarray:
    """A partition's in-sample predictions, once its pieces add up to its fingerprint."""
    fingerprint = sum(f for _, f in pieces) % 2**64
    check_fingerprint(fingerprint, number, check.fingerprints)
    return _join_pieces([block for block, _ in pieces])


def _models_node(bundle: Any, client: Client | None, token: str) -> Any:
    """The fitted models that a prediction's tasks read: sent once to the cluster of the
    client that computes it (:func:`runtime.put`, no "Sending large graph" warning however
    many models there are), or inside the graph, for any scheduler, without one."""
    key = runtime.task_key("prediction-models", token)
    if client is None:
        return dask.delayed(bundle, name=key, traverse=False)
    return runtime.put(client, bundle, key)


def map_predict(
    X: Any,
    context: FitContext,
    is_oos: bool,
    fn: PartitionFn,
    bundle: Any,
    tail: tuple[int, ...],
    client: Client | None,
    name: str,
    threads_of: Client | None = None,
) -> np.ndarray | da.Array:
    """Apply ``fn`` to every partition of X; Dask in -> lazy Dask array, in-memory -> numpy.

    ``fn(X_part, folds_part_or_None, bundle)`` returns ``(n, prod(tail))`` floats; the result
    has shape ``(n, *tail)``, one chunk per partition of X (sizes known for in-sample
    prediction). For ``is_oos=False`` ``fn`` also gets the partition's fold frame, and each
    partition is checked against the training data (length and fingerprint). With fewer
    partitions than the cluster's threads, a large partition is predicted in pieces side by
    side (:func:`piece_counts`) and joined into its chunk; ``threads_of`` is the client
    whose cluster's threads count (default ``client``; a lazy result of Dask input is
    computed by whichever client computes it).
    """
    frame = X if isinstance(X, Frame) else on_cluster(prediction_frame(X, context.columns), client)
    # unique per call: a key shared by two predictions would silently return the other's result
    token = runtime.new_token()
    # the client that computes the result: ``client`` for in-memory X, else (a lazy result)
    # the current one, if any
    computing = client if frame.in_memory else runtime.computing_client()
    models = _models_node(bundle, computing, token)
    # A second small dependency keeps dask's linear fusion away from the models node: with a
    # single dependent partition (one partition, or a culled slice) dask 2026.8 fails with
    # "Cannot fuse tasks with multiple outputs".
    anchor = dask.delayed(token, name=runtime.task_key("anchor", token), traverse=False)
    x_parts = partitions(frame.frame)
    sizer = threads_of or client
    threads = runtime.total_threads(sizer) if sizer is not None else 1
    blocks = []
    if is_oos:
        counts = piece_counts(len(x_parts), threads, None)
        for i, part in enumerate(x_parts):
            pieces = [
                dask.delayed(_oos_block, pure=True)(
                    part,
                    fn,
                    models,
                    anchor,
                    tail,
                    Piece(i, j, counts[i]),
                    dask_key_name=runtime.task_key(name, i, j, token),
                )
                for j in range(counts[i])
            ]
            block = pieces[0]
            if len(pieces) > 1:
                block = dask.delayed(_join_pieces, pure=True)(
                    pieces, dask_key_name=runtime.task_key(f"{name}-join", i, token)
                )
            blocks.append((block, (np.nan, *tail)))
    else:
        expected = len(context.lengths)
        if len(x_parts) != expected:
            raise ValueError(
                f"is_oos=False needs exactly the training data, but X has {len(x_parts)} "
                f"partitions where the training data had {expected}; use is_oos=True for "
                "other data"
            )
        check = context.slim()
        counts = piece_counts(len(x_parts), threads, context.lengths)
        # the fold columns held on the computing client's cluster, if that is the fit's
        fold_parts = partitions(context.folds_for(computing))
        for i, (part, folds) in enumerate(zip(x_parts, fold_parts, strict=True)):
            pieces = [
                dask.delayed(_in_sample_block, pure=True)(
                    part,
                    folds,
                    fn,
                    models,
                    anchor,
                    tail,
                    Piece(i, j, counts[i]),
                    check,
                    dask_key_name=runtime.task_key(name, i, j, token),
                )
                for j in range(counts[i])
            ]
            block = dask.delayed(_join_in_sample, pure=True)(
                pieces, i, check, dask_key_name=runtime.task_key(f"{name}-join", i, token)
            )
            blocks.append((block, (context.lengths[i], *tail)))
    if frame.in_memory:
        # the blocks themselves: dask.array's linear fusion fails on some graphs of a
        # client-built fold frame ("Cannot fuse tasks with multiple outputs")
        whole = dask.delayed(np.concatenate)([block for block, _ in blocks], axis=0)
        return np.asarray(runtime.compute_now(whole, client))
    arrays = [da.from_delayed(block, shape=shape, dtype=float) for block, shape in blocks]
    return da.concatenate(arrays, axis=0) if len(arrays) > 1 else arrays[0]


def _in_sample_sums(
    X: pd.DataFrame,
    folds: pd.DataFrame,
    fn: PartitionFn,
    bundle: Any,
    number: int,
    lengths: tuple[int, ...],
    fingerprints: tuple[int, ...],
    names: tuple[Any, ...],
) -> np.ndarray:
    check_partition(X, number, lengths, fingerprints, names)
    return np.asarray(
        fn(X.reset_index(drop=True), folds.reset_index(drop=True), bundle), dtype=float
    )


def sum_in_sample(
    X: Any, context: FitContext, fn: PartitionFn, bundle: Any, client: Client, name: str
) -> np.ndarray:
    """The sum over the training partitions of ``fn(X_part, folds_part, bundle)`` (an array
    of one shape in every partition): in-sample statistics computed where the data live,
    only the per-partition sums come back."""
    frame = X if isinstance(X, Frame) else on_cluster(prediction_frame(X, context.columns), client)
    x_parts = partitions(frame.frame)
    if len(x_parts) != len(context.lengths):
        raise ValueError(
            f"X must be the training data, but it has {len(x_parts)} partitions where the "
            f"training data had {len(context.lengths)}"
        )
    token = runtime.new_token()
    models = _models_node(bundle, client, token)
    tasks = [
        dask.delayed(_in_sample_sums, pure=True)(
            part,
            folds,
            fn,
            models,
            i,
            context.lengths,
            context.fingerprints,
            context.columns.names,
            dask_key_name=runtime.task_key(name, i, token),
        )
        for i, (part, folds) in enumerate(
            zip(x_parts, partitions(context.folds_for(client)), strict=True)
        )
    ]
    return np.sum(runtime.gather_tasks(client, tasks), axis=0)  # type: ignore[no-any-return]
