"""PairwisePropensityClassifier: one binary model per treatment variant against control."""

from __future__ import annotations

import time

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from conftest import make_linear_data
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, LogisticRegression

import dask_meta
from dask_meta.backends import (
    Design,
    FitSpec,
    RowSelection,
    calibrate_fit,
    calibration_params,
    thread_param_name,
)
from dask_meta.models import PairwisePropensityClassifier


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3_000, 4))
    logits = np.column_stack([np.zeros(len(X)), X[:, 0], 0.5 - X[:, 1]])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    w = np.array([rng.choice(3, p=row) for row in p])
    return X, w


def test_each_treatment_class_is_learned_on_its_rows_and_the_controls(data):
    X, w = data
    model = PairwisePropensityClassifier(LogisticRegression()).fit(X, w)
    e = model.predict_proba(X)
    assert e.shape == (len(X), 3)
    np.testing.assert_allclose(e.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    for k in (1, 2):
        pair = np.isin(w, (0, k))
        direct = LogisticRegression().fit(X[pair], (w[pair] == k).astype(int))
        # the binarised propensity e_k / (e_0 + e_k) is the pair model's own estimate
        np.testing.assert_allclose(
            e[:, k] / (e[:, 0] + e[:, k]), direct.predict_proba(X)[:, 1], rtol=1e-10
        )
    np.testing.assert_array_equal(model.predict(X), np.argmax(e, axis=1))


def test_with_two_classes_it_is_the_estimator_itself(data):
    X, w = data
    pair = w < 2
    model = PairwisePropensityClassifier(LogisticRegression()).fit(X[pair], w[pair])
    direct = LogisticRegression().fit(X[pair], w[pair])
    np.testing.assert_allclose(model.predict_proba(X), direct.predict_proba(X), rtol=1e-12)


def test_sample_weights_and_frames_follow_the_pair_rows(data):
    X, w = data
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    model = PairwisePropensityClassifier(LogisticRegression()).fit(frame, w, sample_weight=weight)
    assert model.feature_names_in_.tolist() == ["a", "b", "c", "d"]
    assert model.n_features_in_ == 4
    pair = np.isin(w, (0, 2))
    direct = LogisticRegression().fit(
        frame[pair], (w[pair] == 2).astype(int), sample_weight=weight[pair]
    )
    np.testing.assert_allclose(model.pair_proba(frame)[:, 1], direct.predict_proba(frame)[:, 1])


def test_string_classes_take_the_first_as_control():
    X, _, _, _ = make_linear_data(n=600, d=3)
    y = np.random.default_rng(1).choice(["control", "high", "low"], len(X))
    model = PairwisePropensityClassifier(LogisticRegression()).fit(X, y)
    assert model.classes_.tolist() == ["control", "high", "low"]
    assert set(model.predict(X)) <= {"control", "high", "low"}


def test_threads_go_to_the_estimators_thread_parameter(data):
    X, w = data
    model = PairwisePropensityClassifier(lgb.LGBMClassifier(n_estimators=5, verbose=-1), n_jobs=2)
    model.fit(X, w)
    params = model.estimators_[0].get_params()
    # LightGBM's process-wide thread count stays unset (num_threads=0): see backends
    assert (params["n_jobs"], params["num_threads"]) == (2, 0)
    assert model.estimator.get_params()["n_jobs"] is None  # the template is not changed
    linear = PairwisePropensityClassifier(LogisticRegression(), n_jobs=2).fit(X, w)
    assert linear.estimators_[0].get_params()["n_jobs"] is None  # it takes no threads
    # the plan sets the wrapper's n_jobs
    assert thread_param_name(PairwisePropensityClassifier, {}) == "n_jobs"


def test_calibration_times_the_estimator_with_fewer_rounds():
    params = {"estimator": lgb.LGBMClassifier(n_estimators=100, learning_rate=0.2)}
    timed, scale = calibration_params(PairwisePropensityClassifier, params)
    assert scale == 5.0
    assert timed["estimator"].get_params()["n_estimators"] == 20
    assert timed["estimator"].get_params()["learning_rate"] == 0.2
    assert params["estimator"].get_params()["n_estimators"] == 100


#: (rows, labels) of every fit of a _SlowPair, in order
_PAIR_FITS: list[tuple[int, set]] = []
_PAIR_SECONDS = 0.05


class _SlowPair(LogisticRegression):
    """A binary classifier whose fits take at least ``_PAIR_SECONDS`` and are recorded."""

    def fit(self, X, y, sample_weight=None):
        _PAIR_FITS.append((len(X), set(np.unique(y).tolist())))
        time.sleep(_PAIR_SECONDS)
        return super().fit(X, y, sample_weight)


def test_calibration_times_the_first_pair_for_all_pairs(data):
    """The cost model times a pairwise model's first pair (control and class 1 rows of its
    sample) and counts that time once per pair: fewer fits, the whole model's cost."""
    X, w = data
    columns = ("a", "b", "c", "d")
    frame = pd.DataFrame(X, columns=list(columns)).assign(w=w)
    spec = FitSpec(
        PairwisePropensityClassifier,
        {"estimator": _SlowPair()},
        Design(columns, False),
        "w",
        RowSelection(None),
        1,
        "n_jobs",
        is_classifier=True,
    )
    _PAIR_FITS.clear()
    sizes, seconds_1, seconds_n, scale = calibrate_fit(spec, (500, 2_000), 1, 0, frame)
    assert sizes == (500, 2_000) and scale == 1.0
    # one thread: a warm-up, the small size, the larger size twice; one pair each
    share = np.isin(w, (0, 1)).mean()
    assert [rows for rows, _ in _PAIR_FITS] == pytest.approx(
        [500 * share, 500 * share, 2_000 * share, 2_000 * share], rel=0.15
    )
    assert all(labels == {0, 1} for _, labels in _PAIR_FITS)
    # each timed fit is counted for both pairs
    assert min(seconds_1) >= 2 * _PAIR_SECONDS
    assert seconds_n == seconds_1
    # a sample with one class has no pair to time: the cost model goes without this model
    assert calibrate_fit(spec, (500, 2_000), 1, 0, frame[frame["w"] == 0]) is None


def test_clone_keeps_the_arguments():
    model = PairwisePropensityClassifier(LogisticRegression(C=0.5), n_jobs=3)
    copy = clone(model)
    assert copy.n_jobs == 3 and copy.estimator.C == 0.5 and copy.estimator is not model.estimator


@pytest.mark.parametrize(
    ("estimator", "y", "error", "match"),
    [
        (LinearRegression(), [0, 1, 2] * 10, TypeError, "no predict_proba"),
        (LogisticRegression(), [1] * 30, ValueError, "single class"),
        (LogisticRegression(), np.zeros((30, 2)), ValueError, "one column"),
    ],
)
def test_bad_input_is_rejected(estimator, y, error, match):
    X = np.random.default_rng(0).normal(size=(30, 2))
    with pytest.raises(error, match=match):
        PairwisePropensityClassifier(estimator).fit(X, np.asarray(y))


@pytest.mark.parametrize("cls", [dask_meta.XLearner, dask_meta.RLearner, dask_meta.DRLearner])
def test_learners_fit_it_as_their_propensity_model(client, cls):
    """On the cluster, with the plan setting its threads: the learner's propensity model is
    the pairwise one (its in-sample estimates are the cross-fitted pair models')."""
    X, y, w, tau = make_linear_data(n=3_000, d=4, n_variants=3)
    learner = cls(
        is_classification=False,
        n_variants=3,
        nuisance_model_factory=LinearRegression,
        treatment_model_factory=LinearRegression,
        propensity_model_factory=PairwisePropensityClassifier,
        propensity_model_params={"estimator": LogisticRegression()},
        n_folds=2,
        random_state=0,
        client=client,
        plan="auto",
    ).fit(X, y, w)
    cate = np.asarray(learner.predict(X, is_oos=False))[:, :, 0]
    assert cate.shape == (len(X), 2)
    assert np.sqrt(np.mean((cate - tau) ** 2)) < 0.35 * tau.std()
    propensity = learner._nuisance_models["propensity_model"][0]
    overall = propensity._overall_estimator
    assert isinstance(overall, PairwisePropensityClassifier)
    assert len(overall.estimators_) == 2
    assert overall.n_jobs == 1


@pytest.mark.parametrize("pairwise", [False, True])
def test_calibration_of_shared_bins_fits_trains_on_one_binned_dataset(data, monkeypatch, pairwise):
    """A LightGBM model whose fits share a binned Dataset is timed as they fit: every timed
    fit trains on rows of one Dataset of the larger size's rows, binned before the timings,
    without binning rows of its own."""
    from dask_meta.backends import calibration

    X, w = data
    columns = ("a", "b", "c", "d")
    frame = pd.DataFrame(X, columns=list(columns)).assign(w=w, y=X[:, 0] + w)
    params = {"n_estimators": 5, "verbose": -1}
    factory, target = lgb.LGBMRegressor, "y"
    if pairwise:
        factory, params, target = (
            PairwisePropensityClassifier,
            {"estimator": lgb.LGBMClassifier(**params)},
            "w",
        )
    spec = FitSpec(
        factory,
        params,
        Design(columns, False),
        target,
        RowSelection(None),
        1,
        "n_jobs",
        is_classifier=pairwise,
        bins="fit|bins",
    )
    fits: list[tuple[int, int, np.ndarray]] = []
    real = calibration.fit_on_subset

    def recorded(model, dataset, rows, X_rows, label, kwargs):
        fits.append((dataset.num_data(), len(rows), np.asarray(rows)))
        real(model, dataset, rows, X_rows, label, kwargs)
        # a model of the Dataset's features, fitted on the subset's labels
        assert model.n_features_in_ == len(columns) and len(label) == len(rows)

    monkeypatch.setattr(calibration, "fit_on_subset", recorded)
    sizes, seconds_1, _, _ = calibrate_fit(spec, (500, 2_000), 1, 0, frame)
    assert sizes == (500, 2_000) and min(seconds_1) > 0
    # a warm-up, the small size and the larger size twice, on one Dataset of 2,000 rows
    assert [n for n, _, _ in fits] == [2_000] * 4
    share = np.isin(w, (0, 1)).mean() if pairwise else 1.0
    assert [k for _, k, _ in fits] == pytest.approx(
        [500 * share, 500 * share, 2_000 * share, 2_000 * share], rel=0.15
    )
    assert all(np.all(np.diff(rows) > 0) and rows[-1] < 2_000 for _, _, rows in fits)
