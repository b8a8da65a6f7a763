"""Bad input: every mistake gives a ValueError or TypeError naming the argument
and the problem, raised before any fit job reaches the cluster.

"Before any fit job" is checked by recording ``Planner._submit``, the single place where
fit tasks are submitted (cheap data passes such as the first scan over y and w may run).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from _models import NoSampleWeightRegressor
from conftest import make_linear_data
from hypothesis import given, settings
from hypothesis import strategies as st
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import CrossFitEstimator, DRLearner, RLearner, SLearner, TLearner, XLearner
from dask_meta.planner import Planner

FEATURES = ["f0", "f1", "f2"]
N = 600
INPUTS = ["numpy", "pandas", "dask"]
IN_MEMORY = ["numpy", "pandas"]
LEARNERS = {"S": SLearner, "T": TLearner, "X": XLearner, "R": RLearner, "DR": DRLearner}


# --- helpers ------------------------------------------------------------------------------


@contextlib.contextmanager
def no_fit_submitted() -> Iterator[list[str]]:
    """Record every fit job the planner submits; fail if there was any."""
    calls: list[str] = []
    submit, collection = Planner._submit, Planner._run_collection

    def recording_submit(self, job, *args, **kwargs):
        calls.append(job.key)
        return submit(self, job, *args, **kwargs)

    def recording_collection(self, job):
        calls.append(job.key)
        return collection(self, job)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Planner, "_submit", recording_submit)
        mp.setattr(Planner, "_run_collection", recording_collection)
        yield calls
    assert calls == [], f"fit jobs were submitted before the error was raised: {calls}"


def _frame(n=N, n_variants=3, seed=0, classification=False) -> pd.DataFrame:
    X, y, w, _ = make_linear_data(
        n=n, d=len(FEATURES), n_variants=n_variants, seed=seed, classification=classification
    )
    df = pd.DataFrame(X, columns=FEATURES)
    df["y"] = y
    df["w"] = w
    return df


def _inputs(df: pd.DataFrame, kind: str):
    """X, y, w of a frame as numpy, pandas or Dask (all three from one Dask frame)."""
    if kind == "numpy":
        return df[FEATURES].to_numpy(), df["y"].to_numpy(), df["w"].to_numpy()
    if kind == "pandas":
        return df[FEATURES], df["y"], df["w"]
    ddf = dd.from_pandas(df, npartitions=3)
    return ddf[FEATURES], ddf["y"], ddf["w"]


def _learner(name="T", classification=False, n_variants=3, client=None, **kwargs):
    outcome = LogisticRegression if classification else LinearRegression
    args = {"n_folds": 2, "random_state": 0, "client": client}
    if name in ("X", "R", "DR"):
        args |= {
            "treatment_model_factory": LinearRegression,
            "propensity_model_factory": LogisticRegression,
        }
    args |= kwargs
    return LEARNERS[name](classification, n_variants, outcome, **args)


@pytest.fixture(scope="module")
def fitted(client):
    """A fitted T-learner and its training data, for the prediction errors (numpy and Dask)."""
    df = _frame()
    out = {}
    for kind in ("numpy", "dask"):
        X, y, w = _inputs(df, kind)
        out[kind] = (_learner("T", client=client).fit(X, y, w), X, df)
    return out


def test_recorder_sees_the_fit_jobs_of_a_valid_fit(client):
    """Positive control: the patched ``Planner._submit`` does see fit jobs."""
    X, y, w = _inputs(_frame(n=200), "numpy")
    with pytest.raises(AssertionError, match="fit jobs were submitted"), no_fit_submitted():
        _learner("T", client=client).fit(X, y, w)


# --- the treatment and the outcome ---------------------------------------------------------


def _set(column, rows, value, dtype=None):
    """A change of the training frame: ``column`` at ``rows`` (labels) becomes ``value``."""

    def change(df):
        if dtype is not None:
            df[column] = df[column].astype(dtype)
        df.loc[rows, column] = value
        return df

    return change


def _merge_variant(df):
    df.loc[df["w"] == 1, "w"] = 2
    return df


def _string_w(df):
    df["w"] = df["w"].map({0: "control", 1: "a", 2: "b"})
    return df


def _three_classes(df):
    df["y"] = np.arange(len(df)) % 3
    return df


def _variant_2_without_class_2(df):
    df.loc[df.index[::7], "y"] = 2
    df.loc[df["w"] == 2, "y"] = df.loc[df["w"] == 2, "y"].clip(upper=1)
    return df


#: mistakes in w and y: (change of the frame, learner, classification, error, message)
FIT_DATA_ERRORS = {
    "w-outside-variants": (
        _set("w", 5, 3),
        "DR",
        False,
        ValueError,
        r"w has values .*outside 0\.\.2",
    ),
    "w-missing-variant": (
        _merge_variant,
        "X",
        False,
        ValueError,
        r"w has values .*\[1\] are missing",
    ),
    "w-nan": (
        _set("w", [3, 400], np.nan, float),
        "T",
        False,
        ValueError,
        r"w has 2 missing values \(NaN\)",
    ),
    "w-non-integer": (
        _set("w", 7, 1.5, float),
        "T",
        False,
        ValueError,
        r"w has 1 non-integer values",
    ),
    # an infinite treatment is named as such, not as the int64 it would be cast to
    "w-inf": (
        _set("w", 9, np.inf, float),
        "T",
        False,
        ValueError,
        r"w has 1 (infinite|non-integer)",
    ),
    "w-strings": (_string_w, "T", False, TypeError, r"w has dtype .*must be integers"),
    "y-nan": (
        _set("y", [0, 10, 20], np.nan),
        "R",
        False,
        ValueError,
        r"y has 3 missing values \(NaN\)",
    ),
    "y-inf": (
        _set("y", [11, 12], [np.inf, -np.inf]),
        "DR",
        False,
        ValueError,
        r"y has 2 infinite values",
    ),
    "y-one-class": (_set("y", slice(None), 1), "T", True, ValueError, r"only one class"),
    "y-multiclass-X": (
        _three_classes,
        "X",
        True,
        ValueError,
        r"does not support multiclass classification.*3 classes",
    ),
    "y-multiclass-R": (
        _three_classes,
        "R",
        True,
        ValueError,
        r"does not support multiclass classification.*3 classes",
    ),
    "y-multiclass-DR": (
        _three_classes,
        "DR",
        True,
        ValueError,
        r"does not support multiclass classification.*3 classes",
    ),
    # three classes overall, but variant 2 never sees class 2 (T supports multi-class)
    "y-classes-differ": (
        _variant_2_without_class_2,
        "T",
        True,
        ValueError,
        r"Variants 0 and 2 have seen different sets",
    ),
}


@pytest.mark.parametrize("case", list(FIT_DATA_ERRORS))
@pytest.mark.parametrize("kind", INPUTS)
def test_fit_refuses_bad_treatment_and_outcome_values(client, kind, case):
    """Every mistake in w or y, as numpy, pandas and Dask input: the error fit raises, before
    any fit job reaches the cluster."""
    change, name, classification, error, match = FIT_DATA_ERRORS[case]
    X, y, w = _inputs(change(_frame(classification=classification)), kind)
    with no_fit_submitted(), pytest.raises(error, match=match):
        _learner(name, classification=classification, client=client).fit(X, y, w)


@settings(max_examples=10, deadline=None)
@given(
    n_variants=st.integers(2, 4),
    mistake=st.sampled_from(["above", "negative", "missing", "shifted"]),
    seed=st.integers(0, 2**16),
)
def test_generated_invalid_treatment_encodings(client, n_variants, mistake, seed):
    """Random invalid encodings: values above or below 0..K-1, a missing variant, or the
    variants encoded 1..K. Each names w, the values found and what was expected."""
    rng = np.random.default_rng(seed)
    X, y, w, _ = make_linear_data(n=300, d=3, n_variants=n_variants, seed=seed)
    w = w.copy()
    if mistake == "above":
        rows = rng.choice(len(w), size=rng.integers(1, 5), replace=False)
        w[rows] = n_variants + rng.integers(0, 5, len(rows))
        expected = r"outside 0\.\."
    elif mistake == "negative":
        w[rng.integers(0, len(w))] = -int(rng.integers(1, 4))
        expected = r"outside 0\.\."
    elif mistake == "missing":
        gone = int(rng.integers(0, n_variants))
        w[w == gone] = (gone + 1) % n_variants
        expected = rf"\[{gone}\] are missing"
    else:
        w = w + 1
        expected = r"\[0\] are missing.*outside 0\.\."
    with no_fit_submitted(), pytest.raises(ValueError, match=rf"w has values .*{expected}"):
        _learner("T", n_variants=n_variants, client=client).fit(X, y, w)


def test_fold_lacking_a_class(client):
    """Class 1 has two rows, one per variant: with 5 folds, the fold model of each variant
    whose held-out fold holds that row would never see class 1."""
    df = _frame(n_variants=2, classification=True)
    df["y"] = 0
    df.loc[df.index[df["w"] == 0][0], "y"] = 1
    df.loc[df.index[df["w"] == 1][0], "y"] = 1
    for kind in INPUTS:
        X, y, w = _inputs(df, kind)
        with (
            no_fit_submitted(),
            pytest.raises(ValueError, match=r"fold \d.*lack the classes \[1\]"),
        ):
            _learner("T", classification=True, n_variants=2, n_folds=5, client=client).fit(X, y, w)


# --- shapes and alignment of X, y and w -----------------------------------------------------


@pytest.mark.parametrize("kind", IN_MEMORY)
@pytest.mark.parametrize("short", ["y", "w"])
def test_in_memory_lengths_differ(client, kind, short):
    X, y, w = _inputs(_frame(), kind)
    vectors = {"y": y, "w": w}
    vectors[short] = vectors[short][:-1]
    with (
        no_fit_submitted(),
        pytest.raises(ValueError, match=rf"{short} has {N - 1} rows but X has {N}"),
    ):
        _learner("T", client=client).fit(X, vectors["y"], vectors["w"])


@pytest.mark.parametrize("short", ["y", "w"])
def test_dask_partition_counts_differ(client, short):
    """Separate frames (not co-aligned): X in 3 partitions, one vector in 2."""
    df = _frame()
    X = dd.from_pandas(df[FEATURES], npartitions=3)
    vectors = {c: dd.from_pandas(df[c], npartitions=3) for c in ("y", "w")}
    vectors[short] = dd.from_pandas(df[short], npartitions=2)
    assert X.npartitions == 3 and vectors[short].npartitions == 2
    with (
        no_fit_submitted(),
        pytest.raises(ValueError, match=rf"X has 3 partitions but {short} has 2"),
    ):
        _learner("DR", client=client).fit(X, vectors["y"], vectors["w"])


def test_dask_partition_lengths_differ(client):
    """Same partition count, different partition lengths: found by the first data pass."""
    df = _frame()
    X = dd.from_pandas(df[FEATURES], npartitions=3)
    y = dd.from_pandas(df["y"], npartitions=3)
    w = dd.concat(
        [
            dd.from_pandas(df["w"].iloc[a:b], npartitions=1)
            for a, b in ((0, 100), (100, 450), (450, N))
        ]
    )
    assert w.npartitions == 3
    with (
        no_fit_submitted(),
        pytest.raises(ValueError, match=r"w and X are partitioned differently"),
    ):
        _learner("T", client=client).fit(X, y, w)


def test_dask_vectors_with_in_memory_X(client):
    df = _frame()
    ddf = dd.from_pandas(df, npartitions=3)
    with no_fit_submitted(), pytest.raises(TypeError, match=r"y is a Dask collection but X is"):
        _learner("T", client=client).fit(df[FEATURES], ddf["y"], df["w"])
    with no_fit_submitted(), pytest.raises(ValueError, match=r"w must be one-dimensional"):
        _learner("T", client=client).fit(
            df[FEATURES].to_numpy(), df["y"].to_numpy(), np.c_[df["w"], df["w"]]
        )
    X = da.from_array(df[FEATURES].to_numpy(), chunks=200)
    with no_fit_submitted(), pytest.raises(TypeError, match=r"w must be a Dask Series or array"):
        _learner("T", client=client).fit(X, da.from_array(df["y"].to_numpy(), 200), df["w"])


# --- model types and learner arguments (at construction) ---------------------------------


def test_regressor_as_outcome_model_of_a_classification():
    for name, kind in (
        ("S", "base_model"),
        ("T", "variant_outcome_model"),
        ("X", "variant_outcome_model"),
        ("R", "outcome_model"),
        ("DR", "variant_outcome_model"),
    ):
        with pytest.raises(ValueError, match=rf"{kind}.*'predict_proba'.*not a classifier"):
            LEARNERS[name](
                True,
                2,
                LinearRegression,
                LinearRegression,
                LogisticRegression,
            )


def test_classifier_as_treatment_or_outcome_model_of_a_regression():
    for name, kind in (("X", "effect_model"), ("R", "treatment_model"), ("DR", "treatment_model")):
        with pytest.raises(ValueError, match=rf"{kind}.*'predict'.*LogisticRegression is a class"):
            LEARNERS[name](False, 2, LinearRegression, LogisticRegression, LogisticRegression)
    with pytest.raises(ValueError, match=r"variant_outcome_model.*is a classifier"):
        TLearner(False, 2, LogisticRegression)
    with pytest.raises(ValueError, match=r"propensity_model.*'predict_proba'.*not a classifier"):
        DRLearner(False, 2, LinearRegression, LinearRegression, LinearRegression)


@pytest.mark.parametrize("n_variants", [1, 0, -3, 2.0, "3", True, None])
def test_bad_n_variants(n_variants):
    with pytest.raises((ValueError, TypeError), match=r"n_variants needs to be an integer"):
        TLearner(False, n_variants, LinearRegression)


def test_r_learner_treatment_factory_without_sample_weight():
    with pytest.raises(ValueError, match=r"treatment_model's fit method does not support"):
        RLearner(False, 2, LinearRegression, NoSampleWeightRegressor, LogisticRegression)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (0.5, ValueError),
        (-0.1, ValueError),
        (float("nan"), ValueError),
        ("0.01", TypeError),
        (True, TypeError),
        (None, TypeError),
    ],
)
def test_bad_min_propensity(value, error):
    with pytest.raises(error, match=r"min_propensity must be (a number )?in \(0, 0.5\)"):
        DRLearner(
            False, 2, LinearRegression, LinearRegression, LogisticRegression, min_propensity=value
        )


@pytest.mark.parametrize(
    ("strategy", "key", "error", "match"),
    [
        ("bogus", None, ValueError, r"fold_strategy must be one of .*'bogus'"),
        ("hash", None, ValueError, r'fold_strategy="hash" needs fold_key'),
        ("partition", "row_id", ValueError, r"fold_key is only used with fold_strategy=\"hash\""),
        ("hash", 3, TypeError, r"fold_key must be a column name"),
    ],
)
def test_bad_fold_strategy(strategy, key, error, match):
    with pytest.raises(error, match=match):
        DRLearner(
            False,
            2,
            LinearRegression,
            LinearRegression,
            LogisticRegression,
            fold_strategy=strategy,
            fold_key=key,
        )


def test_hash_fold_key_not_a_column_of_X(client):
    X, y, w = _inputs(_frame(), "pandas")
    learner = _learner("T", client=client, fold_strategy="hash", fold_key="row_id")
    with no_fit_submitted(), pytest.raises(ValueError, match=r"fold_key='row_id' is not a column"):
        learner.fit(X, y, w)


def test_bad_n_folds_and_params():
    with pytest.raises(ValueError, match=r"n_folds must be a positive int, got 0"):
        TLearner(False, 2, LinearRegression, n_folds=0)
    with pytest.raises(TypeError, match=r"random_state must be an int or None"):
        TLearner(False, 2, LinearRegression, random_state=0.5)
    with pytest.raises(ValueError, match=r"propensity_model_factory"):
        DRLearner(False, 2, LinearRegression, LinearRegression)
    with pytest.raises(ValueError, match=r"propensity_model_factory and not nuisance_model"):
        DRLearner(
            False,
            2,
            {"variant_outcome_model": LinearRegression, "propensity_model": LogisticRegression},
            LinearRegression,
            LogisticRegression,
        )


# --- fit arguments ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_sample_weight_for_r_learner_treatment_model(client, kind):
    X, y, w = _inputs(_frame(), kind)
    weights = np.ones(N) if kind == "numpy" else da.ones(N, chunks=200)
    learner = _learner("R", client=client)
    for fit_params in (
        {"sample_weight": weights},
        {"treatment": {"treatment_model": {"sample_weight": weights}}},
    ):
        with (
            no_fit_submitted(),
            pytest.raises(ValueError, match=r"fit_params passes sample_weight to the R-learner"),
        ):
            learner.fit(X, y, w, fit_params=fit_params)


@pytest.mark.parametrize("kind", ["pandas", "dask"])
def test_feature_set_names_a_missing_column(client, kind):
    X, y, w = _inputs(_frame(), kind)
    learner = _learner("T", client=client, feature_set=["f0", "nope"])
    with (
        no_fit_submitted(),
        pytest.raises(
            ValueError, match=r"feature_set for variant_outcome_model names columns \['nope'\]"
        ),
    ):
        learner.fit(X, y, w)


def test_feature_set_position_out_of_range(client):
    X, y, w = _inputs(_frame(), "numpy")
    learner = _learner("T", client=client, feature_set=[0, 7])
    with no_fit_submitted(), pytest.raises(ValueError, match=r"feature_set .*positions \[7\]"):
        learner.fit(X, y, w)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_jobs_cross_fitting": 0}, r"n_jobs_cross_fitting must be None, -1 or a positive int"),
        ({"n_jobs_cross_fitting": 1.5}, r"n_jobs_cross_fitting must be"),
        ({"n_jobs_base_learners": 0}, r"n_jobs_base_learners must be None, -1 or a positive int"),
        ({"synchronize_cross_fitting": "yes"}, r"synchronize_cross_fitting must be a bool"),
        ({"fit_params": [1, 2]}, r"fit_params must be a dict"),
    ],
)
def test_bad_fit_arguments(client, kwargs, match):
    X, y, w = _inputs(_frame(), "numpy")
    with no_fit_submitted(), pytest.raises((ValueError, TypeError), match=match):
        _learner("X", client=client).fit(X, y, w, **kwargs)


@pytest.mark.parametrize("name", ["X", "R", "DR"])
def test_synchronize_with_unequal_n_folds(client, name):
    learner = _learner(name, client=client)
    n_folds = {kind: 2 for kind in learner.n_folds}
    n_folds[sorted(n_folds)[0]] = 3
    learner = _learner(name, client=client, n_folds=n_folds)
    X, y, w = _inputs(_frame(), "numpy")
    with (
        no_fit_submitted(),
        pytest.raises(ValueError, match=r"synchronization of cross-fitting.*n_folds"),
    ):
        learner.fit(X, y, w, synchronize_cross_fitting=True)


# --- prediction ---------------------------------------------------------------------------


def test_predict_before_fit(client):
    X, _, _ = _inputs(_frame(), "numpy")
    for name in LEARNERS:
        learner = _learner(name, client=client)
        with pytest.raises(ValueError, match=r"not fitted"):
            learner.predict(X, is_oos=True)
        with pytest.raises(ValueError, match=r"not fitted"):
            learner.predict_conditional_average_outcomes(X, is_oos=False)
    with pytest.raises(ValueError, match=r"nuisance models need to be fitted"):
        _learner("DR", client=client).average_treatment_effect(X, np.zeros(N), np.zeros(N), False)


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_bad_oos_method_and_is_oos(fitted, kind):
    learner, X, _ = fitted[kind]
    with no_fit_submitted():
        with pytest.raises(ValueError, match=r"oos_method 'foo' not supported"):
            learner.predict(X, is_oos=True, oos_method="foo")
        with pytest.raises(TypeError, match=r"is_oos must be a bool"):
            learner.predict(X, is_oos="no")


def test_in_sample_predict_other_values_numpy(fitted):
    """Same length, other values: the fingerprint check fails (numpy results are computed
    at once, so the error surfaces in predict)."""
    learner, X, _ = fitted["numpy"]
    other = X.copy()
    other[17, 1] += 1.0
    with (
        no_fit_submitted(),
        pytest.raises(ValueError, match=r"fingerprint.*training data|training data.*fingerprint"),
    ):
        learner.predict(other, is_oos=False)
    with pytest.raises(ValueError, match=r"is_oos=False needs exactly the training data"):
        learner.predict_conditional_average_outcomes(X[::-1], is_oos=False)
    # the training data itself and out-of-sample prediction of the other data still work
    assert learner.predict(X, is_oos=False).shape == (N, 2, 1)
    assert learner.predict(other, is_oos=True).shape == (N, 2, 1)


def test_in_sample_predict_other_length_numpy(fitted):
    learner, X, _ = fitted["numpy"]
    with pytest.raises(ValueError, match=rf"has {N - 1} rows where the training data had {N}"):
        learner.predict(X[:-1], is_oos=False)
    with pytest.raises(ValueError, match=r"needs exactly the training data"):
        learner.predict(np.vstack([X, X]), is_oos=False)


def test_in_sample_predict_other_values_dask(fitted, client):
    """Dask: lazy, so the fingerprint check fails when the result is computed."""
    learner, _, df = fitted["dask"]
    other_df = df.copy()
    other_df.loc[450, "f2"] += 1.0
    other = dd.from_pandas(other_df, npartitions=3)[FEATURES]
    result = learner.predict(other, is_oos=False)
    assert isinstance(result, da.Array)
    with pytest.raises(ValueError, match=r"partition 2 of X holds other values.*fingerprint"):
        client.compute(result).result()


def test_in_sample_predict_other_length_dask(fitted, client):
    learner, _, df = fitted["dask"]
    # same partition count, one row fewer: found when computed
    shorter = dd.from_pandas(df.iloc[:-1], npartitions=3)[FEATURES]
    with pytest.raises(
        ValueError, match=r"partition \d of X has \d+ rows where the training data had"
    ):
        client.compute(learner.predict(shorter, is_oos=False)).result()
    # another partition count: found at once
    with pytest.raises(ValueError, match=r"X has 2 partitions where the training data had 3"):
        learner.predict(dd.from_pandas(df, npartitions=2)[FEATURES], is_oos=False)


class ZeroExplainer:
    """A SHAP-style explainer (``model=``) whose values are all zero."""

    def __init__(self, model):
        self.model = model

    def shap_values(self, X):
        return np.zeros((len(X), X.shape[1]))


@pytest.fixture(scope="module")
def fitted_dr(client):
    """A fitted DR-learner and its training frame, per input kind (every entry point of X)."""
    df = _frame()
    return {
        kind: (_learner("DR", client=client).fit(*_inputs(df, kind)), df)
        for kind in ("numpy", "pandas", "dask")
    }


#: every entry point that takes X of a fitted learner: ``call(learner, X, y, w)``
ENTRY_POINTS = {
    "predict": lambda m, X, y, w: m.predict(X, is_oos=True),
    "predict_nuisance": lambda m, X, y, w: m.predict_nuisance(
        X, "variant_outcome_model", 0, is_oos=True
    ),
    "predict_treatment": lambda m, X, y, w: m.predict_treatment(
        X, "treatment_model", 0, is_oos=True
    ),
    "evaluate": lambda m, X, y, w: m.evaluate(X, y, w, is_oos=True),
    "average_treatment_effect": lambda m, X, y, w: m.average_treatment_effect(X, y, w, is_oos=True),
    "shap_values": lambda m, X, y, w: m.shap_values(X, ZeroExplainer),
}

#: X unlike the training data: (make X from the training frame, error, message)
SCHEMA_ERRORS = {
    "missing-and-extra": (
        lambda df: df[["f0", "f1", "y"]],
        ValueError,
        r"X lacks the columns \['f2'\] and has the columns \['y'\], unknown to the fit; "
        r"the learner was fitted on \['f0', 'f1', 'f2'\]",
    ),
    "missing": (lambda df: df[["f0", "f1"]], ValueError, r"X lacks the columns \['f2'\]; the"),
    "extra": (
        lambda df: df[[*FEATURES, "y"]],
        ValueError,
        r"X has the columns \['y'\], unknown to the fit",
    ),
    "array": (
        lambda df: df[FEATURES].to_numpy(),
        ValueError,
        r"X is an array but the learner was fitted on a DataFrame with the columns",
    ),
    "text": (
        lambda df: df[FEATURES].astype({"f1": str}),
        TypeError,
        r"X column 'f1' has dtype (object|str|string)\S* but the learner was fitted on float",
    ),
    "category": (
        lambda df: df[FEATURES].astype({"f1": "category"}),
        TypeError,
        r"X column 'f1' has dtype category but the learner was fitted on float64",
    ),
    "multiindex": (
        lambda df: df[FEATURES].set_axis(
            pd.MultiIndex.from_tuples([("a", c) for c in FEATURES]), axis=1
        ),
        ValueError,
        r"X has MultiIndex columns",
    ),
}


@pytest.mark.parametrize("case", list(SCHEMA_ERRORS))
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("kind", ["pandas", "dask"])
def test_every_entry_point_checks_the_training_schema(fitted_dr, kind, entry, case):
    """Names first (missing and unexpected columns), then dtypes against the training
    schema, before any work: predict compared the column count only, the ATE said "X must
    have the columns the learner was fitted on", shap_values took any X."""
    make_X, error, match = SCHEMA_ERRORS[case]
    learner, df = fitted_dr["pandas"]
    X, y, w = make_X(df), df["y"], df["w"]
    if kind == "dask":
        y, w = (dd.from_pandas(v, npartitions=3) for v in (y, w))
        X = (
            dd.from_pandas(X, npartitions=3)
            if isinstance(X, pd.DataFrame)
            else dd.from_pandas(pd.DataFrame(X), npartitions=3).to_dask_array(lengths=True)
        )
    with pytest.raises(error, match=match):
        ENTRY_POINTS[entry](learner, X, y, w)


