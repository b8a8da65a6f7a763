"""Parity of dask-meta's S- and T-learners with metalearners 0.13.0.

On metalearners' own synthetic reference setups (reference §7) and with deterministic base
models, dask-meta with ``fold_strategy="sklearn"`` must give metalearners' numbers: the CATE
(``predict``) and the conditional average outcomes (CAO), in-sample and out-of-sample with
every ``oos_method``, within 1e-8. Where metalearners raises (the median of class
probabilities), dask-meta must raise too.

dask-meta gets the data as numpy, as pandas and as a Dask DataFrame of several partitions;
metalearners as numpy and pandas (its Dask-input counterpart is its numpy run on the same
rows). The S-learner with LightGBM is the exception: metalearners 0.13.0 turns the
treatment into NaN for categorical-aware models (reference §3.2), so its CATE is identically
0; there the tests show that metalearners' CATE is 0, that dask-meta's is not and beats the
zero CATE, and that dask-meta equals metalearners with that one encoding bug patched out.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import dask.array as da
import dask.dataframe as dd
import metalearners
import metalearners.slearner
import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

import dask_meta
from dask_meta import simplify_output

pytestmark = pytest.mark.parity

SEED = 1337  # metalearners' tests' _SEED: fold splits and LogisticRegression
N_FOLDS = 10
OOS_METHODS = ("overall", "mean", "median")
PREDICT_METHODS = ("predict", "predict_conditional_average_outcomes")
ATOL = 1e-8

# Rows kept of each split (after metalearners' train_test_split of 100k rows): the linear
# models are cheap, LightGBM fits 11 models per cross-fit estimator on 2 cores.
LINEAR_ROWS = (20_000, 5_000)
LIGHTGBM_ROWS = (5_000, 2_000)
# Partitions of the Dask inputs: the training frame, the out-of-sample frame.
TRAIN_PARTITIONS = 4
TEST_PARTITIONS = 2

INPUTS = ("numpy", "pandas", "dask")


# --- base models ------------------------------------------------------------------------


def linear_model(is_classification: bool) -> tuple[type, dict[str, Any]]:
    """metalearners' test base models (``_linear_base_learner[_params]``)."""
    if is_classification:
        return LogisticRegression, {"random_state": SEED, "max_iter": 500}
    return LinearRegression, {}


def lightgbm_model(is_classification: bool) -> tuple[type, dict[str, Any]]:
    # force_col_wise: LightGBM otherwise picks row- or column-wise histograms by timing
    # both, which its docs name as a source of run-to-run differences with deterministic
    params = {
        "n_estimators": 20,
        "deterministic": True,
        "force_col_wise": True,
        "n_jobs": 1,
        "verbose": -1,
        "random_state": 1,
    }
    return (LGBMClassifier if is_classification else LGBMRegressor), params


FAMILIES: dict[str, tuple[Callable[[bool], tuple[type, dict[str, Any]]], tuple[int, int]]] = {
    "linear": (linear_model, LINEAR_ROWS),
    "lightgbm": (lightgbm_model, LIGHTGBM_ROWS),
}


# --- running both libraries ---------------------------------------------------------------

Outputs = dict[tuple[str, bool, str], tuple[str, Any]]


def prediction_keys() -> list[tuple[str, bool, str]]:
    return [(m, is_oos, o) for m in PREDICT_METHODS for is_oos in (False, True) for o in OOS_METHODS]


def learner_args(learner: str, exp: Any, family: str) -> tuple[tuple, dict[str, Any]]:
    factory, params = FAMILIES[family][0](exp.is_classification)
    args = (exp.is_classification, exp.n_variants, factory)
    kwargs = {"nuisance_model_params": params, "n_folds": N_FOLDS, "random_state": SEED}
    return args, kwargs


def inputs_for(exp: Any, kind: str) -> tuple[Any, Any, Any, Any]:
    """(X_train, y_train, w_train, X_test) in the given input kind."""
    if kind == "numpy":
        return exp.X_train, exp.y_train, exp.w_train, exp.X_test
    train, test = exp.train_frame(), exp.test_frame()
    if kind == "pandas":
        return train[exp.features], train["y"], train["w"], test
    assert kind == "dask"
    ddf = dd.from_pandas(train, npartitions=TRAIN_PARTITIONS)
    assert ddf.npartitions == TRAIN_PARTITIONS
    test_ddf = dd.from_pandas(test, npartitions=TEST_PARTITIONS)
    return ddf[exp.features], ddf["y"], ddf["w"], test_ddf


def run_all(learner: Any, X_train: Any, X_test: Any, *, lazy: bool) -> Outputs:
    """Every prediction: ``("value", ndarray)`` or ``("error", exception)``.

    ``lazy``: dask-meta on Dask input, whose outputs must be lazy Dask arrays; an error may
    then surface when building the graph or when computing it, so both count.
    """
    out: Outputs = {}
    for method, is_oos, oos_method in prediction_keys():
        X = X_test if is_oos else X_train
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = getattr(learner, method)(X, is_oos=is_oos, oos_method=oos_method)
                if lazy:
                    assert isinstance(result, da.Array), (
                        f"{method}(is_oos={is_oos}) on Dask input returned "
                        f"{type(result).__name__}, not a lazy Dask array"
                    )
                    result = result.compute()
        except (ValueError, TypeError, NotImplementedError) as exc:
            out[(method, is_oos, oos_method)] = ("error", exc)
        else:
            assert isinstance(result, np.ndarray), type(result)
            out[(method, is_oos, oos_method)] = ("value", result)
    return out


