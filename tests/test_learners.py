"""The five learners (dask_meta/learners/): shapes, accuracy on linear data, the X/T
identity, model reuse, parallelism settings, stage-wise fitting, the ATE, init_args, r_loss.

Small data (n = 2000, d = 4) and linear models; the learners run on the session
LocalCluster (2 workers x 1 thread).
"""

from __future__ import annotations

import pickle

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from _models import SlowRegressor
from conftest import make_linear_data
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import DRLearner, RLearner, SLearner, TLearner, XLearner, r_loss
from dask_meta.planner import REPORT_COLUMNS

N = 2000
K = 3
LEARNERS = {"S": SLearner, "T": TLearner, "X": XLearner, "R": RLearner, "DR": DRLearner}
WITH_TREATMENT_STAGE = ("X", "R", "DR")
VOM = "variant_outcome_model"


def make(name, *, classification=False, n_variants=K, n_folds=3, random_state=0, **kwargs):
    """A learner with linear base models (logistic where a classifier is needed)."""
    outcome = LogisticRegression if classification else LinearRegression
    args = {"n_folds": n_folds, "random_state": random_state}
    if name in WITH_TREATMENT_STAGE:
        args |= {
            "treatment_model_factory": LinearRegression,
            "propensity_model_factory": LogisticRegression,
        }
    args |= kwargs
    return LEARNERS[name](classification, n_variants, outcome, **args)


