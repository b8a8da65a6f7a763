"""Running per-partition functions: in memory, or as a tree of keyed tasks on the cluster.

Every cluster call goes through :mod:`dask_meta.runtime`; task keys read
``dask_meta-metrics-<step>-...``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask
import numpy as np

from dask_meta import runtime
from dask_meta.cluster import resolve_client
from dask_meta.data import partitions
from dask_meta.metrics.inputs import _Inputs
from dask_meta.metrics.validation import _merge_summaries, _summarise, _Summary, _validate


class _Runner:
    """Runs module-level partition functions on the in-memory frame, or as Dask tasks.

    Task keys read ``dask_meta-metrics-<step>-<i>-<token>``, one token per call (the
    dashboard groups by step).
    """

    def __init__(self, inputs: _Inputs, client: Any) -> None:
        self.inputs = inputs
        self.client = None if inputs.in_memory else resolve_client(client)

    def parts(self, frame: Any = None) -> list[Any]:
        """The partitions of ``frame`` (default: the inputs) as delayed objects."""
        frame = self.inputs.frame if frame is None else frame
        if self.client is None:
            return [frame]
        with runtime.as_current(self.client):  # divisions of a sort are computed eagerly
            return partitions(frame)

    def gather(self, tasks: list[Any]) -> list[Any]:
        """Compute tasks on the cluster and bring their (small) results here."""
        assert self.client is not None
        return runtime.gather_tasks(self.client, tasks)

    def reduce(
        self, step: str, func: Callable[..., Any], combine: Callable[..., Any], *args: Any
    ) -> Any:
        """``combine`` of ``func(partition, *args)`` over all partitions, as a tree of tasks."""
        parts = self.parts()
        if self.client is None:
            return combine(*[func(p, *args) for p in parts])
        token = runtime.new_token()
        level = [
            dask.delayed(func, pure=False)(
                p, *args, dask_key_name=runtime.task_key(f"metrics-{step}", i, token)
            )
            for i, p in enumerate(parts)
        ]
        depth = 0
        while len(level) > 1 or depth == 0:
            level = [
                dask.delayed(combine, pure=False)(
                    *level[i : i + 8],
                    dask_key_name=runtime.task_key(f"metrics-{step}-combine", depth, i, token),
                )
                for i in range(0, len(level), 8)
            ]
            depth += 1
        return self.gather(level)[0]


def _add(*arrays: np.ndarray) -> np.ndarray:
    return np.sum(arrays, axis=0)  # type: ignore[no-any-return]


def _first_pass(
    runner: _Runner, variant: int | None, sample_size: int = 0, binary_y: str | None = None
) -> tuple[_Summary, int | None]:
    summary = runner.reduce("summary", _summarise, _merge_summaries, variant, sample_size)
    return summary, _validate(summary, runner.inputs.names, variant, binary_y=binary_y)