def fit_metalearners(
    learner: str, exp: Any, family: str, input_kind: str, cache: dict | None = None
) -> Outputs:
    """metalearners' outputs (memoised per setup, model family and input kind)."""
    key = (learner, exp.name, family, input_kind, len(exp.y_train), len(exp.X_test))
    if cache is not None and key in cache:
        return cache[key]
    args, kwargs = learner_args(learner, exp, family)
    X, y, w, X_test = inputs_for(exp, input_kind)
    model = getattr(metalearners, f"{learner}Learner")(*args, **kwargs)
    with warnings.catch_warnings():
        # metalearners 0.13 calls sklearn's deprecated is_classifier on classes
        warnings.simplefilter("ignore")
        model.fit(X, y, w)
    out = run_all(model, X, X_test, lazy=False)
    if cache is not None:
        cache[key] = out
    return out


def fit_dask_meta(
    learner: str, exp: Any, family: str, input_kind: str, client: Any
) -> tuple[Any, Outputs]:
    args, kwargs = learner_args(learner, exp, family)
    X, y, w, X_test = inputs_for(exp, input_kind)
    model = getattr(dask_meta, f"{learner}Learner")(
        *args, **kwargs, fold_strategy="sklearn", client=client
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y, w)
    return model, run_all(model, X, X_test, lazy=input_kind == "dask")


def parity_failures(ours: Outputs, theirs: Outputs) -> list[str]:
    """Every prediction where dask-meta differs from metalearners, described."""
    failures = []
    for key in prediction_keys():
        label = f"{key[0]}(is_oos={key[1]}, oos_method={key[2]!r})"
        (their_kind, their_value), (our_kind, our_value) = theirs[key], ours[key]
        if their_kind == "error":
            if our_kind != "error":
                failures.append(f"{label}: metalearners raises {their_value!r}; dask-meta does not")
            elif not isinstance(our_value, type(their_value)):
                failures.append(
                    f"{label}: metalearners raises {type(their_value).__name__}, dask-meta "
                    f"{our_value!r}"
                )
            continue
        if our_kind == "error":
            failures.append(f"{label}: dask-meta raises {our_value!r}; metalearners does not")
            continue
        if our_value.shape != their_value.shape:
            failures.append(
                f"{label}: shape {our_value.shape} (dask-meta) vs {their_value.shape} "
                "(metalearners)"
            )
            continue
        try:
            np.testing.assert_allclose(our_value, their_value, atol=ATOL, rtol=0)
        except AssertionError as exc:
            failures.append(f"{label}: {exc}")
    return failures


def check_expected_errors(exp: Any, theirs: Outputs) -> None:
    """The reference itself: only the median of class probabilities is refused (T-learner
    in-sample too: its other variants' rows are predicted out of sample)."""
    for (method, is_oos, oos_method), (kind, value) in theirs.items():
        if exp.is_classification and oos_method == "median" and is_oos:
            assert kind == "error" and "median" in str(value), (method, is_oos, value)
        elif not (exp.is_classification and oos_method == "median"):
            assert kind == "value", (method, is_oos, oos_method, value)


def rmse(estimate: np.ndarray, truth: np.ndarray) -> float:
    n = len(truth)
    return float(np.sqrt(np.mean((estimate.reshape(n, -1) - truth.reshape(n, -1)) ** 2)))


# --- the tests --------------------------------------------------------------------------


def test_reference_data_regenerated(setup, experiments):
    """The synthetic setups are metalearners' (sizes, variants, propensities, outcome kind)."""
    exp = experiments(setup)
    is_classification, propensity, tau = exp.is_classification, exp.propensity, exp.tau
    n_train = int(100_000 * 0.8)
    assert exp.X_train.shape == (n_train, 25) and exp.X_test.shape == (100_000 - n_train, 25)
    shares = np.bincount(exp.w_train) / n_train
    expected = np.array([1 - propensity, propensity] if isinstance(propensity, float) else propensity)
    np.testing.assert_allclose(shares, expected, atol=0.01)
    assert exp.cate_train.shape == (n_train, exp.n_variants - 1)
    if is_classification:
        assert set(np.unique(exp.y_train)) == {0, 1}
        assert np.all(np.abs(exp.cate_train) <= 1)
    if tau is not None:
        # constant effect: mu_k - mu_0 = tau_k for every row
        np.testing.assert_allclose(exp.cate_train, np.broadcast_to(tau, exp.cate_train.shape))


