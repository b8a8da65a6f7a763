"""Bootstrap intervals: replicates are weighted fits, intervals follow rows not layouts."""

from __future__ import annotations

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from conftest import make_linear_data
from distributed import Client, LocalCluster
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsRegressor

from dask_meta import Bootstrap, DRLearner, RLearner, SLearner, TLearner, XLearner
from dask_meta.resampling import Resample

FEATURES = ["a", "b", "c"]


def _data(n=1_200, n_variants=2, seed=0):
    X, y, w, tau = make_linear_data(n=n, d=3, n_variants=n_variants, seed=seed)
    return pd.DataFrame(X, columns=FEATURES), pd.Series(y), pd.Series(w), tau


def _learner(name, client, n_variants=2, **kwargs):
    args = {"n_folds": 2, "random_state": 3, "client": client} | kwargs
    if name == "S":
        return SLearner(False, n_variants, LinearRegression, **args)
    if name == "T":
        return TLearner(False, n_variants, LinearRegression, **args)
    if name == "X":
        return XLearner(
            False, n_variants, LinearRegression, LinearRegression, LogisticRegression, **args
        )
    if name == "R":
        return RLearner(
            False, n_variants, LinearRegression, LinearRegression, LogisticRegression, **args
        )
    return DRLearner(
        False, n_variants, LinearRegression, LinearRegression, LogisticRegression, **args
    )


def _assert_trained_on_drawn_rows(report, replicate, counts, w):
    """The replicate's overall models trained on the rows of positive count only: a model
    of all rows on the drawn rows, a variant's outcome model on its variant's drawn rows."""
    overall = report[report["fold"] == "overall"].set_index(["model_kind", "ordinal"])
    point = overall[overall["replicate"] == -1]["rows"]
    rows = overall[overall["replicate"] == replicate]["rows"]
    assert sorted(rows.index) == sorted(point.index)
    drawn, checked = counts > 0, 0
    for (kind, ordinal), n in rows.items():
        if point[kind, ordinal] == len(w):
            assert n == drawn.sum(), kind
            checked += 1
        elif kind == "variant_outcome_model":
            assert n == (drawn & (w == ordinal)).sum(), (kind, ordinal)
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("name", ["S", "T", "X", "DR"])
def test_a_replicate_is_the_learner_fitted_with_its_counts_as_sample_weight(client, name):
    """Replicate r equals the learner fitted with ``fit_params={"sample_weight": counts}``,
    the counts drawn from the row numbers with replicate r's seed: the weights reach every
    base model, nuisance and treatment, and nothing else changes."""
    X, y, w, _ = _data()
    boot = Bootstrap(_learner(name, client), n_bootstraps=2, random_state=11).fit(X, y, w)
    point = _learner(name, client).fit(X, y, w)
    np.testing.assert_allclose(
        boot.predict(X, is_oos=False), point.predict(X, is_oos=False), rtol=1e-10
    )
    for r, learner in enumerate(boot.replicates_):
        counts = Resample(boot.seeds_[r]).counts(np.arange(len(X)))
        assert (counts == 0).any() and (counts > 1).any()
        _assert_trained_on_drawn_rows(boot.fit_report_, r, counts, w.to_numpy())
        weighted = _learner(name, client).fit(X, y, w, fit_params={"sample_weight": counts})
        for is_oos in (False, True):
            np.testing.assert_allclose(
                learner.predict(X, is_oos=is_oos),
                weighted.predict(X, is_oos=is_oos),
                rtol=1e-9,
                atol=1e-10,
            )


def test_r_learner_replicates_weigh_the_residual_weights_by_the_counts(client):
    """The R-learner's treatment model trains on (w - e)^2 times the counts: a replicate's
    CATE differs from the point fit's, and its in-sample ATE is the count-weighted mean."""
    X, y, w, _ = _data()
    boot = Bootstrap(_learner("R", client), n_bootstraps=3, random_state=2).fit(X, y, w)
    point = boot.predict(X, is_oos=False)
    for r, learner in enumerate(boot.replicates_):
        cate = learner.predict(X, is_oos=False)
        assert not np.allclose(cate, point)
        counts = Resample(boot.seeds_[r]).counts(np.arange(len(X)))
        expected = (counts[:, None, None] * cate).sum(axis=0) / counts.sum()
        np.testing.assert_allclose(boot.ate_replicates_[r], expected, rtol=1e-10)


