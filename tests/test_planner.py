"""The planner (dask_meta/planner.py): resource validation, the three levels of parallelism,
fit_report_, ordering, cancellation and task names, on the real 2 x 1-thread LocalCluster."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import time
from collections import Counter

import dask.dataframe as dd
import distributed
import numpy as np
import pandas as pd
import pytest
from _models import FoldFitError, SlowRegressor, spend
from conftest import make_linear_data
from dask.utils import key_split
from lightgbm import LGBMRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import CrossFitEstimator, RLearner, TLearner
from dask_meta._constants import W_COL
from dask_meta.backends import STREAM, Design, FitSpec, RowSelection
from dask_meta.cluster import ClusterShape, WorkerShape
from dask_meta.folds import SplitRef, SplitRequest
from dask_meta.learners.jobs import used_jobs as _used_jobs
from dask_meta.planner import (
    REPORT_COLUMNS,
    Job,
    Planner,
    _priority,
    order_pending,
    parallel_efficiency,
)

KIND = "variant_outcome_model"
LGBM_SMALL = {"n_estimators": 5, "num_leaves": 4, "min_child_samples": 5, "verbose": -1}


def _fit_tasks(client) -> list[str]:
    return client.run_on_scheduler(
        lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks if "dask_meta-fit" in str(k)]
    )


def _wait_for_no_fit_tasks(client, deadline_s=5.0) -> list[str]:
    deadline = time.monotonic() + deadline_s
    left = _fit_tasks(client)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the scheduler with a deadline
        left = _fit_tasks(client)
    return left


def _workers(client) -> set[str]:
    return set(client.scheduler_info(n_workers=-1)["workers"])


def _overlap(a, b) -> bool:
    return a.start < b.end and b.start < a.end


# --- level 1: base-model threads ----------------------------------------------------------


def _warm_up(client) -> None:
    """Import the libraries on the workers first: the 5 s bound is about not hanging, not
    about cold interpreter start-up on a loaded 2-core machine."""
    client.run(lambda: [__import__(m) for m in ("dask_meta.backends", "lightgbm", "sklearn")])


def test_thread_request_larger_than_any_worker_raises_fast(client):
    _warm_up(client)
    X, y, w, _ = make_linear_data(n=300, n_variants=2)
    learner = TLearner(
        False,
        2,
        LGBMRegressor,
        nuisance_model_params={**LGBM_SMALL, "n_jobs": 4},
        n_folds=2,
        random_state=0,
        client=client,
    )
    start = time.monotonic()
    with pytest.raises(ValueError) as info:
        learner.fit(X, y, w)
    elapsed = time.monotonic() - start
    assert elapsed < 5, f"took {elapsed:.1f}s: the request was submitted instead of rejected"
    message = str(info.value)
    assert "4 threads" in message
    assert any(address in message for address in _workers(client)), message
    assert "has 1 threads" in message
    assert _wait_for_no_fit_tasks(client) == []
    with pytest.raises(ValueError, match="not fitted"):
        learner.predict(X, is_oos=True)

    # the same check for a lone cross-fit estimator
    cfe = CrossFitEstimator(
        2, LGBMRegressor, {**LGBM_SMALL, "n_jobs": 4}, random_state=0, client=client
    )
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"4 threads.*has 1 threads"):
        cfe.fit(pd.DataFrame(X), y)
    assert time.monotonic() - start < 5
    assert not cfe.is_fitted


def test_thread_request_rejected_before_the_data_is_persisted(client, monkeypatch):
    """Resource requests are validated before anything expensive is computed;
    persisting the training frame (the whole data on the cluster) must not happen first."""
    from dask_meta.planner import Planner

    persisted = []
    original = Planner.persist_partitions

    def spy(self, frame, name):
        persisted.append(name)
        return original(self, frame, name)

    monkeypatch.setattr(Planner, "persist_partitions", spy)
    X, y, w, _ = make_linear_data(n=300, n_variants=2)
    learner = TLearner(
        False,
        2,
        LGBMRegressor,
        nuisance_model_params={**LGBM_SMALL, "num_threads": 3},
        n_folds=2,
        client=client,
    )
    with pytest.raises(ValueError, match="3 threads"):
        learner.fit(X, y, w)
    cfe = CrossFitEstimator(2, LGBMRegressor, {**LGBM_SMALL, "n_jobs": 2}, client=client)
    with pytest.raises(ValueError, match="2 threads"):
        cfe.fit(pd.DataFrame(X), y)
    assert persisted == [], f"the training frame was persisted before validation: {persisted}"


def test_thread_parameter_injected_into_models(default_client):
    """n_jobs=-1 means a whole worker (1 thread here); unset, the planner gives each model
    one thread when there are more jobs than cluster threads. The fitted models carry it."""
    X, y, w, _ = make_linear_data(n=300, n_variants=2)
    for params in ({**LGBM_SMALL, "n_jobs": -1}, dict(LGBM_SMALL)):
        learner = TLearner(
            False,
            2,
            LGBMRegressor,
            nuisance_model_params=params,
            n_folds=2,
            random_state=0,
            client=default_client,
        ).fit(X, y, w)
        assert (learner.fit_report_["threads"] == 1).all()
        for cfe in learner._nuisance_models[KIND]:
            for model in [*cfe._estimators, cfe._overall_estimator]:
                assert model.get_params()["n_jobs"] == 1


def test_invalid_limits_rejected_before_any_work(client):
    X, y, w, _ = make_linear_data(n=100, n_variants=2)
    learner = TLearner(False, 2, LinearRegression, n_folds=2, client=client)
    for kwargs in (
        {"n_jobs_cross_fitting": 0},
        {"n_jobs_base_learners": -2},
        {"n_jobs_cross_fitting": 1.5},
    ):
        with pytest.raises(ValueError, match="n_jobs_"):
            learner.fit(X, y, w, **kwargs)


def test_fit_with_explicit_non_default_client(client):
    """``client=`` given explicitly, no default client in the process (a batch job holding
    two clients, or the session fixture's set_as_default=False): fit must use that client."""
    with pytest.raises(ValueError):
        distributed.get_client()  # precondition: there is no default client
    X, y, w, _ = make_linear_data(n=300, n_variants=2)
    learner = TLearner(False, 2, LinearRegression, n_folds=2, random_state=0, client=client)
    learner.fit(X, y, w)
    assert set(learner.fit_report_["worker"]) <= _workers(client)
    assert learner.predict(X, is_oos=False).shape == (300, 1, 1)


# --- levels 2 and 3: cross-fitting and stage limits ---------------------------------------


@pytest.fixture(scope="module")
def slow_fits(client):
    """The same T-learner fitted with three limit settings (slow fits so intervals show).

    Two partitions, so the training data lives on both workers and the scheduler spreads
    the fits over them (with one partition, fits stick to its worker until stolen)."""
    X_np, y_np, w_np, _ = make_linear_data(n=600, d=3, n_variants=3, seed=1)
    frame = pd.DataFrame(X_np, columns=["a", "b", "c"]).assign(y=y_np, w=w_np)
    ddf = dd.from_pandas(frame, npartitions=2)
    X, y, w = ddf[["a", "b", "c"]], ddf["y"], ddf["w"]
    X_new = make_linear_data(n=50, d=3, n_variants=3, seed=2)[0]
    X_new = pd.DataFrame(X_new, columns=["a", "b", "c"])
    out = {}
    with client.as_current():
        for name, limits in (
            ("none", {}),
            ("cross_fitting_1", {"n_jobs_cross_fitting": 1}),
            ("base_learners_1", {"n_jobs_base_learners": 1}),
        ):
            learner = TLearner(
                False,
                3,
                SlowRegressor,
                nuisance_model_params={"delay": 0.15},
                n_folds=3,
                random_state=7,
                client=client,
            ).fit(X, y, w, **limits)
            out[name] = (
                learner.fit_report_,
                client.compute(learner.predict(X, is_oos=False)).result(),
                learner.predict(X_new, is_oos=True, oos_method="mean"),
                [
                    m.model_
                    for cfe in learner._nuisance_models[KIND]
                    for m in [*cfe._estimators, cfe._overall_estimator]
                ],
            )
    return out


def test_no_limits_fits_of_different_estimators_overlap(slow_fits, client):
    report = slow_fits["none"][0]
    assert set(report["worker"]) == _workers(client), "both workers should fit"
    rows = list(report.itertuples())
    assert any(
        _overlap(a, b) and a.ordinal != b.ordinal for a, b in itertools.combinations(rows, 2)
    )


def test_cross_fitting_limit_one_fit_per_estimator_at_a_time(slow_fits):
    report = slow_fits["cross_fitting_1"][0]
    assert len(report) == 3 * 4
    for ordinal, group in report.groupby("ordinal"):
        group = group.sort_values("start")
        # each fit of this estimator starts after the previous one ended
        assert (group["start"].to_numpy()[1:] >= group["end"].to_numpy()[:-1]).all(), ordinal
    # the limit is per estimator: different estimators still run side by side
    rows = list(report.itertuples())
    assert any(
        _overlap(a, b) and a.ordinal != b.ordinal for a, b in itertools.combinations(rows, 2)
    )


def test_base_learner_limit_one_estimator_at_a_time(slow_fits):
    report = slow_fits["base_learners_1"][0]
    assert len(report) == 3 * 4
    for a, b in itertools.combinations(report.itertuples(), 2):
        if (a.model_kind, a.ordinal) != (b.model_kind, b.ordinal):
            assert not _overlap(a, b), (a.key, b.key)
    # each estimator's fits form one block: estimators do not interleave
    order = report.sort_values("start")["ordinal"].tolist()
    blocks = [k for k, _ in itertools.groupby(order)]
    assert sorted(blocks) == [0, 1, 2], order


def test_cate_identical_across_limit_settings(slow_fits):
    """The limits change when fits run, never what they compute: the same fold models
    (bitwise) and the same in-sample CATE (bitwise). The out-of-sample CATE is compared to
    1e-12 here: its last bit depends on the byte alignment of the partitions the workers
    receive, a separate bug pinned down by
    test_crossfit.py::test_oos_prediction_independent_of_buffer_alignment."""
    _, in_sample, oos, models = slow_fits["none"]
    assert in_sample.shape == (600, 2, 1)
    assert oos.shape == (50, 2, 1)
    for name in ("cross_fitting_1", "base_learners_1"):
        _, other_in_sample, other_oos, other_models = slow_fits[name]
        for a, b in zip(models, other_models, strict=True):
            assert np.array_equal(a.coef_, b.coef_) and a.intercept_ == b.intercept_, name
        assert np.array_equal(other_in_sample, in_sample), name
        np.testing.assert_allclose(other_oos, oos, rtol=0, atol=1e-12, err_msg=name)


# --- fit_report_, ordering, task names ----------------------------------------------------


@pytest.fixture(scope="module")
def linear_fit(client):
    X, y, w, _ = make_linear_data(n=600, d=3, n_variants=3, seed=3)
    with client.as_current():
        learner = TLearner(
            False, 3, LinearRegression, n_folds=3, random_state=11, client=client
        ).fit(X, y, w)
        folds = client.compute(learner._fit_context.fold_frame).result()
    return learner, w, folds


def test_fit_report_one_row_per_job(linear_fit, client):
    learner, w, folds = linear_fit
    report = learner.fit_report_
    n_folds, n_models = 3, 3
    assert list(report.columns) == REPORT_COLUMNS
    assert len(report) == (n_folds + 1) * n_models
    assert report["key"].is_unique
    assert report["key"].str.startswith("dask_meta-fit-variant-outcome-model-").all()
    assert (report["stage"] == "nuisance").all()
    assert (report["model_kind"] == KIND).all()
    assert set(zip(report["ordinal"], report["fold"], strict=True)) == set(
        itertools.product(range(n_models), [0, 1, 2, "overall"])
    )
    assert set(report["worker"]) <= _workers(client)
    assert (report["threads"] == 1).all()
    np.testing.assert_allclose(report["duration"], report["end"] - report["start"])
    assert (report["duration"] >= 0).all()
    assert (report["start"] >= report["submitted"] - 0.1).all()
    assert report["start"].is_monotonic_increasing
    # rows: fold models train on their variant minus their fold, overall on the variant
    np.testing.assert_array_equal(folds[W_COL].to_numpy(), w)
    for row in report.itertuples():
        ids = learner._nuisance_models[KIND][row.ordinal]._split.fold_ids(folds)
        in_variant = int((w == row.ordinal).sum())
        expected = (
            in_variant if row.fold == "overall" else in_variant - int((ids == row.fold).sum())
        )
        assert row.rows == expected, (row.key, row.rows, expected)


def test_longest_jobs_submitted_first(linear_fit):
    """12 jobs on a cluster taking 4 at a time: the overall models (most rows) go first."""
    report = linear_fit[0].fit_report_
    overall = report[report["fold"] == "overall"]
    folds = report[report["fold"] != "overall"]
    assert overall["rows"].min() > folds["rows"].max()
    assert overall["submitted"].max() <= folds["submitted"].min()
    # and the fold models themselves go in order of decreasing rows
    by_submission = folds.sort_values("submitted", kind="stable")
    first_wave = by_submission["rows"].iloc[0]
    assert first_wave == folds["rows"].max()


def _job(fold, variants=None, rows=100.0, blocks=False) -> Job:
    rows_of = RowSelection(variants)
    spec = FitSpec(LinearRegression, {}, Design(("a",), False), "y", rows_of, 1, None)
    key = f"fit-{variants}-{fold}"
    return Job(key, "nuisance", KIND, 0, fold, spec, (), cost=rows, blocks=blocks)


def test_only_the_models_that_predict_the_training_rows_are_waited_for():
    """An estimator that trains on every row predicts each training row in-sample with a fold
    model, so deriving treatment targets needs its fold models only; one that trains on a
    variant's rows predicts the other rows with its overall model; without cross-fitting the
    overall model is all there is."""
    every_row = [_job(0), _job(1), _job(None)]
    all_rows = SplitRef("f", None, 2)
    assert [j.fold for j in _used_jobs(every_row, all_rows)] == [0, 1]
    one_variant = [_job(0, (1,)), _job(1, (1,)), _job(None, (1,))]
    variant = SplitRef("f", (1,), 2, SplitRequest((1,), 2, None, "sync"))
    assert [j.fold for j in _used_jobs(one_variant, variant)] == [0, 1, None]
    assert [j.fold for j in _used_jobs([_job(None)], SplitRef("f", None, 1))] == [None]
    # a variant's model that cross-predicts every row (cross_fit_all_rows): its folds only
    cross = SplitRef("f", (1,), 2, SplitRequest((1,), 2, None, "sync", cross_predicts=True))
    assert [j.fold for j in _used_jobs(one_variant, cross)] == [0, 1]


def test_awaited_jobs_go_before_longer_ones_nothing_waits_for():
    awaited = [_job(0, rows=10, blocks=True), _job(1, rows=20, blocks=True)]
    free = [_job(None, rows=1000), _job(2, rows=5)]
    order = sorted([*free, *awaited], key=_priority)
    expected = [(True, 20), (True, 10), (False, 1000), (False, 5)]
    assert [(j.blocks, j.cost) for j in order] == expected


def test_a_job_nothing_waits_for_goes_first_once_longer_than_the_awaited_work_per_thread():
    """DR-learner at 1M rows: the overall propensity model (41 s, nothing waits for it) ran
    last, alone, while 5 fold models (24 s each) and 18 outcome fits went first."""

    def jobs():
        awaited = [_job(k, rows=30, blocks=True) for k in range(4)]
        return [*awaited, _job(None, rows=50), _job(9, rows=5)]

    # 120 awaited units on 2 threads: 60 per thread, more than the free job's 50
    pending = jobs()
    assert order_pending(pending, [], threads=2) == {j.key for j in pending if j.blocks}
    assert [(j.blocks, j.cost) for j in pending] == [(True, 30)] * 4 + [(False, 50), (False, 5)]
    # two of them running, two pending: still 120 units (a running job counts whole)
    pending = jobs()
    running, pending = pending[:2], pending[2:]
    order_pending(pending, running, threads=2)
    assert pending[0].blocks
    # two done, two pending: 60 units, 30 per thread; the free job of 50 goes first
    first = order_pending(pending, [], threads=2)
    assert [(j.blocks, j.cost) for j in pending] == [
        (False, 50),
        (True, 30),
        (True, 30),
        (False, 5),
    ]
    assert first == {j.key for j in pending[:3]}
    # a thread more: the awaited work spreads thinner, so the free job goes first at once
    pending = jobs()
    order_pending(pending, [], threads=3)
    assert pending[0].cost == 50


def test_treatment_fits_do_not_wait_for_unused_overall_models(client):
    """R-learner: its outcome and propensity models train on every row, so the treatment
    targets come from their fold models alone. The overall models (the longest fits here:
    the outcome model sleeps per training row) are submitted after every fold model, and
    the first treatment fit starts before the overall outcome model is done (by about
    200 x delay_per_row: the fold models end at ~800 x, the overall one at ~1000 x)."""
    X, y, w, _ = make_linear_data(n=600, d=3, n_variants=2, seed=4)
    client.run(importlib.import_module, "dask_meta.backends")  # no worker starts cold
    with client.as_current():
        learner = RLearner(
            False,
            2,
            SlowRegressor,
            LinearRegression,
            LogisticRegression,
            nuisance_model_params={"delay_per_row": 0.01},
            n_folds=3,
            random_state=0,
            client=client,
        ).fit(X, y, w)
    report = learner.fit_report_
    nuisance = report[report["stage"] == "nuisance"]
    overall = nuisance[nuisance["fold"] == "overall"]
    folds = nuisance[nuisance["fold"] != "overall"]
    assert len(overall) == 2 and len(folds) == 6
    assert overall["submitted"].min() >= folds["submitted"].max()
    outcome_overall = overall[overall["model_kind"] == "outcome_model"].iloc[0]
    treatment = report[report["stage"] == "treatment"]
    assert treatment["start"].min() < outcome_overall["end"], report


def _shape(*threads: int) -> ClusterShape:
    return ClusterShape(
        tuple(WorkerShape(f"tcp://w{i}", t, t, 2**30) for i, t in enumerate(threads))
    )


def test_local_fits_go_to_the_worker_with_most_threads_free(client):
    planner = Planner(client, shape=_shape(2, 4))
    job = _job(0)
    assert planner._place(job, Counter()) == "tcp://w1"
    assert planner._place(job, Counter({"tcp://w1": 3})) == "tcp://w0"
    job.spec = dataclasses.replace(job.spec, threads=3)
    assert planner._place(job, Counter({"tcp://w1": 3})) == "tcp://w1"  # w0 has only 2
    job.backend = STREAM
    assert planner._place(job, Counter()) is None  # streaming steps stay with their data


def test_fits_on_one_partition_start_on_every_worker(client):
    """In-memory data under ROWS_PER_PARTITION rows is one partition on one worker; the
    scheduler alone would queue every fit there. The first two fits submitted run on the
    two workers."""
    X, y, w, _ = make_linear_data(n=400, d=3, n_variants=2, seed=6)
    learner = TLearner(
        False, 2, SlowRegressor, nuisance_model_params={"delay": 0.5}, n_folds=2, client=client
    ).fit(X, y, w)
    first = learner.fit_report_.sort_values("submitted").head(2)
    assert first["worker"].nunique() == 2, learner.fit_report_


def test_fit_task_keys_group_readably(linear_fit):
    keys = linear_fit[0].fit_report_["key"]
    assert {key_split(k) for k in keys} == {"dask_meta-fit-variant-outcome-model"}


# --- cancellation -------------------------------------------------------------------------


def test_failing_fold_cancels_the_fit(client):
    """One fold model of one estimator raises: fit raises that error, every future of the
    fit is gone from the scheduler within 5 s, and the learner stays unfitted."""
    rng = np.random.default_rng(5)
    n0, n1 = 100, 500
    w = rng.permutation(np.r_[np.zeros(n0, int), np.ones(n1, int)])
    X = rng.normal(size=(n0 + n1, 3))
    y = X[:, 0] + w * X[:, 1] + rng.normal(0, 0.1, n0 + n1)
    # exactly balanced 3 folds: variant 1's fold models train on 333, 333 and 334 rows
    # (variant 0's on 66, 67, 67), so 334 singles out one fold of variant 1; longest-first
    # order submits it second, with slow fits still queued and running
    learner = TLearner(
        False,
        2,
        SlowRegressor,
        nuisance_model_params={"delay": 0.5, "fail_rows": 334},
        n_folds=3,
        random_state=0,
        client=client,
    )
    with client.as_current(), pytest.raises(FoldFitError, match="334 rows") as info:
        learner.fit(X, y, w)
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "variant_outcome_model 1 fold" in notes, notes
    left = _wait_for_no_fit_tasks(client)
    assert left == [], left
    assert learner.fit_report_ is None
    assert not any(cfe.is_fitted for cfe in learner._nuisance_models[KIND])
    with pytest.raises(ValueError, match="not fitted"):
        learner.predict(X, is_oos=True)


def test_per_partition_task_seconds_are_counted_once(client):
    planner = Planner(client)
    futures = planner.map_partitions(spend, [0.4, 0.3, 0.2], name="spend")
    assert client.gather(futures) == [0.4, 0.3, 0.2]
    assert planner.task_seconds() == pytest.approx(0.9, abs=0.15)
    assert planner.task_seconds() == 0.0  # the workers forgot them
    planner.release()


def test_parallel_efficiency_counts_fits_and_per_partition_tasks():
    report = pd.DataFrame({"duration": [4.0, 2.0], "threads": [2, 1]})
    assert parallel_efficiency(report, cores=2, wall=10.0) == pytest.approx(0.5)
    report.attrs["task_seconds"] = 6.0
    assert parallel_efficiency(report, cores=2, wall=10.0) == pytest.approx(0.8)
    report.attrs["task_seconds"] = float("nan")  # a worker lost at the end: fits only
    assert parallel_efficiency(report, cores=2, wall=10.0) == pytest.approx(0.5)


def test_fit_report_has_the_seconds_of_the_derived_targets(client):
    X, y, w, _ = make_linear_data(n=2_000)
    kwargs = dict(
        is_classification=False,
        n_variants=3,
        nuisance_model_factory=LinearRegression,
        n_folds=2,
        client=client,
    )
    r = RLearner(
        **kwargs,
        treatment_model_factory=LinearRegression,
        propensity_model_factory=LogisticRegression,
    ).fit(X, y, w)
    # pseudo-outcomes of 2 treatment models, and the fold columns kept for prediction
    assert r.fit_report_.attrs["task_seconds"] > 0
    t = TLearner(**kwargs).fit(X, y, w)
    # no treatment stage: the fold columns only
    assert 0 < t.fit_report_.attrs["task_seconds"] < r.fit_report_.attrs["task_seconds"]
