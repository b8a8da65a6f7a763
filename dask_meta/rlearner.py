"""metalearners' ``metalearners.rlearner`` module path: its public names."""

from dask_meta._constants import (
    NUISANCE,
    OUTCOME_MODEL,
    OVERALL,
    PROPENSITY_MODEL,
    TREATMENT,
    TREATMENT_MODEL,
)
from dask_meta.learners.rlearner import RLearner, r_loss

__all__ = [
    "NUISANCE",
    "OUTCOME_MODEL",
    "OVERALL",
    "PROPENSITY_MODEL",
    "TREATMENT",
    "TREATMENT_MODEL",
    "RLearner",
    "r_loss",
]
