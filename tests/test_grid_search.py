"""MetaLearnerGridSearch: metalearners' grid search suite, plus reading the data once."""

from __future__ import annotations

from collections import Counter
from types import GeneratorType

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask.utils import key_split
from distributed import get_task_stream
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import DRLearner, RLearner, SLearner, TLearner, XLearner
from dask_meta._constants import PROPENSITY_MODEL
from dask_meta.datasets import feature_names, make_experiment
from dask_meta.grid_search import MetaLearnerGridSearch

VARIANT_OUTCOME_MODEL = "variant_outcome_model"


@pytest.fixture(scope="module")
def grid_search_data():
    """Like metalearners' fixture: 250 training and 100 test rows, 4 variants."""
    rng = np.random.default_rng(1337)
    n, n_test, d, n_variants = 250, 100, 3, 4
    X = rng.standard_normal((n, d))
    X_test = rng.standard_normal((n_test, d))
    y_class = rng.integers(0, 2, n)
    y_test_class = rng.integers(0, 2, n_test)
    y_reg = rng.standard_normal(n)
    y_test_reg = rng.standard_normal(n_test)
    w = rng.integers(0, n_variants, n)
    w_test = rng.integers(0, n_variants, n_test)
    return X, y_class, y_reg, w, X_test, y_test_class, y_test_reg, w_test


LGBM = {"verbose": [-1]}


@pytest.mark.parametrize(
    "factory, is_classification, base_learner_grid, param_grid, n_configs, index",
    [
        (
            SLearner,
            False,
            {"base_model": [LinearRegression, LGBMRegressor]},
            {"base_model": {"LGBMRegressor": {"n_estimators": [1, 2], **LGBM}}},
            3,
            ["metalearner", "base_model", "base_model_n_estimators", "base_model_verbose"],
        ),
        (
            SLearner,
            True,
            {"base_model": [LogisticRegression, LGBMClassifier]},
            {"base_model": {"LGBMClassifier": {"n_estimators": [1, 2]}}},
            3,
            ["metalearner", "base_model", "base_model_n_estimators"],
        ),
        (
            TLearner,
            False,
            {"variant_outcome_model": [LinearRegression, LGBMRegressor]},
            {"variant_outcome_model": {"LGBMRegressor": {"n_estimators": [1, 2, 3]}}},
            4,
            ["metalearner", "variant_outcome_model", "variant_outcome_model_n_estimators"],
        ),
        (
            XLearner,
            False,
            {
                "variant_outcome_model": [LinearRegression],
                "propensity_model": [LGBMClassifier],
                "control_effect_model": [LGBMRegressor],
                "treatment_effect_model": [LGBMRegressor],
            },
            {
                "propensity_model": {"LGBMClassifier": {"n_estimators": [1, 2, 3]}},
                "control_effect_model": {"LGBMRegressor": {"n_estimators": [1, 2]}},
                "treatment_effect_model": {"LGBMRegressor": {"n_estimators": [1]}},
            },
            6,
            [
                "metalearner",
                "propensity_model",
                "propensity_model_n_estimators",
                "variant_outcome_model",
                "control_effect_model",
                "control_effect_model_n_estimators",
                "treatment_effect_model",
                "treatment_effect_model_n_estimators",
            ],
        ),
        (
            RLearner,
            False,
            {
                "outcome_model": [LinearRegression],
                "propensity_model": [LGBMClassifier],
                "treatment_model": [LGBMRegressor],
            },
            {
                "propensity_model": {"LGBMClassifier": {"n_estimators": [1, 2, 3]}},
                "treatment_model": {
                    "LGBMRegressor": {"n_estimators": [1, 2, 3], "learning_rate": [0.4]}
                },
            },
            9,
            [
                "metalearner",
                "outcome_model",
                "propensity_model",
                "propensity_model_n_estimators",
                "treatment_model",
                "treatment_model_learning_rate",
                "treatment_model_n_estimators",
            ],
        ),
        (
            DRLearner,
            False,
            {
                "variant_outcome_model": [LinearRegression],
                "propensity_model": [LGBMClassifier],
                "treatment_model": [LinearRegression],
            },
            {"propensity_model": {"LGBMClassifier": {"n_estimators": [1, 2, 3, 4]}}},
            4,
            [
                "metalearner",
                "propensity_model",
                "propensity_model_n_estimators",
                "variant_outcome_model",
                "treatment_model",
            ],
        ),
    ],
)
def test_grid_search_table(
    default_client, grid_search_data, factory, is_classification, base_learner_grid, param_grid,
    n_configs, index,
):  # fmt: skip
    X, y_class, y_reg, w, X_test, y_test_class, y_test_reg, w_test = grid_search_data
    y, y_test = (y_class, y_test_class) if is_classification else (y_reg, y_test_reg)
    gs = MetaLearnerGridSearch(
        factory,
        {"is_classification": is_classification, "n_variants": 4, "n_folds": 2},
        base_learner_grid,
        param_grid,
        random_state=0,
    )
    gs.fit(X, y, w, X_test, y_test, w_test)
    assert gs.grid_size_ == n_configs
    assert gs.results_.shape[0] == n_configs
    assert gs.results_.index.names == index
    train = {c[6:] for c in gs.results_.columns if c.startswith("train_")}
    test = {c[5:] for c in gs.results_.columns if c.startswith("test_")}
    assert train == test and train
    # each row is that candidate's own evaluate()
    for row, result in zip(gs.results_.itertuples(index=False), gs.raw_results_):
        assert row.fit_time == result.fit_time
        for name, value in result.train_scores.items():
            assert gs.results_.loc[:, f"train_{name}"].isin([value]).any()


