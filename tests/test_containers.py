"""numpy, pandas and polars input of the same data: the same path, the same numbers.

In-memory input is split into the same partitions whatever its container, LightGBM's
models train on the same shared bins, and polars frames keep their names and dtypes
(categoricals included) as pandas frames do.
"""

from __future__ import annotations

import warnings

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import polars as pl
import pytest
from conftest import make_linear_data
from lightgbm import LGBMClassifier, LGBMRegressor

from dask_meta import DRLearner, RLearner, SLearner, TLearner, XLearner

PARAMS = {"n_estimators": 8, "num_leaves": 7, "verbose": -1}
LEARNERS = {"S": SLearner, "T": TLearner, "X": XLearner, "R": RLearner, "DR": DRLearner}


def _learner(name, client, n_variants, **kwargs):
    """The learner with LightGBM base models, a seed (``random_state=None`` draws new folds
    per fit, as in metalearners) and otherwise default arguments."""
    two_stage = name in ("X", "R", "DR")
    models = (LGBMRegressor, LGBMRegressor, LGBMClassifier) if two_stage else (LGBMRegressor,)
    params = {"nuisance_model_params": PARAMS}
    if two_stage:
        params |= {"treatment_model_params": PARAMS, "propensity_model_params": PARAMS}
    return LEARNERS[name](
        False, n_variants, *models, random_state=0, client=client, **params, **kwargs
    )


def _containers(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, tuple]:
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    return {
        "numpy": (X, y, w),
        "pandas": (frame, pd.Series(y), pd.Series(w)),
        "polars": (pl.from_pandas(frame), pl.Series("y", y), pl.Series("w", w)),
    }


@pytest.mark.parametrize("name", list(LEARNERS))
def test_numpy_pandas_and_polars_give_identical_cate(client, name):
    """Default arguments (the partition fold strategy, shared LightGBM bins): the three
    containers give bit-identical CATE in and out of sample, from the same plan. Before,
    numpy input trained on bins of its own per fit and gave other numbers than pandas."""
    n_variants = 2 if name == "R" else 3
    X, y, w, _ = make_linear_data(n=1_500, d=4, n_variants=n_variants, seed=4)
    results = {}
    for kind, (Xk, yk, wk) in _containers(X, y, w).items():
        learner = _learner(name, client, n_variants).fit(Xk, yk, wk)
        results[kind] = (
            learner.predict(Xk, is_oos=False),
            learner.predict(Xk, is_oos=True),
            learner.fit_report_.attrs["shared_bins"],
        )
    for kind in ("numpy", "polars"):
        np.testing.assert_array_equal(results[kind][0], results["pandas"][0])
        np.testing.assert_array_equal(results[kind][1], results["pandas"][1])
        assert results[kind][2] == results["pandas"][2]
    assert results["pandas"][2] is (name != "S")  # the S-learner trains each row once


def test_polars_keeps_names_and_categoricals(client):
    """A polars frame with a Categorical column, features chosen by name: the same fit,
    predictions and scores as the pandas frame of the same data (before: "X has no column
    names" for the names, "could not convert string to float" for the categorical)."""
    X, y, w, _ = make_linear_data(n=1_200, d=3, n_variants=2, seed=1)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    colours = np.random.default_rng(5).choice(["red", "green", "blue"], size=len(X))
    frame["colour"] = pd.Categorical(colours)
    frame["unused"] = 1.0
    y = y + 2.0 * (colours == "red") * w
    as_polars = pl.from_pandas(frame)
    assert as_polars.schema["colour"] == pl.Categorical
    features = ["a", "b", "colour"]
    out = {}
    for kind, (Xk, yk, wk) in {
        "pandas": (frame, pd.Series(y), pd.Series(w)),
        "polars": (as_polars, pl.Series(y), pl.Series(w)),
    }.items():
        learner = _learner("T", client, 2, feature_set=features).fit(Xk, yk, wk)
        out[kind] = (
            learner.predict(Xk, is_oos=False),
            learner.predict(Xk.head(50) if kind == "polars" else Xk.iloc[:50], is_oos=True),
            learner.evaluate(Xk, yk, wk, is_oos=False),
        )
    np.testing.assert_array_equal(out["polars"][0], out["pandas"][0])
    np.testing.assert_array_equal(out["polars"][1], out["pandas"][1])
    assert out["polars"][2] == out["pandas"][2]
    # the categorical column was used as one: red rows carry the effect
    red = colours == "red"
    cate = out["pandas"][0][:, 0, 0]
    assert cate[red].mean() > cate[~red].mean() + 1.0


def test_polars_explains_as_pandas(client):
    """The explainer of a learner fitted on polars: SHAP values of its treatment models on a
    polars X, and surrogate models fitted on a polars X, equal those of pandas."""
    import shap

    X, y, w, _ = make_linear_data(n=1_000, d=3, n_variants=2, seed=2)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    out = {}
    for kind, Xk, yk, wk in [
        ("pandas", frame, pd.Series(y), pd.Series(w)),
        ("polars", pl.from_pandas(frame), pl.Series(y), pl.Series(w)),
    ]:
        learner = _learner("DR", client, 2).fit(Xk, yk, wk)
        cate = learner.predict(Xk, is_oos=False)
        surrogate = learner.explainer(Xk, cate, LGBMRegressor, PARAMS)
        out[kind] = (
            learner.explainer().shap_values(Xk, shap.TreeExplainer),
            surrogate.feature_importances(feature_names=["a", "b", "c"]),
        )
    for got, expected in zip(out["polars"][0], out["pandas"][0], strict=True):
        np.testing.assert_array_equal(got, expected)
    for got, expected in zip(out["polars"][1], out["pandas"][1], strict=True):
        pd.testing.assert_series_equal(got, expected)


