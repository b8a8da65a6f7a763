"""Explainer, feature importances and SHAP values (metalearners' suite, on Dask data)."""

from __future__ import annotations

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import shap
from lightgbm import LGBMRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import DRLearner, RLearner, SLearner, TLearner, XLearner
from dask_meta.explain import Explainer
from dask_meta.plots import plot_feature_importances

SEED = 1337


@pytest.fixture(scope="module")
def feature_importance_data():
    """metalearners' ``feature_importance_dataset``: the CATE of variant k depends on x_k only."""
    rng = np.random.default_rng(SEED)
    n = 10_000
    x0 = rng.normal(10, 1, n)
    x1 = rng.normal(2, 1, n)
    x2 = rng.normal(-5, 1, n)
    w = rng.integers(0, 3, n)
    noise = rng.normal(0, 0.05, n)
    y = x0 + noise + np.where(w == 1, x1, 0) + np.where(w == 2, x2, 0)
    X = pd.DataFrame({"x0": x0, "x1": x1, "x2": x2})
    return X, pd.Series(y), pd.Series(w)


def _learner(implementation, n_variants, **kw):
    return implementation(
        is_classification=False,
        n_variants=n_variants,
        nuisance_model_factory=LinearRegression,
        treatment_model_factory=LGBMRegressor,
        treatment_model_params={"verbose": -1, "n_estimators": 30},
        propensity_model_factory=LogisticRegression,
        random_state=SEED,
        **kw,
    )


@pytest.mark.parametrize("on_dask", [False, True], ids=["pandas", "dask"])
@pytest.mark.parametrize(
    "implementation, needs_estimates",
    [(TLearner, True), (XLearner, True), (DRLearner, False)],
)
def test_feature_importances_known(
    client, feature_importance_data, implementation, needs_estimates, on_dask
):
    X, y, w = feature_importance_data
    if on_dask:
        frame = dd.from_pandas(X.assign(y=y, w=w), npartitions=4)
        X, y, w = frame[["x0", "x1", "x2"]], frame["y"], frame["w"]
    learner = _learner(implementation, 3)
    learner.fit(X, y, w)
    cate = learner.predict(X, is_oos=False)
    assert isinstance(cate, da.Array) == on_dask
    explainer = learner.explainer(
        X=X,
        cate_estimates=cate,
        cate_model_factory=LGBMRegressor,
        cate_model_params={"verbose": -1},
    )
    importances = learner.feature_importances(feature_names=X.columns, explainer=explainer)
    assert [imp.idxmax() for imp in importances] == ["x1", "x2"]
    if not needs_estimates:
        own = learner.feature_importances(feature_names=X.columns)
        assert [imp.idxmax() for imp in own] == ["x1", "x2"]
        # R and DR explain their own overall treatment models, no refit
        assert (
            learner.explainer().cate_models[0]
            is learner._cfe("treatment_model", 0)._overall_estimator
        )


def test_surrogates_equal_plain_fits_on_the_same_rows(default_client, feature_importance_data):
    """Fitted through the planner, a surrogate is the model a plain in-memory fit gives."""
    X, y, w = feature_importance_data
    learner = _learner(TLearner, 3).fit(X, y, w)
    cate = np.asarray(learner.predict(X, is_oos=False))
    params = {"verbose": -1, "n_estimators": 20, "deterministic": True, "n_jobs": 1}
    explainer = learner.explainer(X, cate, LGBMRegressor, params)
    frame = dd.from_pandas(X, npartitions=3)
    sizes = tuple(frame.map_partitions(len).compute())
    lazy = learner.explainer(
        frame, da.from_array(cate, chunks=(sizes, 2, 1)), LGBMRegressor, params
    )
    with pytest.raises(ValueError, match=r"cate_estimates\[:, 0\] and X are partitioned"):
        shuffled = da.from_array(cate, chunks=(sizes[::-1], 2, 1))
        learner.explainer(frame, shuffled, LGBMRegressor, params)
    for k in range(2):
        plain = LGBMRegressor(**params).fit(X, cate[:, k, 0])
        np.testing.assert_array_equal(explainer.cate_models[k].predict(X), plain.predict(X))
        np.testing.assert_array_equal(lazy.cate_models[k].predict(X), plain.predict(X))


