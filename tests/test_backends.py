"""The stream and collection backends, and fits that read their data from source.

Real components throughout: dask-ml ``Incremental`` and GLMs, ``lightgbm.dask`` and
``xgboost.dask`` on the shared LocalCluster, parquet on disk.
"""

from __future__ import annotations

import dataclasses

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from conftest import make_linear_data
from dask._task_spec import Alias

# dask-ml and xgboost are optional for users but part of the test extra: no skipping here
from dask_ml.linear_model import LinearRegression as GLMRegression
from dask_ml.linear_model import LogisticRegression as GLMClassifier
from dask_ml.wrappers import Incremental
from distributed import Future
from distributed.diagnostics.plugin import SchedulerPlugin
from lightgbm import LGBMClassifier, LGBMRegressor
from lightgbm.dask import DaskLGBMClassifier, DaskLGBMRegressor
from sklearn.linear_model import LinearRegression, SGDClassifier, SGDRegressor
from xgboost.dask import DaskXGBClassifier, DaskXGBRegressor

from dask_meta import (
    DRLearner,
    PairwisePropensityClassifier,
    RLearner,
    SLearner,
    TLearner,
    XLearner,
)
from dask_meta.backends import (
    COLLECTION,
    LOCAL,
    STREAM,
    Design,
    FitSpec,
    RowSelection,
    backend_of,
    bins_key,
    fit_params_with_threads,
    lightgbm_float32,
    on_threads,
    stream_order,
)
from dask_meta.backends.worker_parts import one_part_per_worker as _one_part_per_worker
from dask_meta.cluster import cluster_shape
from dask_meta.planner import Planner

N_PARTS = 4


def _frames(n=4_000, d=4, n_variants=3, seed=0, classification=False):
    X, y, w, tau = make_linear_data(n, d, n_variants, seed, classification)
    chunk = n // N_PARTS
    Xd = dd.from_pandas(pd.DataFrame(X, columns=[f"x{i}" for i in range(d)]), chunksize=chunk)
    yd = dd.from_pandas(pd.Series(y, name="y"), chunksize=chunk)
    wd = dd.from_pandas(pd.Series(w, name="w"), chunksize=chunk)
    return Xd, yd, wd, X, y, w, tau


def _sgd(**kwargs):
    return {"estimator": SGDRegressor(random_state=0, **kwargs), "shuffle_blocks": False}


def _rmse(cate, tau):
    return float(np.sqrt(np.mean((cate - tau) ** 2)))


def test_backends_are_chosen_from_the_estimator_class():
    assert backend_of(LGBMRegressor) == LOCAL
    assert backend_of(Incremental) == STREAM
    assert backend_of(DaskLGBMRegressor) == COLLECTION
    assert backend_of(DaskXGBRegressor) == COLLECTION
    assert backend_of(GLMRegression) == COLLECTION


def test_stream_order_is_dask_ml_block_order():
    assert stream_order({"shuffle_blocks": False}, 5) == [0, 1, 2, 3, 4]
    order = stream_order({"shuffle_blocks": True, "random_state": 3}, 5)
    expected = list(range(5))
    np.random.RandomState(3).shuffle(expected)
    assert order == expected


@pytest.mark.parametrize("shuffle", [False, True])
def test_stream_fit_equals_dask_ml_incremental_on_the_same_blocks(client, shuffle):
    """The overall outcome model of variant 0 is Incremental.fit over the w == 0 rows of each
    partition, in dask-ml's block order."""
    Xd, yd, wd, X, y, w, _ = _frames()
    params = {
        "estimator": SGDRegressor(random_state=0),
        "shuffle_blocks": shuffle,
        "random_state": 7,
    }
    learner = TLearner(
        False,
        3,
        nuisance_model_factory=Incremental,
        nuisance_model_params=params,
        n_folds=2,
        client=client,
    )
    learner.fit(Xd, yd, wd)
    ours = learner._nuisance_models["variant_outcome_model"][0]._overall_estimator

    chunk = len(X) // N_PARTS
    blocks_X, blocks_y = [], []
    for p in range(N_PARTS):
        rows = slice(p * chunk, (p + 1) * chunk)
        keep = w[rows] == 0
        blocks_X.append(da.from_array(X[rows][keep], chunks=-1))
        blocks_y.append(da.from_array(y[rows][keep], chunks=-1))
    with client.as_current():
        reference = Incremental(**params).fit(da.concatenate(blocks_X), da.concatenate(blocks_y))
    np.testing.assert_array_equal(ours.coef_, reference.estimator_.coef_)
    np.testing.assert_array_equal(ours.intercept_, reference.estimator_.intercept_)
    assert learner.fit_report_["rows"].iloc[0] > 0


class _FinishedKeys(SchedulerPlugin):
    """Keys of the tasks that finished while installed on the (in-process) scheduler."""

    def __init__(self):
        self.keys: set[str] = set()

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "memory":
            self.keys.add(str(key))


def _stream_steps(keys) -> list[str]:
    return [k for k in keys if k.startswith("dask_meta-fit-") and "-part" in k]