def test_intervals_shapes_and_the_point_estimate_on_dask_input(client):
    """Dask in, lazy Dask out, with a last axis of (lower, upper); three variants. The
    normal interval is centred on the point estimate, the percentile one holds it for
    nearly every row and for the ATE; ate_ is the mean in-sample CATE."""
    Xp, y, w, _ = _data(n_variants=3)
    X = dd.from_pandas(Xp, npartitions=3)
    y, w = dd.from_pandas(y, npartitions=3), dd.from_pandas(w, npartitions=3)
    boot = Bootstrap(_learner("DR", client, n_variants=3), n_bootstraps=30, random_state=0)
    boot.fit(X, y, w)
    interval = boot.predict_interval(X, is_oos=False)
    assert isinstance(interval, da.Array) and interval.numblocks[0] == 3
    interval, point, normal, replicates = client.compute(
        [
            interval,
            boot.predict(X, is_oos=False),
            boot.predict_interval(X, is_oos=False, alpha=0.1, method="normal"),
            boot.predict_replicates(X, is_oos=False),
        ],
        sync=True,
    )
    n = len(Xp)
    assert interval.shape == (n, 2, 1, 2) and replicates.shape == (n, 2, 1, 30)
    assert (interval[..., 0] <= interval[..., 1]).all()
    inside = (interval[..., 0] <= point) & (point <= interval[..., 1])
    assert inside.mean() > 0.95
    np.testing.assert_allclose(normal.mean(axis=-1), point, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        interval, np.moveaxis(np.quantile(replicates, [0.025, 0.975], axis=-1), 0, -1)
    )
    np.testing.assert_allclose(boot.ate_, point.mean(axis=0), rtol=1e-10)
    counts = np.stack([Resample(s).counts(np.arange(n)) for s in boot.seeds_])
    expected = np.stack(
        [
            (counts[r][:, None, None] * replicates[..., r]).sum(axis=0) / counts[r].sum()
            for r in range(30)
        ]
    )
    np.testing.assert_allclose(boot.ate_replicates_, expected, rtol=1e-10)
    ate = boot.ate_interval()
    assert ate.shape == (2, 1, 2) and ((ate[..., 0] < boot.ate_) & (boot.ate_ < ate[..., 1])).all()
    np.testing.assert_allclose(boot.ate_stderr_, boot.ate_replicates_.std(axis=0, ddof=1))
    pivot = boot.ate_interval(method="pivot")
    np.testing.assert_allclose(pivot.sum(axis=-1), 2 * 2 * boot.ate_ - ate.sum(axis=-1))
    report = boot.fit_report_
    assert sorted(report["replicate"].unique()) == list(range(-1, 30))
    assert (report.groupby("replicate").size() == report.groupby("replicate").size()[-1]).all()


