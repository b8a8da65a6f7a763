"""Parity of dask-meta's X-, R- and DR-learners with metalearners 0.13.0.

metalearners' ``test_learner_synthetic`` setups (the data are regenerated as
in ``test_parity_st``), its base models (LinearRegression, LogisticRegression with
random_state 1337) and ``fold_strategy="sklearn"``: CATE and conditional average outcomes,
in-sample and out-of-sample with every ``oos_method``, equal metalearners' within 1e-8;
where metalearners raises, dask-meta raises. Also the DR ATE, the out-of-sample ATE cases
of ``test_learner_synthetic_oos_ate`` (all five learners), and the equalities of its test
suite: X CAO = T CAO without synchronisation, and results independent of ``n_jobs``.
"""

from __future__ import annotations

import warnings
from typing import Any

import dask.array as da
import dask.dataframe as dd
import metalearners
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from test_parity_st import SEED, SETUPS, generate_experiment

import dask_meta

pytestmark = pytest.mark.parity

ATOL = 1e-8
N_FOLDS = 10
ROWS = (4_000, 1_000)
OOS = ("overall", "mean", "median")
LEARNERS = ("XLearner", "RLearner", "DRLearner")


def experiment(memo: dict, name: str) -> Any:
    key = ("experiment", name)
    if key not in memo:
        memo[key] = generate_experiment(name)
    return memo[key].first(*ROWS)


def arguments(name: str, exp: Any) -> dict[str, Any]:
    """metalearners' test_learner_synthetic arguments for one learner."""
    if exp.is_classification:
        nuisance, nuisance_params = LogisticRegression, {"random_state": SEED, "max_iter": 500}
    else:
        nuisance, nuisance_params = LinearRegression, {}
    args: dict[str, Any] = {
        "is_classification": exp.is_classification,
        "n_variants": exp.n_variants,
        "nuisance_model_factory": nuisance,
        "nuisance_model_params": nuisance_params,
        "n_folds": N_FOLDS,
        "random_state": SEED,
    }
    if name in ("XLearner", "RLearner", "DRLearner"):
        args["treatment_model_factory"] = LinearRegression
        args["propensity_model_factory"] = LogisticRegression
        args["propensity_model_params"] = {"random_state": SEED, "max_iter": 500}
    return args


def predictions(learner: Any, X_train: Any, X_test: Any) -> dict[tuple, tuple[str, Any]]:
    out: dict[tuple, tuple[str, Any]] = {}
    for method in ("predict", "predict_conditional_average_outcomes"):
        for is_oos in (False, True):
            for oos_method in OOS:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        value = getattr(learner, method)(
                            X_test if is_oos else X_train, is_oos=is_oos, oos_method=oos_method
                        )
                        if isinstance(value, da.Array):
                            value = value.compute()
                    out[(method, is_oos, oos_method)] = ("value", np.asarray(value))
                except (ValueError, TypeError) as exc:
                    out[(method, is_oos, oos_method)] = ("error", exc)
    return out


def reference(memo: dict, name: str, setup: str, **fit_kwargs: Any) -> tuple[Any, dict]:
    key = ("metalearners", name, setup, tuple(sorted(fit_kwargs.items())))
    if key not in memo:
        exp = experiment(memo, setup)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learner = getattr(metalearners, name)(**arguments(name, exp))
            learner.fit(exp.X_train, exp.y_train, exp.w_train, **fit_kwargs)
        memo[key] = (learner, predictions(learner, exp.X_train, exp.X_test))
    return memo[key]


