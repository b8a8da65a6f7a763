"""The learner classes: every ``MetaLearner`` subclass registers itself here.

Loading a saved learner (:mod:`dask_meta.persistence`) checks that the class its manifest
names is a learner through this registry, without importing the learners' base module.
"""

from __future__ import annotations

from typing import Any

_LEARNERS: set[type] = set()


def register(cls: type) -> type:
    """Record a learner class (called by ``MetaLearner.__init_subclass__``)."""
    _LEARNERS.add(cls)
    return cls


def is_learner_class(cls: Any) -> bool:
    """Whether ``cls`` is a registered learner class (a ``MetaLearner`` subclass)."""
    return isinstance(cls, type) and cls in _LEARNERS


def is_learner(obj: Any) -> bool:
    """Whether ``obj`` is an instance of a learner class."""
    return is_learner_class(type(obj))