def test_the_same_seed_gives_the_same_intervals_on_other_clusters_and_layouts(client):
    """1x2 against 2x1 workers, and the data in other partitions with fold_key: the same
    intervals (the weights are drawn from the key, the folds hashed from it)."""
    Xp, y, w, _ = _data(n=900)
    frame = Xp.assign(y=y, w=w, key=[f"row{i}" for i in range(len(Xp))])
    new = frame.iloc[:50]

    def fit(c, npartitions, order_seed):
        shuffled = frame.sample(frac=1, random_state=order_seed)
        data = dd.from_pandas(shuffled, npartitions=npartitions)
        learner = _learner(
            "T",
            c,
            fold_strategy="hash",
            fold_key="key",
            feature_set=FEATURES,
        )
        boot = Bootstrap(learner, n_bootstraps=8, random_state=4)
        boot.fit(data[[*FEATURES, "key"]], data["y"], data["w"])
        return boot.ate_interval(), boot.predict_interval(new[[*FEATURES, "key"]], is_oos=True)

    reference = fit(client, 3, 0)
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=":0") as cluster,
        Client(cluster, set_as_default=False) as other,
    ):
        on_other_cluster = fit(other, 3, 0)
    repartitioned = fit(client, 2, 5)
    for got in (on_other_cluster, repartitioned):
        for a, b in zip(got, reference, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_lightgbm_replicates_share_the_binned_dataset(client):
    X, y, w, _ = _data(n=1_000)
    params = {"n_estimators": 5, "num_leaves": 7, "verbose": -1, "n_jobs": 1}
    learner = _lightgbm_treatment_learner(
        DRLearner, 2, params, n_folds=2, random_state=0, client=client
    )
    boot = Bootstrap(learner, n_bootstraps=3, random_state=1).fit(X, y, w)
    assert boot.fit_report_.attrs["shared_bins"] is True
    assert len(boot.fit_report_) == 4 * 12  # point fit and 3 replicates, 12 fits each
    for r, seed in enumerate(boot.seeds_):  # subsets of the drawn rows of the one Dataset
        counts = Resample(seed).counts(np.arange(len(X)))
        _assert_trained_on_drawn_rows(boot.fit_report_, r, counts, w.to_numpy())
    interval = boot.predict_interval(X.iloc[:20], is_oos=True)
    assert np.isfinite(interval).all() and (interval[..., 0] <= interval[..., 1]).all()


def test_base_model_without_sample_weight_is_refused_before_any_work(client):
    X, y, w, _ = _data(n=200)
    learner = TLearner(False, 2, KNeighborsRegressor, n_folds=2, client=client)
    with pytest.raises(TypeError, match=r"variant_outcome_model's KNeighborsRegressor\.fit"):
        Bootstrap(learner, n_bootstraps=5).fit(X, y, w)


def test_bad_arguments_get_clear_errors(client):
    X, y, w, _ = _data(n=200)
    learner = _learner("T", client)
    with pytest.raises(ValueError, match="n_bootstraps must be an int >= 2"):
        Bootstrap(learner, n_bootstraps=1).fit(X, y, w)
    with pytest.raises(TypeError, match="learner must be a dask-meta learner"):
        Bootstrap(LinearRegression()).fit(X, y, w)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="random_state must be an int"):
        Bootstrap(learner, random_state=0.5).fit(X, y, w)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not fitted"):
        Bootstrap(learner).ate_interval()
    fitted_outcomes = _learner("T", client).fit(X, y, w)._nuisance_models
    dr = DRLearner(
        False,
        2,
        LinearRegression,
        LinearRegression,
        LogisticRegression,
        fitted_nuisance_models={"variant_outcome_model": fitted_outcomes["variant_outcome_model"]},
        n_folds=2,
        client=client,
    )
    with pytest.raises(ValueError, match="prefitted nuisance models"):
        Bootstrap(dr, n_bootstraps=2).fit(X, y, w)
    boot = Bootstrap(learner, n_bootstraps=2, random_state=0).fit(X, y, w)
    with pytest.raises(ValueError, match="alpha must be a number in"):
        boot.predict_interval(X, is_oos=True, alpha=1.5)
    with pytest.raises(ValueError, match="method must be one of"):
        boot.ate_interval(method="bca")


def test_streaming_replicates_read_each_partition_once_and_equal_weighted_fits(client):
    """dask-ml Incremental base models: every replicate's outcome models join one streaming
    chain per estimator (one read of a partition for all of them), and each replicate
    equals the learner fitted on the rows drawn at least once, with their counts as
    sample_weight (the folds hashed from a key, so that the drawn rows keep their folds;
    SGD steps on zero-weight rows too, so dropping them is the resampling bootstrap)."""
    from dask_ml.wrappers import Incremental
    from sklearn.linear_model import SGDRegressor

    from dask_meta.planner import Limits, fuse_streams

    Xp, y, w, _ = _data(n=900)
    frame = Xp.assign(y=y, w=w, key=[f"row{i}" for i in range(len(Xp))])
    data = dd.from_pandas(frame, npartitions=3)
    params = {"estimator": SGDRegressor(random_state=0), "random_state": 1}
    columns = [*FEATURES, "key"]

    def learner():
        return TLearner(
            False,
            2,
            Incremental,
            nuisance_model_params=params,
            n_folds=2,
            random_state=0,
            fold_strategy="hash",
            fold_key="key",
            feature_set=FEATURES,
            client=client,
        )

    boot = Bootstrap(learner(), n_bootstraps=2, random_state=6).fit(
        data[columns], data["y"], data["w"]
    )
    assert sorted(boot.fit_report_["replicate"].unique()) == [-1, 0, 1]
    ids = pd.util.hash_pandas_object(frame["key"], index=False).to_numpy()
    counts = Resample(boot.seeds_[1]).counts(ids)
    assert (counts == 0).any() and (counts > 1).any()
    counted = dd.from_pandas(frame.assign(count=counts), npartitions=3)
    drawn = counted[counted["count"] > 0]
    weighted = learner().fit(
        drawn[columns], drawn["y"], drawn["w"], fit_params={"sample_weight": drawn["count"]}
    )
    X = data[columns]
    np.testing.assert_allclose(
        client.compute(boot.replicates_[1].predict(X, is_oos=True), sync=True),
        client.compute(weighted.predict(X, is_oos=True), sync=True),
        rtol=1e-12,
    )
    # how the planner fuses: one chain per estimator for the point fit and every replicate,
    # or, under a cross-fitting limit, one per estimator of each
    from dask_meta.backends import Design, FitSpec, RowSelection
    from dask_meta.planner import Job

    spec = FitSpec(Incremental, params, Design((), False), "y", RowSelection(), 1, None)
    parts = [object()]
    jobs = [
        Job(f"k{r}{f}", "nuisance", "variant_outcome_model", 0, f, spec, parts, replicate=r)
        for r in (None, 0, 1)
        for f in (0, 1, None)
    ]
    for job in jobs:
        job.backend = "stream"
    fused = fuse_streams(jobs, Limits(None, None))
    assert len(fused) == 1 and len(fused[0].members) == 9
    assert [len(j.members) for j in fuse_streams(jobs, Limits(3, None))] == [3, 3, 3]