def test_feature_importances_options(default_client, feature_importance_data):
    X, y, w = feature_importance_data
    learner = _learner(DRLearner, 3).fit(X, y, w)
    raw = learner.feature_importances()
    assert [list(s.index) for s in raw] == [["Feature 0", "Feature 1", "Feature 2"]] * 2
    normalized = learner.feature_importances(normalize=True, feature_names=list(X.columns))
    for s in normalized:
        assert s.sum() == pytest.approx(1)
    ranked = learner.feature_importances(sort_values=True, feature_names=list(X.columns))
    for s, r in zip(raw, ranked):
        assert r.is_monotonic_decreasing
        np.testing.assert_array_equal(np.sort(s.to_numpy())[::-1], r.to_numpy())
    figure = plot_feature_importances(normalized)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == [
        "variant 1",
        "variant 2",
    ]
    assert len(figure.axes[0].patches) == 2 * 3
    with pytest.raises(ValueError, match="feature_names has 2 names"):
        learner.feature_importances(feature_names=["a", "b"])


@pytest.mark.parametrize("implementation", [TLearner, SLearner, XLearner, RLearner])
def test_explainer_argument_errors(default_client, implementation):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4))
    y = rng.standard_normal(300)
    w = rng.integers(0, 2, 300)
    learner = _learner(implementation, 2).fit(X, y, w)
    cate = learner.predict(X, is_oos=False)
    with pytest.raises(ValueError, match="Either all of"):
        learner.explainer(X=X, cate_estimates=cate)
    if implementation is RLearner:
        assert len(learner.explainer().cate_models) == 1
    else:
        with pytest.raises(ValueError, match="does not have treatment models"):
            learner.explainer()
    with pytest.raises(ValueError, match="same number of observations"):
        learner.explainer(X[:-1], cate, LGBMRegressor)
    bad = np.asarray(cate).copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        learner.explainer(X, bad, LGBMRegressor)
    with pytest.raises(ValueError, match="3-dimensional"):
        learner.explainer(X, np.asarray(cate)[:, :, 0], LGBMRegressor)
    with pytest.raises(ValueError, match="must be a regressor"):
        learner.explainer(X, cate, LogisticRegression)
    no_importances = learner.explainer(X, cate, LinearRegression)
    with pytest.raises(ValueError, match="has no attribute feature_importances_"):
        no_importances.feature_importances()


def test_dask_estimates_with_nan_rejected_before_fitting(client):
    rng = np.random.default_rng(1)
    X = dd.from_pandas(
        pd.DataFrame(rng.standard_normal((400, 3)), columns=list("abc")), npartitions=2
    )
    cate = rng.standard_normal((400, 1, 1))
    cate[10, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"cate_estimates\[:, 0\] has 1 missing or infinite"):
        Explainer.from_estimates(X, da.from_array(cate, chunks=(200, 1, 1)), LGBMRegressor)


@pytest.mark.parametrize("n_variants", [2, 4])
def test_shap_values_in_memory_and_per_partition(default_client, n_variants):
    rng = np.random.default_rng(2)
    n, d = 1_000, 5
    X = pd.DataFrame(rng.standard_normal((n, d)), columns=[f"x{i}" for i in range(d)])
    y = X["x0"] + rng.standard_normal(n)
    w = pd.Series(rng.integers(0, n_variants, n))
    learner = _learner(DRLearner, n_variants).fit(X, y, w)
    values = learner.shap_values(X, shap.TreeExplainer)
    assert len(values) == n_variants - 1
    assert all(isinstance(v, np.ndarray) and v.shape == (n, d) for v in values)
    # SHAP values add up to the model's prediction minus the expected value
    model = learner._cfe("treatment_model", 0)._overall_estimator
    base = shap.TreeExplainer(model).expected_value
    np.testing.assert_allclose(values[0].sum(axis=1) + base, model.predict(X), atol=1e-6)

    lazy = learner.shap_values(dd.from_pandas(X, npartitions=3), shap.TreeExplainer)
    assert all(isinstance(v, da.Array) for v in lazy)
    for eager, per_partition in zip(values, default_client.compute(lazy, sync=True)):
        np.testing.assert_allclose(per_partition, eager, rtol=1e-10, atol=1e-12)

    cate = learner.predict(X, is_oos=False)
    surrogate = learner.shap_values(
        X,
        shap.TreeExplainer,
        cate_estimates=cate,
        cate_model_factory=LGBMRegressor,
        cate_model_params={"n_estimators": 5, "verbose": -1},
    )
    assert [v.shape for v in surrogate] == [(n, d)] * (n_variants - 1)