def test_streaming_folds_read_each_partition_once(cluster, client):
    """The fold models and the overall model of a streaming estimator share one chain: each
    partition is read once for all of them, with the same models as one chain per fit."""
    Xd, yd, wd, *_ = _frames()

    def learner():
        return TLearner(
            False,
            3,
            Incremental,
            nuisance_model_params=_sgd(),
            n_folds=2,
            random_state=0,
            client=client,
        )

    plugin = _FinishedKeys()
    cluster.scheduler.add_plugin(plugin, name="finished-keys")
    try:
        fused = learner().fit(Xd, yd, wd)
        fused_keys, plugin.keys = plugin.keys, set()
        # n_jobs_cross_fitting=1 allows one fit of an estimator at a time: no fusing
        separate = learner().fit(Xd, yd, wd, n_jobs_cross_fitting=1)
        separate_keys = plugin.keys
    finally:
        cluster.scheduler.remove_plugin(name="finished-keys")
    # 3 outcome estimators x (N_PARTS - 1) intermediate steps; 2 folds + overall each when
    # separate
    assert len(_stream_steps(fused_keys)) == 3 * (N_PARTS - 1)
    assert all("-fused-" in k for k in _stream_steps(fused_keys))
    assert len(_stream_steps(separate_keys)) == 9 * (N_PARTS - 1)
    assert len(fused.fit_report_) == len(separate.fit_report_) == 9
    assert (fused.fit_report_["rows"].sort_values().to_numpy() > 0).all()
    for a, b in zip(
        fused._nuisance_models["variant_outcome_model"],
        separate._nuisance_models["variant_outcome_model"],
        strict=True,
    ):
        for ours, theirs in zip(
            [*a._estimators, a._overall_estimator],
            [*b._estimators, b._overall_estimator],
            strict=True,
        ):
            np.testing.assert_array_equal(ours.coef_, theirs.coef_)
    np.testing.assert_array_equal(
        fused.predict(Xd, is_oos=False).compute(), separate.predict(Xd, is_oos=False).compute()
    )


def test_streaming_learners_estimate_linear_effects(client):
    Xd, yd, wd, *_, tau = _frames(n=8_000)
    for cls in (TLearner, XLearner, DRLearner):
        extra = {}
        if cls is not TLearner:
            extra = {
                "treatment_model_factory": Incremental,
                "treatment_model_params": _sgd(),
                "propensity_model_factory": Incremental,
                "propensity_model_params": {
                    "estimator": SGDClassifier(loss="log_loss", alpha=0.1, random_state=0),
                    "shuffle_blocks": False,
                },
            }
        learner = cls(
            False,
            3,
            nuisance_model_factory=Incremental,
            nuisance_model_params=_sgd(),
            n_folds=2,
            client=client,
            **extra,
        )
        learner.fit(Xd, yd, wd)
        cate = learner.predict(Xd, is_oos=False).compute()[:, :, 0]
        # the effects are linear: a linear model recovers them far better than no model
        assert _rmse(cate, tau) < 0.3 * _rmse(np.zeros_like(tau), tau), cls.__name__
        oos = learner.predict(Xd, is_oos=True).compute()
        assert oos.shape == (len(tau), 2, 1)


def test_stream_classifier_gets_every_class_up_front(client):
    """SGDClassifier.partial_fit needs `classes` on its first call; dask-meta passes the
    propensity model's variants itself."""
    Xd, yd, wd, *_ = _frames()
    learner = DRLearner(
        False,
        3,
        nuisance_model_factory=LinearRegression,
        propensity_model_factory=Incremental,
        propensity_model_params={
            "estimator": SGDClassifier(loss="log_loss", alpha=0.1, random_state=0),
            "shuffle_blocks": False,
        },
        treatment_model_factory=LinearRegression,
        n_folds=2,
        client=client,
    )
    learner.fit(Xd, yd, wd)
    proba = learner.predict_nuisance(Xd, "propensity_model", 0, is_oos=False).compute()
    assert proba.shape == (4_000, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(learner._nuisance_models["propensity_model"][0].classes_) == [0, 1, 2]


def test_fit_without_persisting_equals_persisted_fit(client, tmp_path):
    """persist=False reads every pass from the parquet source; the numbers do not change."""
    X, y, w, _ = make_linear_data(4_000)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]).assign(y=y, w=w)
    dd.from_pandas(frame, npartitions=N_PARTS).to_parquet(tmp_path / "data")
    data = dd.read_parquet(tmp_path / "data")
    features = [c for c in data.columns if c.startswith("x")]
    cates = []
    original = Planner.persist_partitions
    for persist in (True, False):
        learner = XLearner(
            False,
            3,
            nuisance_model_factory=LGBMRegressor,
            nuisance_model_params={"n_estimators": 10, "verbose": -1},
            treatment_model_factory=LGBMRegressor,
            treatment_model_params={"n_estimators": 10, "verbose": -1},
            propensity_model_factory=LGBMClassifier,
            propensity_model_params={"n_estimators": 10, "verbose": -1},
            n_folds=2,
            random_state=0,
            client=client,
            persist=persist,
        )
        persisted: list[str] = []

        def recording(self, frame, name, persisted=persisted, original=original):
            persisted.append(name)
            return original(self, frame, name)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Planner, "persist_partitions", recording)
            learner.fit(data[features], data["y"], data["w"])
        # without persisting, nothing of the training frame is kept in the cluster's memory
        assert persisted == (["training-frame"] if persist else [])
        assert learner.fit_report_.attrs["persisted"] is persist
        cates.append(learner.predict(data[features], is_oos=False).compute())
    np.testing.assert_array_equal(cates[0], cates[1])