def test_predict_on_arrays_checks_the_column_count(fitted):
    learner, X, _ = fitted["numpy"]
    with pytest.raises(ValueError, match=r"X has 2 columns but the learner was fitted on 3"):
        learner.predict(X[:, :2], is_oos=True)


@pytest.mark.parametrize(
    ("column", "match"),
    [
        (pd.Series(["1.5"] * N), r"'f1' \((object|str|string)"),
        (pd.Series(pd.date_range("2020", periods=N)), r"'f1' \(datetime64\[\w+\]\)"),
        (pd.Series(pd.to_timedelta(np.arange(N), "s")), r"'f1' \(timedelta64\[\w+\]\)"),
    ],
    ids=["text", "datetime", "timedelta"],
)
@pytest.mark.parametrize("kind", ["pandas", "dask"])
def test_fit_refuses_columns_base_models_cannot_use(client, kind, column, match):
    """A text column passed fit (parsed by the model) and broke predict; a datetime failed
    in numpy's promotion: both are named at fit, before any work."""
    df = _frame()
    df["f1"] = column
    X, y, w = _inputs(df, kind)
    with no_fit_submitted(), pytest.raises(TypeError, match="X has columns that base models"):
        _learner("T", client=client).fit(X, y, w)
    with pytest.raises(TypeError, match=match):
        _learner("T", client=client).fit(X, y, w)