def test_grid_search_reuses_prefitted_models(default_client, grid_search_data):
    X, _, y, w, X_test, _, y_test, w_test = grid_search_data
    tl = TLearner(
        False, 4, LGBMRegressor, nuisance_model_params={"verbose": -1, "n_estimators": 1}, n_folds=2
    ).fit(X, y, w)
    gs = MetaLearnerGridSearch(
        DRLearner,
        {
            "is_classification": False,
            "n_variants": 4,
            "n_folds": 5,
            "fitted_nuisance_models": {
                VARIANT_OUTCOME_MODEL: tl._nuisance_models[VARIANT_OUTCOME_MODEL]
            },
        },
        {
            "propensity_model": [LGBMClassifier, LogisticRegression],
            "treatment_model": [LGBMRegressor],
        },
        {
            "treatment_model": {"LGBMRegressor": {"n_estimators": [1, 2], "verbose": [-1]}},
            "propensity_model": {"LGBMClassifier": {"n_estimators": [1, 2, 3], "verbose": [-1]}},
        },
        random_state=1,
    )
    gs.fit(X, y, w, X_test, y_test, w_test)
    for result in gs.raw_results_:
        assert result.metalearner._prefitted_nuisance_models == {VARIANT_OUTCOME_MODEL}
    assert gs.results_.shape[0] == 8
    assert len(gs.results_.index.names) == 7

    rl = RLearner(
        False, 4, LGBMRegressor, LGBMRegressor, LGBMClassifier,
        nuisance_model_params={"verbose": -1, "n_estimators": 1},
        treatment_model_params={"verbose": -1, "n_estimators": 1},
        propensity_model_params={"verbose": -1, "n_estimators": 1}, n_folds=2,
    ).fit(X, y, w)  # fmt: skip
    gs = MetaLearnerGridSearch(
        DRLearner,
        {
            "is_classification": False,
            "n_variants": 4,
            "n_folds": 5,
            "fitted_propensity_model": rl._nuisance_models[PROPENSITY_MODEL][0],
        },
        {"treatment_model": [LGBMRegressor], "variant_outcome_model": [LinearRegression]},
        {"treatment_model": {"LGBMRegressor": {"n_estimators": [1, 2], "verbose": [-1]}}},
        random_state=1,
    )
    gs.fit(X, y, w, X_test, y_test, w_test)
    for result in gs.raw_results_:
        assert result.metalearner._prefitted_nuisance_models == {PROPENSITY_MODEL}
    assert gs.results_.shape[0] == 2
    assert len(gs.results_.index.names) == 5