def test_persist_auto_keeps_data_larger_than_a_third_of_the_memory_on_disk(client):
    learner = TLearner(False, 3, nuisance_model_factory=LinearRegression, client=client)
    shape = cluster_shape(client)
    limit = sum(w.memory_limit for w in shape.workers)
    frame = dd.from_pandas(pd.DataFrame({"a": [1.0], "b": [2.0]}), npartitions=1)
    rows_in_a_third = int(limit / 3 / 16)
    assert learner._persists(frame, rows_in_a_third, shape)
    assert not learner._persists(frame, rows_in_a_third + 10, shape)


def test_persist_is_validated():
    with pytest.raises(ValueError, match="persist must be True, False or 'auto'"):
        TLearner(False, 2, nuisance_model_factory=LinearRegression, persist="yes")


def test_dask_lightgbm_outcome_models_beside_local_ones_run_alone(client):
    """Mixed learners: a collection outcome model, local propensity and treatment models.
    No local fit overlaps a collection fit (gang trainers run exclusively)."""
    Xd, yd, wd, *_, tau = _frames(n=6_000)
    learner = DRLearner(
        False,
        3,
        nuisance_model_factory=DaskLGBMRegressor,
        nuisance_model_params={"n_estimators": 30, "verbose": -1},
        propensity_model_factory=LGBMClassifier,
        propensity_model_params={"n_estimators": 10, "verbose": -1},
        treatment_model_factory=LinearRegression,
        n_folds=2,
        client=client,
    )
    learner.fit(Xd, yd, wd)
    report = learner.fit_report_
    gang = report[report["worker"] == "cluster"]
    local = report[report["worker"] != "cluster"]
    assert len(gang) == 3 * 3 and len(local) == 3 + 2 * 3
    for _, g in gang.iterrows():
        overlapping = local[(local["start"] < g["end"]) & (local["end"] > g["start"])]
        assert overlapping.empty, (g["key"], overlapping["key"].tolist())
    cate = learner.predict(Xd, is_oos=True).compute()[:, :, 0]
    assert _rmse(cate, tau) < 0.3 * _rmse(np.zeros_like(tau), tau)
    model = learner._nuisance_models["variant_outcome_model"][0]._overall_estimator
    assert type(model).__name__ == "LGBMRegressor"  # to_local(): predicts in partitions


def test_dask_lightgbm_gets_one_float32_part_per_worker(client):
    """lightgbm.dask concatenates the parts each worker holds and keeps the result for the
    whole fit (two copies of its rows); numeric features go to it as one float32 frame per
    worker, which that concatenation passes through without a copy. Categorical ones keep the
    pandas path that declares them."""
    numeric = pd.DataFrame({"a": [1.0], "b": [2], "c": [True]})
    assert lightgbm_float32(DaskLGBMRegressor, numeric)
    assert not lightgbm_float32(DaskXGBRegressor, numeric)
    assert not lightgbm_float32(GLMRegression, numeric)
    categorical = numeric.assign(w=pd.Categorical([0], categories=[0, 1]))
    assert not lightgbm_float32(DaskLGBMClassifier, categorical)

    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(1_000, 3)), columns=["a", "b", "c"])
    # the columns are functions of each row's features: a misaligned row would show
    pdf = X.assign(y=X["a"] * 10 + X["b"], weight=X["c"].abs())
    lazy = dd.from_pandas(pdf, npartitions=6)
    # a lazy graph that refers to a result held by the cluster (as pseudo-outcomes refer to
    # fitted models): the worker reading its share gets it passed in
    held = client.scatter(0.0)
    refers = lazy.map_partitions(_plus_y, held, meta=lazy._meta)
    # persisted partitions spread over both workers by hand: the scheduler may put six tiny
    # partitions on one worker, where they would be joined into one part
    workers = sorted(client.scheduler_info()["workers"])
    placed = [
        client.compute(part, workers=[workers[i % 2]]) for i, part in enumerate(lazy.to_delayed())
    ]
    client.gather(placed)
    assert len({w for ws in client.who_has(placed).values() for w in ws}) == 2
    spread = dd.from_delayed(placed, meta=lazy._meta)
    # each worker reads its share of lazy partitions / joins the persisted blocks it holds
    for frame, is_lazy in ((lazy, True), (refers, True), (spread, False)):
        _check_one_part_per_worker(client, frame, is_lazy, pdf)


def _plus_y(part, value):
    return part.assign(y=part["y"] + value)


def _check_one_part_per_worker(client, frame, lazy, pdf):
    columns = ["y", "weight"]
    Xw, yw, weight = _one_part_per_worker(client, frame, ["a", "b", "c"], columns, lazy)
    # where the parts are: the cluster-held results the collection's graph refers to
    graph = dict(Xw.__dask_graph__())
    held = {t.target for t in graph.values() if isinstance(t, Alias)} - set(graph)
    futures = [Future(key, client) for key in held]
    client.gather(futures)
    holders = client.who_has(futures)
    assert Xw.npartitions == yw.npartitions == len(held) == 2
    assert len({w for ws in holders.values() for w in ws}) == 2
    parts = client.gather(client.compute(Xw.to_delayed()))
    assert all(p.dtypes.eq(np.float32).all() and len(p._mgr.blocks) == 1 for p in parts)
    got = pd.concat(parts).reset_index(drop=True)
    want = pdf.astype({c: np.float32 for c in "abc"})
    np.testing.assert_array_equal(got.sort_values("a"), want[["a", "b", "c"]].sort_values("a"))
    y, w = (client.compute(c).result().to_numpy() for c in (yw, weight))
    np.testing.assert_array_equal(np.sort(y), np.sort(pdf["y"].to_numpy()))
    order = np.argsort(got["a"].to_numpy())
    lookup = pdf.assign(a32=pdf["a"].astype(np.float32)).sort_values("a32")
    np.testing.assert_array_equal(y[order], lookup["y"].to_numpy())
    np.testing.assert_array_equal(w[order], lookup["weight"].to_numpy())


