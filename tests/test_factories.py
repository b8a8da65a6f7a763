"""Base-model factories that are not estimator classes: partials, functions, callable
objects and duck-typed classes, through fit, predict, evaluate, plans, saving and grid
search, and the classifier/regressor checks."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from _factories import (
    DuckClassifier,
    DuckRegressor,
    RegressorBuilder,
    UntypedClassifier,
    make_linear_regression,
)
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

import dask_meta
from dask_meta import CrossFitEstimator, DRLearner, RLearner, TLearner, XLearner
from dask_meta.grid_search import MetaLearnerGridSearch

LGBM = {"n_estimators": 5, "verbose": -1, "min_child_samples": 5}

#: factories that build a LinearRegression, by kind
LINEAR = {
    "class": LinearRegression,
    "partial": functools.partial(LinearRegression, fit_intercept=True),
    "function": make_linear_regression,
    "callable-object": RegressorBuilder(),
    "duck-typed-class": DuckRegressor,
}


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    w = rng.integers(0, 2, n)
    y = X @ np.array([1.0, -1.0, 0.5]) + w * (1 + X[:, 0]) + rng.normal(0, 0.3, n)
    return X, y, w


@pytest.fixture(scope="module")
def reference(client):
    X, y, w = _data()
    learner = XLearner(
        False,
        2,
        LinearRegression,
        LinearRegression,
        LogisticRegression,
        n_folds=2,
        random_state=1,
        client=client,
    ).fit(X, y, w)
    return learner.predict(X, is_oos=False), learner.evaluate(X, y, w, is_oos=False)


@pytest.mark.parametrize("kind", list(LINEAR))
def test_every_kind_of_factory_gives_the_class_numbers(client, reference, kind):
    X, y, w = _data()
    learner = XLearner(
        False,
        2,
        LINEAR[kind],
        LINEAR[kind],
        LogisticRegression,
        n_folds=2,
        random_state=1,
        client=client,
    ).fit(X, y, w)
    cate, scores = reference
    np.testing.assert_allclose(learner.predict(X, is_oos=False), cate, rtol=1e-10)
    got = learner.evaluate(X, y, w, is_oos=False)
    assert got.keys() == scores.keys()
    np.testing.assert_allclose([got[k] for k in scores], list(scores.values()), rtol=1e-10)


def test_a_partial_of_a_class_is_that_class_with_its_params(client):
    """partial(LGBMRegressor, ...) fits exactly as LGBMRegressor with those params (the
    partial's keywords yield to the params, as a call's do), under the class's name."""
    X, y, w = _data()
    factory = functools.partial(LGBMRegressor, n_estimators=50, **{"verbose": -1})
    cfe = CrossFitEstimator(2, factory, {"n_estimators": 5}, client=client)
    assert cfe.estimator_factory is LGBMRegressor
    assert cfe.estimator_params == {"n_estimators": 5, "verbose": -1}
    by_partial = TLearner(
        False,
        2,
        functools.partial(LGBMRegressor, **LGBM),
        n_folds=2,
        random_state=3,
        client=client,
        plan="auto",
    ).fit(X, y, w)
    by_class = TLearner(
        False,
        2,
        LGBMRegressor,
        nuisance_model_params=LGBM,
        n_folds=2,
        random_state=3,
        client=client,
    ).fit(X, y, w)
    np.testing.assert_array_equal(
        by_partial.predict(X, is_oos=True), by_class.predict(X, is_oos=True)
    )
    models = {c["model"] for c in by_partial.fit_report_.attrs["plan"]["calibrations"]}
    assert any(m.startswith("LGBMRegressor(") and "n_estimators=5" in m for m in models)


def test_plan_names_function_and_callable_factories(client):
    X, y, w = _data()
    for factory, name in (
        (make_linear_regression, "make_linear_regression("),
        (RegressorBuilder(), "RegressorBuilder("),
    ):
        learner = TLearner(False, 2, factory, n_folds=2, client=client, plan="auto").fit(X, y, w)
        models = {c["model"] for c in learner.fit_report_.attrs["plan"]["calibrations"]}
        assert any(m.startswith(name) for m in models), models
        assert len(learner.fit_report_) == 6  # 2 variants x (2 folds + overall)


