"""evaluate(): metalearners' keys, values from sums over partitions, gathered scorers, errors.

Parity of the values with metalearners itself is in tests/parity/test_parity_evaluate.py.
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from conftest import make_linear_data
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import make_scorer, root_mean_squared_error

from dask_meta import DRLearner, RLearner, SLearner, TLearner, XLearner

LEARNERS = {"S": SLearner, "T": TLearner, "X": XLearner, "R": RLearner, "DR": DRLearner}
RMSE = "neg_root_mean_squared_error"
LOG_LOSS = "neg_log_loss"


def _learner(name, classification=False, n_variants=3, client=None):
    outcome = LogisticRegression if classification else LinearRegression
    args = {"nuisance_model_factory": outcome, "n_folds": 2, "random_state": 0, "client": client}
    if name in ("X", "R", "DR"):
        args |= {
            "treatment_model_factory": LinearRegression,
            "propensity_model_factory": LogisticRegression,
        }
    return LEARNERS[name](classification, n_variants, **args)


def expected_keys(name: str, n_variants: int, classification: bool) -> set[str]:
    """Written out from metalearners' documented key format of ``evaluate``."""
    outcome = LOG_LOSS if classification else RMSE
    variants = range(n_variants)
    effects = range(1, n_variants)
    if name == "S":
        return {f"base_model_{outcome}"}
    keys = {f"variant_outcome_model_{k}_{outcome}" for k in variants} if name != "R" else set()
    if name == "X":
        keys |= {f"propensity_model_{LOG_LOSS}"}
        keys |= {f"treatment_effect_model_{k}_vs_0_{RMSE}" for k in effects}
        keys |= {f"control_effect_model_{k}_vs_0_{RMSE}" for k in effects}
    if name == "R":
        keys = {f"outcome_model_{outcome}", f"propensity_model_{LOG_LOSS}"}
        keys |= {f"treatment_model_{k}_vs_0_{RMSE}" for k in effects}
        keys |= {f"r_loss_{k}_vs_0" for k in effects}
    if name == "DR":
        keys |= {f"propensity_model_{LOG_LOSS}"}
        keys |= {f"treatment_model_{k}_vs_0_{RMSE}" for k in effects}
    return keys


@pytest.fixture(scope="module")
def data():
    X, y, w, _ = make_linear_data(n=1_200, d=3, n_variants=3)
    return X, y, w


@pytest.fixture(scope="module")
def binary_data():
    X, y, w, _ = make_linear_data(n=1_200, d=3, n_variants=2, classification=True)
    return X, y, w


@pytest.mark.parametrize("name", list(LEARNERS))
def test_keys_for_multi_variant_regression(name, data, client):
    X, y, w = data
    learner = _learner(name, client=client).fit(X, y, w)
    for is_oos in (False, True):
        result = learner.evaluate(X, y, w, is_oos=is_oos)
        assert set(result) == expected_keys(name, 3, False)
        assert all(np.isfinite(v) for v in result.values())


@pytest.mark.parametrize("name", list(LEARNERS))
def test_keys_for_binary_classification(name, binary_data, client):
    X, y, w = binary_data
    learner = _learner(name, classification=True, n_variants=2, client=client).fit(X, y, w)
    result = learner.evaluate(X, y, w, is_oos=False)
    assert set(result) == expected_keys(name, 2, True)


def test_t_learner_values_are_sklearn_on_the_cross_fitted_predictions(data, client):
    """Independent of dask-meta's sums: sklearn's metric on predict_nuisance's output."""
    X, y, w = data
    learner = _learner("T", client=client).fit(X, y, w)
    for is_oos in (False, True):
        result = learner.evaluate(X, y, w, is_oos=is_oos, oos_method="mean")
        for k in range(3):
            prediction = learner.predict_nuisance(
                X, "variant_outcome_model", k, is_oos=is_oos, oos_method="mean"
            )
            rows = w == k
            expected = -root_mean_squared_error(y[rows], prediction[rows])
            assert result[f"variant_outcome_model_{k}_{RMSE}"] == pytest.approx(expected, 1e-12)


