"""metalearners' ``metalearners.cross_fit_estimator`` module path: its public names."""

from dask_meta._constants import MEDIAN, OVERALL
from dask_meta.crossfit import CrossFitEstimator

__all__ = ["MEDIAN", "OVERALL", "CrossFitEstimator"]