def assert_identical(actual, expected, what="") -> None:
    """Bitwise equality, with the size of any difference in the message."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    if not np.array_equal(actual, expected):
        diff = np.abs(actual - expected)
        raise AssertionError(
            f"{what}: {int((diff > 0).sum())} of {diff.size} values differ, "
            f"max abs difference {diff.max():.3g}"
        )


def _rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


@pytest.fixture(scope="module")
def data():
    return make_linear_data(n=N, d=4, n_variants=K, seed=0)


def _predictions(learner, X):
    return {
        "cate_in": learner.predict(X, is_oos=False),
        "cate_oos": learner.predict(X, is_oos=True),
        "cao_in": learner.predict_conditional_average_outcomes(X, is_oos=False),
        "cao_oos": learner.predict_conditional_average_outcomes(X, is_oos=True),
    }


@pytest.fixture(scope="module")
def regression_fits(client, data):
    X, y, w, _ = data
    out = {}
    for name in LEARNERS:
        learner = make(name, client=client).fit(X, y, w)
        out[name] = (learner, _predictions(learner, X))
    return out


@pytest.fixture(scope="module")
def classification_fits(client):
    X, y, w, _ = make_linear_data(n=N, d=4, n_variants=K, seed=1, classification=True)
    out = {}
    for name in LEARNERS:
        learner = make(name, classification=True, client=client).fit(X, y, w)
        out[name] = (learner, _predictions(learner, X))
    return out


# --- shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LEARNERS))
def test_regression_shapes(regression_fits, name):
    _, p = regression_fits[name]
    for key in ("cate_in", "cate_oos"):
        assert isinstance(p[key], np.ndarray)
        assert p[key].shape == (N, K - 1, 1), key
        assert np.isfinite(p[key]).all()
    for key in ("cao_in", "cao_oos"):
        assert isinstance(p[key], np.ndarray)
        assert p[key].shape == (N, K, 1), key
        assert np.isfinite(p[key]).all()
    if name in ("S", "T", "R"):
        # these define the CATE through the conditional average outcomes
        for mode in ("in", "oos"):
            cao = p[f"cao_{mode}"]
            np.testing.assert_allclose(p[f"cate_{mode}"], cao[:, 1:] - cao[:, [0]], atol=1e-10)
    # in-sample (cross-fitted) and out-of-sample (overall model) predictions differ
    assert not np.array_equal(p["cate_in"], p["cate_oos"])


@pytest.mark.parametrize("name", ["T", "X", "R", "DR"])
def test_rmse_against_true_cate(regression_fits, data, name):
    """Linear outcomes and effects, noise sd 0.5: the CATE is recovered closely (the true
    effects have standard deviations 1 and 2)."""
    tau = data[3]
    _, p = regression_fits[name]
    for key in ("cate_in", "cate_oos"):
        error = _rmse(p[key][:, :, 0], tau)
        assert error < 0.2, (key, error)
    # and far better than ignoring heterogeneity
    assert _rmse(p["cate_in"][:, :, 0], tau) < 0.2 * _rmse(tau.mean(axis=0), tau)


@pytest.mark.parametrize("name", list(LEARNERS))
def test_binary_classification_shapes(classification_fits, name):
    _, p = classification_fits[name]
    for mode in ("in", "oos"):
        cate, cao = p[f"cate_{mode}"], p[f"cao_{mode}"]
        assert cate.shape == (N, K - 1, 2)
        assert cao.shape == (N, K, 2)
        assert np.isfinite(cate).all() and np.isfinite(cao).all()
        if name in WITH_TREATMENT_STAGE:
            # X, R and DR estimate tau = P(Y=1) effect and return [-tau, tau]
            assert np.array_equal(cate[..., 0], -cate[..., 1])
        else:
            # probability differences: the classes of each row sum to 0
            np.testing.assert_allclose(cate.sum(axis=2), 0, atol=1e-12)
        if name != "R":
            # outcome probabilities (the R-learner's CAO is m - sum e_k tau_k, not a
            # probability vector per variant)
            np.testing.assert_allclose(cao.sum(axis=2), 1, atol=1e-12)
            assert (cao >= 0).all() and (cao <= 1).all()


@pytest.mark.parametrize("name", ["S", "T"])
def test_multiclass_conditional_average_outcomes(client, name):
    X, y, w, _ = make_linear_data(n=N, d=4, n_variants=K, seed=2)
    y = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    assert set(np.unique(y)) == {0, 1, 2}
    learner = make(name, classification=True, client=client).fit(X, y, w)
    for is_oos in (False, True):
        cao = learner.predict_conditional_average_outcomes(X, is_oos=is_oos)
        cate = learner.predict(X, is_oos=is_oos)
        assert cao.shape == (N, K, 3)
        assert cate.shape == (N, K - 1, 3)
        np.testing.assert_allclose(cao.sum(axis=2), 1, atol=1e-12)
        np.testing.assert_allclose(cate, cao[:, 1:] - cao[:, [0]], atol=1e-12)
        np.testing.assert_allclose(cate.sum(axis=2), 0, atol=1e-12)


# --- Dask in, Dask out --------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_data():
    """900 rows in three unequal partitions (150, 350, 400)."""
    X, y, w, _ = make_linear_data(n=900, d=4, n_variants=K, seed=3)
    pdf = pd.DataFrame(X, columns=[f"x{i}" for i in range(4)])
    pdf["y"] = y
    pdf["w"] = w
    ddf = dd.from_pandas(pdf, npartitions=1, sort=True).repartition(divisions=[0, 150, 500, 899])
    assert ddf.npartitions == 3
    return pdf, ddf


@pytest.mark.parametrize("name", list(LEARNERS))
def test_dask_input_gives_lazy_dask_arrays(client, dask_data, name):
    pdf, ddf = dask_data
    features = [f"x{i}" for i in range(4)]
    lengths = (150, 350, 400)
    learner = make(name, client=client).fit(ddf[features], ddf["y"], ddf["w"])
    X = ddf[features]
    cate_in = learner.predict(X, is_oos=False)
    cao_in = learner.predict_conditional_average_outcomes(X, is_oos=False)
    cate_oos = learner.predict(X, is_oos=True)
    for result, tail in ((cate_in, (K - 1, 1)), (cao_in, (K, 1)), (cate_oos, (K - 1, 1))):
        assert isinstance(result, da.Array)
        assert result.shape[1:] == tail
    assert cate_in.chunks[0] == lengths
    assert cao_in.chunks[0] == lengths
    computed = client.compute(cate_in).result()
    assert computed.shape == (900, K - 1, 1) and np.isfinite(computed).all()
    assert client.compute(cate_oos).result().shape == (900, K - 1, 1)
    if name in ("S", "T"):
        # the overall models train on the same rows in the same order, whatever the input
        # type, so out-of-sample predictions agree with the in-memory fit
        in_memory = make(name, client=client).fit(pdf[features], pdf["y"], pdf["w"])
        np.testing.assert_allclose(
            client.compute(cate_oos).result(),
            in_memory.predict(pdf[features], is_oos=True),
            rtol=1e-9,
            atol=1e-9,
        )


# --- X-learner and T-learner share their outcome models ----------------------------------


def test_x_learner_cao_equals_t_learner_cao(client, data):
    """Unsynchronised, sklearn folds: the X-learner's outcome models are the T-learner's
    (as in metalearners), so their conditional average outcomes are identical."""
    X, y, w, _ = data
    kwargs = {"client": client, "fold_strategy": "sklearn", "random_state": 42}
    t = make("T", **kwargs).fit(X, y, w, synchronize_cross_fitting=False)
    x = make("X", **kwargs).fit(X, y, w, synchronize_cross_fitting=False)
    for is_oos in (False, True):
        assert np.array_equal(
            x.predict_conditional_average_outcomes(X, is_oos=is_oos),
            t.predict_conditional_average_outcomes(X, is_oos=is_oos),
        ), is_oos


@pytest.mark.parametrize("fold_strategy", ["partition", "sklearn"])
def test_reuse_fitted_models(client, data, fold_strategy):
    """T's outcome models in an X-learner, and the X-learner's propensity model in a
    DR-learner: reused as fitted (not refitted), with identical in-sample predictions."""
    X, y, w, _ = data
    kwargs = {"client": client, "fold_strategy": fold_strategy, "random_state": 5}
    t = make("T", **kwargs).fit(X, y, w)
    t_cao = t.predict_conditional_average_outcomes(X, is_oos=False)
    t_cate = t.predict(X, is_oos=False)

    x = make("X", fitted_nuisance_models={VOM: t._nuisance_models[VOM]}, **kwargs)
    x.fit(X, y, w)
    assert VOM not in set(x.fit_report_["model_kind"]), "reused models must not be refitted"
    assert np.array_equal(x.predict_conditional_average_outcomes(X, is_oos=False), t_cao)
    x_cate = x.predict(X, is_oos=False)
    # refitting the X-learner leaves the T-learner untouched (its models were copied)
    x.fit(X, y, w)
    assert np.array_equal(t.predict(X, is_oos=False), t_cate)
    assert np.array_equal(t.predict_conditional_average_outcomes(X, is_oos=False), t_cao)
    assert np.array_equal(x.predict(X, is_oos=False), x_cate)

    propensity = x._nuisance_models["propensity_model"][0]
    x_e = x.predict_nuisance(X, "propensity_model", 0, is_oos=False)
    assert x_e.shape == (N, K)
    dr = make("DR", fitted_propensity_model=propensity, **kwargs).fit(X, y, w)
    assert "propensity_model" not in set(dr.fit_report_["model_kind"])
    assert np.array_equal(dr.predict_nuisance(X, "propensity_model", 0, is_oos=False), x_e)
    # the X-learner, whose propensity model the DR-learner holds, still predicts the same
    assert np.array_equal(x.predict_nuisance(X, "propensity_model", 0, is_oos=False), x_e)
    assert np.array_equal(x.predict(X, is_oos=False), x_cate)


# --- parallelism settings do not change results ------------------------------------------


def test_n_jobs_settings_give_identical_cate(client, data):
    X, y, w, _ = data
    results = {}
    for base in (None, 1, 2):
        for cross in (None, 1):
            learner = make("X", client=client, random_state=3).fit(
                X, y, w, n_jobs_base_learners=base, n_jobs_cross_fitting=cross
            )
            results[(base, cross)] = (
                learner.predict(X, is_oos=False),
                learner.predict(X, is_oos=True, oos_method="mean"),
            )
    reference = results[(None, None)]
    for setting, (in_sample, oos) in results.items():
        assert_identical(in_sample, reference[0], f"in-sample CATE with {setting}")
        assert_identical(oos, reference[1], f"out-of-sample CATE with {setting}")


@pytest.fixture(scope="module")
def pipelined(client):
    """An X-learner with 4 variants, fitted without a stage limit and with one."""
    rng = np.random.default_rng(8)
    n = 1600
    X = rng.normal(size=(n, 3))
    # variant 0 is the largest group: its outcome model (which every treatment-effect
    # model needs) is fitted first, so treatment fits can start while the other outcome
    # models are still being fitted
    w = rng.choice(4, size=n, p=[0.4, 0.2, 0.2, 0.2])
    y = X[:, 0] + w * X[:, 1] + rng.normal(0, 0.5, n)
    out = {}
    for limit in (None, 1):
        learner = XLearner(
            False,
            4,
            SlowRegressor,
            LinearRegression,
            LogisticRegression,
            nuisance_model_params={"delay": 0.1},
            n_folds=3,
            random_state=4,
            client=client,
        ).fit(X, y, w, n_jobs_base_learners=limit)
        out[limit] = (learner, learner.predict(X, is_oos=False), learner.predict(X, True))
    return out


def test_models_the_effect_models_wait_for_go_first(pipelined):
    """The X-learner's effect targets come from the outcome models, and its propensity model
    only weighs the CATE at predict time: no effect model waits for it. Each of its fits is
    expected to take longer (its rows x 4 classes) than all the outcome fits per thread, so
    it goes first: after the outcome fits it would run alone at the end of the fit
    (planner.order_pending). The effect models still wait for the outcome models. (That a
    treatment model does not wait for the whole nuisance stage: test_planner's R-learner
    test.)"""
    learner, _, _ = pipelined[None]
    report = learner.fit_report_
    assert list(report.columns) == REPORT_COLUMNS
    assert set(report["stage"]) == {"nuisance", "treatment"}
    # 4 outcome + 1 propensity + 3 + 3 effect models, each 3 folds + overall
    assert len(report) == (4 + 1 + 3 + 3) * 4
    nuisance = report[report["stage"] == "nuisance"]
    treatment = report[report["stage"] == "treatment"]
    assert set(nuisance["model_kind"]) == {VOM, "propensity_model"}
    assert set(treatment["model_kind"]) == {"treatment_effect_model", "control_effect_model"}
    outcome = nuisance[nuisance["model_kind"] == VOM]
    propensity = nuisance[nuisance["model_kind"] == "propensity_model"]
    assert propensity["rows"].min() > outcome["rows"].max()
    assert (propensity["rows"] * 4).min() > outcome["rows"].sum() / 2  # 2 threads
    assert propensity["submitted"].max() <= outcome["submitted"].min()
    assert treatment["start"].min() >= outcome["end"].min()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # one propensity and one outcome model, predicted once for both treatment models
        ("R", {"predict-propensity-model": 4, "predict-outcome-model": 4, "derive": 8}),
        # the outcome model of variant 0 serves both treatment models: predicted once
        ("DR", {"predict-propensity-model": 4, "predict-variant-outcome-model": 12, "derive": 8}),
    ],
)
def test_nuisance_predictions_are_shared_by_the_treatment_models(client, data, name, expected):
    """Each nuisance estimator predicts each training partition once, however many treatment
    models derive their targets from it (R and DR with 3 variants, 4 partitions)."""
    import re

    from distributed import get_task_stream

    X, y, w, _ = data
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame["y"], frame["w"] = y, w
    ddf = dd.from_pandas(frame, npartitions=4)
    learner = make(name, client=client)
    with get_task_stream(client) as stream:
        learner.fit(ddf[list(frame.columns[:-2])], ddf["y"], ddf["w"])
    pattern = re.compile(r"^dask_meta-([a-z-]+)-\d+-[0-9a-f]{10}$")
    counts: dict[str, int] = {}
    for task in stream.data:
        match = pattern.match(str(task["key"]))
        if match and match.group(1).startswith(("predict-", "derive-")):
            label = "derive" if match.group(1).startswith("derive-") else match.group(1)
            counts[label] = counts.get(label, 0) + 1
    assert counts == expected


def test_pipelined_cate_equals_stage_limited_cate(pipelined):
    _, in_sample, oos = pipelined[None]
    _, in_sample_1, oos_1 = pipelined[1]
    assert_identical(in_sample, in_sample_1, "in-sample CATE")
    assert_identical(oos, oos_1, "out-of-sample CATE")


# --- stage-wise fitting, ATE --------------------------------------------------------------


@pytest.mark.parametrize("name", ["X", "DR"])
def test_fit_all_nuisance_then_treatment_equals_fit(regression_fits, client, data, name):
    X, y, w, _ = data
    staged = make(name, client=client)
    staged.fit_all_nuisance(X, y, w)
    with pytest.raises(ValueError, match="not fitted"):
        staged.predict(X, is_oos=False)
    staged.fit_all_treatment(X, y, w)
    reference = regression_fits[name][1]
    assert_identical(staged.predict(X, is_oos=False), reference["cate_in"], "in-sample CATE")
    assert_identical(staged.predict(X, is_oos=True), reference["cate_oos"], "oos CATE")
    assert_identical(
        staged.predict_conditional_average_outcomes(X, is_oos=False), reference["cao_in"], "CAO"
    )


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_average_treatment_effect_after_fit_all_nuisance(client, data, kind):
    X, y, w, tau = data
    if kind == "dask":
        pdf = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
        pdf["y"], pdf["w"] = y, w
        ddf = dd.from_pandas(pdf, npartitions=4)
        X, y, w = ddf[list(pdf.columns[:-2])], ddf["y"], ddf["w"]
    learner = make("DR", client=client).fit_all_nuisance(X, y, w)
    ate, se = learner.average_treatment_effect(X, y, w, is_oos=False)
    assert ate.shape == se.shape == (K - 1,)
    true_ate = tau.mean(axis=0)
    assert (se > 0).all() and (se < 0.1).all(), se
    assert (np.abs(ate - true_ate) < 4 * se).all(), (ate, true_ate, se)


@pytest.mark.parametrize("floor", [1e-9, 0.05])
def test_dr_min_propensity_floors_the_aipw_terms(client, floor):
    """Poor overlap: the treatment stage's pseudo-outcome and the ATE use propensities floored
    at min_propensity. A mean-only treatment model's overall prediction is the mean of the
    pseudo-outcome it was fitted on, which must equal the AIPW estimate computed here in numpy
    from the learner's own in-sample nuisance predictions."""
    from sklearn.dummy import DummyRegressor

    rng = np.random.default_rng(5)
    n = 1500
    X = rng.normal(size=(n, 3))
    # propensities from about 1e-4 to 1 - 1e-4: some units have almost no overlap
    w = (rng.random(n) < 1 / (1 + np.exp(-4 * X[:, 0]))).astype(int)
    y = X @ np.array([1.0, -0.5, 0.3]) + w * (1 + X[:, 1]) + rng.normal(size=n)
    learner = DRLearner(
        False,
        2,
        LinearRegression,
        DummyRegressor,
        LogisticRegression,
        n_folds=3,
        random_state=0,
        min_propensity=floor,
        client=client,
    ).fit(X, y, w)
    e = learner.predict_nuisance(X, "propensity_model", 0, is_oos=False)
    mu = learner.predict_conditional_average_outcomes(X, is_oos=False)[:, :, 0]
    assert e[:, 1].min() < 0.01, "the data must have propensities below the floor"
    phi = (
        (y - mu[:, 1]) / np.maximum(e[:, 1], floor) * (w == 1)
        + mu[:, 1]
        - (y - mu[:, 0]) / np.maximum(e[:, 0], floor) * (w == 0)
        - mu[:, 0]
    )
    ate, se = learner.average_treatment_effect(X, y, w, is_oos=False)
    np.testing.assert_allclose(ate, [phi.mean()], rtol=1e-10)
    np.testing.assert_allclose(se, [phi.std() / np.sqrt(n)], rtol=1e-8)
    cate = learner.predict(X, is_oos=True, oos_method="overall")[:, 0, 0]
    np.testing.assert_allclose(cate, phi.mean(), rtol=1e-10)
    if floor > 1e-9:
        raw = (y - mu[:, 1]) / e[:, 1] * (w == 1) - (y - mu[:, 0]) / e[:, 0] * (w == 0)
        raw += mu[:, 1] - mu[:, 0]
        assert abs(raw.mean() - phi.mean()) > 1e-3, "the floor must bind on this data"
        # the floor is what keeps the estimate near the true effect of about 1
        assert abs(ate[0] - 1) < 0.3, ate