# --- empty data, dimensions, dtypes, column names -----------------------------------------


def test_no_rows(client):
    """All partitions empty (a filter that kept nothing), or empty in-memory data."""
    ddf = dd.from_pandas(_frame(), npartitions=3)
    empty = ddf[ddf["y"] > 1e9]
    with no_fit_submitted(), pytest.raises(ValueError, match=r"no rows \(all 3 partitions"):
        _learner("DR", client=client).fit(empty[FEATURES], empty["y"], empty["w"])
    X, y, w = _inputs(_frame().iloc[:0], "pandas")
    with no_fit_submitted(), pytest.raises(ValueError, match=r"X has no rows"):
        _learner("T", client=client).fit(X, y, w)


@pytest.mark.parametrize(
    ("make_X", "match"),
    [
        (lambda df: df["f0"].to_numpy(), r"X must be two-dimensional, got an array of shape"),
        (lambda df: df[FEATURES].to_numpy()[:, :, None], r"X must be two-dimensional"),
        (lambda df: df["f0"], r"X must be two-dimensional .*got a Series"),
        (lambda df: dd.from_pandas(df, npartitions=2)["f0"], r"X must be two-dimensional"),
    ],
    ids=["1-D array", "3-D array", "pandas Series", "Dask Series"],
)
def test_X_not_two_dimensional(client, make_X, match):
    df = _frame()
    X = make_X(df)
    y, w = (df["y"], df["w"]) if not isinstance(X, dd.Series) else (X * 0, X * 0)
    with no_fit_submitted(), pytest.raises(ValueError, match=match):
        _learner("T", client=client).fit(X, y, w)