def test_a_partition_is_estimated_in_row_blocks_with_the_same_result(client, monkeypatch):
    """Tasks hold the estimates of every replicate for one block of rows at a time: blocks
    of 7 rows give the bounds and ATE sums of one block (in this process, on 300 rows)."""
    from dask_meta import bootstrap

    X, y, w, _ = _data(n=300)
    boot = Bootstrap(_learner("X", client), n_bootstraps=4, random_state=0).fit(X, y, w)
    request = bootstrap.IntervalRequest(boot._replicates(True, "overall"), 0.1, "pivot")
    whole = bootstrap.interval_partition(X, None, request)
    folds = boot.learner_._fit_context.fold_frame.compute()
    sums = bootstrap.ate_partition(
        X, folds, bootstrap.AteSums(boot._replicates(False, "overall"), boot.seeds_)
    )
    monkeypatch.setattr(bootstrap, "ROW_BLOCK", 7)
    monkeypatch.setattr(bootstrap, "ATE_ROW_BLOCK", 7)
    np.testing.assert_allclose(bootstrap.interval_partition(X, None, request), whole)
    np.testing.assert_allclose(
        bootstrap.ate_partition(
            X, folds, bootstrap.AteSums(boot._replicates(False, "overall"), boot.seeds_)
        ),
        sums,
    )
    assert whole.shape == (300, 1, 2)

    params = {"n_estimators": 3, "num_leaves": 5, "verbose": -1, "n_jobs": 1}
    learner = TLearner(
        False, 2, LGBMRegressor, nuisance_model_params=params, n_folds=1, client=client
    )
    boot = Bootstrap(learner, n_bootstraps=3, random_state=0).fit(X, y, w)
    cates = tuple(fit._linear_cate("overall") for fit in [boot.learner_, *boot.replicates_])
    linear = bootstrap.LinearAteSums(cates, ((None, None),) * 4, boot.seeds_)
    folds = boot.learner_._fit_context.fold_frame.compute()
    blocked = bootstrap.linear_ate_partition(X, folds, linear)
    monkeypatch.setattr(bootstrap, "ATE_ROW_BLOCK", 1_000)
    np.testing.assert_allclose(bootstrap.linear_ate_partition(X, folds, linear), blocked)


def test_replicates_without_cross_fitting_share_the_bins_too(client):
    """A T-learner with n_folds=1 trains each row once per fit: alone it bins its own rows,
    but its bootstrap trains every row once per replicate, so the replicates share bins."""
    X, y, w, _ = _data(n=600)
    params = {"n_estimators": 3, "num_leaves": 5, "verbose": -1, "n_jobs": 1}
    learner = TLearner(
        False, 2, LGBMRegressor, nuisance_model_params=params, n_folds=1, client=client
    )
    assert learner.fit(X, y, w).fit_report_.attrs["shared_bins"] is False
    boot = Bootstrap(learner, n_bootstraps=2, random_state=0).fit(X, y, w)
    assert boot.fit_report_.attrs["shared_bins"] is True