def _dask_lgbm_t_learner(client, trees: int) -> TLearner:
    """A 3-variant T-learner of lightgbm.dask outcome models."""
    return TLearner(
        False,
        3,
        nuisance_model_factory=DaskLGBMRegressor,
        nuisance_model_params={"n_estimators": trees, "verbose": -1},
        n_folds=2,
        client=client,
    )


def test_dask_lightgbm_models_keep_the_feature_names(client):
    Xd, yd, wd, *_ = _frames(n=3_000)
    learner = _dask_lgbm_t_learner(client, trees=10).fit(Xd, yd, wd)
    model = learner._nuisance_models["variant_outcome_model"][0]._overall_estimator
    assert model.feature_name_ == list(Xd.columns)
    assert list(model.feature_names_in_) == list(Xd.columns)
    assert learner.predict(Xd, is_oos=True).compute().shape == (3_000, 2, 1)


def test_dask_lightgbm_classifier_as_propensity_model(client):
    Xd, yd, wd, *_ = _frames()
    learner = XLearner(
        False,
        3,
        nuisance_model_factory=LinearRegression,
        propensity_model_factory=DaskLGBMClassifier,
        propensity_model_params={"n_estimators": 10, "verbose": -1},
        treatment_model_factory=LinearRegression,
        n_folds=2,
        client=client,
    )
    learner.fit(Xd, yd, wd)
    proba = learner.predict_nuisance(Xd, "propensity_model", 0, is_oos=True).compute()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_dask_ml_glm_matches_sklearn_least_squares(client):
    """dask-ml's LinearRegression (newton) reaches sklearn's least-squares fit on the same
    rows: the overall model of variant 0."""
    Xd, yd, wd, X, y, w, _ = _frames()
    learner = TLearner(
        False,
        3,
        nuisance_model_factory=GLMRegression,
        nuisance_model_params={"solver": "newton", "max_iter": 100, "tol": 1e-10},
        n_folds=2,
        client=client,
    )
    learner.fit(Xd, yd, wd)
    ours = learner._nuisance_models["variant_outcome_model"][0]._overall_estimator.model
    reference = LinearRegression().fit(X[w == 0], y[w == 0])
    np.testing.assert_allclose(ours.coef_, reference.coef_, atol=1e-3)
    np.testing.assert_allclose(ours.intercept_, reference.intercept_, atol=1e-3)
    cate = learner.predict(Xd, is_oos=False).compute()
    assert cate.shape == (4_000, 2, 1)


def test_dask_ml_logistic_regression_as_binary_propensity(client):
    Xd, yd, wd, *_ = _frames(n_variants=2)
    learner = DRLearner(
        False,
        2,
        nuisance_model_factory=LinearRegression,
        propensity_model_factory=GLMClassifier,
        propensity_model_params={"solver": "newton"},
        treatment_model_factory=LinearRegression,
        n_folds=2,
        client=client,
    )
    learner.fit(Xd, yd, wd)
    proba = learner.predict_nuisance(Xd, "propensity_model", 0, is_oos=False).compute()
    assert proba.shape == (4_000, 2)
    assert np.all((proba > 0) & (proba < 1))


def test_xgboost_dask_local_model_predicts_what_the_dask_model_predicts(client):
    Xd, yd, wd, *_ = _frames()
    learner = SLearner(
        False,
        3,
        nuisance_model_factory=DaskXGBRegressor,
        nuisance_model_params={"n_estimators": 10, "max_depth": 3},
        n_folds=2,
        client=client,
    )
    learner.fit(Xd, yd, wd)
    cate = learner.predict(Xd, is_oos=True).compute()
    assert cate.shape == (4_000, 2, 1)
    assert np.isfinite(cate).all()
    assert type(learner._nuisance_models["base_model"][0]._overall_estimator).__name__ == (
        "XGBRegressor"
    )


def test_r_learner_rejects_a_glm_treatment_model_without_weights(client):
    with pytest.raises(ValueError, match="sample_weight"):
        RLearner(
            False,
            2,
            nuisance_model_factory=LinearRegression,
            propensity_model_factory=GLMClassifier,
            treatment_model_factory=GLMRegression,
        )


def test_stream_wrapper_without_estimator_is_rejected():
    with pytest.raises(TypeError, match="estimator"):
        TLearner(False, 2, nuisance_model_factory=Incremental, nuisance_model_params={})


# --- shared binned LightGBM data ------------------------------------------------------------


LGBM_SMALL = {"n_estimators": 10, "verbose": -1}


def _lgbm_x_learner(client, strategy, pairwise=False):
    params = LGBM_SMALL
    propensity = {"propensity_model_factory": LGBMClassifier, "propensity_model_params": params}
    if pairwise:
        propensity = {
            "propensity_model_factory": PairwisePropensityClassifier,
            "propensity_model_params": {"estimator": LGBMClassifier(**params)},
        }
    return XLearner(
        False,
        3,
        nuisance_model_factory=LGBMRegressor,
        nuisance_model_params=params,
        treatment_model_factory=LGBMRegressor,
        treatment_model_params=params,
        **propensity,
        n_folds=2,
        random_state=0,
        fold_strategy=strategy,
        client=client,
    )


