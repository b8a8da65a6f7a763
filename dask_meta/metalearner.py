"""metalearners' ``metalearners.metalearner`` module path: its public names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dask_meta._constants import (
    NUISANCE,
    OVERALL,
    PROPENSITY_MODEL,
    TREATMENT,
    TREATMENT_MODEL,
    VARIANT_OUTCOME_MODEL,
)
from dask_meta.crossfit import CrossFitEstimator
from dask_meta.learners import MetaLearner


def get_overall_estimators(cfes: Sequence[CrossFitEstimator]) -> list[Any]:
    """The overall model of each fitted cross-fit estimator (metalearners' helper)."""
    for cfe in cfes:
        if cfe._overall_estimator is None:
            raise ValueError(
                "get_overall_estimators needs fitted CrossFitEstimators with enable_overall "
                "True; one has no overall model"
            )
    return [cfe._overall_estimator for cfe in cfes]


__all__ = [
    "NUISANCE",
    "OVERALL",
    "PROPENSITY_MODEL",
    "TREATMENT",
    "TREATMENT_MODEL",
    "VARIANT_OUTCOME_MODEL",
    "MetaLearner",
    "get_overall_estimators",
]