def test_duck_typed_classifier_as_propensity_model(client):
    X, y, w = _data()
    ours = XLearner(
        False,
        2,
        LinearRegression,
        LinearRegression,
        DuckClassifier,
        n_folds=2,
        random_state=1,
        client=client,
    ).fit(X, y, w)
    ref = XLearner(
        False,
        2,
        LinearRegression,
        LinearRegression,
        LogisticRegression,
        n_folds=2,
        random_state=1,
        client=client,
    ).fit(X, y, w)
    np.testing.assert_allclose(
        ours.predict(X, is_oos=False), ref.predict(X, is_oos=False), rtol=1e-10
    )


@pytest.mark.parametrize("learner", [RLearner, DRLearner])
def test_untyped_classifier_as_propensity_model(client, learner):
    """A propensity model that says neither classifier nor regressor and records no classes
    gives probabilities all the same, as in metalearners."""
    X, y, w = _data()
    fitted = {
        propensity: learner(
            False,
            2,
            LinearRegression,
            LinearRegression,
            propensity,
            n_folds=2,
            random_state=1,
            client=client,
        ).fit(X, y, w)
        for propensity in (UntypedClassifier, LogisticRegression)
    }
    ours, ref = fitted[UntypedClassifier], fitted[LogisticRegression]
    np.testing.assert_allclose(
        ours.predict(X, is_oos=False), ref.predict(X, is_oos=False), rtol=1e-8
    )
    assert ours._nuisance_models["propensity_model"][0].classes_.tolist() == [0, 1]


@pytest.mark.parametrize(
    "propensity, message",
    [
        (functools.partial(LGBMRegressor, **LGBM), "LGBMRegressor is not a classifier"),
        (make_linear_regression, "make_linear_regression is not a classifier"),
        (RegressorBuilder(), "RegressorBuilder is not a classifier"),
        (DuckRegressor, "DuckRegressor builds a DuckRegressor, which has no predict_proba"),
    ],
)
def test_a_regressor_where_a_classifier_is_needed(propensity, message):
    with pytest.raises(ValueError, match=f"propensity_model .*'predict_proba' but {message}"):
        XLearner(False, 2, LinearRegression, LinearRegression, propensity)


@pytest.mark.parametrize("outcome", [functools.partial(LGBMClassifier, **LGBM), DuckClassifier])
def test_a_classifier_where_a_regressor_is_needed(outcome):
    with pytest.raises(ValueError, match=r"'predict' but .* is a classifier; pass a regressor"):
        TLearner(False, 2, outcome)


def test_not_callable_factory_is_a_clear_error():
    with pytest.raises(TypeError, match="the factory for variant_outcome_model must be"):
        TLearner(False, 2, LinearRegression())
    with pytest.raises(TypeError, match="estimator_factory must be an estimator class"):
        CrossFitEstimator(2, "LinearRegression")


def test_save_and_load(client, tmp_path):
    """A partial of a class is saved as its class and arguments (loaded without trust, as
    the class is); a lambda cannot be stored safely: save names it."""
    X, y, w = _data()
    learner = TLearner(
        False, 2, functools.partial(LGBMRegressor, **LGBM), n_folds=2, client=client
    ).fit(X, y, w)
    dask_meta.persistence.save(learner, tmp_path / "partial")
    loaded = dask_meta.load(tmp_path / "partial")
    factory = loaded.nuisance_model_factory["variant_outcome_model"]
    assert isinstance(factory, functools.partial) and factory.func is LGBMRegressor
    assert factory.keywords == LGBM
    np.testing.assert_array_equal(loaded.predict(X, is_oos=True), learner.predict(X, is_oos=True))
    lam = TLearner(False, 2, lambda **p: LinearRegression(**p), n_folds=2, client=client)
    lam.fit(X, y, w)
    with pytest.raises(TypeError, match=r"nuisance_model_factory\.variant_outcome_model"):
        dask_meta.persistence.save(lam, tmp_path / "lambda")


def test_grid_search_with_partials(client):
    X, y, w = _data()
    search = MetaLearnerGridSearch(
        TLearner,
        {"is_classification": False, "n_variants": 2, "n_folds": 2, "client": client},
        {"variant_outcome_model": [functools.partial(LGBMRegressor, verbose=-1), DuckRegressor]},
        {"variant_outcome_model": {"LGBMRegressor": {"n_estimators": [3, 6]}}},
    ).fit(X, y, w)
    assert search.grid_size_ == 3
    names = search.results_.reset_index()["variant_outcome_model"].tolist()
    assert sorted(names) == ["DuckRegressor", "partial(LGBMRegressor)", "partial(LGBMRegressor)"]
