"""dask-meta: CATE meta-learners (S, T, X, R, DR) on Dask, a drop-in for metalearners."""

from dask_meta.cluster import close_embedded, embedded_client
from dask_meta.crossfit import CrossFitEstimator
from dask_meta.learners import MetaLearner, SLearner, TLearner
from dask_meta.utils import simplify_output

__all__ = [
    "CrossFitEstimator",
    "MetaLearner",
    "SLearner",
    "TLearner",
    "close_embedded",
    "embedded_client",
    "simplify_output",
]

__version__ = "0.1.0"