def _bins_on_workers(client):
    from dask_meta.backends import bins as backends

    return client.run(lambda: len(backends._bins))


def test_lightgbm_fits_share_the_bins_of_all_training_rows(client):
    """Every LightGBM fit of a 'partition' fold fit trains on bins found from all rows: a fold
    model of variant 0 has the feature ranges of the whole data, not of its own rows."""
    Xd, yd, wd, X, *_ = _frames()
    learner = _lgbm_x_learner(client, "partition")
    learner.fit(Xd, yd, wd)
    assert learner.fit_report_.attrs["shared_bins"] is True
    fold_model = learner._nuisance_models["variant_outcome_model"][0]._estimators[0]
    assert isinstance(fold_model, LGBMRegressor)
    whole = LGBMRegressor(n_estimators=1, verbose=-1).fit(
        pd.DataFrame(X, columns=Xd.columns), X[:, 0]
    )
    infos = fold_model.booster_.dump_model()["feature_infos"]
    assert infos == whole.booster_.dump_model()["feature_infos"]
    propensity = learner._nuisance_models["propensity_model"][0]._overall_estimator
    assert list(propensity.classes_) == [0, 1, 2]
    np.testing.assert_allclose(
        propensity.predict_proba(X[:50]), propensity.booster_.predict(X[:50]), rtol=1e-12
    )
    # the Datasets are freed when the fit ends
    assert set(_bins_on_workers(client).values()) == {0}


def test_sklearn_folds_bin_every_fit_on_its_own_rows(client):
    Xd, yd, wd, *_ = _frames()
    learner = _lgbm_x_learner(client, "sklearn")
    learner.fit(Xd, yd, wd)
    assert learner.fit_report_.attrs["shared_bins"] is False
    fold_model = learner._nuisance_models["variant_outcome_model"][0]._estimators[0]
    _, _, _, X, y, _, _ = _frames()
    # own rows: its feature ranges are those of its variant-0 training rows, not all rows
    infos = fold_model.booster_.dump_model()["feature_infos"]
    assert (
        infos
        != LGBMRegressor(n_estimators=1, verbose=-1)
        .fit(pd.DataFrame(X, columns=Xd.columns), y)
        .booster_.dump_model()["feature_infos"]
    )


@pytest.mark.parametrize(
    ("n_folds", "sample", "shared"), [(1, None, False), (2, None, True), (1, 500, True)]
)
def test_bins_are_shared_where_one_dataset_costs_less(client, n_folds, sample, shared):
    """A T-learner without cross-fitting trains each row once (each variant's model on its
    own rows): on no more rows than LightGBM's sample for the bin bounds, binning all rows
    once would save nothing, so each fit bins its own rows. With two folds every row is
    trained on by a fold model and the overall model. With variants larger than the bounds'
    sample (``subsample_for_bin``), one Dataset searches the bounds once instead of three
    times."""
    Xd, yd, wd, X, _, w, _ = _frames()
    params = {"n_estimators": 10, "verbose": -1}
    if sample is not None:
        params["subsample_for_bin"] = sample
        assert (w == 1).sum() > sample
    learner = TLearner(
        False,
        3,
        nuisance_model_factory=LGBMRegressor,
        nuisance_model_params=params,
        n_folds=n_folds,
        random_state=0,
        client=client,
    ).fit(Xd, yd, wd)
    assert learner.fit_report_.attrs["shared_bins"] is shared
    model = learner._nuisance_models["variant_outcome_model"][1]._overall_estimator
    infos = model.booster_.dump_model()["feature_infos"]
    own = LGBMRegressor(**{**params, "n_estimators": 1}).fit(
        pd.DataFrame(X[w == 1], columns=Xd.columns), X[w == 1, 0]
    )
    assert (infos == own.booster_.dump_model()["feature_infos"]) is not shared


def test_bins_of_variants_are_not_shared_where_no_worker_holds_the_whole_frame(client, monkeypatch):
    """A T-learner's variant models share the bins of all rows only where one worker can
    hold the whole frame: each fit would otherwise hold its own variant's rows only."""
    from dask_meta.learners import jobs

    monkeypatch.setattr(jobs, "one_worker_holds", lambda shape, rows, columns: False)
    Xd, yd, wd, *_ = _frames()
    learner = TLearner(
        False,
        3,
        nuisance_model_factory=LGBMRegressor,
        nuisance_model_params={"n_estimators": 10, "verbose": -1, "subsample_for_bin": 500},
        n_folds=1,
        random_state=0,
        client=client,
    ).fit(Xd, yd, wd)
    assert learner.fit_report_.attrs["shared_bins"] is False


