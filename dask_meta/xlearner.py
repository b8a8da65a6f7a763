"""metalearners' ``metalearners.xlearner`` module path: its public names."""

from dask_meta._constants import (
    CONTROL_EFFECT_MODEL,
    MEDIAN,
    NUISANCE,
    OVERALL,
    PROPENSITY_MODEL,
    TREATMENT,
    TREATMENT_EFFECT_MODEL,
    VARIANT_OUTCOME_MODEL,
)
from dask_meta.learners.xlearner import XLearner

__all__ = [
    "CONTROL_EFFECT_MODEL",
    "MEDIAN",
    "NUISANCE",
    "OVERALL",
    "PROPENSITY_MODEL",
    "TREATMENT",
    "TREATMENT_EFFECT_MODEL",
    "VARIANT_OUTCOME_MODEL",
    "XLearner",
]
