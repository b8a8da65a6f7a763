"""Thread-seconds a worker spends in a fit's per-partition tasks (the nuisance predictions
and derived targets of the treatment stage, one thread each), summed per fit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

#: per fit token: seconds this worker spent in the fit's per-partition tasks (the nuisance
#: predictions and derived targets of the treatment stage; one thread each)
_task_seconds: dict[str, float] = {}
_task_seconds_lock = threading.Lock()


def timed_task(fn: Callable[..., Any], token: str, /, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, its duration added to this worker's total for ``token``."""
    start = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        with _task_seconds_lock:
            _task_seconds[token] = _task_seconds.get(token, 0.0) + time.perf_counter() - start


def pop_task_seconds(token: str) -> float:
    """This worker's total for ``token``, forgotten (runs on every worker when a fit ends)."""
    with _task_seconds_lock:
        return _task_seconds.pop(token, 0.0)
