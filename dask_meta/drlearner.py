"""metalearners' ``metalearners.drlearner`` module path: its public names."""

from dask_meta._constants import (
    NUISANCE,
    OVERALL,
    PROPENSITY_MODEL,
    TREATMENT,
    TREATMENT_MODEL,
    VARIANT_OUTCOME_MODEL,
)
from dask_meta.learners.drlearner import DRLearner

__all__ = [
    "NUISANCE",
    "OVERALL",
    "PROPENSITY_MODEL",
    "TREATMENT",
    "TREATMENT_MODEL",
    "VARIANT_OUTCOME_MODEL",
    "DRLearner",
]