def test_y_two_dimensional(client):
    X, y, w = _inputs(_frame(), "numpy")
    with no_fit_submitted(), pytest.raises(ValueError, match=r"y must be one-dimensional"):
        _learner("T", client=client).fit(X, np.c_[y, y], w)


@pytest.mark.parametrize("kind", ["pandas", "dask"])
def test_non_numeric_y_of_a_regression(client, kind):
    df = _frame()
    df["y"] = df["y"].round(2).astype(str)
    X, y, w = _inputs(df, kind)
    with no_fit_submitted(), pytest.raises(TypeError, match=r"y has dtype .*must be numeric"):
        _learner("DR", client=client).fit(X, y, w)


def test_reserved_and_duplicate_column_names(client):
    X, y, w = _inputs(_frame(), "pandas")
    with no_fit_submitted(), pytest.raises(ValueError, match=r"X has columns .*are reserved"):
        _learner("T", client=client).fit(X.rename(columns={"f0": "__dask_meta_f0"}), y, w)
    duplicated = X.set_axis(["f0", "f0", "f2"], axis=1)
    with no_fit_submitted(), pytest.raises(ValueError, match=r"X has duplicate column names"):
        _learner("T", client=client).fit(duplicated, y, w)


# --- constructor arguments --------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: TLearner("no", 2, LinearRegression),
            TypeError,
            r"is_classification must be a bool, got 'no'",
        ),
        (
            lambda: TLearner(False, 2, LinearRegression, persist="sometimes"),
            ValueError,
            r"persist must be True, False or 'auto', got 'sometimes'",
        ),
        (
            lambda: TLearner(False, 2, LinearRegression, plan="fast"),
            ValueError,
            r"plan must be None \(the planner's rule\), 'auto' \(a cost model chooses\) or a "
            r"dask_meta.Plan, got 'fast'",
        ),
        (
            lambda: TLearner(False, 2, LinearRegression()),
            TypeError,
            r"factory for variant_outcome_model must be an estimator class",
        ),
        (
            lambda: TLearner(False, 2, LinearRegression, nuisance_model_params=[1]),
            TypeError,
            r"params for variant_outcome_model must be a dict, got list",
        ),
        (
            lambda: TLearner(False, 2, LGBMRegressor, nuisance_model_params={"n_jobs": 0}),
            ValueError,
            r"n_jobs=0 is not supported",
        ),
        (
            lambda: TLearner(False, 2, LGBMRegressor, nuisance_model_params={"n_jobs": "4"}),
            TypeError,
            r"n_jobs='4' must be an int",
        ),
        (
            lambda: DRLearner(False, 2, LinearRegression, None, LogisticRegression),
            ValueError,
            r"treatment model treatment_model needs to be defined in treatment_model_factory",
        ),
        (
            lambda: DRLearner(
                False,
                2,
                LinearRegression,
                LinearRegression,
                LogisticRegression,
                fitted_nuisance_models={"nope": []},
            ),
            ValueError,
            r"keys present in fitted_nuisance_models should be a subset",
        ),
        (
            lambda: DRLearner(
                False,
                2,
                LinearRegression,
                LinearRegression,
                fitted_propensity_model=CrossFitEstimator(2, LogisticRegression),
            ),
            ValueError,
            r"fitted models passed for propensity_model are not fitted",
        ),
    ],
    ids=[
        "is_classification",
        "persist",
        "plan",
        "factory instance",
        "params list",
        "n_jobs 0",
        "n_jobs str",
        "no treatment factory",
        "fitted_nuisance_models key",
        "unfitted propensity model",
    ],
)
def test_bad_constructor_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


