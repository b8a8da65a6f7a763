"""metalearners' ``metalearners.slearner`` module path: its public names."""

from dask_meta._constants import (
    NUISANCE,
    OVERALL,
)
from dask_meta.learners.slearner import SLearner

__all__ = ["NUISANCE", "OVERALL", "SLearner"]
