"""The meta-learners."""

from dask_meta.learners.base import MetaLearner
from dask_meta.learners.drlearner import DRLearner
from dask_meta.learners.rlearner import RLearner, r_loss
from dask_meta.learners.slearner import SLearner
from dask_meta.learners.tlearner import TLearner
from dask_meta.learners.xlearner import XLearner

__all__ = ["DRLearner", "MetaLearner", "RLearner", "SLearner", "TLearner", "XLearner", "r_loss"]