def test_propensity_log_loss_is_sklearns(data, client):
    from sklearn.metrics import log_loss

    X, y, w = data
    learner = _learner("DR", client=client).fit(X, y, w)
    proba = learner.predict_nuisance(X, "propensity_model", 0, is_oos=False)
    expected = -log_loss(w, proba)
    result = learner.evaluate(X, y, w, is_oos=False)
    assert result[f"propensity_model_{LOG_LOSS}"] == pytest.approx(expected, rel=1e-12)


def test_summed_and_gathered_scorers_agree(data, client):
    """The same metric as a summed name and as a callable run in one task on a worker;
    with weights (the R-learner's treatment models) too."""
    X, y, w = data
    learner = _learner("R", client=client).fit(X, y, w)
    gathered = make_scorer(root_mean_squared_error, greater_is_better=False)
    scoring = {"treatment_model": [RMSE, gathered], "outcome_model": [RMSE, gathered]}
    for is_oos in (False, True):
        result = learner.evaluate(X, y, w, is_oos=is_oos, scoring=scoring)
        for kind in ("treatment_model_1_vs_0_", "treatment_model_2_vs_0_", "outcome_model_"):
            assert result[f"{kind}custom_scorer_1"] == pytest.approx(
                result[f"{kind}{RMSE}"], rel=1e-12
            )


def test_dask_input_gives_the_in_memory_values(data, client):
    X, y, w = data
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=y, w=w)
    ddf = dd.from_pandas(frame, npartitions=3)
    learner = _learner("X", client=client).fit(ddf[["a", "b", "c"]], ddf["y"], ddf["w"])
    lazy = learner.evaluate(ddf[["a", "b", "c"]], ddf["y"], ddf["w"], is_oos=False)
    eager = learner.evaluate(frame[["a", "b", "c"]], y, w, is_oos=True)
    in_memory_oos = learner.evaluate(ddf[["a", "b", "c"]], ddf["y"], ddf["w"], is_oos=True)
    assert lazy.keys() == eager.keys()
    for key in eager:
        assert in_memory_oos[key] == pytest.approx(eager[key], rel=1e-12)


def test_user_scoring_replaces_the_default_per_kind(data, client):
    X, y, w = data
    learner = _learner("T", client=client).fit(X, y, w)
    result = learner.evaluate(
        X, y, w, is_oos=False, scoring={"variant_outcome_model": ["r2"], "unknown_kind": ["r2"]}
    )
    assert set(result) == {f"variant_outcome_model_{k}_r2" for k in range(3)}
    assert learner.evaluate(X, y, w, is_oos=False, scoring={"variant_outcome_model": []}) == {}


@pytest.mark.parametrize(
    ("scoring", "error", "match"),
    [
        ({"variant_outcome_model": ["no_such_scorer"]}, ValueError, "unknown sklearn scorer"),
        ({"variant_outcome_model": "r2"}, TypeError, "must be a list"),
        ({"variant_outcome_model": [3]}, TypeError, "neither a scorer name nor a callable"),
        (["r2"], TypeError, "scoring must be a dict"),
        ({"variant_outcome_model": [LOG_LOSS]}, ValueError, "needs predict_proba"),
    ],
)
def test_bad_scoring_is_rejected(data, client, scoring, error, match):
    X, y, w = data
    learner = _learner("T", client=client).fit(X, y, w)
    with pytest.raises(error, match=match):
        learner.evaluate(X, y, w, is_oos=False, scoring=scoring)


def test_evaluate_before_fit_and_on_other_data(data, client):
    X, y, w = data
    learner = _learner("T", client=client)
    with pytest.raises(ValueError, match="not fitted"):
        learner.evaluate(X, y, w, is_oos=False)
    learner.fit(X, y, w)
    with pytest.raises(ValueError, match="exactly the training data"):
        learner.evaluate(X[::-1].copy(), y, w, is_oos=False)
