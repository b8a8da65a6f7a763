"""Objects that travel to the workers are checked to load there before any work is sent.

Base models, their params, scorers and SHAP explainers reach the workers pickled, and the
workers import their classes and functions by module name. A class from a file the workers
cannot import (a script's module loaded by path, a notebook's helper file, a test module)
does not fail the task that carries it: the worker dies, or stops reading from the scheduler,
while it unpickles the task, and the call waits forever. So every entry point names what it
is about to send (:func:`check_loadable`), every worker unpickles those objects once, and a
failure is a :class:`WorkerImportError` naming the object and the fix, before any data is
read. A check that passed is remembered per client, set of workers and pickled bytes, so a
loop of fits pays for it once.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from distributed import Client
from distributed.protocol import pickle

from dask_meta import runtime

#: checks that passed: (client id, its workers, digest of the pickled object)
_passed: set[tuple[str, tuple[str, ...], bytes]] = set()
_MAX_REMEMBERED = 10_000


class WorkerImportError(ImportError):
    """An object a call sends to the workers cannot be loaded there."""


@dataclass(frozen=True)
class Shipment:
    """Objects to try on a worker: their pickled bytes by the name errors give them."""

    blobs: dict[str, bytes]


@dataclass(frozen=True)
class LoadFailure:
    """Why an object did not unpickle on a worker (``module``: the one it could not import)."""

    error: str
    module: str | None


def unpickle_errors(shipment: Shipment) -> dict[str, LoadFailure]:
    """On a worker: the objects of ``shipment`` that do not unpickle, with their error."""
    errors = {}
    for name, blob in shipment.blobs.items():
        try:
            pickle.loads(blob)
        except Exception as exc:  # every failure is reported by name
            module = exc.name if isinstance(exc, ImportError) else None
            errors[name] = LoadFailure(f"{type(exc).__name__}: {exc}", module)
    return errors


def check_loadable(client: Client, objects: Mapping[str, Any]) -> None:
    """Raise :class:`WorkerImportError` unless every worker can unpickle every object.

    ``objects`` maps a name for errors ("the outcome model (mymodule.MyRegressor)") to the
    object sent. Objects that cannot be pickled at all raise a ``TypeError`` naming them.
    """
    workers = tuple(runtime.worker_addresses(client))
    if not workers:
        return  # the call's own check reports a cluster without workers
    blobs = {}
    for name, obj in objects.items():
        blob = _dumps(name, obj)
        seen = (str(client.id), workers, hashlib.blake2b(blob, digest_size=16).digest())
        if seen not in _passed:
            blobs[name] = (blob, seen)
    if not blobs:
        return
    shipment = Shipment({name: blob for name, (blob, _) in blobs.items()})
    answers = runtime.run_on_workers(client, unpickle_errors, shipment, on_error="return")
    for worker, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            raise WorkerImportError(
                f"dask_meta cannot be loaded on the worker {worker} ({answer!r}): install "
                "dask-meta on the workers, the same version as on the client"
            )
        for name, failure in answer.items():
            raise WorkerImportError(_message(name, failure, worker))
    if len(_passed) > _MAX_REMEMBERED:
        _passed.clear()
    _passed.update(seen for _, seen in blobs.values())


def model_objects(what: str, factory: Any, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The objects a base model sends: its factory and, if any, its params."""
    objects = {f"{what} ({_qualname(factory)})": factory}
    if params:
        objects[f"the params of {what}"] = dict(params)
    return objects


def callable_params(what: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The functions among fit params (callbacks, metrics), by name: sent with every fit.

    Arrays among them are left out of the check (they load wherever numpy does, and pickling
    them twice would cost)."""
    objects = {}
    for name, value in params.items():
        items = value if isinstance(value, list | tuple) else [value]
        if items and all(callable(v) and not hasattr(v, "shape") for v in items):
            objects[f"{what}: {name}"] = value
    return objects


def scorer_objects(scoring: Mapping[str, Any]) -> dict[str, Any]:
    """The callable scorers of ``evaluate``'s scoring, by model kind and position."""
    return {
        f"the scorer {_qualname(s)} of {kind}": s
        for kind, scorers in scoring.items()
        for s in scorers
        if callable(s)
    }


def class_objects(what: str, classes: Any) -> dict[str, Any]:
    """Classes of fitted models that a prediction sends with them."""
    return {f"{what} ({_qualname(cls)})": cls for cls in classes}


def _dumps(name: str, obj: Any) -> bytes:
    """``obj`` pickled as tasks carry it: inside another object. Dask sends a nested object
    by value only when it is from ``__main__`` (cloudpickle's
    ``register_pickle_by_value`` applies to the top-level object alone), so the check
    pickles it nested too."""
    try:
        return bytes(pickle.dumps([obj]))
    except Exception as exc:
        raise TypeError(
            f"{name} cannot be sent to the workers: pickling it failed ({type(exc).__name__}: "
            f"{exc})"
        ) from exc


def _qualname(obj: Any) -> str:
    target = obj.func if hasattr(obj, "func") and hasattr(obj, "keywords") else obj
    if not hasattr(target, "__qualname__"):
        target = type(target)
    return f"{getattr(target, '__module__', '?')}.{target.__qualname__}"


def _message(name: str, failure: LoadFailure, worker: str) -> str:
    module = failure.module
    path = getattr(sys.modules.get(module or ""), "__file__", None)
    upload = f"client.upload_file({path!r})" if path else "client.upload_file(path)"
    return (
        f"{name} cannot be loaded on the workers ({failure.error}, on {worker}): workers "
        "import classes and functions by their module's name. Make "
        f"{repr(module) if module else 'its module'} importable there: install it on the "
        f"workers (or start them where it is on the path), or send a single file with {upload}"
    )