def test_binning_cost_counts_the_search_of_the_bounds_once_per_dataset():
    """One Dataset of all rows against one per variant: the same rows put in their bins,
    the bounds searched once instead of three times once the variants outgrow the sample."""
    from dask_meta.backends import bin_sample_rows, binning_cost

    assert bin_sample_rows(LGBMRegressor, {}) == 200_000
    assert bin_sample_rows(LGBMRegressor, {"subsample_for_bin": 500}) == 500
    assert bin_sample_rows(LGBMRegressor, {"bin_construct_sample_cnt": 700}) == 700
    # small data: cost proportional to the rows, one Dataset saves nothing
    assert binning_cost(3_000, 200_000) == pytest.approx(3 * binning_cost(1_000, 200_000))
    # large data: one Dataset of 1M rows costs less than three of a third each
    assert binning_cost(1_000_000, 200_000) < 3 * binning_cost(333_334, 200_000)
    assert binning_cost(1_000_000, 200_000) > binning_cost(333_334, 200_000)


def test_pairwise_propensity_pairs_train_on_subsets_of_the_shared_bins(client, monkeypatch):
    """The binary models of a PairwisePropensityClassifier fit on subsets of the shared
    binned Dataset: each pair model has the feature ranges of all rows and trained on its
    pair's rows only (control and its variant), as the same fit without shared bins does."""
    Xd, yd, wd, X, _, w, _ = _frames()
    shared, own = (
        _lgbm_x_learner(client, strategy, pairwise=True).fit(Xd, yd, wd)
        for strategy in ("partition", "sklearn")
    )
    assert shared.fit_report_.attrs["shared_bins"] is True
    assert own.fit_report_.attrs["shared_bins"] is False
    whole = LGBMRegressor(n_estimators=1, verbose=-1).fit(
        pd.DataFrame(X, columns=Xd.columns), X[:, 0]
    )
    whole_infos = whole.booster_.dump_model()["feature_infos"]
    frame = pd.DataFrame(X, columns=Xd.columns)
    for learner, is_shared in ((shared, True), (own, False)):
        model = learner._nuisance_models["propensity_model"][0]._overall_estimator
        assert isinstance(model, PairwisePropensityClassifier)
        assert list(model.classes_) == [0, 1, 2]
        for k, pair in zip((1, 2), model.estimators_, strict=True):
            assert isinstance(pair, LGBMClassifier)
            infos = pair.booster_.dump_model()["feature_infos"]
            assert (infos == whole_infos) is is_shared
            assert list(pair.classes_) == [0, 1]
            # trained on the pair's rows: its leaves count control and variant-k rows only
            counts = pair.booster_.dump_model()["tree_info"][0]["tree_structure"]
            assert counts["internal_count"] == int(np.isin(w, (0, k)).sum())
    # each pair model is the binary model of its pair's rows on the bins of all rows
    import lightgbm.sklearn

    from dask_meta.backends import bins as backends

    binning = backends.dataset_params(LGBMClassifier, LGBM_SMALL)
    bins = lightgbm.Dataset(frame, label=np.zeros(len(frame)), params=binning).construct()
    monkeypatch.setattr(
        lightgbm.sklearn, "Dataset", backends._shared_dataset_switch(lightgbm.sklearn.Dataset)
    )
    model = shared._nuisance_models["propensity_model"][0]._overall_estimator
    for k, pair in zip((1, 2), model.estimators_, strict=True):
        rows = np.flatnonzero(np.isin(w, (0, k)))
        backends._pending_subset.value = bins.subset(rows).construct()
        reference = LGBMClassifier(**LGBM_SMALL, n_jobs=1).fit(frame.iloc[:0], (w[rows] == k) * 1)
        np.testing.assert_allclose(
            pair.predict_proba(frame), reference.predict_proba(frame), rtol=1e-9
        )
    assert set(_bins_on_workers(client).values()) == {0}


def test_regressors_and_the_pairs_classifier_that_bin_alike_share_one_dataset_key():
    """The key of a shared binned Dataset takes each model's defaults: an LGBMRegressor
    given a few params and the LGBMClassifier inside a PairwisePropensityClassifier (whose
    params list every default) bin alike, so they share one Dataset; a binning param
    (max_bin) or another design gives another one."""
    design = Design(("x0", "x1"), False)
    regressor = bins_key("t", LGBMRegressor, LGBM_SMALL, design)
    pairwise = bins_key(
        "t", PairwisePropensityClassifier, {"estimator": LGBMClassifier(**LGBM_SMALL)}, design
    )
    assert regressor == pairwise
    assert regressor == bins_key("t", LGBMClassifier, {**LGBM_SMALL, "n_estimators": 50}, design)
    assert regressor != bins_key("t", LGBMRegressor, {**LGBM_SMALL, "max_bin": 63}, design)
    assert regressor != bins_key("t", LGBMRegressor, LGBM_SMALL, Design(("x0",), False))


def _count_dataset_builds(client):
    """Count, on every worker, the shared binned Datasets it builds from now on."""

    def install():
        from dask_meta.backends import bins as backends

        real = getattr(backends._construct, "__wrapped__", backends._construct)

        def counted(*args):
            counted.calls += 1
            return real(*args)

        counted.calls = 0
        counted.__wrapped__ = real
        backends._construct = counted

    client.run(install)


def _dataset_builds(client):
    def calls():
        from dask_meta.backends import bins as backends

        calls = getattr(backends._construct, "calls", None)
        backends._construct = getattr(backends._construct, "__wrapped__", backends._construct)
        return calls

    return client.run(calls)


def test_pairs_and_outcome_models_train_on_one_binned_dataset_per_worker(client):
    """The X-learner's outcome and effect models and its pairwise propensity model bin
    alike: each worker builds one binned Dataset of the training frame, not one per model."""
    Xd, yd, wd, *_ = _frames()
    _count_dataset_builds(client)
    try:
        learner = _lgbm_x_learner(client, "partition", pairwise=True).fit(Xd, yd, wd)
    finally:
        builds = _dataset_builds(client)
    assert learner.fit_report_.attrs["shared_bins"] is True
    assert sum(builds.values()) >= 1
    assert max(builds.values()) == 1, builds


