"""The meta-learners."""

from dask_meta.learners.base import MetaLearner
from dask_meta.learners.slearner import SLearner
from dask_meta.learners.tlearner import TLearner

__all__ = ["MetaLearner", "SLearner", "TLearner"]
