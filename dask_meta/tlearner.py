"""metalearners' ``metalearners.tlearner`` module path: its public names."""

from dask_meta._constants import (
    NUISANCE,
    OVERALL,
    VARIANT_OUTCOME_MODEL,
)
from dask_meta.learners.tlearner import TLearner

__all__ = ["NUISANCE", "OVERALL", "VARIANT_OUTCOME_MODEL", "TLearner"]