# --- every collection estimator type through every learner where it applies -----------------

COLLECTION_MODELS = {
    "incremental": (
        Incremental,
        {"estimator": SGDRegressor(random_state=0), "shuffle_blocks": False},
        Incremental,
        {
            "estimator": SGDClassifier(loss="log_loss", alpha=0.1, random_state=0),
            "shuffle_blocks": False,
        },
    ),
    "lightgbm-dask": (
        DaskLGBMRegressor,
        {"n_estimators": 5, "verbose": -1},
        DaskLGBMClassifier,
        {"n_estimators": 5, "verbose": -1},
    ),
    "dask-ml-glm": (GLMRegression, {"solver": "newton"}, GLMClassifier, {"solver": "newton"}),
    "xgboost-dask": (
        DaskXGBRegressor,
        {"n_estimators": 5, "max_depth": 2},
        DaskXGBClassifier,
        {"n_estimators": 5, "max_depth": 2},
    ),
}


@pytest.mark.parametrize("name", ["S", "T", "X", "R", "DR"])
@pytest.mark.parametrize("backend", list(COLLECTION_MODELS))
def test_collection_models_through_every_learner(client, name, backend):
    """All models of the learner from one backend; binary treatment (dask-ml's logistic
    regression is binary only). The R-learner weights its treatment model: dask-ml's GLMs
    take no weights, so that combination must fail before any fit."""
    regressor, reg_params, classifier, clf_params = COLLECTION_MODELS[backend]
    Xd, yd, wd, *_ = _frames(n=2_000, n_variants=2)
    cls = {"S": SLearner, "T": TLearner, "X": XLearner, "R": RLearner, "DR": DRLearner}[name]
    models: dict = {"nuisance_model_factory": regressor, "nuisance_model_params": reg_params}
    if name in ("X", "R", "DR"):
        models |= {
            "treatment_model_factory": regressor,
            "treatment_model_params": reg_params,
            "propensity_model_factory": classifier,
            "propensity_model_params": clf_params,
        }
    if name == "R" and backend == "dask-ml-glm":
        with pytest.raises(ValueError, match="sample_weight"):
            cls(False, 2, **models, n_folds=2, client=client)
        return
    learner = cls(False, 2, **models, n_folds=2, client=client)
    learner.fit(Xd, yd, wd)
    for is_oos in (False, True):
        cate = learner.predict(Xd, is_oos=is_oos).compute()
        assert cate.shape == (2_000, 1, 1)
        assert np.isfinite(cate).all()
    report = learner.fit_report_
    assert (report["rows"] > 0).all()


def test_collection_fit_on_parquet_whose_projections_fuse_differently(client, tmp_path):
    """dask-notes §2.5: ddf[features] and ddf['y'] of a many-file parquet data set can have
    different partition counts; lightgbm.dask fails on such X/y ('zip() argument 2 is
    shorter'). dask-meta derives every job's X, y and weights from one frame."""
    X, y, w, _ = make_linear_data(4_000, d=2)
    frame = pd.DataFrame(X, columns=["x1", "x2"]).assign(
        y=y, w=w, **{f"pad{i}": np.zeros(4_000) for i in range(30)}
    )
    dd.from_pandas(frame, npartitions=8).to_parquet(tmp_path / "data")
    data = dd.read_parquet(tmp_path / "data")
    features = ["x1", "x2"]
    assert data[features].optimize().npartitions != data["y"].optimize().npartitions
    learner = _dask_lgbm_t_learner(client, trees=5)
    learner.fit(data[features], data["y"], data["w"])
    overall = learner.fit_report_.query("fold == 'overall'").sort_values("ordinal")
    assert overall["rows"].tolist() == [int((w == k).sum()) for k in range(3)]
    assert learner.predict(data[features], is_oos=False).compute().shape == (4_000, 2, 1)


# --- native threads ----------------------------------------------------------------------------


def test_multi_threaded_work_runs_on_one_kept_thread_per_thread_count():
    """OpenMP gives every OS thread that starts a parallel region a pool of its own; work
    of several threads therefore runs on threads kept for it, the same ones every time, and
    one-thread work stays in the calling thread."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    here = threading.get_ident()
    assert on_threads(1, threading.get_ident) == here
    with ThreadPoolExecutor(2) as callers:  # two task threads, as on a 1 x 2 worker
        kept = set(callers.map(lambda _: on_threads(2, threading.get_ident), range(6)))
    assert len(kept) == 1 and here not in kept
    # nested: work asking for the threads it already runs on does not wait on itself
    assert on_threads(2, on_threads, 2, threading.get_ident) in kept

    def fails():
        raise RuntimeError("raised on the kept thread")

    with pytest.raises(RuntimeError, match="raised on the kept thread"):
        on_threads(2, fails)


def test_lightgbm_fits_take_their_threads_from_the_thread_not_the_process():
    """LightGBM keeps the last positive num_threads of any call for its whole process;
    num_threads=0 makes each call follow its own thread's OpenMP setting. n_jobs keeps the
    fit's threads; models without threads of their own are left alone."""
    lgbm = fit_params_with_threads(LGBMRegressor, {"n_estimators": 5}, "n_jobs", 2)
    assert lgbm == {"n_estimators": 5, "n_jobs": 2, "num_threads": 0}
    assert fit_params_with_threads(LGBMClassifier, {"num_threads": 4}, "num_threads", 2) == {
        "num_threads": 0
    }
    assert fit_params_with_threads(LinearRegression, {}, None, 2) == {}
    from xgboost import XGBRegressor

    assert fit_params_with_threads(XGBRegressor, {}, "n_jobs", 2) == {"n_jobs": 2}