def _lightgbm_learner(name, client, n_variants, fold_strategy):
    """A learner whose CATE is a sum of LightGBM regressors fitted without cross-fitting:
    the T-learner's outcome models, the R- and DR-learner's treatment models."""
    params = {"n_estimators": 8, "num_leaves": 7, "verbose": -1, "n_jobs": 1}
    args = {"random_state": 0, "client": client, "fold_strategy": fold_strategy}
    if name == "T":
        return TLearner(
            False, n_variants, LGBMRegressor, nuisance_model_params=params, n_folds=1, **args
        )
    outcome = "variant_outcome_model" if name == "DR" else "outcome_model"
    folds = {outcome: 2, "propensity_model": 2, "treatment_model": 1}
    cls = DRLearner if name == "DR" else RLearner
    return _lightgbm_treatment_learner(cls, n_variants, params, n_folds=folds, **args)


def _lightgbm_treatment_learner(cls, n_variants, params, **args):
    """An R- or DR-learner with LightGBM for every model."""
    return cls(
        False,
        n_variants,
        LGBMRegressor,
        LGBMRegressor,
        LGBMClassifier,
        nuisance_model_params=params,
        treatment_model_params=params,
        propensity_model_params=params,
        **args,
    )


@pytest.mark.parametrize("fold_strategy", ["partition", "sklearn"])
@pytest.mark.parametrize("name", ["T", "R", "DR"])
def test_the_ate_reads_each_models_sum_over_its_training_rows_from_its_fit(
    client, name, fold_strategy
):
    """Models of the CATE without cross-fitting sum their training rows' predictions from
    LightGBM's training scores as they are fitted (on the shared bins or on their own
    rows); the ATE pass predicts only the other rows. The ATEs are the count-weighted
    means of the in-sample CATE all the same (three variants: an R-learner's treatment
    model trains on two of them, a T-learner's outcome model on one)."""
    Xp, y, w, _ = _data(n=900, n_variants=3)
    X = dd.from_pandas(Xp, npartitions=3)
    y, w = dd.from_pandas(y, npartitions=3), dd.from_pandas(w, npartitions=3)
    learner = _lightgbm_learner(name, client, 3, fold_strategy)
    boot = Bootstrap(learner, n_bootstraps=4, random_state=2)
    boot.fit(X, y, w, synchronize_cross_fitting=False)
    report = boot.fit_report_
    assert report.attrs["shared_bins"] is (fold_strategy == "partition")
    models_per_fit = 3 if name == "T" else 2
    assert report.attrs["trained_sums"] == 5 * models_per_fit
    replicates, point = client.compute(
        [boot.predict_replicates(X, is_oos=False), boot.predict(X, is_oos=False)], sync=True
    )
    counts = np.stack([Resample(s).counts(np.arange(len(Xp))) for s in boot.seeds_])
    expected = np.stack(
        [
            (counts[r][:, None, None] * replicates[..., r]).sum(axis=0) / counts[r].sum()
            for r in range(4)
        ]
    )
    np.testing.assert_allclose(boot.ate_replicates_, expected, rtol=1e-9)
    np.testing.assert_allclose(boot.ate_, point.mean(axis=0), rtol=1e-9)


def test_cross_fitted_or_non_lightgbm_models_give_no_trained_sums(client):
    """Cross-fitted models predict their training rows with the fold model that did not see
    them, and other models have no training scores: the ATE pass predicts every row."""
    X, y, w, _ = _data(n=400)
    params = {"n_estimators": 3, "num_leaves": 5, "verbose": -1, "n_jobs": 1}
    crossfitted = TLearner(
        False, 2, LGBMRegressor, nuisance_model_params=params, n_folds=2, client=client
    )
    linear = TLearner(False, 2, LinearRegression, n_folds=1, client=client)
    for learner in (crossfitted, linear):
        boot = Bootstrap(learner, n_bootstraps=2, random_state=0).fit(X, y, w)
        assert boot.fit_report_.attrs["trained_sums"] == 0
        point = boot.predict(X, is_oos=False)
        np.testing.assert_allclose(boot.ate_, point.mean(axis=0), rtol=1e-10)
