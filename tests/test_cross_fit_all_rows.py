"""``cross_fit_all_rows``: the X- and DR-learner's outcome models predict every training row,
of every variant, with the fold model that did not train on the row's fold, and the fit needs
no overall outcome models.

The expected numbers are computed here by hand: the fold models refitted with scikit-learn on
the rows of the learner's fold column, and the pseudo-outcomes in numpy. Mean-only
(``DummyRegressor``) treatment models make the fitted effect the mean of its training
target. Small data on the session LocalCluster (2 workers x 1 thread).
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from conftest import make_linear_data
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import DRLearner, TLearner, XLearner

N = 1500
K = 3
N_FOLDS = 3
VOM = "variant_outcome_model"


@pytest.fixture(scope="module")
def data():
    X, y, w, _ = make_linear_data(n=N, d=3, n_variants=K, seed=3)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["y"], frame["w"] = y, w
    ddf = dd.from_pandas(frame, npartitions=3)
    return X, y, w, (ddf[["a", "b", "c"]], ddf["y"], ddf["w"])


def _learner(cls, client, **kwargs):
    return cls(
        False,
        K,
        LinearRegression,
        DummyRegressor,
        LogisticRegression,
        n_folds=N_FOLDS,
        random_state=0,
        client=client,
        **kwargs,
    )


def _cross_fitted_outcomes(learner, client, X, y, w) -> np.ndarray:
    """mu_k(x_i) ``(n, K)`` from fold models refitted by hand: row i of fold f is predicted
    by the model of variant k's rows outside fold f, whatever the variant of row i."""
    folds = client.compute(learner._fit_context.fold_frame).result()
    mu = np.empty((len(y), K))
    for k, cfe in enumerate(learner._nuisance_models[VOM]):
        fold = folds[cfe._split.fold_col].to_numpy()
        assert set(np.unique(fold)) == set(range(N_FOLDS)), "every row has a fold"
        for f in range(N_FOLDS):
            rows = (w == k) & (fold != f)
            model = LinearRegression().fit(X[rows], y[rows])
            mu[fold == f, k] = model.predict(X[fold == f])
    return mu


def test_dr_pseudo_outcomes_use_the_fold_models_on_every_row(client, data):
    X, y, w, (Xd, yd, wd) = data
    learner = _learner(
        DRLearner,
        client,
        cross_fit_all_rows=True,
        enable_overall={VOM: False, "propensity_model": False},
    ).fit(Xd, yd, wd)
    assert all(m._overall_estimator is None for m in learner._nuisance_models[VOM])
    report = learner.fit_report_
    outcome_folds = report.loc[report["model_kind"] == VOM, "fold"]
    assert len(outcome_folds) == K * N_FOLDS and outcome_folds.notna().all(), "no overall fit"
    mu = _cross_fitted_outcomes(learner, client, X, y, w)
    got = learner.predict_conditional_average_outcomes(Xd, is_oos=False).compute()[:, :, 0]
    np.testing.assert_allclose(got, mu, rtol=1e-9, atol=1e-9)
    e = learner.predict_nuisance(Xd, "propensity_model", 0, is_oos=False).compute()
    for k in range(1, K):
        phi = (y - mu[:, k]) / e[:, k] * (w == k) + mu[:, k]
        phi -= (y - mu[:, 0]) / e[:, 0] * (w == 0) + mu[:, 0]
        # a mean-only effect model trained on every row: the mean of the pseudo-outcomes
        effect = learner.predict(Xd, is_oos=True, oos_method="overall").compute()[:, k - 1, 0]
        np.testing.assert_allclose(effect, phi.mean(), rtol=1e-9)
        ate, se = learner.average_treatment_effect(Xd, yd, wd, is_oos=False)
        np.testing.assert_allclose(ate[k - 1], phi.mean(), rtol=1e-9)
        np.testing.assert_allclose(se[k - 1], phi.std() / np.sqrt(N), rtol=1e-7)
    # out of sample, without overall models: the mean of the fold models
    ate_oos, _ = learner.average_treatment_effect(Xd, yd, wd, is_oos=True)
    assert np.isfinite(ate_oos).all()
    scores = learner.evaluate(Xd, yd, wd, is_oos=False)
    assert len(scores) == K + 1 + K - 1 and np.isfinite(list(scores.values())).all()


