"""``enable_overall``: learners that skip the overall models their fit does not use.

metalearners' ``CrossFitEstimator`` takes ``enable_overall``; its learners always leave it
True. dask-meta's learners take it per model kind: an R- or DR-learner's CATE never uses
the overall nuisance models, so a fit without them gives the same CATE with fewer fits,
and out-of-sample nuisance predictions then take ``oos_method="mean"`` or ``"median"``.
Small linear data on the shared LocalCluster (2 workers x 1 thread).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_linear_data
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import DRLearner, RLearner, TLearner, XLearner

PROPENSITY = "propensity_model"


@pytest.fixture(scope="module")
def data():
    X, y, w, _ = make_linear_data(n=1_500, d=4, n_variants=3, seed=11)
    return X, y, w


def _learner(cls, client, **kwargs):
    extra = (
        {}
        if cls is TLearner
        else {
            "treatment_model_factory": LinearRegression,
            "propensity_model_factory": LogisticRegression,
        }
    )
    return cls(
        False, 3, LinearRegression, n_folds=3, random_state=0, client=client, **extra, **kwargs
    )


def _overall_kinds(learner) -> set[str]:
    report = learner.fit_report_
    return set(report.loc[report["fold"] == "overall", "model_kind"])


@pytest.mark.parametrize(
    ("cls", "skipped"),
    [
        (DRLearner, {PROPENSITY: False}),
        (RLearner, {"outcome_model": False, PROPENSITY: False}),
        (RLearner, False),
    ],
    ids=["DR-propensity", "R-nuisance", "R-all"],
)
def test_the_same_cate_without_the_overall_models_the_fit_does_not_use(client, data, cls, skipped):
    X, y, w = data
    full = _learner(cls, client).fit(X, y, w)
    lean = _learner(cls, client, enable_overall=skipped).fit(X, y, w)
    off = {k for k, v in lean.enable_overall.items() if not v}
    assert off and not (_overall_kinds(lean) & off)
    assert _overall_kinds(full) >= off
    assert len(lean.fit_report_) == len(full.fit_report_) - sum(
        cls._cardinality(full, k) for k in off
    )
    # the treatment models' rows outside their split: with the models that remain
    method = "overall" if lean.enable_overall["treatment_model"] else "mean"
    # in-sample CATE: cross-fitted nuisances only, so bit for bit the same
    np.testing.assert_array_equal(
        lean.predict(X, is_oos=False, oos_method=method),
        full.predict(X, is_oos=False, oos_method=method),
    )
    np.testing.assert_array_equal(
        lean.predict(X, is_oos=True, oos_method=method),
        full.predict(X, is_oos=True, oos_method=method),
    )


def test_out_of_sample_nuisance_predictions_take_mean_or_median(client, data):
    X, y, w = data
    full = _learner(DRLearner, client).fit(X, y, w)
    lean = _learner(DRLearner, client, enable_overall={PROPENSITY: False}).fit(X, y, w)
    with pytest.raises(ValueError, match="enable_overall is False"):
        lean.predict_nuisance(X, PROPENSITY, 0, is_oos=True)
    np.testing.assert_array_equal(
        lean.predict_nuisance(X, PROPENSITY, 0, is_oos=True, oos_method="mean"),
        full.predict_nuisance(X, PROPENSITY, 0, is_oos=True, oos_method="mean"),
    )
    with pytest.raises(ValueError, match="enable_overall is False"):
        lean.evaluate(X, y, w, is_oos=True)
    scores = lean.evaluate(X, y, w, is_oos=True, oos_method="mean")
    assert scores == full.evaluate(X, y, w, is_oos=True, oos_method="mean")


def test_a_t_learner_without_overall_models_predicts_out_of_sample_with_the_folds(client, data):
    X, y, w = data
    lean = _learner(TLearner, client, enable_overall=False).fit(X, y, w)
    full = _learner(TLearner, client).fit(X, y, w)
    assert _overall_kinds(lean) == set()
    with pytest.raises(ValueError, match="enable_overall is False"):
        lean.predict(X, is_oos=True)
    np.testing.assert_array_equal(
        lean.predict(X, is_oos=True, oos_method="median"),
        full.predict(X, is_oos=True, oos_method="median"),
    )


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "match"),
    [
        (XLearner, {"enable_overall": False}, ValueError, "variant_outcome_model: the XLearner"),
        (
            DRLearner,
            {"enable_overall": {"variant_outcome_model": False}},
            ValueError,
            "variant_outcome_model: the DRLearner",
        ),
        (RLearner, {"enable_overall": {"outcome": False}}, ValueError, "unknown model kinds"),
        (RLearner, {"enable_overall": "no"}, TypeError, "must be a bool or a dict"),
        (RLearner, {"enable_overall": {PROPENSITY: 0}}, TypeError, "propensity_model"),
        (
            RLearner,
            {
                "enable_overall": {PROPENSITY: False},
                "n_folds": {"outcome_model": 3, PROPENSITY: 1, "treatment_model": 3},
            },
            ValueError,
            "n_folds is 1",
        ),
    ],
)
def test_bad_enable_overall_is_rejected_when_the_learner_is_built(cls, kwargs, error, match):
    extra = {
        "treatment_model_factory": LinearRegression,
        "propensity_model_factory": LogisticRegression,
    }
    kwargs = {"n_folds": 3, **kwargs}
    with pytest.raises(error, match=match):
        cls(False, 3, LinearRegression, **extra, **kwargs)


def test_the_x_learner_may_skip_its_other_overall_models(client, data):
    X, y, w = data
    skipped = {PROPENSITY: False}
    lean = _learner(XLearner, client, enable_overall=skipped).fit(X, y, w)
    full = _learner(XLearner, client).fit(X, y, w)
    assert PROPENSITY not in _overall_kinds(lean)
    rebuilt = XLearner(**lean.init_args)
    assert rebuilt.enable_overall == lean.enable_overall
    assert rebuilt.enable_overall[PROPENSITY] is False
    np.testing.assert_array_equal(lean.predict(X, is_oos=False), full.predict(X, is_oos=False))