# --- init_args, pickling, r_loss ----------------------------------------------------------


@pytest.mark.parametrize("name", list(LEARNERS))
def test_init_args_round_trip(name):
    kwargs = {
        "n_folds": 4,
        "random_state": 11,
        "fold_strategy": "hash",
        "fold_key": "row_id",
        "nuisance_model_params": {"fit_intercept": False},
    }
    if name != "S":
        kwargs["feature_set"] = ["a", "b"]
    if name == "DR":
        kwargs["adaptive_clipping"] = True
        kwargs["min_propensity"] = 0.02
    original = make(name, **kwargs)
    rebuilt = type(original)(**original.init_args)
    assert rebuilt.init_args == original.init_args
    for attribute in (
        "is_classification",
        "n_variants",
        "nuisance_model_factory",
        "treatment_model_factory",
        "nuisance_model_params",
        "treatment_model_params",
        "feature_set",
        "n_folds",
        "random_state",
        "fold_strategy",
        "fold_key",
    ):
        assert getattr(rebuilt, attribute) == getattr(original, attribute), attribute
    if name == "DR":
        assert rebuilt.adaptive_clipping is True
        assert rebuilt.min_propensity == 0.02
    assert rebuilt._fit_context is None


@pytest.mark.parametrize("name", list(LEARNERS))
def test_init_args_of_a_fitted_learner_build_an_unfitted_one(regression_fits, data, name):
    learner = regression_fits[name][0]
    rebuilt = type(learner)(**learner.init_args)
    assert rebuilt.init_args.keys() == learner.init_args.keys()
    assert rebuilt.n_folds == learner.n_folds and rebuilt.random_state == learner.random_state
    with pytest.raises(ValueError, match="not fitted"):
        rebuilt.predict(data[0], is_oos=True)