# --- infeasible resource requests -----------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "kind"),
    [
        ({"nuisance_model_params": {"num_threads": 2}}, "variant_outcome_model"),
        ({"treatment_model_params": {"n_jobs": 4}}, "treatment_model"),
        ({"propensity_model_params": {"n_jobs": 3}}, "propensity_model"),
    ],
)
def test_thread_request_no_worker_can_meet(client, params, kind):
    """The session cluster's workers have 1 thread each: a request for more would wait
    forever in Dask, so fit rejects it, naming the model, the request and the largest
    worker."""
    factories = {
        "variant_outcome_model": LGBMRegressor,
        "treatment_model": LGBMRegressor,
        "propensity_model": LGBMClassifier,
    }
    learner = DRLearner(
        False,
        3,
        factories["variant_outcome_model"],
        factories["treatment_model"],
        factories["propensity_model"],
        n_folds=2,
        client=client,
        **params,
    )
    requested = next(iter(next(iter(params.values())).values()))
    X, y, w = _inputs(_frame(), "dask")
    with (
        no_fit_submitted(),
        pytest.raises(
            ValueError,
            match=rf"the {kind} model asks for {requested} threads per model, but the largest "
            r"worker \(tcp://[\d.:]+\) has 1 threads",
        ),
    ):
        learner.fit(X, y, w)