def assert_same(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    values = 0
    for key, (kind, value) in theirs.items():
        our_kind, our_value = ours[key]
        assert our_kind == kind, f"{key}: metalearners gives {kind}, dask-meta {our_kind}"
        if kind == "value":
            assert our_value.shape == value.shape, key
            np.testing.assert_allclose(our_value, value, atol=ATOL, rtol=0, err_msg=str(key))
            values += 1
    assert values >= 8  # in-sample and out-of-sample values were compared, not only errors


@pytest.mark.parametrize("setup", tuple(SETUPS))
@pytest.mark.parametrize("name", LEARNERS)
def test_synthetic_parity(name, setup, memo, client):
    """The test_learner_synthetic cases of X, R and DR (numpy input, as metalearners')."""
    exp = experiment(memo, setup)
    _, theirs = reference(memo, name, setup)
    ours = getattr(dask_meta, name)(**arguments(name, exp), fold_strategy="sklearn", client=client)
    ours.fit(exp.X_train, exp.y_train, exp.w_train)
    assert_same(predictions(ours, exp.X_train, exp.X_test), theirs)


@pytest.mark.parametrize("name", LEARNERS)
def test_dask_input_parity(name, memo, client):
    """The same numbers from a Dask DataFrame of several partitions (lazy outputs)."""
    setup = "continuous_y_multi_w_linear"
    exp = experiment(memo, setup)
    _, theirs = reference(memo, name, setup)
    train = dd.from_pandas(exp.train_frame(), npartitions=4)
    test = dd.from_pandas(exp.test_frame(), npartitions=2)
    ours = getattr(dask_meta, name)(**arguments(name, exp), fold_strategy="sklearn", client=client)
    ours.fit(train[exp.features], train["y"], train["w"])
    with client.as_current():
        assert_same(predictions(ours, train[exp.features], test), theirs)


@pytest.mark.parametrize("setup", ["continuous_y_binary_w_linear", "continuous_y_multi_w_linear"])
def test_dr_average_treatment_effect(setup, memo, client):
    exp = experiment(memo, setup)
    theirs, _ = reference(memo, "DRLearner", setup)
    ours = dask_meta.DRLearner(
        **arguments("DRLearner", exp), fold_strategy="sklearn", client=client
    ).fit(exp.X_train, exp.y_train, exp.w_train)
    for is_oos in (False, True):
        ate, se = theirs.average_treatment_effect(exp.X_train, exp.y_train, exp.w_train, is_oos)
        our_ate, our_se = ours.average_treatment_effect(
            exp.X_train, exp.y_train, exp.w_train, is_oos
        )
        np.testing.assert_allclose(our_ate, ate, atol=ATOL, rtol=0)
        np.testing.assert_allclose(our_se, se, atol=ATOL, rtol=0)


@pytest.mark.parametrize("setup", ["continuous_y_binary_w_linear", "continuous_y_multi_w_linear"])
@pytest.mark.parametrize("name", ["SLearner", "TLearner", *LEARNERS])
def test_oos_ate_cases(name, setup, memo, client):
    """test_learner_synthetic_oos_ate: the mean out-of-sample CATE per oos_method equals
    metalearners' (and is close to the true ATE, as its test asserts)."""
    exp = experiment(memo, setup)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = getattr(metalearners, name)(**arguments(name, exp))
        theirs.fit(exp.X_train, exp.y_train, exp.w_train)
    ours = getattr(dask_meta, name)(**arguments(name, exp), fold_strategy="sklearn", client=client)
    ours.fit(exp.X_train, exp.y_train, exp.w_train)
    for oos_method in OOS:
        ref = theirs.predict(exp.X_test, is_oos=True, oos_method=oos_method)
        got = ours.predict(exp.X_test, is_oos=True, oos_method=oos_method)
        np.testing.assert_allclose(got.mean(axis=0), ref.mean(axis=0), atol=ATOL, rtol=0)
        if name != "SLearner":  # S with LinearRegression cannot fit a linear CATE (§7)
            np.testing.assert_allclose(
                got[:, :, 0].mean(axis=0), exp.cate_test.mean(axis=0), atol=0.1, rtol=0.05
            )


def test_x_cao_equals_t_cao_without_synchronisation(memo, client):
    exp = experiment(memo, "continuous_y_multi_w_linear")
    x = dask_meta.XLearner(**arguments("XLearner", exp), fold_strategy="sklearn", client=client)
    x.fit(exp.X_train, exp.y_train, exp.w_train, synchronize_cross_fitting=False)
    t = dask_meta.TLearner(**arguments("TLearner", exp), fold_strategy="sklearn", client=client)
    t.fit(exp.X_train, exp.y_train, exp.w_train)
    for is_oos, X in ((False, exp.X_train), (True, exp.X_test)):
        np.testing.assert_allclose(
            x.predict_conditional_average_outcomes(X, is_oos),
            t.predict_conditional_average_outcomes(X, is_oos),
        )


@pytest.mark.parametrize("name", LEARNERS)
def test_n_jobs_do_not_change_results(name, memo, client):
    exp = experiment(memo, "continuous_y_binary_w_linear")
    _, theirs = reference(memo, name, "continuous_y_binary_w_linear")
    ours = getattr(dask_meta, name)(**arguments(name, exp), fold_strategy="sklearn", client=client)
    ours.fit(exp.X_train, exp.y_train, exp.w_train, n_jobs_cross_fitting=1, n_jobs_base_learners=1)
    assert_same(predictions(ours, exp.X_train, exp.X_test), theirs)


@pytest.mark.parametrize("name", LEARNERS)
def test_pairwise_propensity_parity(name, memo, client):
    """dask-meta's PairwisePropensityClassifier is an ordinary classifier to metalearners:
    with it as the propensity model of 5 variants, both packages give the same numbers."""
    setup = "continuous_y_multi_w_linear"
    exp = experiment(memo, setup)
    args = arguments(name, exp)
    args["propensity_model_factory"] = dask_meta.PairwisePropensityClassifier
    params = args.pop("propensity_model_params")
    args["propensity_model_params"] = {"estimator": LogisticRegression(**params)}
    assert exp.n_variants == 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference_learner = getattr(metalearners, name)(**args)
        reference_learner.fit(exp.X_train, exp.y_train, exp.w_train)
    theirs = predictions(reference_learner, exp.X_train, exp.X_test)
    ours = getattr(dask_meta, name)(**args, fold_strategy="sklearn", client=client)
    ours.fit(exp.X_train, exp.y_train, exp.w_train)
    assert_same(predictions(ours, exp.X_train, exp.X_test), theirs)
    # and it is not the multi-class model's CATE: the propensity model is a different one
    _, multiclass = reference(memo, name, setup)
    key = ("predict", False, "overall")
    assert not np.allclose(theirs[key][1], multiclass[key][1], atol=1e-6)
