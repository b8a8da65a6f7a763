"""Base-model factories: an estimator class or any callable that returns an estimator.

metalearners' factories are estimator classes; dask-meta takes any callable
``factory(**params) -> estimator`` as well: a ``functools.partial`` of a class, a function,
a duck-typed class with ``fit`` and ``predict`` (or ``predict_proba``). A partial whose
arguments can be named is unwrapped (:func:`flatten`) into its function and merged params,
so that ``partial(LGBMRegressor, n_estimators=5)`` is fitted exactly as ``LGBMRegressor``
with ``n_estimators=5`` (its threads, its shared LightGBM bins). Other callables are
fitted as they are, one task each; dask-meta cannot set their threads.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any


def check_factory(factory: Any, what: str) -> None:
    """Raise unless ``factory`` can build an estimator (a class or another callable)."""
    if not callable(factory):
        raise TypeError(
            f"{what} must be an estimator class (e.g. lightgbm.LGBMRegressor) or a callable "
            f"returning an estimator (e.g. functools.partial(LGBMRegressor, n_estimators=5)), "
            f"got {factory!r}"
        )


def flatten(factory: Any, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``partial(f, *args, **kw)`` with ``params`` as ``(f, {**kw, **named args, **params})``.

    Exactly the same calls: a partial's keywords yield to the call's. A partial whose
    positional arguments cannot be named from ``f``'s signature is kept as it is.
    """
    while isinstance(factory, functools.partial):
        keywords = dict(factory.keywords)
        if factory.args:
            try:
                bound = inspect.signature(factory.func).bind_partial(*factory.args)
            except (TypeError, ValueError):
                return factory, params
            if any(
                p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY)
                for name, p in bound.signature.parameters.items()
                if name in bound.arguments
            ):
                return factory, params
            keywords = {**bound.arguments, **keywords}
        params = {**keywords, **params}
        factory = factory.func
    return factory, params


def factory_name(factory: Any) -> str:
    """A factory's name for reports and messages: ``LGBMRegressor``,
    ``partial(LGBMRegressor)``, a function's name, or the class of a callable object."""
    if isinstance(factory, functools.partial):
        return f"partial({factory_name(factory.func)})"
    name = getattr(factory, "__name__", None)
    return str(name) if isinstance(name, str) else type(factory).__name__