@settings(max_examples=8, deadline=None)
@given(
    threads=st.integers(2, 256),
    name=st.sampled_from(["n_jobs", "num_threads", "nthread"]),
    which=st.sampled_from(["nuisance_model_params", "treatment_model_params"]),
)
def test_generated_thread_requests_beyond_the_cluster(client, threads, name, which):
    """Any thread count above the largest worker's, under any of the thread parameters
    LightGBM understands, for any model: rejected before any job runs."""
    learner = XLearner(
        False,
        2,
        LGBMRegressor,
        LGBMRegressor,
        LGBMClassifier,
        n_folds=2,
        client=client,
        **{which: {name: threads, "verbose": -1}},
    )
    X, y, w = _inputs(_frame(n=200, n_variants=2), "numpy")
    with no_fit_submitted(), pytest.raises(ValueError, match=rf"asks for {threads} threads"):
        learner.fit(X, y, w)


# --- folds lacking a variant ------------------------------------------------------------------


def _one_row_of_variant_2() -> pd.DataFrame:
    df = _frame()
    df.loc[df["w"] == 2, "w"] = 1
    df.loc[0, "w"] = 2
    return df


@pytest.mark.parametrize("kind", INPUTS)
def test_fold_lacking_a_variant(client, kind):
    """Variant 2 has one row: fewer rows than folds for its outcome model (T), and a fold
    model of all rows trained without variant 2 (S)."""
    X, y, w = _inputs(_one_row_of_variant_2(), kind)
    with (
        no_fit_submitted(),
        pytest.raises(
            ValueError,
            match=r"variant_outcome_model 2 is cross-fitted on 1 rows \(variants \[2\]\), fewer "
            r"than its n_folds=2",
        ),
    ):
        _learner("T", client=client).fit(X, y, w)
    with (
        no_fit_submitted(),
        pytest.raises(
            ValueError,
            match=r"the training rows of fold \d of base_model lack treatment variants \[2\]",
        ),
    ):
        _learner("S", client=client).fit(X, y, w)