@pytest.mark.parametrize("kind", ["numpy", "pandas", "parquet"])
def test_default_fit_predict_and_evaluate_warn_nothing(client, tmp_path, kind):
    """In-memory input goes to the cluster once, inside one graph (so the scheduler can
    recompute a lost worker's partitions), not with every pass over it: no "Sending large
    graph" warning with its threshold below the data's size (above the fitted models',
    which a prediction's graph carries), and no other warning from a default fit, its
    predictions and its scores. Before, every scan, persist and prediction carried the data
    and warned."""
    X, y, w, _ = make_linear_data(n=40_000, d=6, n_variants=2, seed=1)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    if kind == "parquet":
        frame.assign(y=y, w=w).to_parquet(tmp_path / "data.parquet")
        ddf = dd.read_parquet(tmp_path / "data.parquet")
        data = (ddf[list(frame.columns)], ddf["y"], ddf["w"])
    else:
        data = _containers(X, y, w)[kind]
    assert frame.memory_usage().sum() > 1.5 * 2**20
    with (
        dask.config.set({"distributed.admin.large-graph-warning-threshold": "1 MiB"}),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        learner = TLearner(False, 2, LGBMRegressor, nuisance_model_params=PARAMS, client=client)
        learner.fit(*data)
        in_sample = learner.predict(data[0], is_oos=False)
        learner.predict(data[0], is_oos=True)
        learner.evaluate(*data, is_oos=False)
        if kind == "parquet":
            in_sample.compute()
    assert [str(c.message) for c in caught] == []


def test_in_sample_prediction_of_parquet_reads_it_once(client, tmp_path):
    """A training frame kept in the cluster's memory keeps its fold columns there too: the
    in-sample prediction of a parquet data set, computed on that cluster, reads X's row
    groups and nothing else (before, it read the file again for the fit's treatment and fold
    columns, a second read as long as the first). Data larger than memory
    (``persist=False``) read them again, as all else, and so does a prediction computed
    without a client (Dask's local scheduler cannot read the cluster's memory); all give the
    same CATE."""
    X, y, w, _ = make_linear_data(n=3_000, d=4, n_variants=2, seed=3)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame.assign(y=y, w=w).to_parquet(tmp_path / "data.parquet", row_group_size=1_000)
    ddf = dd.read_parquet(tmp_path / "data.parquet", split_row_groups=True)
    assert ddf.npartitions == 3
    features = ddf[list(frame.columns)]

    def reads(cate):
        return len([k for k in dict(cate.__dask_graph__()) if "read_parquet" in str(k)])

    learners, cates = {}, {}
    with client.as_current():
        for persist in (True, False):
            learners[persist] = _learner("T", client, 2, persist=persist)
            learners[persist].fit(features, ddf["y"], ddf["w"])
            in_sample = learners[persist].predict(features, is_oos=False)
            assert reads(in_sample) == (3 if persist else 6)
            cates[persist] = in_sample.compute()
    np.testing.assert_array_equal(cates[True], cates[False])
    # no current client: the lazy result is computed by Dask's local scheduler
    in_sample = learners[True].predict(features, is_oos=False)
    assert reads(in_sample) == 6
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(in_sample.compute(), cates[True])


def test_predictions_send_the_fitted_models_once(client, tmp_path):
    """A prediction's tasks read the fitted models from the cluster that computes it, where
    they are sent once, as a task's result: no "Sending large graph" warning from a
    learner whose models are larger than the threshold (the X-learner's 30 models at 1M rows
    and 100 trees were 12.6 MiB, more than Dask's 10 MiB), in or out of sample, with
    in-memory input or a lazy result computed on the cluster."""
    import pickle

    X, y, w, _ = make_linear_data(n=4_000, d=4, n_variants=3, seed=2)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame.assign(y=y, w=w).to_parquet(tmp_path / "data.parquet")
    ddf = dd.read_parquet(tmp_path / "data.parquet")
    learner = _learner("X", client, 3).fit(frame, y, w)
    threshold = 64 * 2**10
    assert len(pickle.dumps(learner)) > 4 * threshold
    lazy = _learner("X", client, 3).fit(ddf[list(frame.columns)], ddf["y"], ddf["w"])
    with (
        dask.config.set({"distributed.admin.large-graph-warning-threshold": threshold}),
        warnings.catch_warnings(record=True) as caught,
        client.as_current(),
    ):
        warnings.simplefilter("always")
        expected = {is_oos: learner.predict(frame, is_oos=is_oos) for is_oos in (False, True)}
        got = {
            is_oos: lazy.predict(ddf[list(frame.columns)], is_oos=is_oos).compute()
            for is_oos in (False, True)
        }
    assert [str(c.message) for c in caught] == []
    for is_oos in (False, True):
        np.testing.assert_array_equal(got[is_oos], expected[is_oos])