def test_saved_learner_cross_predicts_after_loading(default_client, data, tmp_path):
    import dask_meta

    _, _, _, (Xd, yd, wd) = data
    learner = _learner(
        DRLearner, default_client, cross_fit_all_rows=True, enable_overall={VOM: False}
    ).fit(Xd, yd, wd)
    loaded = dask_meta.load(learner.save(tmp_path / "model"))
    assert loaded.cross_fit_all_rows is True
    for got, want in (
        (loaded.predict_conditional_average_outcomes, learner.predict_conditional_average_outcomes),
        (loaded.predict, learner.predict),
    ):
        assert np.array_equal(got(Xd, is_oos=False).compute(), want(Xd, is_oos=False).compute())


def test_default_predicts_other_variants_with_the_overall_model(client, data):
    """metalearners' rule, kept by default: the other variants' rows get the overall model,
    so the two settings differ exactly there."""
    X, y, w, (Xd, yd, wd) = data
    learner = _learner(DRLearner, client).fit(Xd, yd, wd)
    mu = _cross_fitted_outcomes(learner, client, X, y, w)
    got = learner.predict_conditional_average_outcomes(Xd, is_oos=False).compute()[:, :, 0]
    for k in range(K):
        own = w == k
        np.testing.assert_allclose(got[own, k], mu[own, k], rtol=1e-9, atol=1e-9)
        overall = LinearRegression().fit(X[own], y[own])
        np.testing.assert_allclose(got[~own, k], overall.predict(X[~own]), rtol=1e-9)
        assert not np.allclose(got[~own, k], mu[~own, k])


def test_x_imputed_effects_use_the_fold_models(client, data):
    X, y, w, (Xd, yd, wd) = data
    learner = _learner(XLearner, client, cross_fit_all_rows=True, enable_overall={VOM: False}).fit(
        Xd, yd, wd
    )
    mu = _cross_fitted_outcomes(learner, client, X, y, w)
    for k in range(1, K):
        treated = learner._treatment_models["treatment_effect_model"][k - 1]
        control = learner._treatment_models["control_effect_model"][k - 1]
        # D1 = y - mu_0 on the rows of k, D0 = mu_k - y on the control rows
        d1 = (y - mu[:, 0])[w == k].mean()
        d0 = (mu[:, k] - y)[w == 0].mean()
        got1 = treated.predict(Xd, is_oos=True, oos_method="overall").compute()
        got0 = control.predict(Xd, is_oos=True, oos_method="overall").compute()
        np.testing.assert_allclose(got1, d1, rtol=1e-9)
        np.testing.assert_allclose(got0, d0, rtol=1e-9)


def test_arguments_are_checked(client):
    with pytest.raises(TypeError, match="cross_fit_all_rows must be a bool"):
        _learner(DRLearner, client, cross_fit_all_rows="yes")
    with pytest.raises(ValueError, match='cross_fit_all_rows=True needs fold_strategy="partition"'):
        _learner(XLearner, client, cross_fit_all_rows=True, fold_strategy="sklearn")
    with pytest.raises(ValueError, match="enable_overall cannot be False for variant_outcome"):
        _learner(DRLearner, client, enable_overall={VOM: False})
    with pytest.raises(TypeError, match="cross_fit_all_rows"):
        _learner(TLearner, client, cross_fit_all_rows=True)
    learner = _learner(DRLearner, client, cross_fit_all_rows=True)
    assert learner.init_args["cross_fit_all_rows"] is True
    assert DRLearner(**learner.init_args).cross_fit_all_rows is True


def test_reused_outcome_models_without_overall_need_cross_fit_all_rows(client, data):
    """Outcome models fitted without overall models cannot serve a DR-learner that predicts
    the other variants' rows with them: a clear error before any model is fitted."""
    _, _, _, (Xd, yd, wd) = data
    shared = _learner(
        DRLearner, client, cross_fit_all_rows=True, enable_overall={VOM: False}
    ).fit_all_nuisance(Xd, yd, wd)
    outcome_models = shared._nuisance_models[VOM]
    with pytest.raises(ValueError, match="has no overall model"):
        _learner(DRLearner, client, fitted_nuisance_models={VOM: outcome_models}).fit(Xd, yd, wd)
    reused = _learner(
        DRLearner, client, cross_fit_all_rows=True, fitted_nuisance_models={VOM: outcome_models}
    ).fit(Xd, yd, wd)
    shared.fit_all_treatment(Xd, yd, wd)
    np.testing.assert_allclose(
        reused.predict(Xd, is_oos=False).compute(),
        shared.predict(Xd, is_oos=False).compute(),
        rtol=1e-9,
    )
