"""Thread counts of base-model fits: which parameter takes them, and where the threads run.

A fit of ``t`` threads gets ``t`` in its estimator's thread parameter (:func:`thread_param_name`)
and under ``threadpoolctl``, and runs on an OS thread kept for ``t``-thread work
(:func:`on_threads`); docs/parallelism.md ("Where the threads run") says why.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

#: Names under which estimators take their thread count, in order of preference.
THREAD_PARAMS = ("n_jobs", "num_threads", "nthread", "thread_count", "n_threads")


def requested_threads(params: dict[str, Any]) -> int | None:
    """The thread count a user asked for in a model's params: ``None`` if unset, -1 = a worker."""
    for name in THREAD_PARAMS:
        value = params.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"model parameter {name}={value!r} must be an int")
        value = int(value)
        if value == -1 or value > 0:
            return value
        raise ValueError(
            f"model parameter {name}={value} is not supported: use a positive thread count "
            "or -1 for all threads of a worker"
        )
    return None


#: Libraries whose estimators run threads of their own unless told otherwise.
THREADED_MODULES = (
    "lightgbm",
    "xgboost",
    "catboost",
    "sklearn.ensemble",
    "sklearn.neighbors",
    "dask_meta.models",  # hands its threads to the estimator it wraps
)


def thread_param_name(factory: type, params: dict[str, Any]) -> str | None:
    """The parameter through which ``factory`` takes its thread count, if it has one.

    The user's own choice wins; otherwise only estimators known to start threads of their
    own get one (others, such as scikit-learn's linear models, are capped by threadpoolctl
    alone; setting their deprecated ``n_jobs`` would only warn).
    """
    for name in THREAD_PARAMS:
        if name in params:
            return name
    if not factory.__module__.startswith(THREADED_MODULES):
        return None
    try:
        accepted = set(factory().get_params(deep=False))
    except Exception:
        accepted = set(inspect.signature(factory).parameters)
    for name in THREAD_PARAMS:
        if name in accepted:
            return name
    return None


def fit_params_with_threads(
    factory: type, params: dict[str, Any], thread_param: str | None, threads: int
) -> dict[str, Any]:
    """A model's params for a fit with ``threads`` threads (run under ``threadpool_limits``).

    LightGBM keeps one thread count for its whole process: the last positive ``num_threads``
    any of its calls was given, used from then on by every call from every thread (fits,
    predictions, the model's pickling). Fits with different counts side by side, or a
    prediction beside a fit, change each other's threads, and OpenMP pools grow on threads
    that should run one. ``num_threads=0`` leaves that count unset: each call then uses its
    own thread's OpenMP setting, which ``threadpool_limits`` sets for the fit and the
    worker's environment (``OMP_NUM_THREADS=1``) sets everywhere else. ``n_jobs`` keeps the
    threads the fit was given, for the reader of the model's params.
    """
    out = dict(params)
    if thread_param is not None:
        out[thread_param] = threads
    if factory.__module__.startswith("lightgbm") and factory.__name__ in (
        "LGBMRegressor",
        "LGBMClassifier",
        "LGBMRanker",
        "LGBMModel",
    ):
        out["num_threads"] = 0
    return out


# --- native thread pools: multi-threaded fits keep to a few OS threads --------------------
#
# OpenMP (libgomp, which LightGBM and XGBoost use) gives every OS thread that starts a
# parallel region a pool of its own: multi-threaded fits run on the task threads would soon
# leave more OpenMP threads in the worker than it has cores, and every such fit of the
# process would slow down for good (measured in docs/parallelism.md, "Where the threads
# run"). Multi-threaded work therefore runs on a pool of ``worker threads // threads`` OS
# threads kept for it, never on the task threads themselves.

_native_lock = threading.Lock()
_native_pool: tuple[int, ThreadPoolExecutor] | None = None
#: on a native pool's thread: its ``threads`` and the worker's ``worker_threads``
_native_local = threading.local()


def _worker_threads() -> int:
    """The threads of the worker this runs on (of the machine outside a worker)."""
    known = getattr(_native_local, "worker_threads", None)
    if known is not None:
        return int(known)
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ValueError, AttributeError):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def on_threads(threads: int, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, run on an OS thread kept for ``threads``-thread native work.

    One-thread work, and work asking for the threads of the native thread it is called
    from, runs in the calling thread. The task thread waits (it holds the ``threads``
    resource meanwhile); exceptions propagate as they are.
    """
    if threads <= 1 or threads == getattr(_native_local, "threads", None):
        return fn(*args)
    global _native_pool
    worker_threads = _worker_threads()
    with _native_lock:
        if _native_pool is None or _native_pool[0] != threads:
            if _native_pool is not None:
                # its threads end once their work is done, and their OpenMP pools with them
                _native_pool[1].shutdown(wait=False)
            slots = max(1, worker_threads // threads)
            _native_pool = (
                threads,
                ThreadPoolExecutor(slots, thread_name_prefix=f"dask-meta-{threads}-threads"),
            )
        pool = _native_pool[1]
    return pool.submit(_run_native, threads, worker_threads, fn, args).result()


def _run_native(threads: int, worker_threads: int, fn: Callable[..., Any], args: tuple) -> Any:
    _native_local.threads = threads
    _native_local.worker_threads = worker_threads
    return fn(*args)


def worker_address() -> str | None:
    """The address of the worker this runs on (``None`` outside a worker)."""
    try:
        from distributed import get_worker

        return get_worker().address
    except ValueError:
        return None
