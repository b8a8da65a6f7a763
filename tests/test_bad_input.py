"""Bad input: every mistake gives a ValueError or TypeError naming the argument
and the problem, raised before any fit job reaches the cluster.

"Before any fit job" is checked by recording ``Planner._submit``, the single place where
fit tasks are submitted (cheap data passes such as the first scan over y and w may run).

Each entry point has one table of mistakes, ``id: (arrange, expected error)``, run by one
test: the constructors, ``fit``, the single-model fits and the prediction methods; and every
entry point that takes X of a fitted learner has the tables of the training schema and of
y and w. An expected error is an exception instance: its type, and a regex of its message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from _models import NoSampleWeightRegressor, PredictFailsRegressor, WrongLengthRegressor
from conftest import make_linear_data
from hypothesis import given, settings
from hypothesis import strategies as st
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import (
    CrossFitEstimator,
    DRLearner,
    RLearner,
    SLearner,
    TLearner,
    XLearner,
    write_predictions,
)
from dask_meta.planner import Planner

FEATURES = ["f0", "f1", "f2"]
N = 600
INPUTS = ("numpy", "pandas", "dask")
IN_MEMORY = ("numpy", "pandas")
FRAMES = ("pandas", "dask")
NUMPY, PANDAS, DASK = ("numpy",), ("pandas",), ("dask",)
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


def _raises(error: Exception):
    """``pytest.raises`` for an expected error: its type, and its message as a regex."""
    return pytest.raises(type(error), match=str(error))


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
    args = {
        "nuisance_model_factory": LogisticRegression if classification else LinearRegression,
        "n_folds": 2,
        "random_state": 0,
        "client": client,
    }
    if name in ("X", "R", "DR"):
        args |= {
            "treatment_model_factory": LinearRegression,
            "propensity_model_factory": LogisticRegression,
        }
    args |= kwargs
    return LEARNERS[name](classification, n_variants, **args)


def _fit(
    change=None,
    name="T",
    *,
    kinds=INPUTS,
    classification=False,
    n_variants=3,
    inputs=_inputs,
    then=None,
    fit_kwargs=None,
    **learner_kwargs,
):
    """A fit case: the input ``kinds`` it runs with, and ``arrange(kind, client)``: the
    training frame changed by ``change``, made into X, y and w of the kind by ``inputs``
    and changed by ``then(X, y, w)``, the learner, and the keyword arguments of fit (a
    dict, or a function of the kind)."""

    def arrange(kind, client):
        df = _frame(n_variants=n_variants, classification=classification)
        X, y, w = inputs(df if change is None else change(df), kind)
        if then is not None:
            X, y, w = then(X, y, w)
        learner = _learner(name, classification, n_variants, client, **learner_kwargs)
        kwargs = fit_kwargs(kind) if callable(fit_kwargs) else fit_kwargs or {}
        return learner, (X, y, w), kwargs

    return kinds, arrange


@pytest.fixture(scope="module")
def fitted(client):
    """A fitted T-learner and its training data, for the prediction errors (numpy and Dask)."""
    df = _frame()
    out = {}
    for kind in ("numpy", "dask"):
        X, y, w = _inputs(df, kind)
        out[kind] = (_learner("T", client=client).fit(X, y, w), X, df)
    return out


@pytest.fixture(scope="module")
def fitted_dr(client):
    """A fitted DR-learner and its training frame, per input kind (every entry point of X)."""
    df = _frame()
    return {
        kind: (_learner("DR", client=client).fit(*_inputs(df, kind)), df)
        for kind in ("numpy", "pandas", "dask")
    }


@pytest.fixture(scope="module")
def predictors(client, fitted):
    """Estimators for the prediction errors, each with the X it was fitted on: the
    T-learners of ``fitted``, learners whose configuration restricts the oos_method (a
    classifier, no cross-fitting, an R-learner), one whose base model predicts a row too
    few, cross-fit estimators, and unfitted learners."""
    X, y, w = _inputs(_frame(n=300), "numpy")
    X2, y2, w2 = _inputs(_frame(n=200, n_variants=2), "numpy")
    classes = (y > np.median(y)).astype(int)
    no_overall = CrossFitEstimator(2, LinearRegression, enable_overall=False, client=client)
    wrong_length = TLearner(False, 2, WrongLengthRegressor, n_folds=2, client=client)
    fails = TLearner(False, 2, PredictFailsRegressor, n_folds=2, client=client)
    out = {
        "T-numpy": fitted["numpy"][:2],
        "T-dask": fitted["dask"][:2],
        "classifier": (_learner("T", classification=True, client=client).fit(X, classes, w), X),
        "no-cross-fitting": (_learner("T", n_folds=1, client=client).fit(X, y, w), X),
        "R": (_learner("R", n_variants=2, client=client).fit(X, y, (w > 0).astype(int)), X),
        "wrong-length": (wrong_length.fit(X2, y2, w2), X2),
        "fails": (fails.fit(X2, y2, w2), X2),
        "CFE-classifier": (
            CrossFitEstimator(2, LogisticRegression, client=client).fit(X, y > 0),
            X,
        ),
        "CFE-no-overall": (no_overall.fit(X, y), X),
        "CFE-unfitted": (CrossFitEstimator(2, LinearRegression), X),
    }
    X = fitted["numpy"][1]
    return out | {f"{name}-unfitted": (_learner(name, client=client), X) for name in LEARNERS}


class ZeroExplainer:
    """A SHAP-style explainer (``model=``) whose values are all zero."""

    def __init__(self, model):
        self.model = model

    def shap_values(self, X):
        return np.zeros((len(X), X.shape[1]))


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


def test_recorder_sees_the_fit_jobs_of_a_valid_fit(client):
    """Positive control: the patched ``Planner._submit`` does see fit jobs."""
    X, y, w = _inputs(_frame(n=200), "numpy")
    with pytest.raises(AssertionError, match="fit jobs were submitted"), no_fit_submitted():
        _learner("T", client=client).fit(X, y, w)


# --- constructors -------------------------------------------------------------------------


def _t(**kwargs):
    """Construction of a T-learner (regression, two variants) with ``kwargs``."""
    return lambda: TLearner(False, 2, LinearRegression, **kwargs)


def _dr(*factories, **kwargs):
    """Construction of a DR-learner (regression, two variants) with ``kwargs``."""
    factories = factories or (LinearRegression, LinearRegression, LogisticRegression)
    return lambda: DRLearner(False, 2, *factories, **kwargs)


#: mistakes in the arguments of a learner's constructor: (construct, expected error)
CONSTRUCTION_ERRORS = {
    "is_classification='no'": (
        lambda: TLearner("no", 2, LinearRegression),
        TypeError(r"is_classification must be a bool, got 'no'"),
    ),
    **{
        f"n_variants={value!r}": (
            lambda value=value: TLearner(False, value, LinearRegression),
            ValueError(r"n_variants needs to be an integer"),
        )
        for value in [1, 0, -3, 2.0, "3", True, None]
    },
    "persist": (
        _t(persist="sometimes"),
        ValueError(r"persist must be True, False or 'auto', got 'sometimes'"),
    ),
    "plan": (
        _t(plan="fast"),
        ValueError(
            r"plan must be None \(the cost model from 100,000 training rows, else the planner's "
            r"rule\), 'auto' \(the cost model\), 'rule' \(the planner's rule\) or a "
            r"dask_meta.Plan, got 'fast'"
        ),
    ),
    "n_folds=0": (_t(n_folds=0), ValueError(r"n_folds must be a positive int, got 0")),
    "random_state=0.5": (_t(random_state=0.5), TypeError(r"random_state must be an int or None")),
    "fold_strategy='bogus'": (
        _dr(fold_strategy="bogus"),
        ValueError(r"fold_strategy must be one of .*'bogus'"),
    ),
    "hash-without-fold_key": (
        _dr(fold_strategy="hash"),
        ValueError(r'fold_strategy="hash" needs fold_key'),
    ),
    "fold_key-without-hash": (
        _dr(fold_strategy="partition", fold_key="row_id"),
        ValueError(r"fold_key is only used with fold_strategy=\"hash\""),
    ),
    "fold_key=3": (
        _dr(fold_strategy="hash", fold_key=3),
        TypeError(r"fold_key must be a column name"),
    ),
    **{
        f"min_propensity={value!r}": (
            _dr(min_propensity=value),
            error(r"min_propensity must be (a number )?in \(0, 0.5\)"),
        )
        for error, values in [
            (ValueError, [0, 0.5, -0.1, np.nan]),
            (TypeError, ["0.01", True, None]),
        ]
        for value in values
    },
    # the base models: factories, their kind (regressor or classifier) and their params
    "factory-instance": (
        lambda: TLearner(False, 2, LinearRegression()),
        TypeError(r"factory for variant_outcome_model must be an estimator class"),
    ),
    **{
        f"regressor-as-{name}-{kind}": (
            lambda name=name: LEARNERS[name](
                True, 2, LinearRegression, LinearRegression, LogisticRegression
            ),
            ValueError(rf"{kind}.*'predict_proba'.*not a classifier"),
        )
        for name, kind in zip(
            LEARNERS,
            [
                "base_model",
                *["variant_outcome_model"] * 2,
                "outcome_model",
                "variant_outcome_model",
            ],
        )
    },
    **{
        f"classifier-as-{name}-{kind}": (
            lambda name=name: LEARNERS[name](
                False, 2, LinearRegression, LogisticRegression, LogisticRegression
            ),
            ValueError(rf"{kind}.*'predict'.*LogisticRegression is a class"),
        )
        for name, kind in [
            ("X", "effect_model"),
            ("R", "treatment_model"),
            ("DR", "treatment_model"),
        ]
    },
    "classifier-as-T-variant_outcome_model": (
        lambda: TLearner(False, 2, LogisticRegression),
        ValueError(r"variant_outcome_model.*is a classifier"),
    ),
    "regressor-as-propensity_model": (
        _dr(LinearRegression, LinearRegression, LinearRegression),
        ValueError(r"propensity_model.*'predict_proba'.*not a classifier"),
    ),
    "R-treatment-without-sample_weight": (
        lambda: RLearner(False, 2, LinearRegression, NoSampleWeightRegressor, LogisticRegression),
        ValueError(r"treatment_model's fit method does not support"),
    ),
    "params-list": (
        _t(nuisance_model_params=[1]),
        TypeError(r"params for variant_outcome_model must be a dict, got list"),
    ),
    "n_jobs=0": (
        lambda: TLearner(False, 2, LGBMRegressor, nuisance_model_params={"n_jobs": 0}),
        ValueError(r"n_jobs=0 is not supported"),
    ),
    "n_jobs='4'": (
        lambda: TLearner(False, 2, LGBMRegressor, nuisance_model_params={"n_jobs": "4"}),
        TypeError(r"n_jobs='4' must be an int"),
    ),
    "no-propensity-factory": (
        _dr(LinearRegression, LinearRegression),
        ValueError(r"propensity_model_factory"),
    ),
    "propensity-among-nuisance-factories": (
        _dr(
            {"variant_outcome_model": LinearRegression, "propensity_model": LogisticRegression},
            LinearRegression,
            LogisticRegression,
        ),
        ValueError(r"propensity_model_factory and not nuisance_model"),
    ),
    "no-treatment-factory": (
        _dr(LinearRegression, None, LogisticRegression),
        ValueError(
            r"treatment model treatment_model needs to be defined in treatment_model_factory"
        ),
    ),
    "fitted_nuisance_models-key": (
        _dr(fitted_nuisance_models={"nope": []}),
        ValueError(r"keys present in fitted_nuisance_models should be a subset"),
    ),
    "unfitted-propensity-model": (
        _dr(
            LinearRegression,
            LinearRegression,
            fitted_propensity_model=CrossFitEstimator(2, LogisticRegression),
        ),
        ValueError(r"fitted models passed for propensity_model are not fitted"),
    ),
}


@pytest.mark.parametrize("case", list(CONSTRUCTION_ERRORS))
def test_constructor_refuses_bad_arguments(case):
    construct, error = CONSTRUCTION_ERRORS[case]
    with _raises(error):
        construct()


# --- fit ----------------------------------------------------------------------------------


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


#: mistakes in w and y: (fit case, expected error)
FIT_DATA_ERRORS = {
    "w-outside-variants": (
        _fit(_set("w", 5, 3), "DR"),
        ValueError(
            r"^Number of variants present in the treatment are different than the number "
            r"specified at instantiation: w has values .*outside 0\.\.2"
        ),
    ),
    "w-missing-variant": (
        _fit(_merge_variant, "X"),
        ValueError(r"w has values .*\[1\] are missing"),
    ),
    "w-nan": (
        _fit(_set("w", [3, 400], np.nan, float)),
        ValueError(r"w has 2 missing values \(NaN\)"),
    ),
    "w-non-integer": (_fit(_set("w", 7, 1.5, float)), ValueError(r"w has 1 non-integer values")),
    # an infinite treatment is named as such, not as the int64 it would be cast to
    "w-inf": (_fit(_set("w", 9, np.inf, float)), ValueError(r"w has 1 (infinite|non-integer)")),
    "w-strings": (_fit(_string_w), TypeError(r"w has dtype .*must be integers")),
    "y-nan": (
        _fit(_set("y", [0, 10, 20], np.nan), "R"),
        ValueError(r"y has 3 missing values \(NaN\)"),
    ),
    "y-inf": (
        _fit(_set("y", [11, 12], [np.inf, -np.inf]), "DR"),
        ValueError(r"y has 2 infinite values"),
    ),
    "y-one-class": (
        _fit(_set("y", slice(None), 1), classification=True),
        ValueError(r"only one class"),
    ),
    **{
        f"y-multiclass-{name}": (
            _fit(_three_classes, name, classification=True),
            ValueError(r"does not support multiclass classification.*3 classes"),
        )
        for name in ("X", "R", "DR")
    },
    # three classes overall, but variant 2 never sees class 2 (T supports multi-class)
    "y-classes-differ": (
        _fit(_variant_2_without_class_2, classification=True),
        ValueError(r"Variants 0 and 2 have seen different sets"),
    ),
}


def _one_row_of_class_1_per_variant(df):
    df["y"] = 0
    df.loc[df.index[df["w"] == 0][0], "y"] = 1
    df.loc[df.index[df["w"] == 1][0], "y"] = 1
    return df


def _one_row_of_variant_2(df):
    df.loc[df["w"] == 2, "w"] = 1
    df.loc[0, "w"] = 2
    return df


def _three_rows_of_variant_1(df):
    df["w"] = np.where(np.arange(N) < 3, 1, np.where(np.arange(N) < 300, 2, 0))
    df["id"] = np.arange(N)
    return df


#: data whose folds would train a model without a class or a variant: (fit case, expected error)
FIT_FOLD_ERRORS = {
    # class 1 has two rows, one per variant: with 5 folds, the fold model of each variant
    # whose held-out fold holds that row would never see class 1
    "fold-lacking-a-class": (
        _fit(_one_row_of_class_1_per_variant, classification=True, n_variants=2, n_folds=5),
        ValueError(r"fold \d.*lack the classes \[1\]"),
    ),
    "one-row-of-a-variant": (
        _fit(_one_row_of_variant_2),
        ValueError(
            r"variant_outcome_model 2 is cross-fitted on 1 rows \(variants \[2\]\), fewer "
            r"than its n_folds=2"
        ),
    ),
    "fold-lacking-a-variant": (
        _fit(_one_row_of_variant_2, "S"),
        ValueError(r"the training rows of fold \d of base_model lack treatment variants \[2\]"),
    ),
    # metalearners and fold_strategy="sklearn" raise; these strategies fitted silently
    "variant-with-fewer-rows-than-n_folds-partition": (
        _fit(_three_rows_of_variant_1, kinds=PANDAS, n_folds=5, feature_set=FEATURES),
        ValueError(r"variant_outcome_model 1 is "),
    ),
    "variant-with-fewer-rows-than-n_folds-hash": (
        _fit(
            _three_rows_of_variant_1,
            kinds=PANDAS,
            inputs=lambda df, kind: (df[[*FEATURES, "id"]], df["y"], df["w"]),
            fold_strategy="hash",
            fold_key="id",
            n_folds=5,
            feature_set=FEATURES,
        ),
        ValueError(r"variant_outcome_model 1 is "),
    ),
}


def _separate_dask_frames(vector):
    """X, y and w as separate Dask frames (not co-aligned): ``vector`` in 2 partitions, the
    others in 3."""

    def inputs(df, kind):
        frames = {c: dd.from_pandas(df[c], npartitions=2 if c == vector else 3) for c in "yw"}
        X = dd.from_pandas(df[FEATURES], npartitions=3)
        assert X.npartitions == 3 and frames[vector].npartitions == 2
        return X, frames["y"], frames["w"]

    return inputs


def _w_partitioned_otherwise(df, kind):
    """Same partition count, other partition lengths for w."""
    bounds = ((0, 100), (100, 450), (450, N))
    w = dd.concat([dd.from_pandas(df["w"].iloc[a:b], npartitions=1) for a, b in bounds])
    assert w.npartitions == 3
    return dd.from_pandas(df[FEATURES], npartitions=3), dd.from_pandas(df["y"], npartitions=3), w


def _no_rows_after_a_filter(df, kind):
    """All partitions empty (a filter that kept nothing)."""
    ddf = dd.from_pandas(df, npartitions=3)
    empty = ddf[ddf["y"] > 1e9]
    return empty[FEATURES], empty["y"], empty["w"]


def _dask_series_as_X(df, kind):
    X = dd.from_pandas(df, npartitions=2)["f0"]
    return X, X * 0, X * 0


def _dask_arrays_and_pandas_w(df, kind):
    X, y = (da.from_array(v.to_numpy(), chunks=200) for v in (df[FEATURES], df["y"]))
    return X, y, df["w"]


#: X, y and w that do not fit together: lengths, partitions, dimensions, types, empty data,
#: column names and dtypes (the kinds are those of X): (fit case, expected error)
FIT_SHAPE_ERRORS = {
    "y-shorter": (
        _fit(kinds=IN_MEMORY, then=lambda X, y, w: (X, y[:-1], w)),
        ValueError(rf"y has {N - 1} rows but X has {N}"),
    ),
    "w-shorter": (
        _fit(kinds=IN_MEMORY, then=lambda X, y, w: (X, y, w[:-1])),
        ValueError(rf"w has {N - 1} rows but X has {N}"),
    ),
    **{
        f"{vector}-other-partition-count": (
            _fit(name="DR", kinds=DASK, inputs=_separate_dask_frames(vector)),
            ValueError(rf"X has 3 partitions but {vector} has 2"),
        )
        for vector in "yw"
    },
    # found by the first data pass
    "w-other-partition-lengths": (
        _fit(kinds=DASK, inputs=_w_partitioned_otherwise),
        ValueError(r"w and X are partitioned differently"),
    ),
    "y-is-dask": (
        _fit(kinds=PANDAS, then=lambda X, y, w: (X, dd.from_pandas(y, npartitions=3), w)),
        TypeError(r"y is a Dask collection but X is"),
    ),
    "w-in-memory": (
        _fit(kinds=DASK, inputs=_dask_arrays_and_pandas_w),
        TypeError(r"w must be a Dask Series or array"),
    ),
    "X-dask-array-of-sparse-chunks": (
        _fit(
            kinds=("scipy",),
            n_variants=2,
            inputs=lambda df, kind: (
                da.from_array(
                    scipy.sparse.csr_matrix(np.eye(20, 3)), chunks=(10, 3), asarray=False
                ),
                da.zeros(20, chunks=10),
                da.arange(20, chunks=10) % 2,
            ),
        ),
        TypeError("X is a Dask array of scipy sparse chunks"),
    ),
    "X-sparse-wrong-length-w": (
        _fit(
            kinds=("scipy",),
            n_variants=2,
            inputs=lambda df, kind: (
                scipy.sparse.csr_matrix(np.eye(20, 3)),
                np.zeros(20),
                np.arange(19) % 2,
            ),
        ),
        ValueError("w has 19 rows but X has 20"),
    ),
    "X-one-dimensional": (
        _fit(kinds=NUMPY, inputs=lambda df, kind: (df["f0"].to_numpy(), df["y"], df["w"])),
        ValueError(r"X must be two-dimensional, got an array of shape"),
    ),
    "X-three-dimensional": (
        _fit(
            kinds=NUMPY,
            inputs=lambda df, kind: (df[FEATURES].to_numpy()[:, :, None], df["y"], df["w"]),
        ),
        ValueError(r"X must be two-dimensional"),
    ),
    "X-series": (
        _fit(kinds=PANDAS, inputs=lambda df, kind: (df["f0"], df["y"], df["w"])),
        ValueError(r"X must be two-dimensional .*got a Series"),
    ),
    "X-dask-series": (
        _fit(kinds=DASK, inputs=_dask_series_as_X),
        ValueError(r"X must be two-dimensional"),
    ),
    "y-two-dimensional": (
        _fit(kinds=NUMPY, then=lambda X, y, w: (X, np.c_[y, y], w)),
        ValueError(r"y must be one-dimensional"),
    ),
    "w-two-dimensional": (
        _fit(kinds=NUMPY, then=lambda X, y, w: (X, y, np.c_[w, w])),
        ValueError(r"w must be one-dimensional"),
    ),
    "no-rows-after-a-filter": (
        _fit(name="DR", kinds=DASK, inputs=_no_rows_after_a_filter),
        ValueError(r"no rows \(all 3 partitions"),
    ),
    "no-rows": (_fit(lambda df: df.iloc[:0], kinds=PANDAS), ValueError(r"X has no rows")),
    "y-text-of-a-regression": (
        _fit(lambda df: df.assign(y=df["y"].round(2).astype(str)), "DR", kinds=FRAMES),
        TypeError(r"y has dtype .*must be numeric"),
    ),
    # a text column passed fit (parsed by the model) and broke predict; a datetime failed
    # in numpy's promotion: both are named at fit, before any work
    **{
        f"X-{label}-column": (
            _fit(lambda df, column=column: df.assign(f1=column), kinds=FRAMES),
            TypeError(rf"X has columns that base models cannot use: {match}"),
        )
        for label, column, match in [
            ("text", pd.Series(["1.5"] * N), r"'f1' \((object|str|string)"),
            (
                "datetime",
                pd.Series(pd.date_range("2020", periods=N)),
                r"'f1' \(datetime64\[\w+\]\)",
            ),
            (
                "timedelta",
                pd.Series(pd.to_timedelta(np.arange(N), "s")),
                r"'f1' \(timedelta64\[\w+\]\)",
            ),
        ]
    },
    "reserved-column-name": (
        _fit(kinds=PANDAS, then=lambda X, y, w: (X.rename(columns={"f0": "__dask_meta_f0"}), y, w)),
        ValueError(r"X has columns .*are reserved"),
    ),
    "duplicate-column-names": (
        _fit(kinds=PANDAS, then=lambda X, y, w: (X.set_axis(["f0", "f0", "f2"], axis=1), y, w)),
        ValueError(r"X has duplicate column names"),
    ),
}


def _ones(kind):
    return da.ones(N, chunks=200) if kind == "dask" else np.ones(N)


def _unequal_n_folds(name):
    """n_folds of 3 for one model of the learner, 2 for the others."""
    n_folds = dict.fromkeys(_learner(name).n_folds, 2)
    return n_folds | {min(n_folds): 3}


#: LightGBM for every model, whose thread parameters fit checks against the cluster
LGBM = {
    "nuisance_model_factory": LGBMRegressor,
    "treatment_model_factory": LGBMRegressor,
    "propensity_model_factory": LGBMClassifier,
}

#: arguments of the learner or of fit that do not suit the data or the cluster:
#: (fit case, expected error)
FIT_ARGUMENT_ERRORS = {
    "fold_key-not-a-column": (
        _fit(kinds=PANDAS, fold_strategy="hash", fold_key="row_id"),
        ValueError(r"fold_key='row_id' is not a column"),
    ),
    "feature_set-unknown-column": (
        _fit(kinds=FRAMES, feature_set=["f0", "nope"]),
        ValueError(r"feature_set for variant_outcome_model names columns \['nope'\]"),
    ),
    "feature_set-position-out-of-range": (
        _fit(kinds=NUMPY, feature_set=[0, 7]),
        ValueError(r"feature_set .*positions \[7\]"),
    ),
    **{
        f"{name}={value!r}": (_fit(name="X", kinds=NUMPY, fit_kwargs={name: value}), error)
        for name, value, error in [
            (
                "n_jobs_cross_fitting",
                0,
                ValueError(r"n_jobs_cross_fitting must be None, -1 or a positive int"),
            ),
            ("n_jobs_cross_fitting", 1.5, ValueError(r"n_jobs_cross_fitting must be")),
            (
                "n_jobs_base_learners",
                0,
                ValueError(r"n_jobs_base_learners must be None, -1 or a positive int"),
            ),
            (
                "synchronize_cross_fitting",
                "yes",
                TypeError(r"synchronize_cross_fitting must be a bool"),
            ),
            ("fit_params", [1, 2], TypeError(r"fit_params must be a dict")),
        ]
    },
    **{
        f"synchronize-unequal-n_folds-{name}": (
            _fit(
                name=name,
                kinds=NUMPY,
                n_folds=_unequal_n_folds(name),
                fit_kwargs={"synchronize_cross_fitting": True},
            ),
            ValueError(r"synchronization of cross-fitting.*n_folds"),
        )
        for name in ("X", "R", "DR")
    },
    **{
        case: (
            _fit(
                name="R",
                kinds=("numpy", "dask"),
                fit_kwargs=lambda kind, params=params: {"fit_params": params(kind)},
            ),
            ValueError(r"The parameter sample_weight of the R-learner's treatment model is set"),
        )
        for case, params in [
            ("R-sample_weight", lambda kind: {"sample_weight": _ones(kind)}),
            (
                "R-treatment-model-sample_weight",
                lambda kind: {"treatment": {"treatment_model": {"sample_weight": _ones(kind)}}},
            ),
        ]
    },
    # was reported by the base model in one variant's rows ("expected (415,)")
    "sample_weight-short": (
        _fit(kinds=NUMPY, fit_kwargs={"fit_params": {"sample_weight": np.ones(N - 1)}}),
        ValueError(rf"fit_params\['sample_weight'\] has shape \({N - 1},\) but X has {N} rows"),
    ),
    "sample_weight-long": (
        _fit(kinds=PANDAS, fit_kwargs={"fit_params": {"sample_weight": np.ones(N + 5)}}),
        ValueError(rf"fit_params\['sample_weight'\] has shape \({N + 5},\) but X has {N} rows"),
    ),
    "sample_weight-in-memory": (
        _fit(kinds=DASK, fit_kwargs={"fit_params": {"sample_weight": np.ones(N)}}),
        TypeError(r"fit_params\['sample_weight'\] is in memory but X is a Dask collection"),
    ),
    # the test cluster's workers have 1 thread each: a request for more would wait forever
    # in Dask, so fit rejects it, naming the model, the request and the largest worker
    **{
        f"threads-{model}": (
            _fit(name="DR", kinds=DASK, **LGBM, **{params: {thread: n}}),
            ValueError(
                rf"the {model} model asks for {n} threads per model, but the largest "
                r"worker \(tcp://[\d.:]+\) has 1 threads"
            ),
        )
        for model, params, thread, n in [
            ("variant_outcome_model", "nuisance_model_params", "num_threads", 2),
            ("treatment_model", "treatment_model_params", "n_jobs", 4),
            ("propensity_model", "propensity_model_params", "n_jobs", 3),
        ]
    },
}

FIT_ERRORS = FIT_DATA_ERRORS | FIT_FOLD_ERRORS | FIT_SHAPE_ERRORS | FIT_ARGUMENT_ERRORS


@pytest.mark.parametrize(
    ("case", "kind"),
    [
        pytest.param(case, kind, id=f"{kind}-{case}")
        for case, ((kinds, _), _) in FIT_ERRORS.items()
        for kind in kinds
    ],
)
def test_fit_refuses_bad_input(client, case, kind):
    """Every mistake, as each input kind of its row: the error fit raises, before any fit
    job reaches the cluster."""
    (_, arrange), error = FIT_ERRORS[case]
    learner, (X, y, w), kwargs = arrange(kind, client)
    with no_fit_submitted(), _raises(error):
        learner.fit(X, y, w, **kwargs)


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


# --- fitting single models ----------------------------------------------------------------


#: mistakes in the arguments of fit_nuisance, fit_treatment and fit_all_treatment of an
#: unfitted DR-learner: (call(learner, X, y, w), expected error)
SINGLE_MODEL_FIT_ERRORS = {
    "cv-fold-count": (
        lambda m, X, y, w: m.fit_nuisance(X, y, "variant_outcome_model", 0, cv=[[[0], [1]]]),
        ValueError(r"cv has 1 folds but n_folds is 2"),
    ),
    "cv-overlapping-test-rows": (
        lambda m, X, y, w: m.fit_nuisance(
            X, y, "variant_outcome_model", 0, cv=[(np.arange(2, N), [0, 1]), ([0, 1], [1])]
        ),
        ValueError(r"row 1 is in the test rows of more than one fold of cv"),
    ),
    "cv-train-rows-not-the-rest": (
        lambda m, X, y, w: m.fit_nuisance(
            X, y, "variant_outcome_model", 0, cv=[(np.arange(5, N), [0, 1]), ([0, 1], [2])]
        ),
        ValueError(r"the train rows of fold 0 of cv are not the rows outside its test rows"),
    ),
    "cv-out-of-range": (
        lambda m, X, y, w: m.fit_nuisance(
            X, y, "variant_outcome_model", 0, cv=[([N], [0]), ([0], [1])]
        ),
        ValueError(r"cv\[0\]\[0\] holds row positions outside"),
    ),
    "cv-dask-input": (
        lambda m, X, y, w: m.fit_nuisance(
            dd.from_pandas(pd.DataFrame(X, columns=FEATURES), npartitions=2),
            dd.from_pandas(pd.Series(y), npartitions=2),
            "variant_outcome_model",
            0,
            cv=[([1], [0]), ([0], [1])],
        ),
        ValueError(r"cv \(index lists per fold\) needs in-memory X.*fold_strategy"),
    ),
    "model_ord-out-of-range": (
        lambda m, X, y, w: m.fit_nuisance(X, y, "variant_outcome_model", 3),
        ValueError(r"model_ord for variant_outcome_model must be in"),
    ),
    "unknown-nuisance-model": (
        lambda m, X, y, w: m.fit_nuisance(X, y, "nope", 0),
        ValueError(r"'nope' is not a nuisance model of DRLearner"),
    ),
    "unknown-treatment-model": (
        lambda m, X, y, w: m.fit_treatment(X, y, "nope", 0),
        ValueError(r"'nope' is not a treatment model of DRLearner"),
    ),
    "treatment-before-nuisance": (
        lambda m, X, y, w: m.fit_all_treatment(X, y, w),
        ValueError(r"nuisance model .* not fitted; call fit_all_nuis"),
    ),
}


@pytest.mark.parametrize("case", list(SINGLE_MODEL_FIT_ERRORS))
def test_single_model_fits_refuse_bad_arguments(client, case):
    call, error = SINGLE_MODEL_FIT_ERRORS[case]
    X, y, w = _inputs(_frame(), "numpy")
    with no_fit_submitted(), _raises(error):
        call(_learner("DR", client=client), X, y, w)


# --- prediction ---------------------------------------------------------------------------


def _nudged(X, row, column):
    """A copy of X (numpy, or Dask in the same partitions) with one value changed: the same
    length, other values."""
    if isinstance(X, dd.DataFrame):
        return dd.from_pandas(_nudged(X.compute(), row, column), npartitions=X.npartitions)
    other = X.copy()
    if isinstance(other, pd.DataFrame):
        other.iloc[row, column] += 1.0
    else:
        other[row, column] += 1.0
    return other


def _computed(learner, result):
    """A lazy result of Dask input, computed: the in-sample checks of its partitions fail
    here, not in predict."""
    assert isinstance(result, da.Array)
    return learner.client.compute(result).result()


#: misuse of the prediction methods:
#: (estimator of ``predictors``, id): (call(estimator, the X it was fitted on), expected error)
PREDICT_ERRORS = {
    **{
        (f"{name}-unfitted", method): (call, ValueError(r"not fitted"))
        for name in LEARNERS
        for method, call in [
            ("predict", lambda m, X: m.predict(X, is_oos=True)),
            ("CAO", lambda m, X: m.predict_conditional_average_outcomes(X, is_oos=False)),
        ]
    },
    ("DR-unfitted", "ATE"): (
        lambda m, X: m.average_treatment_effect(X, np.zeros(N), np.zeros(N), False),
        ValueError(r"nuisance models need to be fitted"),
    ),
    ("CFE-unfitted", "predict"): (
        lambda m, X: m.predict(X, is_oos=True),
        ValueError(r"This CrossFitEstimator is not fitted yet"),
    ),
    **{
        (f"T-{kind}", case): (call, error)
        for kind in ("numpy", "dask")
        for case, call, error in [
            (
                "oos_method='foo'",
                lambda m, X: m.predict(X, is_oos=True, oos_method="foo"),
                ValueError(r"oos_method 'foo' not supported"),
            ),
            (
                "is_oos='no'",
                lambda m, X: m.predict(X, is_oos="no"),
                TypeError(r"is_oos must be a bool"),
            ),
        ]
    },
    ("T-numpy", "column-count"): (
        lambda m, X: m.predict(X[:, :2], is_oos=True),
        ValueError(r"X has 2 columns but the learner was fitted on 3"),
    ),
    # in-sample prediction of other data: numpy results are computed at once, so the error
    # surfaces in predict; Dask is lazy, so most surface when the result is computed
    ("T-numpy", "in-sample-other-values"): (
        lambda m, X: m.predict(_nudged(X, 17, 1), is_oos=False),
        ValueError(r"fingerprint.*training data|training data.*fingerprint"),
    ),
    ("T-numpy", "in-sample-CAO-reversed"): (
        lambda m, X: m.predict_conditional_average_outcomes(X[::-1], is_oos=False),
        ValueError(r"is_oos=False needs exactly the training data"),
    ),
    ("T-numpy", "in-sample-shorter"): (
        lambda m, X: m.predict(X[:-1], is_oos=False),
        ValueError(rf"has {N - 1} rows where the training data had {N}"),
    ),
    ("T-numpy", "in-sample-longer"): (
        lambda m, X: m.predict(np.vstack([X, X]), is_oos=False),
        ValueError(r"needs exactly the training data"),
    ),
    ("T-dask", "in-sample-other-values"): (
        lambda m, X: _computed(m, m.predict(_nudged(X, 450, 2), is_oos=False)),
        ValueError(r"partition 2 of X holds other values.*fingerprint"),
    ),
    ("T-dask", "in-sample-shorter"): (
        lambda m, X: _computed(
            m, m.predict(dd.from_pandas(X.compute().iloc[:-1], npartitions=3), is_oos=False)
        ),
        ValueError(r"partition \d of X has \d+ rows where the training data had"),
    ),
    ("T-dask", "in-sample-other-partition-count"): (
        lambda m, X: m.predict(dd.from_pandas(X.compute(), npartitions=2), is_oos=False),
        ValueError(r"X has 2 partitions where the training data had 3"),
    ),
    # oos_method and model arguments that the configuration of the estimator rules out
    ("classifier", "median-of-probabilities"): (
        lambda m, X: m.predict(X, is_oos=True, oos_method="median"),
        ValueError(r"Cannot create median of class probabilities"),
    ),
    ("classifier", "median-of-probabilities-CAO"): (
        lambda m, X: m.predict_conditional_average_outcomes(X, True, "median"),
        ValueError(r"Cannot create median of class probabilities"),
    ),
    ("classifier", "model_ord-out-of-range"): (
        lambda m, X: m.predict_nuisance(X, "variant_outcome_model", 5, True),
        ValueError(r"model_ord for variant_outcome_model must be an int in 0\.\.2.*got 5"),
    ),
    ("classifier", "treatment-kind-as-nuisance"): (
        lambda m, X: m.predict_nuisance(X, "treatment_model", 0, True),
        ValueError(r"'treatment_model' is not a nuisance model of TLearner"),
    ),
    ("classifier", "scoring-not-a-list"): (
        lambda m, X: m.evaluate(
            X,
            np.zeros(len(X)),
            np.zeros(len(X)),
            True,
            scoring={"variant_outcome_model": "neg_log_loss"},
        ),
        TypeError(r"scoring\['variant_outcome_model'\] must be a list"),
    ),
    ("no-cross-fitting", "mean"): (
        lambda m, X: m.predict(X, is_oos=True, oos_method="mean"),
        ValueError(r"n_folds=1\), so only oos_method='overall'"),
    ),
    ("no-cross-fitting", "median"): (
        lambda m, X: m.predict_nuisance(X, "variant_outcome_model", 0, True, "median"),
        ValueError(r"n_folds=1\), so only oos_method='overall'"),
    ),
    ("R", "CAO-median"): (
        lambda m, X: m.predict_conditional_average_outcomes(X, True, "median"),
        ValueError(
            r"Cannot create median of class probabilities.*use oos_method='overall' or 'mean'"
        ),
    ),
    ("R", "treatment-model_ord"): (
        lambda m, X: m.predict_treatment(X, "treatment_model", 1, True),
        ValueError(r"model_ord for treatment_model must be an int in 0\.\.0"),
    ),
    ("CFE-classifier", "mean-of-classes"): (
        lambda m, X: m.predict(X, is_oos=True, oos_method="mean"),
        ValueError(r"Cannot create a mean of classes"),
    ),
    ("CFE-no-overall", "overall"): (
        lambda m, X: m.predict(X, is_oos=True, oos_method="overall"),
        ValueError(r"oos_method='overall' needs the overall model"),
    ),
    # a base model that predicts a row too few is named with its fold
    **{
        ("wrong-length", f"{label}-predictions"): (
            lambda m, X, is_oos=is_oos: m.predict(X, is_oos=is_oos),
            ValueError(
                rf"the variant_outcome_model 0's {which} \(WrongLengthRegressor\.predict\) "
                r"returned an array of shape \(\d+,\) for \d+ rows"
            ),
        )
        for label, is_oos, which in [
            ("oos", True, "overall model"),
            ("in-sample", False, "fold [01] model"),
        ]
    },
    # a base model's own error at predict time keeps its message and gains a note naming it
    **{
        ("fails", f"{label}-predictions"): (
            lambda m, X, is_oos=is_oos: m.predict(X, is_oos=is_oos),
            RuntimeError(
                r"this model cannot predict\n"
                rf"dask_meta: while predicting with the variant_outcome_model [01]'s {which} "
                r"\(PredictFailsRegressor\.predict\) on \d+ rows"
            ),
        )
        for label, is_oos, which in [
            ("oos", True, "overall model"),
            ("in-sample", False, "fold [01] model"),
        ]
    },
}


@pytest.mark.parametrize(
    ("estimator", "case"), list(PREDICT_ERRORS), ids=[f"{e}-{c}" for e, c in PREDICT_ERRORS]
)
def test_prediction_refuses_bad_input(predictors, estimator, case):
    call, error = PREDICT_ERRORS[estimator, case]
    model, X = predictors[estimator]
    with no_fit_submitted(), _raises(error):
        call(model, X)


def test_in_sample_predict_accepts_the_training_data_itself(fitted):
    """The counterpart of the in-sample errors: the training data itself predicts
    in-sample, and the other values out-of-sample."""
    learner, X, _ = fitted["numpy"]
    assert learner.predict(X, is_oos=False).shape == (N, 2, 1)
    assert learner.predict(_nudged(X, 17, 1), is_oos=True).shape == (N, 2, 1)


# --- every entry point that takes X of a fitted learner -----------------------------------


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


@pytest.mark.parametrize("case", [c for c in SCHEMA_ERRORS if "extra" not in c])
@pytest.mark.parametrize("kind", ["pandas", "dask"])
def test_write_predictions_checks_the_training_schema_and_writes_nothing(
    fitted_dr, kind, case, tmp_path
):
    """write_predictions refuses X as predict does, and leaves no directory behind.
    (Extra columns are its documented exception: they are rows' ids to ``keep``.)"""
    make_X, error, match = SCHEMA_ERRORS[case]
    learner, df = fitted_dr["pandas"]
    X = make_X(df)
    if kind == "dask":
        X = (
            dd.from_pandas(X, npartitions=3)
            if isinstance(X, pd.DataFrame)
            else dd.from_pandas(pd.DataFrame(X), npartitions=3).to_dask_array(lengths=True)
        )
    with pytest.raises(error, match=match):
        write_predictions(learner, X, tmp_path / "out", is_oos=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["pandas", "dask"])
def test_write_predictions_selects_the_features_of_a_wider_x(fitted_dr, kind, tmp_path):
    learner, df = fitted_dr["pandas"]
    X = df[[*FEATURES, "y"]]
    if kind == "dask":
        X = dd.from_pandas(X, npartitions=3)
    write_predictions(learner, X, tmp_path / "out", is_oos=True)
    written = pd.read_parquet(tmp_path / "out").to_numpy()
    np.testing.assert_allclose(written, learner.predict(df[FEATURES], is_oos=True)[:, :, 0])


#: y and w that fit refuses: (change (y, w), message)
VALUE_ERRORS = {
    "w-out-of-range": (
        lambda y, w: (y, w + 1),
        r"^Treatment variant should be encoded with values 0\.\.2 and all variants should be "
        r"present: w has values \[1, 2, 3\]; expected 0\.\.n_",
    ),
    "y-nan": (lambda y, w: (np.where(w == 1, np.nan, y), w), r"y has \d+ missing values \(NaN\)"),
    "y-inf": (lambda y, w: (np.where(w == 2, np.inf, y), w), r"y has \d+ infinite values"),
    "w-nan": (lambda y, w: (y, np.where(w == 0, np.nan, w)), r"w has \d+ missing values"),
    # held-out data without variant 2: its models have no rows to be scored on (metalearners
    # raises sklearn's "Found array with 0 sample(s)"; the score was NaN)
    "w-without-a-variant": (
        lambda y, w: (y, np.where(w == 2, 1, w)),
        r"with every variant present \(variants \[2\] are missing\)",
    ),
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


def test_s_learner_evaluates_held_out_data_without_every_variant(client):
    """The S-learner's one model is scored on all rows: a variant missing from held-out
    data is no error there, and the score equals that of the rows given."""
    df = _frame()
    learner = _learner("S", client=client).fit(*_inputs(df, "numpy"))
    held_out = df[df["w"] != 2]
    X, y, w = _inputs(held_out, "numpy")
    scores = learner.evaluate(X, y, w, is_oos=True)
    outcomes = learner.predict_conditional_average_outcomes(X, is_oos=True)
    rmse = np.sqrt(np.mean((outcomes[np.arange(len(w)), w, 0] - y) ** 2))
    assert scores == pytest.approx({"base_model_neg_root_mean_squared_error": -rmse})
