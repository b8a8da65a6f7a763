"""metalearners' public names import from the same module paths under dask_meta."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import dask_meta

#: metalearners 0.13.0 module -> its public names (classes, functions, constants, aliases)
PATHS = {
    "utils": ["FixedBinaryPropensity", "metalearner_factory", "simplify_output"],
    "explainer": ["Explainer"],
    "grid_search": ["GSResult", "MetaLearnerGridSearch"],
    "cross_fit_estimator": ["CrossFitEstimator", "MEDIAN", "OVERALL"],
    "metalearner": [
        "MetaLearner",
        "NUISANCE",
        "OVERALL",
        "PROPENSITY_MODEL",
        "TREATMENT",
        "TREATMENT_MODEL",
        "VARIANT_OUTCOME_MODEL",
        "get_overall_estimators",
    ],
    "slearner": ["SLearner"],
    "tlearner": ["TLearner", "VARIANT_OUTCOME_MODEL"],
    "xlearner": ["XLearner", "CONTROL_EFFECT_MODEL", "TREATMENT_EFFECT_MODEL"],
    "rlearner": ["RLearner", "OUTCOME_MODEL", "r_loss"],
    "drlearner": ["DRLearner", "TREATMENT_MODEL"],
    "_typing": [
        "Features",
        "Matrix",
        "ModelFactory",
        "OosMethod",
        "Params",
        "PredictMethod",
        "Scorer",
        "Scorers",
        "Scoring",
        "SplitIndices",
        "Vector",
    ],
}


@pytest.mark.parametrize("module", sorted(PATHS))
def test_names_import_from_metalearners_paths(module):
    imported = importlib.import_module(f"dask_meta.{module}")
    missing = [name for name in PATHS[module] if not hasattr(imported, name)]
    assert not missing


def test_the_same_objects_as_the_package():
    from dask_meta.cross_fit_estimator import CrossFitEstimator
    from dask_meta.explainer import Explainer
    from dask_meta.metalearner import PROPENSITY_MODEL
    from dask_meta.xlearner import XLearner

    assert CrossFitEstimator is dask_meta.CrossFitEstimator
    assert XLearner is dask_meta.XLearner
    assert Explainer.__module__ == "dask_meta.explain"
    assert PROPENSITY_MODEL == "propensity_model"


def test_metalearner_factory():
    from dask_meta.utils import metalearner_factory

    assert metalearner_factory("S") is dask_meta.SLearner
    assert metalearner_factory("T") is dask_meta.TLearner
    assert metalearner_factory("X") is dask_meta.XLearner
    assert metalearner_factory("R") is dask_meta.RLearner
    assert metalearner_factory("DR") is dask_meta.DRLearner
    with pytest.raises(ValueError, match="No MetaLearner implementation found for prefix Y"):
        metalearner_factory("Y")


def test_fixed_binary_propensity():
    from dask_meta.utils import FixedBinaryPropensity

    with pytest.raises(ValueError, match="between 0 and 1"):
        FixedBinaryPropensity(1.5)
    model = FixedBinaryPropensity(0.25).fit(np.zeros((4, 2)), np.array([0, 1, 1, 0]))
    np.testing.assert_array_equal(model.classes_, [0, 1])
    np.testing.assert_allclose(model.predict_proba(np.zeros((3, 2))), [[0.75, 0.25]] * 3)
    np.testing.assert_array_equal(model.predict(np.zeros((3, 2))), [0, 0, 0])
    with pytest.raises(ValueError, match="only supports binary"):
        FixedBinaryPropensity(0.5).fit(np.zeros((3, 1)), np.array([0, 1, 2]))


def test_get_overall_estimators_needs_fitted_models():
    from sklearn.linear_model import LinearRegression

    from dask_meta.metalearner import get_overall_estimators

    with pytest.raises(ValueError, match="enable_overall"):
        get_overall_estimators([dask_meta.CrossFitEstimator(2, LinearRegression)])