@pytest.mark.parametrize("input_kind", INPUTS)
@pytest.mark.parametrize("family", ["linear", "lightgbm"])
def test_tlearner_parity(family, setup, input_kind, experiments, default_client, client, cache):
    """T-learner: CATE and CAO equal metalearners' within 1e-8, in-sample and out-of-sample
    with every oos_method (median of probabilities: both raise)."""
    exp = experiments(setup).first(*FAMILIES[family][1])
    theirs = fit_metalearners(
        "T", exp, family, "numpy" if input_kind == "dask" else input_kind, cache
    )
    check_expected_errors(exp, theirs)
    _, ours = fit_dask_meta("T", exp, family, input_kind, client)
    failures = parity_failures(ours, theirs)
    assert not failures, "dask-meta TLearner differs from metalearners:\n" + "\n".join(failures)


@pytest.mark.parametrize("input_kind", INPUTS)
def test_slearner_parity_one_hot(setup, input_kind, experiments, default_client, client, cache):
    """S-learner with LinearRegression / LogisticRegression (one-hot treatment encoding):
    CATE and CAO equal metalearners' within 1e-8, in-sample and out-of-sample with every
    oos_method; where metalearners raises, dask-meta raises."""
    exp = experiments(setup).first(*LINEAR_ROWS)
    theirs = fit_metalearners(
        "S", exp, "linear", "numpy" if input_kind == "dask" else input_kind, cache
    )
    _, ours = fit_dask_meta("S", exp, "linear", input_kind, client)
    failures = parity_failures(ours, theirs)
    assert not failures, "dask-meta SLearner differs from metalearners:\n" + "\n".join(failures)


def _fixed_categorical_encoding(original: Callable) -> Callable:
    """metalearners' categorical treatment encoding with the §3.2 bug removed.

    metalearners casts w to string categories, then ``set_categories`` to the integer
    categories 0..K-1, which matches none of them: every value becomes NaN. Here the column
    is the treatment with categories 0..K-1, which is what the code means to build.
    """

    def encode(X: Any, w: Any, categories: list[int]) -> Any:
        out = original(X, w, categories)
        out["treatment"] = pd.Categorical(np.asarray(w).astype(int), categories=categories)
        return out

    return encode


@pytest.mark.parametrize("input_kind", INPUTS)
def test_slearner_lightgbm_fixes_metalearners_treatment_bug(
    setup, input_kind, experiments, default_client, client, cache, monkeypatch
):
    """S-learner with LightGBM (categorical treatment column).

    metalearners 0.13.0: the treatment column is all NaN, so its CATE is exactly 0 in- and
    out-of-sample. dask-meta: a non-zero CATE with a lower RMSE against the true CATE than
    the zero CATE; and equal (1e-8) to metalearners with only that encoding bug fixed.
    """
    exp = experiments(setup).first(*LIGHTGBM_ROWS)
    their_input = "numpy" if input_kind == "dask" else input_kind
    theirs = fit_metalearners("S", exp, "lightgbm", their_input, cache)
    _, ours = fit_dask_meta("S", exp, "lightgbm", input_kind, client)

    for (method, is_oos, oos_method), (kind, value) in theirs.items():
        if method != "predict" or kind == "error":
            continue
        assert np.all(value == 0), (
            f"metalearners' LightGBM S-learner CATE (is_oos={is_oos}, {oos_method}) is not "
            "identically 0: has the §3.2 bug been fixed upstream?"
        )

    checked = 0
    for (method, is_oos, oos_method), (kind, value) in ours.items():
        if method != "predict" or kind == "error":
            continue
        truth = exp.cate_test if is_oos else exp.cate_train
        estimate = simplify_output(value)
        assert np.mean(estimate != 0) > 0.9, (is_oos, oos_method)
        ours_rmse, zero_rmse = rmse(estimate, truth), rmse(np.zeros_like(truth), truth)
        assert ours_rmse < 0.9 * zero_rmse, (is_oos, oos_method, ours_rmse, zero_rmse)
        checked += 1
    assert checked == (6 if not exp.is_classification else 4)

    # exact parity with metalearners minus its encoding bug
    monkeypatch.setattr(
        metalearners.slearner,
        "_append_treatment_to_covariates_with_categorical",
        _fixed_categorical_encoding(
            metalearners.slearner._append_treatment_to_covariates_with_categorical
        ),
    )
    fixed = fit_metalearners("S", exp, "lightgbm", their_input, cache=None)
    failures = parity_failures(ours, fixed)
    assert not failures, (
        "dask-meta SLearner (LightGBM) differs from metalearners with its categorical "
        "treatment encoding fixed:\n" + "\n".join(failures)
    )


def test_explicit_client_without_default_client(experiments, client):
    """Passing ``client=`` is enough: no default client is needed to fit and predict.

    (Last in the file, so that ``pytest -x`` still runs the parity tests before it.)
    """
    from distributed import default_client

    with pytest.raises(ValueError):
        default_client()  # the session client is not the default one
    exp = experiments("continuous_y_multi_w_constant").first(2_000, 500)
    theirs = fit_metalearners("T", exp, "linear", "numpy")
    _, ours = fit_dask_meta("T", exp, "linear", "numpy", client)
    failures = parity_failures(ours, theirs)
    assert not failures, "\n".join(failures)
