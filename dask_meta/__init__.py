"""dask-meta: CATE meta-learners (S, T, X, R, DR) on Dask, a drop-in for metalearners."""

from dask_meta.bootstrap import Bootstrap
from dask_meta.cluster import close_embedded, embedded_client
from dask_meta.compare import compare_plans
from dask_meta.crossfit import CrossFitEstimator
from dask_meta.io import write_predictions
from dask_meta.learners import (
    DRLearner,
    MetaLearner,
    RLearner,
    SLearner,
    TLearner,
    XLearner,
    r_loss,
)
from dask_meta.loading import WorkerImportError
from dask_meta.models import PairwisePropensityClassifier
from dask_meta.persistence import load
from dask_meta.plan import Plan
from dask_meta.progress import verbose
from dask_meta.utils import simplify_output

__all__ = [
    "Bootstrap",
    "CrossFitEstimator",
    "DRLearner",
    "MetaLearner",
    "PairwisePropensityClassifier",
    "Plan",
    "RLearner",
    "SLearner",
    "TLearner",
    "WorkerImportError",
    "XLearner",
    "close_embedded",
    "compare_plans",
    "embedded_client",
    "load",
    "r_loss",
    "simplify_output",
    "verbose",
    "write_predictions",
]

__version__ = "0.1.0"