@pytest.mark.parametrize(
    "store_raw, store, raw_type, results_type",
    [
        (True, True, list, pd.DataFrame),
        (True, False, list, type(None)),
        (False, True, type(None), pd.DataFrame),
        (False, False, GeneratorType, type(None)),
    ],
)
def test_grid_search_store(
    default_client, grid_search_data, store_raw, store, raw_type, results_type
):
    X, _, y, w, X_test, _, y_test, w_test = grid_search_data
    gs = MetaLearnerGridSearch(
        SLearner,
        {"is_classification": False, "n_variants": 4, "n_folds": 2},
        {"base_model": [LinearRegression, LGBMRegressor]},
        {"base_model": {"LGBMRegressor": {"n_estimators": [1, 2], "verbose": [-1]}}},
        store_raw_results=store_raw,
        store_results=store,
    )
    gs.fit(X, y, w, X_test, y_test, w_test)
    assert isinstance(gs.raw_results_, raw_type)
    assert isinstance(gs.results_, results_type)
    if raw_type is GeneratorType:
        assert len(list(gs.raw_results_)) == gs.grid_size_ == 3
    elif results_type is pd.DataFrame:
        assert len(gs.results_) == 3


def test_grid_search_errors(default_client, grid_search_data):
    X, _, y, w, *_ = grid_search_data
    params = {"is_classification": False, "n_variants": 4, "n_folds": 2, "random_state": 1}
    gs = MetaLearnerGridSearch(
        SLearner,
        params,
        {"base_model": [LinearRegression, LGBMRegressor]},
        {"base_model": {"LGBMRegressor": {"n_estimators": [1, 2]}}},
    )
    with pytest.raises(ValueError, match="should not be specified in metalearner_params"):
        gs.fit(X, y, w)
    with pytest.raises(ValueError, match="base_learner_grid keys don't match"):
        MetaLearnerGridSearch(TLearner, params, {"base_model": [LinearRegression]}, {})
    with pytest.raises(ValueError, match="n_jobs must be"):
        MetaLearnerGridSearch(SLearner, params, {"base_model": [LinearRegression]}, {}, n_jobs=0)


def _read_tasks(stream) -> int:
    """Tasks of the task stream that read parquet files."""
    return sum(1 for t in stream.data if "read" in key_split(t["key"]))


def test_grid_of_8_reads_the_data_once_and_equals_one_by_one_fits(default_client, tmp_path):
    """8 candidates on 200k rows: the parquet files are read once, by the search's persist;
    every candidate's scores equal a separate fit of the same configuration."""
    path = tmp_path / "experiment"
    make_experiment(200_000, 5, 3, seed=3, rows_per_partition=50_000).to_parquet(
        path, write_index=False
    )
    ddf = dd.read_parquet(path)
    features = feature_names(ddf)
    n_files = len(list(path.glob("*.parquet")))
    metalearner_params = {"is_classification": False, "n_variants": 3, "n_folds": 2}
    base_learner_grid = {"variant_outcome_model": [LGBMRegressor]}
    param_grid = {
        "variant_outcome_model": {
            "LGBMRegressor": {
                "n_estimators": [5, 10],
                "num_leaves": [7, 15],
                "learning_rate": [0.1, 0.3],
                "verbose": [-1],
            }
        }
    }
    gs = MetaLearnerGridSearch(
        TLearner, metalearner_params, base_learner_grid, param_grid, random_state=7
    )
    with get_task_stream(default_client) as stream:
        gs.fit(ddf[features], ddf["y"], ddf["w"])
    assert gs.grid_size_ == 8
    names = Counter(key_split(t["key"]) for t in stream.data)
    assert _read_tasks(stream) == n_files == 4, names

    for result in gs.raw_results_:
        params = result.metalearner.nuisance_model_params[VARIANT_OUTCOME_MODEL]
        alone = TLearner(
            **metalearner_params,
            nuisance_model_factory=LGBMRegressor,
            nuisance_model_params=params,
            random_state=7,
        )
        with get_task_stream(default_client) as own_stream:
            alone.fit(ddf[features], ddf["y"], ddf["w"])
            scores = alone.evaluate(ddf[features], ddf["y"], ddf["w"], is_oos=False)
        assert _read_tasks(own_stream) >= n_files  # a fit of its own reads the files itself
        assert scores.keys() == result.train_scores.keys()
        for name, value in scores.items():
            assert result.train_scores[name] == pytest.approx(value, rel=1e-12, abs=1e-12)
        if result is gs.raw_results_[0]:
            np.testing.assert_array_equal(
                np.asarray(alone.predict(ddf[features], is_oos=True)),
                np.asarray(result.metalearner.predict(ddf[features], is_oos=True)),
            )