def test_init_args_keep_prefitted_models(regression_fits):
    t = regression_fits["T"][0]
    x = make("X", fitted_nuisance_models={VOM: t._nuisance_models[VOM]})
    args = x.init_args
    assert args["nuisance_model_factory"] == {}
    assert len(args["fitted_nuisance_models"][VOM]) == K
    rebuilt = XLearner(**args)
    assert rebuilt._prefitted_nuisance_models == {VOM}
    assert all(cfe.is_fitted for cfe in rebuilt._nuisance_models[VOM])


@pytest.mark.parametrize("name", ["T", "DR"])
def test_fitted_learner_pickles_without_its_client(regression_fits, data, name):
    """Never pickle the client with a fitted learner; the unpickled learner
    predicts the same."""
    learner, p = regression_fits[name]
    restored = pickle.loads(pickle.dumps(learner))
    assert restored.client is None
    X = data[0]
    assert np.array_equal(restored.predict(X, is_oos=False), p["cate_in"])
    assert np.array_equal(restored.predict(X, is_oos=True), p["cate_oos"])


def test_r_loss():
    assert r_loss([2], [3.1], [0.5], [6.1], [1]) == pytest.approx(2)
    tau = np.array([1.0, -1.0, 0.5])
    m = np.array([0.0, 1.0, 2.0])
    e = np.array([0.5, 0.5, 0.2])
    w = np.array([1, 0, 1])
    y = m + tau * (w - e)  # residuals explained exactly
    assert r_loss(tau, m, e, y, w) == pytest.approx(0.0, abs=1e-12)
    assert r_loss(np.zeros(3), m, e, y, w) == pytest.approx(np.sqrt(np.mean((tau * (w - e)) ** 2)))
    with pytest.raises(ValueError, match="equally long"):
        r_loss([1.0, 2.0], [0.0], [0.5], [1.0], [1])


@pytest.mark.parametrize("strategy", ["sklearn", "partition"])
def test_one_fold_fits_each_model_on_all_its_rows_under_every_fold_strategy(client, strategy):
    """n_folds=1 means no cross-fitting: one model per variant on all of its rows, whatever
    the fold strategy (the "sklearn" one draws no KFold, which needs two splits)."""
    X, y, w, _ = make_linear_data(n=1_500)
    learner = TLearner(
        is_classification=False,
        n_variants=3,
        nuisance_model_factory=LinearRegression,
        n_folds=1,
        fold_strategy=strategy,
        client=client,
    ).fit(X, y, w)
    mu = [LinearRegression().fit(X[w == k], y[w == k]).predict(X) for k in range(3)]
    expected = np.stack([mu[1] - mu[0], mu[2] - mu[0]], axis=1)
    cate = np.asarray(learner.predict(X, is_oos=False))[:, :, 0]
    np.testing.assert_allclose(cate, expected, rtol=1e-9, atol=1e-9)
