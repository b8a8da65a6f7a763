"""``cv=``: metalearners' index lists per fold, for in-memory input.

Fold ``k`` trains on exactly its train rows; in-sample prediction gives each row the model
of the fold that holds it out. The expected values are scikit-learn models fitted here on
the same rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy.sparse import csr_matrix
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GroupKFold, KFold

from dask_meta import CrossFitEstimator, DRLearner, TLearner

N = 300
N_FOLDS = 3


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.normal(0, 0.3, N)
    w = rng.integers(0, 2, N)
    return X, y, w


def _reference(X, y, cv, factory=LinearRegression, method="predict"):
    """Per row, the prediction of a model fitted on its fold's train rows (sklearn)."""
    out = np.full(len(X), np.nan) if method == "predict" else np.full((len(X), 2), np.nan)
    for train, test in cv:
        out[test] = getattr(factory().fit(X[train], y[train]), method)(X[test])
    return out


@pytest.mark.parametrize("kind", ["numpy", "pandas", "polars", "csr"])
def test_fold_models_train_on_the_given_rows(client, kind):
    X, y, _ = _data()
    cv = list(KFold(N_FOLDS, shuffle=True, random_state=5).split(X))
    data = {
        "numpy": (X, y),
        "pandas": (pd.DataFrame(X, columns=list("abc")), pd.Series(y)),
        "polars": (pl.DataFrame(X, schema=list("abc")), pl.Series(y)),
        "csr": (csr_matrix(X), y),
    }[kind]
    cfe = CrossFitEstimator(N_FOLDS, LinearRegression, client=client).fit(*data, cv=cv)
    for model, (train, _) in zip(cfe._estimators, cv, strict=True):
        np.testing.assert_allclose(model.coef_, LinearRegression().fit(X[train], y[train]).coef_)
    np.testing.assert_allclose(cfe.predict(data[0], is_oos=False), _reference(X, y, cv))
    np.testing.assert_allclose(
        cfe.predict(data[0], is_oos=True, oos_method="overall"),
        LinearRegression().fit(X, y).predict(X),
    )
    folds_mean = np.mean([m.predict(X) for m in cfe._estimators], axis=0)
    np.testing.assert_allclose(cfe.predict(data[0], is_oos=True, oos_method="mean"), folds_mean)


def test_splitter_and_boolean_masks(client):
    """A splitter's ``split(X, y)`` (GroupKFold here) and boolean masks give the same folds."""
    X, y, _ = _data()
    groups = np.arange(N) % 7
    splitter = GroupKFold(N_FOLDS)
    cv = list(splitter.split(X, y, groups))
    masks = [(np.isin(np.arange(N), tr), np.isin(np.arange(N), te)) for tr, te in cv]
    by_masks = CrossFitEstimator(N_FOLDS, LinearRegression, client=client).fit(X, y, cv=masks)
    np.testing.assert_allclose(by_masks.predict(X, is_oos=False), _reference(X, y, cv))


def test_classifier_in_sample_probabilities(client):
    X, y, _ = _data()
    labels = (y > 0).astype(int)
    cv = list(KFold(N_FOLDS, shuffle=True, random_state=1).split(X))
    cfe = CrossFitEstimator(N_FOLDS, LogisticRegression, client=client).fit(X, labels, cv=cv)
    np.testing.assert_allclose(
        cfe.predict_proba(X, is_oos=False),
        _reference(X, labels, cv, LogisticRegression, "predict_proba"),
    )


def test_rows_no_fold_holds_out(client):
    """Rows in no test set train every fold model; in-sample prediction then raises (it
    has no model for them), out-of-sample prediction works."""
    X, y, _ = _data()
    kept = np.arange(10, N)
    cv = [
        (np.setdiff1d(np.arange(N), kept[test]), kept[test])
        for _, test in KFold(N_FOLDS).split(kept)
    ]
    cfe = CrossFitEstimator(N_FOLDS, LinearRegression, client=client).fit(X, y, cv=cv)
    assert cfe._unheld_rows == 10
    for model, (train, _) in zip(cfe._estimators, cv, strict=True):
        np.testing.assert_allclose(model.coef_, LinearRegression().fit(X[train], y[train]).coef_)
    with pytest.raises(ValueError, match="10 rows are in no test set of the cv"):
        cfe.predict(X, is_oos=False)
    mean = np.mean([LinearRegression().fit(X[tr], y[tr]).predict(X) for tr, _ in cv], axis=0)
    np.testing.assert_allclose(cfe.predict(X, is_oos=True, oos_method="mean"), mean)


def test_one_fold_ignores_cv(client):
    """metalearners ignores cv without cross-fitting: only the overall model is fitted."""
    X, y, _ = _data()
    cfe = CrossFitEstimator(1, LinearRegression, client=client).fit(X, y, cv=[([0], [1])])
    np.testing.assert_allclose(
        cfe.predict(X, is_oos=True, oos_method="overall"),
        LinearRegression().fit(X, y).predict(X),
    )


def test_learner_fit_nuisance_and_treatment_with_cv(client):
    X, y, w = _data()
    rows = np.flatnonzero(w == 1)
    cv = list(KFold(N_FOLDS, shuffle=True, random_state=2).split(rows))
    learner = TLearner(False, 2, LinearRegression, n_folds=N_FOLDS, client=client)
    learner.fit_nuisance(X[rows], y[rows], "variant_outcome_model", 1, cv=cv)
    model = learner._nuisance_models["variant_outcome_model"][1]
    np.testing.assert_allclose(
        model.predict(X[rows], is_oos=False), _reference(X[rows], y[rows], cv)
    )
    dr = DRLearner(
        False,
        2,
        LinearRegression,
        LinearRegression,
        LogisticRegression,
        n_folds=N_FOLDS,
        client=client,
    )
    all_cv = list(KFold(N_FOLDS, shuffle=True, random_state=3).split(X))
    dr.fit_treatment(X, y, "treatment_model", 0, cv=all_cv)
    np.testing.assert_allclose(
        dr._treatment_models["treatment_model"][0].predict(X, is_oos=False),
        _reference(X, y, all_cv),
    )


def test_reusing_a_cv_fitted_nuisance_model_is_a_clear_error(client):
    """A learner's fit cannot draw the folds of index lists again: it says so."""
    X, y, w = _data()
    dr = DRLearner(
        False,
        2,
        LinearRegression,
        LinearRegression,
        LogisticRegression,
        n_folds=N_FOLDS,
        client=client,
    ).fit_all_nuisance(X, y, w)
    dr.fit_nuisance(X, w, "propensity_model", 0, cv=list(KFold(N_FOLDS).split(X)))
    with pytest.raises(ValueError, match="propensity_model model was fitted with cv="):
        dr.fit_all_treatment(X, y, w)


def test_sparse_in_sample_without_a_client():
    """Sparse X, ``cv=`` and no client: the in-sample prediction computes (dask.array's
    linear fusion once failed on this graph)."""
    X, y, _ = _data()
    cv = list(KFold(N_FOLDS, shuffle=True, random_state=5).split(X))
    cfe = CrossFitEstimator(N_FOLDS, LinearRegression).fit(csr_matrix(X), y, cv=cv)
    np.testing.assert_allclose(cfe.predict(csr_matrix(X), is_oos=False), _reference(X, y, cv))