# --- fitting single models --------------------------------------------------------------------


def test_fit_single_model_arguments(client):
    X, y, w = _inputs(_frame(), "numpy")
    learner = _learner("DR", client=client)
    with no_fit_submitted():
        with pytest.raises(ValueError, match=r"cv is not supported by dask_meta"):
            learner.fit_nuisance(X, y, "variant_outcome_model", 0, cv=[[0, 1]])
        with pytest.raises(ValueError, match=r"model_ord for variant_outcome_model must be in"):
            learner.fit_nuisance(X, y, "variant_outcome_model", 3)
        with pytest.raises(ValueError, match=r"'nope' is not a nuisance model of DRLearner"):
            learner.fit_nuisance(X, y, "nope", 0)
        with pytest.raises(ValueError, match=r"'nope' is not a treatment model of DRLearner"):
            learner.fit_treatment(X, y, "nope", 0)
        with pytest.raises(ValueError, match=r"nuisance model .* not fitted; call fit_all_nuis"):
            learner.fit_all_treatment(X, y, w)


# --- prediction arguments -------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted_variants(client):
    """Learners whose configuration restricts the oos_method: a classification T-learner,
    a T-learner without cross-fitting (n_folds=1) and an R-learner."""
    df = _frame(n=300)
    X, y, w = _inputs(df, "numpy")
    y_class = (y > np.median(y)).astype(int)
    return {
        "classifier": (_learner("T", classification=True, client=client).fit(X, y_class, w), X),
        "no cross-fitting": (_learner("T", n_folds=1, client=client).fit(X, y, w), X),
        "R": (
            _learner("R", n_variants=2, client=client).fit(X, y, (w > 0).astype(int)),
            X,
        ),
    }


@pytest.mark.parametrize(
    ("learner", "call", "match"),
    [
        (
            "classifier",
            lambda m, X: m.predict(X, is_oos=True, oos_method="median"),
            r"Cannot create median of class probabilities",
        ),
        (
            "classifier",
            lambda m, X: m.predict_conditional_average_outcomes(X, True, "median"),
            r"Cannot create median of class probabilities",
        ),
        (
            "no cross-fitting",
            lambda m, X: m.predict(X, is_oos=True, oos_method="mean"),
            r"n_folds=1\), so only oos_method='overall'",
        ),
        (
            "no cross-fitting",
            lambda m, X: m.predict_nuisance(X, "variant_outcome_model", 0, True, "median"),
            r"n_folds=1\), so only oos_method='overall'",
        ),
        (
            "R",
            lambda m, X: m.predict_conditional_average_outcomes(X, True, "median"),
            r"Cannot create median of class probabilities.*use oos_method='overall' or 'mean'",
        ),
        (
            "classifier",
            lambda m, X: m.predict_nuisance(X, "variant_outcome_model", 5, True),
            r"model_ord for variant_outcome_model must be an int in 0\.\.2.*got 5",
        ),
        (
            "classifier",
            lambda m, X: m.predict_nuisance(X, "treatment_model", 0, True),
            r"'treatment_model' is not a nuisance model of TLearner",
        ),
        (
            "R",
            lambda m, X: m.predict_treatment(X, "treatment_model", 1, True),
            r"model_ord for treatment_model must be an int in 0\.\.0",
        ),
        (
            "classifier",
            lambda m, X: m.evaluate(
                X,
                np.zeros(len(X)),
                np.zeros(len(X)),
                True,
                scoring={"variant_outcome_model": "neg_log_loss"},
            ),
            r"scoring\['variant_outcome_model'\] must be a list",
        ),
    ],
    ids=[
        "median of probabilities",
        "median of probabilities (CAO)",
        "mean without folds",
        "median without folds",
        "R CAO median",
        "model_ord out of range",
        "treatment kind as nuisance",
        "R treatment model_ord",
        "scoring not a list",
    ],
)
def test_prediction_method_combinations(fitted_variants, learner, call, match):
    model, X = fitted_variants[learner]
    with no_fit_submitted(), pytest.raises((ValueError, TypeError), match=match):
        call(model, X)


def test_cross_fit_estimator_oos_methods(client):
    X, y, _ = _inputs(_frame(n=300), "numpy")
    classifier = CrossFitEstimator(2, LogisticRegression, client=client).fit(X, y > 0)
    with pytest.raises(ValueError, match=r"Cannot create a mean of classes"):
        classifier.predict(X, is_oos=True, oos_method="mean")
    no_overall = CrossFitEstimator(2, LinearRegression, enable_overall=False, client=client)
    no_overall.fit(X, y)
    with pytest.raises(ValueError, match=r"oos_method='overall' needs the overall model"):
        no_overall.predict(X, is_oos=True, oos_method="overall")
    with pytest.raises(ValueError, match=r"This CrossFitEstimator is not fitted yet"):
        CrossFitEstimator(2, LinearRegression).predict(X, is_oos=True)


# --- generated misalignment -----------------------------------------------------------------