def test_a_lightgbm_fit_sums_its_training_rows_predictions_from_its_scores():
    """PredictionSum reads the training scores after the last round: counts @ predict(X)
    of the training rows, to the last bits. A fit that stopped early predicts with its
    best round, not its last, and gives no sum; classifiers and custom objectives none."""
    import lightgbm

    from dask_meta.backends.scores import PredictionSum, sums_predictions

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2_000, 4))
    y = X[:, 0] + np.sin(X[:, 1]) + rng.normal(scale=0.3, size=2_000)
    counts = rng.poisson(1.0, size=2_000).astype(float)
    summed = PredictionSum(counts)
    model = LGBMRegressor(n_estimators=20, verbose=-1, n_jobs=1)
    model.fit(X, y, sample_weight=counts + 0.5, **summed.add_to({}))
    np.testing.assert_allclose(summed.of(model), [counts @ model.predict(X)], rtol=1e-12)

    early = PredictionSum(counts[:1_500])
    stopped = LGBMRegressor(n_estimators=500, learning_rate=0.5, verbose=-1, n_jobs=1)
    stopped.fit(
        X[:1_500],
        y[:1_500],
        eval_set=[(X[1_500:], y[1_500:])],
        callbacks=[lightgbm.early_stopping(3, verbose=False), early],
    )
    assert stopped.booster_.current_iteration() < 500 and early.of(stopped) is None

    def spec(factory, params=None, classifier=False):
        design = Design(("x0",), False)
        return FitSpec(
            factory, params or {}, design, "y", RowSelection(), 1, None,
            is_classifier=classifier, sum_predictions=True,
        )  # fmt: skip

    assert sums_predictions(spec(LGBMRegressor))
    assert not sums_predictions(spec(LGBMRegressor, {"objective": lambda y, p: (p, p)}))
    assert not sums_predictions(spec(LGBMClassifier, classifier=True))
    assert not sums_predictions(spec(LinearRegression))
    assert not sums_predictions(dataclasses.replace(spec(LGBMRegressor), sum_predictions=False))


@pytest.mark.parametrize("as_numpy", [True, False])
def test_a_streaming_steps_rows_equal_the_gathered_rows_of_each_fit(as_numpy):
    """PartitionRows, which a fused streaming step shares between its fits (one matrix per
    design, one draw of counts per replicate), gives each fit the arrays that gathering
    its rows gives: rows of its variants and folds, drawn by its replicate, weighted by
    its counts times its per-row weights, and derived columns beside the partition's."""
    from dask_meta._constants import ROW_ID_COL, W_COL
    from dask_meta.backends.rows import PartitionRows, gather_rows, training_arrays
    from dask_meta.learners.slearner import append_treatment
    from dask_meta.resampling import Resample

    rng = np.random.default_rng(0)
    n = 500
    part = pd.DataFrame(rng.normal(size=(n, 3)), columns=["x0", "x1", "x2"])
    part[W_COL] = rng.integers(0, 3, size=n)
    part["fold"] = rng.integers(-1, 3, size=n)
    part[ROW_ID_COL] = np.arange(1_000, 1_000 + n, dtype=np.uint64)
    part.index = pd.RangeIndex(7_000, 7_000 + n)  # a partition's labels, not positions
    derived = pd.DataFrame({"target": rng.normal(size=n), "weight": rng.uniform(size=n)})
    plain = Design(("x0", "x1", "x2"), as_numpy)
    with_w = Design(("x0", "x2"), as_numpy, transform=append_treatment, transform_args=(3, False))
    selections = [
        RowSelection(),
        RowSelection((0, 2), "fold", 1),
        RowSelection(None, "fold", None, Resample(11)),
        RowSelection((1,), "fold", 0, Resample(12)),
        RowSelection((0, 1), None, None, Resample(11)),
    ]
    rows = PartitionRows(part, [derived])
    for selection in selections:
        for design in (plain, with_w):
            spec = FitSpec(
                SGDRegressor, {}, design, "target", selection, 1, None,
                row_params={"sample_weight": "weight"},
            )  # fmt: skip
            X, y, params = rows.arrays(spec)
            want_X, want_y, want_params = training_arrays(
                spec, gather_rows(selection, [part], [derived])
            )
            if as_numpy:
                np.testing.assert_array_equal(X, want_X)
            else:
                # the rows keep their partition's labels; models read the values only
                pd.testing.assert_frame_equal(X.reset_index(drop=True), want_X)
            np.testing.assert_array_equal(y, want_y)
            assert params.keys() == want_params.keys() == {"sample_weight"}
            np.testing.assert_array_equal(params["sample_weight"], want_params["sample_weight"])
            assert 0 < len(y) < n or selection == RowSelection()
    # one matrix per design and one draw per replicate, whatever the number of fits
    assert len(rows._matrices) == 2 and len(rows._counts) == 2
