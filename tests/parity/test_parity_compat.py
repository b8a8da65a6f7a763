"""Parity of metalearners' public utilities and ``cv=`` index lists with metalearners 0.13.0.

``FixedBinaryPropensity`` as the propensity model of the X- and DR-learner, and ``cv`` in
``CrossFitEstimator.fit`` and ``fit_nuisance``: with the same folds (``fold_strategy=
"sklearn"``, or the same index lists) and base models, the same numbers within 1e-8.
"""

from __future__ import annotations

import warnings

import metalearners
import numpy as np
import pytest
from metalearners.cross_fit_estimator import CrossFitEstimator as MLCrossFitEstimator
from metalearners.utils import FixedBinaryPropensity as MLFixedBinaryPropensity
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import KFold

import dask_meta
from dask_meta.utils import FixedBinaryPropensity

pytestmark = pytest.mark.parity

ATOL = 1e-8


def _data(n: int = 600, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    w = rng.binomial(1, 0.3, n)
    y = X @ np.array([1.0, -0.5, 0.2, 0.0]) + w * (1 + X[:, 0]) + rng.normal(0, 0.3, n)
    return X, y, w


@pytest.mark.parametrize("name", ["XLearner", "DRLearner"])
def test_fixed_binary_propensity_matches_metalearners(client, name):
    X, y, w = _data()
    common = {
        "is_classification": False,
        "n_variants": 2,
        "nuisance_model_factory": LinearRegression,
        "treatment_model_factory": LinearRegression,
        "propensity_model_params": {"propensity_score": 0.3},
        "n_folds": 5,
        "random_state": 7,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = getattr(metalearners, name)(
            propensity_model_factory=MLFixedBinaryPropensity, **common
        ).fit(X, y, w)
        ref_in = ref.predict(X, is_oos=False)
        ref_oos = ref.predict(X[:50], is_oos=True, oos_method="overall")
    ours = getattr(dask_meta, name)(
        propensity_model_factory=FixedBinaryPropensity,
        fold_strategy="sklearn",
        client=client,
        **common,
    ).fit(X, y, w)
    np.testing.assert_allclose(ours.predict(X, is_oos=False), ref_in, atol=ATOL)
    np.testing.assert_allclose(
        ours.predict(X[:50], is_oos=True, oos_method="overall"), ref_oos, atol=ATOL
    )
    np.testing.assert_allclose(
        ours.predict_nuisance(X[:5], "propensity_model", 0, is_oos=True),
        np.tile([0.7, 0.3], (5, 1)),
    )


# metalearners has no median of probabilities: no (classification, "median") case
@pytest.mark.parametrize(
    ("classification", "oos"),
    [
        (c, oos)
        for c in (False, True)
        for oos in (False, "overall", "mean", "median")
        if not (c and oos == "median")
    ],
)
def test_cross_fit_estimator_cv_matches_metalearners(client, classification, oos):
    X, y, _ = _data()
    factory = LogisticRegression if classification else LinearRegression
    target = (y > 0).astype(int) if classification else y
    cv = list(KFold(4, shuffle=True, random_state=11).split(X))
    method = "predict_proba" if classification else "predict"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = MLCrossFitEstimator(4, factory).fit(X, target, cv=cv)
        expected = getattr(ref, method)(X, is_oos=bool(oos), oos_method=oos or None)
    ours = dask_meta.CrossFitEstimator(4, factory, client=client).fit(X, target, cv=cv)
    got = getattr(ours, method)(X, is_oos=bool(oos), oos_method=oos or None)
    np.testing.assert_allclose(got, expected, atol=ATOL)


def test_learner_fit_nuisance_and_treatment_cv_match_metalearners(client):
    X, y, w = _data()
    cv = list(KFold(5, shuffle=True, random_state=4).split(X))
    args = {
        "is_classification": False,
        "n_variants": 2,
        "nuisance_model_factory": LinearRegression,
        "treatment_model_factory": LinearRegression,
        "propensity_model_factory": LogisticRegression,
        "n_folds": 5,
    }
    ref = metalearners.DRLearner(**args)
    ours = dask_meta.DRLearner(**args, client=client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for learner in (ref, ours):
            learner.fit_nuisance(X, w, "propensity_model", 0, cv=cv)
            learner.fit_treatment(X, y, "treatment_model", 0, cv=cv)
        expected_e = ref.predict_nuisance(X, "propensity_model", 0, is_oos=False)
        expected_tau = ref.predict_treatment(X, "treatment_model", 0, is_oos=False)
    np.testing.assert_allclose(
        ours._nuisance_models["propensity_model"][0].predict_proba(X, is_oos=False),
        expected_e,
        atol=ATOL,
    )
    np.testing.assert_allclose(
        ours._treatment_models["treatment_model"][0].predict(X, is_oos=False),
        expected_tau,
        atol=ATOL,
    )