@settings(max_examples=8, deadline=None)
@given(
    cuts=st.lists(st.integers(1, N - 1), min_size=2, max_size=2, unique=True),
    shift=st.integers(1, 40),
    vector=st.sampled_from(["y", "w"]),
)
def test_generated_misaligned_partitions(client, cuts, shift, vector):
    """X, y and w as separate Dask collections with the same number of partitions but
    other partition boundaries for one vector: found in the first pass over the data,
    naming the vector, before any fit job."""
    a, b = sorted(cuts)
    df = _frame()
    bounds = [(0, a), (a, b), (b, N)]
    moved = [(0, max(1, a - shift)), (max(1, a - shift), b), (b, N)]
    if moved == bounds:
        moved = [(0, a), (a, min(N - 1, b + shift)), (min(N - 1, b + shift), N)]
    if moved == bounds or any(lo >= hi for lo, hi in moved):
        return

    def pieces(column, ranges):
        return dd.concat(
            [dd.from_pandas(df[column].iloc[lo:hi], npartitions=1) for lo, hi in ranges]
        )

    X = dd.concat([dd.from_pandas(df[FEATURES].iloc[lo:hi], npartitions=1) for lo, hi in bounds])
    vectors = {c: pieces(c, bounds) for c in ("y", "w")}
    vectors[vector] = pieces(vector, moved)
    with (
        no_fit_submitted(),
        pytest.raises(ValueError, match=rf"{vector} and X are partitioned differently"),
    ):
        _learner("T", client=client).fit(X, vectors["y"], vectors["w"])


def test_sparse_x_is_rejected_with_a_clear_error(default_client):
    import scipy.sparse

    X = scipy.sparse.csr_matrix(np.eye(20, 3))
    learner = TLearner(False, 2, LinearRegression, n_folds=2)
    with pytest.raises(TypeError, match="X is a scipy sparse csr_matrix: dask-meta takes dense"):
        learner.fit(X, np.zeros(20), np.arange(20) % 2)


# --- base models that misbehave -----------------------------------------------------------


@pytest.mark.parametrize(("is_oos", "which"), [(True, "overall model"), (False, "fold [01] model")])
def test_wrong_length_predictions_name_the_model_and_fold(client, is_oos, which):
    from _models import WrongLengthRegressor

    X, y, w = _inputs(_frame(n=200, n_variants=2), "numpy")
    learner = TLearner(False, 2, WrongLengthRegressor, n_folds=2, client=client)
    learner.fit(X, y, w)
    with pytest.raises(
        ValueError,
        match=rf"the variant_outcome_model 0's {which} \(WrongLengthRegressor\.predict\) "
        r"returned an array of shape \(\d+,\) for \d+ rows",
    ):
        learner.predict(X, is_oos=is_oos)


# --- evaluate: the values fit checks -------------------------------------------------------


#: y and w that fit refuses: (change (y, w), message)
VALUE_ERRORS = {
    "w-out-of-range": (lambda y, w: (y, w + 1), r"w has values \[1, 2, 3\]; expected 0\.\.n_"),
    "y-nan": (lambda y, w: (np.where(w == 1, np.nan, y), w), r"y has \d+ missing values \(NaN\)"),
    "y-inf": (lambda y, w: (np.where(w == 2, np.inf, y), w), r"y has \d+ infinite values"),
    "w-nan": (lambda y, w: (y, np.where(w == 0, np.nan, w)), r"w has \d+ missing values"),
}


@pytest.mark.parametrize("case", list(VALUE_ERRORS))
@pytest.mark.parametrize("entry", ["evaluate", "average_treatment_effect"])
@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_entry_points_of_y_and_w_check_their_values_as_fit_does(fitted_dr, kind, entry, case):
    """evaluate gave scores of NaN for these and the ATE an estimate: now the ValueError
    fit raises."""
    change, match = VALUE_ERRORS[case]
    learner, df = fitted_dr[kind]
    y, w = change(df["y"].to_numpy(), df["w"].to_numpy().astype(float))
    X, y_in, w_in = _inputs(df.assign(y=y, w=w), kind)
    with pytest.raises(ValueError, match=match):
        ENTRY_POINTS[entry](learner, X, y_in, w_in)


def test_evaluate_accepts_held_out_data_without_every_variant(fitted):
    learner, _, df = fitted["numpy"]
    X, y, w = _inputs(df[df["w"] != 2], "numpy")
    scores = learner.evaluate(X, y, w, is_oos=True)
    assert np.isfinite(scores["variant_outcome_model_0_neg_root_mean_squared_error"])


# --- fit parameters and folds in the user's terms -----------------------------------------


@pytest.mark.parametrize(
    ("kind", "weights", "error", "match"),
    [
        ("numpy", np.ones(N - 1), ValueError, rf"has shape \({N - 1},\) but X has {N} rows"),
        ("pandas", np.ones(N + 5), ValueError, rf"has shape \({N + 5},\) but X has {N} rows"),
        ("dask", np.ones(N), TypeError, r"is in memory but X is a Dask collection"),
    ],
    ids=["numpy-short", "pandas-long", "dask-x-numpy-weights"],
)
def test_sample_weight_of_the_wrong_length_is_told_in_the_users_rows(
    client, kind, weights, error, match
):
    """Was reported by the base model in one variant's rows ("expected (415,)")."""
    X, y, w = _inputs(_frame(), kind)
    with no_fit_submitted(), pytest.raises(error, match=r"fit_params\['sample_weight'\] " + match):
        _learner("T", client=client).fit(X, y, w, fit_params={"sample_weight": weights})


@pytest.mark.parametrize("strategy", ["partition", "hash"])
def test_a_variant_with_fewer_rows_than_n_folds_is_refused(client, strategy):
    """metalearners and fold_strategy="sklearn" raise; the other strategies fitted silently."""
    df = _frame()
    df["w"] = np.where(np.arange(N) < 3, 1, np.where(np.arange(N) < 300, 2, 0))
    df["id"] = np.arange(N)
    X, y, w = _inputs(df, "pandas")
    kwargs = {"fold_strategy": strategy, "n_folds": 5, "feature_set": FEATURES}
    if strategy == "hash":
        X = df[[*FEATURES, "id"]]
        kwargs["fold_key"] = "id"
    with no_fit_submitted(), pytest.raises(ValueError, match=r"variant_outcome_model 1 is "):
        _learner("T", client=client, **kwargs).fit(X, y, w)
