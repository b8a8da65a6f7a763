"""Parallelism plans (dask_meta/plan.py, dask_meta/compare.py): the cost model's arithmetic
without a cluster, then plan=None / "auto" / Plan on real LocalClusters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_linear_data, own_client
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import DRLearner, Plan, SLearner, TLearner, compare_plans
from dask_meta.backends import CALIBRATION_ROUNDS, calibration_params
from dask_meta.cluster import ClusterShape, WorkerShape
from dask_meta.learners.plan_choice import _reused
from dask_meta.plan import (
    AUTO_FROM_ROWS,
    Calibration,
    PlannedJob,
    choose,
    choose_untimed,
    concurrency,
    fits_in_memory,
    rule_threads,
    simulate,
    tail_of,
)

LGBM = {"n_estimators": 20, "num_leaves": 8, "min_child_samples": 5, "verbose": -1}


def _shape(workers=1, threads=2, memory=2**34) -> ClusterShape:
    return ClusterShape(
        tuple(WorkerShape(f"tcp://w{i}", threads, threads, memory) for i in range(workers))
    )


def _jobs(n, rows=1000, stage="nuisance", columns=10, fixed=None):
    return [
        PlannedJob(stage, (stage, "m", i), rows, "M", columns, fixed_threads=fixed)
        for i in range(n)
    ]


# 1 s + 1 ms per row with one thread; 1.8x faster with 2 threads
CAL = Calibration("M", (1000, 5000), (2.0, 6.0), 2, 6.0 / 1.8)


# --- arithmetic ------------------------------------------------------------------------------


def test_calibration_line_and_speedup():
    assert CAL.slope == pytest.approx(1e-3)
    assert CAL.intercept == pytest.approx(1.0)
    assert CAL.speedup(1) == 1.0
    assert CAL.speedup(2) == pytest.approx(1.8)
    assert CAL.seconds(9000, 1) == pytest.approx(10.0)
    assert CAL.seconds(9000, 2) == pytest.approx(10.0 / 1.8)
    # a measured slowdown is not extrapolated: more threads never cost more than one
    slow = Calibration("M", (1000, 5000), (2.0, 6.0), 2, 7.0)
    assert slow.speedup(2) == 1.0


def test_speedup_grows_with_the_rows_as_only_the_per_row_part_runs_on_threads():
    """Amdahl: 1 s fixed + 1 ms per row with one thread (2 s at 1,000 rows, 6 s at 5,000);
    with 2 threads 3.5 s at 5,000 rows, so the per-row part (5 s) ran in 2.5 s: p = 2."""
    cal = Calibration("M", (1000, 5000), (2.0, 6.0), 2, 3.5, seconds_n_small=1.6)
    assert cal.speedup(2) == pytest.approx(6.0 / 3.5)  # the larger timed size, as measured
    assert cal.speedup(2, 5000) == pytest.approx(6.0 / 3.5)
    assert cal.speedup(2, 1000) == pytest.approx(2.0 / 1.5)  # smaller fits gain less
    assert cal.speedup(2, 10**6) == pytest.approx(1001.0 / 501.0)  # larger ones more
    assert cal.seconds(10**6, 2) == pytest.approx(501.0)
    # the per-row part ran 1.6x faster: so will a million rows' (and the fixed second not)
    slow = Calibration("M", (1000, 5000), (2.0, 6.0), 2, 1.0 + 5.0 / 1.6, seconds_n_small=1.7)
    assert slow.speedup(2, 10**6) == pytest.approx(1001.0 / (1.0 + 1000.0 / 1.6))
    # never more than the threads, never below one
    for seconds_n, speedup in ((0.1, 2.0), (9.0, 1.0)):
        cal = Calibration("M", (1000, 5000), (2.0, 6.0), 2, seconds_n, seconds_n_small=1.0)
        assert cal.speedup(2, 10**6) == speedup


def test_a_noisy_small_many_thread_time_does_not_change_the_speedup():
    """Only the larger size's many-thread time counts: a line through both many-thread
    times (here 1.0 s, where the others say 1.3 s) would predict 1.33x at a million rows,
    below the 1.5x the larger timed size gained."""
    noisy = Calibration("M", (1000, 5000), (2.0, 6.0), 2, 4.0, seconds_n_small=1.0)
    quiet = Calibration("M", (1000, 5000), (2.0, 6.0), 2, 4.0, seconds_n_small=1.3)
    assert noisy.speedup(2) == pytest.approx(1.5)
    assert noisy.speedup(2, 10**6) == quiet.speedup(2, 10**6)
    # p = 5 / 3: a million rows take 1 + 1000 / (5 / 3) s
    assert noisy.speedup(2, 10**6) == pytest.approx(1001.0 / 601.0)


def test_tree_ensembles_are_timed_with_fewer_rounds_and_scaled():
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor

    assert CALIBRATION_ROUNDS == 20
    params, scale = calibration_params(LGBMRegressor, {"n_estimators": 100, "verbose": -1})
    assert params == {"n_estimators": 20, "verbose": -1} and scale == 5.0
    # the class's own default when the params leave it unset (scikit-learn's forests: 100)
    assert calibration_params(RandomForestRegressor, {}) == ({"n_estimators": 20}, 5.0)
    # few rounds already, no rounds at all, or not a tree ensemble: timed as given
    assert calibration_params(LGBMClassifier, {"n_estimators": 15}) == ({"n_estimators": 15}, 1)
    # scikit-learn's histogram gradient boosting counts rounds in max_iter (default 100);
    # every timed round runs
    assert calibration_params(HistGradientBoostingRegressor, {"max_iter": 100}) == (
        {"max_iter": 20, "early_stopping": False},
        5.0,
    )
    assert calibration_params(HistGradientBoostingRegressor, {}) == (
        {"max_iter": 20, "early_stopping": False},
        5.0,
    )
    assert calibration_params(LinearRegression, {}) == ({}, 1.0)


def test_simulation_places_jobs_longest_first_on_slots():
    cal = {"M": CAL}
    shape = _shape(1, 2)
    # three 10 s jobs on two slots: 20 s; with 2 threads each: 3 x 10/1.8 s
    three = _jobs(3, rows=9000)
    assert simulate(three, cal, shape, 1) == pytest.approx(20.0)
    assert simulate(three, cal, shape, 2) == pytest.approx(30 / 1.8)
    # the treatment stage starts after the nuisance stage
    two_stages = _jobs(2, rows=9000) + _jobs(2, rows=9000, stage="treatment")
    assert simulate(two_stages, cal, shape, 1) == pytest.approx(20.0)
    # a cap on the fits in flight
    assert simulate(_jobs(4, rows=9000), cal, shape, 1, max_in_flight=1) == pytest.approx(40.0)


def test_choose_prefers_a_whole_worker_only_where_the_tail_pays():
    cal = {"M": CAL}
    shape = _shape(1, 2)
    few = choose(_jobs(3, rows=9000), cal, shape)
    assert few.source == "auto" and few.threads_per_model == 2
    assert few.estimated_seconds == pytest.approx(30 / 1.8)
    many = choose(_jobs(4, rows=9000), cal, shape)
    assert many.threads_per_model == 1 and many.estimated_seconds == pytest.approx(20.0)
    assert many.n_jobs_cross_fitting is None and many.n_jobs_base_learners is None
    assert "chose 1 thread(s) per model" in many.reason
    assert "M: 1000.00 us/row + 1.00 s with 1 thread, speedup 1.80 at 2 threads" in many.reason
    assert [c.threads_per_model for c in many.candidates] == [1, 2]


def test_the_fits_left_over_by_one_thread_each_take_the_idle_threads():
    """n fits of one stage on s one-thread slots: the last n mod s get s // (n mod s)
    threads (at most a worker's), where that is more than one."""
    assert tail_of(_jobs(3), _shape(1, 2)) == (1, 2)
    assert tail_of(_jobs(1), _shape(1, 2)) == (1, 2)
    assert tail_of(_jobs(5), _shape(1, 4)) == (1, 4)
    assert tail_of(_jobs(6), _shape(1, 4)) == (2, 2)
    assert tail_of(_jobs(1), _shape(2, 2)) == (1, 2)  # a worker's threads at most
    assert tail_of(_jobs(4), _shape(1, 2)) == (0, 1)  # none left over
    assert tail_of(_jobs(3), _shape(2, 2)) == (0, 1)  # one thread each for three of four
    assert tail_of(_jobs(3), _shape(2, 1)) == (0, 1)  # one-thread workers
    assert tail_of(_jobs(3, fixed=1), _shape(1, 2)) == (0, 1)  # threads set by the params
    two_stages = _jobs(2) + _jobs(1, stage="treatment")
    assert tail_of(two_stages, _shape(1, 2)) == (0, 1)
    # three 10 s fits on two threads: two side by side, then the third with both
    cal, shape = {"M": CAL}, _shape(1, 2)
    three = _jobs(3, rows=9000)
    assert simulate(three, cal, shape, 1, tail=(1, 2)) == pytest.approx(10.0 + 10.0 / 1.8)
    choice = choose(three, cal, shape, tail_ok=True)
    assert (choice.threads_per_model, choice.tail_fits, choice.tail_threads) == (1, 1, 2)
    assert choice.estimated_seconds == pytest.approx(10.0 + 10.0 / 1.8)
    assert [(c.threads_per_model, c.tail_fits) for c in choice.candidates] == [
        (1, 0),
        (2, 0),
        (1, 1),
    ]
    assert "1 thread, the last 1 fit(s) 2: 15.6 s" in choice.reason
    assert choice.reason.endswith("chose 1 thread(s) per model, 2 for the last 1 fit(s)")
    # not offered where the planner cannot follow it; not chosen where two threads are
    # slower than one
    assert choose(three, cal, shape).tail_fits == 0
    slower = {"M": Calibration("M", (1000, 5000), (2.0, 6.0), 2, 7.0)}
    assert choose(three, slower, shape, tail_ok=True).tail_fits == 0


def test_the_default_plan_times_no_model_where_the_timing_could_not_change_its_choice():
    """Fits all of one model: a candidate within 2% of the fastest at every speedup from
    none to linear is chosen untimed, and a real calibration at any speedup in that range,
    with or without a fixed cost per fit, chooses it too."""
    variants = [
        PlannedJob("nuisance", ("nuisance", "m", i), rows, "M", 10)
        for i, rows in enumerate([266_000] * 15 + [333_000] * 3)
    ]
    cases = [
        # the peers' T-learner: three fits on two threads, the last on both
        (_jobs(3, rows=333_000), _shape(1, 2), True, (1, 1, 2)),
        # 18 fold and overall models: one thread each, on any two threads
        (variants, _shape(1, 2), True, (1, 0, 1)),
        (variants, _shape(2, 1), True, (1, 0, 1)),
        # six on four threads: four, then the last two with two threads each
        (_jobs(6, rows=1000), _shape(1, 4), True, (1, 2, 2)),
        # three on two threads where the planner could not follow a tail: one thread each
        # loses to two threads each at a linear speedup, and wins at none
        (_jobs(3, rows=1000), _shape(1, 2), False, None),
        # three on four threads: one each at no speedup, four each at a linear one
        (_jobs(3, rows=1000), _shape(1, 4), True, None),
    ]
    for jobs, shape, tail_ok, want in cases:
        choice = choose_untimed(jobs, shape, tail_ok)
        if want is None:
            assert choice is None
            continue
        got = (choice.threads_per_model, choice.tail_fits, choice.tail_threads)
        assert got == want
        assert choice.source == "auto" and choice.estimated_seconds is None
        assert choice.calibrations == () and choice.calibration_seconds == 0
        assert f"{len(jobs)} fits on {shape.total_threads} threads" in choice.reason
        assert "all of M: not timed" in choice.reason
        top = shape.max_threads
        for speedup in (1.0, 1.05, 1.3, 1.5, 0.5 * (1 + top), top - 0.01, float(top)):
            for fixed in (0.0, 0.2, 2.0):  # seconds per fit, beside 1 us per row
                rows = (5_000, 20_000)
                seconds = (fixed + rows[0] * 1e-6, fixed + rows[1] * 1e-6)
                timed = Calibration("M", rows, seconds, top, fixed + rows[1] * 1e-6 / speedup)
                calibrated = choose(jobs, {"M": timed}, shape, tail_ok=tail_ok)
                ours = next(
                    c
                    for c in calibrated.candidates
                    if (c.threads_per_model, c.tail_fits, c.tail_threads) == want
                )
                # as fast as the timed choice (within its 2%), and the same choice once
                # threads gain anything at all (with none, one thread each ties)
                assert ours.seconds <= calibrated.estimated_seconds * 1.02
                if speedup >= 1.05:
                    assert (
                        calibrated.threads_per_model,
                        calibrated.tail_fits,
                        calibrated.tail_threads,
                    ) == want, (want, speedup, fixed)
                    assert calibrated.reason.split("; ")[-1] == choice.reason.split("; ")[-1]
    # fits of two models: their costs per row are unknown to each other, so they are timed
    two = [*_jobs(2), PlannedJob("nuisance", ("nuisance", "p", 0), 1000, "P", 10)]
    assert choose_untimed(two, _shape(1, 2), True) is None


def _kind(kind, n, rows, stage="nuisance"):
    return [PlannedJob(stage, (stage, kind, i), rows, "M", 10) for i in range(n)]


def test_simulation_gives_kinds_their_own_threads_and_keeps_the_queue_order():
    cal = {"M": CAL}
    shape = _shape(1, 2)
    # a 28 s fit (27,000 rows) and four 4 s ones (3,000 rows) with one thread each
    jobs = _kind("p", 1, 27_000) + _kind("m", 4, 3_000)
    assert simulate(jobs, cal, shape, 1) == pytest.approx(28.0)
    assert simulate(jobs, cal, shape, 2) == pytest.approx(44.0 / 1.8)
    # the long fit on both threads first, then the short ones side by side
    assert simulate(jobs, cal, shape, 1, threads_by_kind={"p": 2}) == pytest.approx(
        28.0 / 1.8 + 8.0
    )
    # a 2-thread fit queued behind a 10 s one-thread fit waits for both threads; the
    # one-thread fit behind it does not start before it either
    queued = _kind("m", 1, 9_000) + _kind("p", 1, 8_000) + _kind("s", 1, 1_000)
    by_kind = {"p": 2}
    assert simulate(queued, cal, shape, 1, threads_by_kind=by_kind) == pytest.approx(
        10.0 + 5.0 + 2.0
    )


def test_choose_gives_the_kind_of_the_longest_fit_a_whole_worker_where_that_pays():
    cal = {"M": CAL}
    choice = choose(_kind("p", 1, 27_000) + _kind("m", 4, 3_000), cal, _shape(1, 2))
    assert choice.threads_per_model == 1 and choice.threads_by_kind == {"p": 2}
    assert choice.estimated_seconds == pytest.approx(28.0 / 1.8 + 8.0)
    assert [(c.threads_per_model, c.threads_by_kind) for c in choice.candidates] == [
        (1, ()),
        (2, ()),
        (1, (("p", 2),)),
    ]
    assert "1 thread, p 2: 23.6 s" in choice.reason
    assert choice.reason.endswith("chose 1 thread(s) per model, 2 for the p")
    # many fits of every kind: one thread each packs the cores, no kind needs more
    even = choose(_kind("p", 4, 9_000) + _kind("m", 4, 9_000), cal, _shape(1, 2))
    assert even.threads_per_model == 1 and even.threads_by_kind == {}


def test_choose_caps_fits_in_flight_when_memory_is_short():
    cal = {"M": CAL}
    jobs = _jobs(4, rows=1_000_000, columns=8)  # 240 MB per fit
    roomy = _shape(1, 2, memory=2**31)
    assert fits_in_memory(jobs, roomy, 1, None)
    tight = _shape(1, 2, memory=700 * 2**20)  # room for one fit beside the data, not two
    assert not fits_in_memory(jobs, tight, 1, None)
    assert fits_in_memory(jobs, tight, 1, 1)
    choice = choose(jobs, cal, tight)
    # one fit at a time: a whole worker per model beats one thread per model with a cap
    assert choice.threads_per_model == 2
    assert choice.n_jobs_cross_fitting is None
    # one thread per model only with one fit in flight: 4 x 1001 s against 4 x 1001 / 1.8 s
    assert [(c.threads_per_model, c.max_in_flight) for c in choice.candidates] == [
        (1, 1),
        (2, None),
    ]
    assert choice.candidates[0].seconds == pytest.approx(4004.0)
    assert "1 thread x at most 1 in flight: 4004.0 s" in choice.reason


def test_concurrency_and_the_rule_respect_the_limits():
    groups = {("n", "a", 0): 6, ("n", "a", 1): 6, ("t", "b", 0): 6}
    assert concurrency(groups, (None, None)) == 12
    assert concurrency(groups, (2, None)) == 4
    assert concurrency(groups, (None, 1)) == 6
    assert concurrency(groups, (1, 1)) == 1
    shape = _shape(1, 4)
    assert rule_threads(shape, 12) == 1
    assert rule_threads(shape, 2) == 2
    assert rule_threads(shape, 1) == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threads_per_model": 0}, "threads_per_model must be None, -1 or a positive int"),
        ({"threads_per_model": 1.5}, "threads_per_model must be None, -1 or a positive int"),
        ({"n_jobs_cross_fitting": 0}, "n_jobs_cross_fitting must be None, -1"),
        ({"n_jobs_base_learners": "2"}, "n_jobs_base_learners must be None, -1"),
    ],
)
def test_bad_plan_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Plan(**kwargs)


# --- on a cluster ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_by_two():
    """One worker with two threads: the auto plan has a real choice to make."""
    with own_client(workers=1, threads=2) as c:
        yield c


def _frames(n=4_000, n_variants=2, seed=0):
    X, y, w, tau = make_linear_data(n=n, n_variants=n_variants, seed=seed)
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]), y, w, tau


def _dr(client, plan, **params):
    return DRLearner(
        False,
        2,
        LGBMRegressor,
        LGBMRegressor,
        LGBMClassifier,
        nuisance_model_params={**LGBM, **params},
        treatment_model_params=LGBM,
        propensity_model_params=LGBM,
        n_folds=2,
        random_state=0,
        client=client,
        plan=plan,
    )


def test_auto_plan_is_stated_and_followed(one_by_two):
    X, y, w, _ = _frames()
    learner = _dr(one_by_two, "auto").fit(X, y, w)
    report = learner.fit_report_
    plan = report.attrs["plan"]
    assert plan["source"] == "auto"
    chosen = plan["threads_per_model"]
    assert chosen in (1, 2)
    by_kind = plan["threads_by_kind"]
    assert set(by_kind) <= {"variant_outcome_model", "propensity_model", "treatment_model"}
    assert not by_kind or (chosen == 1 and set(by_kind.values()) == {2})
    # every model whose params leave the threads unset got the chosen count (its kind's)
    assert report["threads"].tolist() == [by_kind.get(k, chosen) for k in report["model_kind"]]
    names = {c["model"] for c in plan["calibrations"]}
    assert any(n.startswith("LGBMRegressor(") for n in names)
    assert any(n.startswith("LGBMClassifier(") for n in names)
    for c in plan["calibrations"]:
        assert c["threads"] == 2 and all(s > 0 for s in c["seconds_1"]) and c["seconds_n"] > 0
        assert c["seconds_n_small"] > 0  # both sizes timed with the worker's threads
        assert c["rounds_scale"] == 1.0  # 20 trees: timed as given
    # one and two threads per model, then one but two for the kinds with the longest fits
    assert [c["threads_per_model"] for c in plan["candidates"]] == [1, 2, 1, 1]
    assert [len(c["threads_by_kind"]) for c in plan["candidates"]] == [0, 0, 1, 2]
    assert plan["estimated_seconds"] > 0
    assert f"chose {chosen} thread(s) per model" in plan["reason"]
    # the same numbers as an explicit plan with the same threads
    same = _dr(one_by_two, Plan(threads_per_model=chosen)).fit(X, y, w)
    np.testing.assert_array_equal(learner.predict(X, is_oos=False), same.predict(X, is_oos=False))
    assert same.fit_report_.attrs["plan"]["source"] == "explicit"


def test_calibration_of_many_rounds_is_scaled_and_said(one_by_two):
    X, y, w, _ = _frames()
    many = {**LGBM, "n_estimators": 60}
    learner = TLearner(
        False,
        2,
        LGBMRegressor,
        nuisance_model_params=many,
        n_folds=2,
        random_state=0,
        client=one_by_two,
        plan="auto",
    ).fit(X, y, w)
    plan = learner.fit_report_.attrs["plan"]
    (calibration,) = plan["calibrations"]
    assert (
        calibration["model"].startswith("LGBMRegressor(")
        and "n_estimators=60" in calibration["model"]
    )
    assert calibration["rounds_scale"] == 3.0
    assert "timed with 1/3 of its rounds" in plan["reason"]


@pytest.mark.parametrize(
    ("n_folds", "enable_overall", "fits"),
    [
        (1, True, 2),  # one model per variant: no fold models
        (2, True, 6),
        (2, False, 4),  # fold models only
    ],
)
def test_the_cost_model_simulates_the_fits_that_run(one_by_two, n_folds, enable_overall, fits):
    X, y, w, _ = _frames()
    learner = TLearner(
        False,
        2,
        LGBMRegressor,
        nuisance_model_params=LGBM,
        n_folds=n_folds,
        enable_overall=enable_overall,
        random_state=0,
        client=one_by_two,
        plan="auto",
    ).fit(X, y, w)
    assert len(learner.fit_report_) == fits
    assert learner.fit_report_.attrs["plan"]["reason"].startswith(f"{fits} fits on 2 threads")


def _deterministic_t(client, n_variants, n_folds, plan):
    """A T-learner of small deterministic LightGBM models."""
    return TLearner(
        False,
        n_variants,
        LGBMRegressor,
        nuisance_model_params={"n_estimators": 10, "verbose": -1, "deterministic": True},
        n_folds=n_folds,
        random_state=0,
        client=client,
        plan=plan,
    )


def test_the_last_fit_of_a_one_stage_fit_takes_the_threads_the_others_leave(
    one_by_two, monkeypatch
):
    """A T-learner's three variant models without cross-fitting on 1 worker x 2 threads,
    calibrated with a speedup of 1.8: two fit side by side with one thread each, and the one
    of the fewest rows after them with both; the CATE is the one-thread plan's."""
    import dask_meta.learners.plan_choice as plan_choice
    from dask_meta.plots import _plan_title

    def calibrated(run, name, spec, job, n_columns, shape):
        return Calibration(name, (1000, 5000), (2.0, 6.0), 2, 6.0 / 1.8), True

    monkeypatch.setattr(plan_choice, "calibration_of", calibrated)
    X, y, w, _ = _frames(n=3_000, n_variants=3)
    fits = []
    for plan in ("auto", Plan(threads_per_model=1)):
        learner = _deterministic_t(one_by_two, 3, n_folds=1, plan=plan).fit(X, y, w)
        fits.append(learner)
    report = fits[0].fit_report_
    plan = report.attrs["plan"]
    assert (plan["threads_per_model"], plan["tail_fits"], plan["tail_threads"]) == (1, 1, 2)
    assert plan["reason"].endswith("chose 1 thread(s) per model, 2 for the last 1 fit(s)")
    by_rows = report.sort_values("rows")
    assert by_rows["threads"].tolist() == [2, 1, 1]
    # it started after both others had ended
    last = by_rows.iloc[0]
    assert (last["start"] >= report.loc[report["threads"] == 1, "end"]).all()
    cates = [np.asarray(f.predict(X, is_oos=False)) for f in fits]
    np.testing.assert_allclose(cates[0], cates[1], rtol=0, atol=1e-12)
    # said where plans are compared and drawn
    table = compare_plans(fits[0], X, y, w, plans=["auto", Plan(1)], warm_up=False)
    assert list(table["tail"]) == [(1, 2), None]
    assert _plan_title(plan) == ("plan: auto, 1 thread per model, 2 for the last 1 fit(s)")


def test_calibrations_are_reused_across_nearby_widths_and_scaled():
    c = Calibration("m", (10, 20), (1.0, 2.0), 2, 1.5)
    timed = [(20, c), (40, Calibration("m", (10, 20), (3.0, 5.0), 2, 4.0))]
    assert _reused(timed, 20) is c
    wider = _reused(timed, 21)  # the S-learner's treatment column
    assert wider is not None and wider.seconds_1 == pytest.approx((1.05, 2.1))
    assert wider.seconds_n == pytest.approx(1.575) and wider.rows == c.rows
    assert _reused(timed, 50).seconds_1 == pytest.approx((3.75, 6.25))  # nearest: 40
    assert _reused(timed, 30) is not None and _reused(timed, 14) is None  # 20/14 > 1.34
    assert _reused([], 20) is None


def test_a_narrower_learner_reuses_the_calibration(one_by_two):
    """A T-learner times its model on 4 columns; the same learner on 3 of them
    (``feature_set``) reuses that calibration, scaled by 3/4, instead of timing the model
    again."""
    X, y, w, _ = _frames()
    params = {**LGBM, "n_estimators": 7}  # a model no other test calibrates
    kwargs = {"nuisance_model_params": params, "random_state": 0, "client": one_by_two}
    wide = TLearner(False, 2, LGBMRegressor, plan="auto", **kwargs).fit(X, y, w)
    three = {"variant_outcome_model": ["x0", "x1", "x2"]}
    narrow = TLearner(False, 2, LGBMRegressor, plan="auto", feature_set=three, **kwargs)
    narrow.fit(X, y, w)
    (timed,) = wide.fit_report_.attrs["plan"]["calibrations"]
    (reused,) = narrow.fit_report_.attrs["plan"]["calibrations"]
    assert reused["seconds_1"] == pytest.approx(tuple(x * 3 / 4 for x in timed["seconds_1"]))
    assert reused["seconds_n"] == pytest.approx(timed["seconds_n"] * 3 / 4)
    assert reused["seconds_n_small"] == pytest.approx(timed["seconds_n_small"] * 3 / 4)
    # the first fit spent wall time on the calibration and says so; the second spent none
    first, second = wide.fit_report_.attrs["plan"], narrow.fit_report_.attrs["plan"]
    assert first["calibration_seconds"] > 0 and second["calibration_seconds"] == 0
    assert "timed in this fit" in first["reason"] and "reused" in second["reason"]


def test_explicit_plan_threads_and_limits(one_by_two):
    X, y, w, _ = _frames(n=1_500)
    learner = _dr(
        one_by_two, Plan(threads_per_model=2, n_jobs_cross_fitting=1, n_jobs_base_learners=1)
    ).fit(X, y, w)
    report = learner.fit_report_
    assert set(report["threads"]) == {2}
    plan = report.attrs["plan"]
    assert (plan["n_jobs_cross_fitting"], plan["n_jobs_base_learners"]) == (1, 1)
    # one fit at a time within a stage
    for _, stage in report.groupby("stage"):
        rows = stage.sort_values("start")
        assert (rows["start"].to_numpy()[1:] >= rows["end"].to_numpy()[:-1] - 1e-3).all()


def test_lightgbm_fold_models_follow_the_plans_threads_and_predict_alike(one_by_two):
    """Fitted with 2 threads per model (on the kept thread) and with 1: the models carry
    num_threads=0 and n_jobs of their fit, and predict the same CATE."""
    X, y, w, _ = _frames(n=3_000)
    cates = []
    for threads in (1, 2):
        plan = Plan(threads_per_model=threads)
        learner = _deterministic_t(one_by_two, 2, n_folds=2, plan=plan).fit(X, y, w)
        assert set(learner.fit_report_["threads"]) == {threads}
        model = learner._nuisance_models["variant_outcome_model"][0]._overall_estimator
        assert model.get_params()["num_threads"] == 0 and model.get_params()["n_jobs"] == threads
        cates.append(np.asarray(learner.predict(X, is_oos=False)))
    np.testing.assert_allclose(cates[0], cates[1], rtol=0, atol=1e-12)


def test_fit_arguments_and_model_params_win_over_the_plan(one_by_two):
    X, y, w, _ = _frames(n=1_500)
    learner = _dr(one_by_two, Plan(threads_per_model=2, n_jobs_cross_fitting=1), n_jobs=1)
    learner.fit(X, y, w, n_jobs_cross_fitting=2)
    report = learner.fit_report_
    plan = report.attrs["plan"]
    assert plan["n_jobs_cross_fitting"] == 2
    # the outcome models asked for one thread in their params; the others follow the plan
    outcome = report[report["model_kind"] == "variant_outcome_model"]
    others = report[report["model_kind"] != "variant_outcome_model"]
    assert set(outcome["threads"]) == {1}
    assert set(others["threads"]) == {2}


def test_default_rule_gives_a_lone_fit_the_whole_worker(one_by_two):
    X, y, w, _ = _frames(n=1_500)
    learner = TLearner(
        False, 2, LGBMRegressor, nuisance_model_params=LGBM, n_folds=2, client=one_by_two
    )
    learner.fit(X, y, w)
    assert learner.fit_report_.attrs["plan"]["source"] == "rule"
    assert set(learner.fit_report_["threads"]) == {1}
    # one fit at a time: it may use both threads (the limits, not only the fit count, decide)
    learner.fit(X, y, w, n_jobs_cross_fitting=1, n_jobs_base_learners=1)
    assert set(learner.fit_report_["threads"]) == {2}
    assert "divided among 1 fits" in learner.fit_report_.attrs["plan"]["reason"]


def test_default_plan_is_the_cost_model_from_a_size_on(one_by_two):
    """plan=None: the rule below AUTO_FROM_ROWS training rows (nothing to calibrate), the
    cost model from there on, which its reason says; plan="rule" keeps the rule."""
    rng = np.random.default_rng(3)
    n = AUTO_FROM_ROWS
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    w = pd.Series(rng.integers(0, 2, n))
    y = X["a"] + w * X["b"] + pd.Series(rng.normal(size=n))
    sources = {}
    for plan, rows in [(None, n), (None, n - 1), ("rule", n)]:
        learner = TLearner(False, 2, LinearRegression, n_folds=2, client=one_by_two, plan=plan)
        learner.fit(X.iloc[:rows], y.iloc[:rows], w.iloc[:rows])
        sources[(plan, rows)] = learner.fit_report_.attrs["plan"]
    assert sources[(None, n)]["source"] == "auto"
    assert sources[(None, n)]["reason"].startswith(f"plan=None and {n:,} training rows")
    assert sources[(None, n - 1)]["source"] == "rule"
    assert sources[("rule", n)]["source"] == "rule"
    # six fits of one model on two threads: one thread each whatever the model's threads
    # gain, so the default plan times nothing
    untimed = sources[(None, n)]
    assert (
        "6 fits on 2 threads in 1 workers, all of LinearRegression(): not timed"
        in (untimed["reason"])
    )
    assert untimed["calibrations"] == [] and untimed["calibration_seconds"] == 0
    assert untimed["estimated_seconds"] is None and untimed["threads_per_model"] == 1
    # models of two classes: their relative costs decide, so the default plan times them
    learner = DRLearner(
        False,
        2,
        LinearRegression,
        LinearRegression,
        LogisticRegression,
        n_folds=2,
        client=one_by_two,
    )
    timed = learner.fit(X, y, w).fit_report_.attrs["plan"]
    assert timed["source"] == "auto" and "calibrated cost" in timed["reason"]
    assert {c["model"] for c in timed["calibrations"]} == {
        "LinearRegression()",
        "LogisticRegression()",
    }


def test_plan_threads_larger_than_a_worker_fail_before_any_fit(client):
    X, y, w, _ = _frames(n=500)
    learner = SLearner(
        False, 2, LinearRegression, n_folds=2, client=client, plan=Plan(threads_per_model=3)
    )
    with pytest.raises(ValueError, match=r"plan\.threads_per_model asks for 3 threads"):
        learner.fit(X, y, w)


def test_compare_plans_table(one_by_two):
    X, y, w, _ = _frames(n=3_000)
    learner = _dr(one_by_two, None)
    table = compare_plans(learner, X, y, w, sample=0.5)
    assert list(table["plan"]) == [
        "rule",
        "auto",
        "Plan(threads_per_model=1, n_jobs_cross_fitting=None, n_jobs_base_learners=None)",
        "Plan(threads_per_model=2, n_jobs_cross_fitting=None, n_jobs_base_learners=None)",
        "Plan(threads_per_model=2, n_jobs_cross_fitting=1, n_jobs_base_learners=1)",
    ]
    assert list(table["source"]) == ["rule", "auto", "explicit", "explicit", "explicit"]
    assert list(table["threads_per_model"])[2:] == [1, 2, 2]
    # 2 variants, 2 folds: propensity 3 + outcomes 2 x 3 + treatment 3 fits
    assert (table["fits"] == 12).all()
    assert (table["wall_s"] > 0).all()
    assert table["efficiency"].between(0.01, 1.5).all()
    assert (table["peak_worker_memory_mib"] > 50).all()
    assert table["estimated_s"].notna().tolist() == [False, True, False, False, False]
    # only the auto plan times base models, and never longer than its whole fit
    assert (table["calibration_s"].drop(index=1) == 0).all()
    assert 0 <= table.loc[1, "calibration_s"] < table.loc[1, "wall_s"]
    assert not hasattr(learner, "fit_report_") or learner.fit_report_ is None
    with pytest.raises(ValueError, match=r"sample must be None \(all rows\) or a fraction"):
        compare_plans(learner, X, y, w, plans=[None], sample=2)
    with pytest.raises(ValueError, match="plan must be None"):
        compare_plans(learner, X, y, w, plans=["fastest"])


def test_compare_plans_repeats_keep_each_plans_fastest_run(one_by_two):
    X, y, w, _ = _frames(n=2_000)
    learner = _dr(one_by_two, None)
    one = Plan(threads_per_model=1)
    table = compare_plans(learner, X, y, w, plans=[one, "auto"], repeats=3, warm_up=False)
    assert list(table["source"]) == ["explicit", "auto"]
    for _, row in table.iterrows():
        assert len(row["runs_s"]) == 3
        assert row["wall_s"] == min(row["runs_s"])
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(ValueError, match="repeats must be a whole number of fits per plan"):
            compare_plans(learner, X, y, w, plans=[one], repeats=bad)


def test_one_worker_holds_a_fit_within_its_share_of_the_smallest_worker():
    from dask_meta.plan import BYTES_PER_VALUE, MEMORY_SHARE, one_worker_holds

    rows, columns = 1_000_000, 20
    need = rows * (columns + 2) * BYTES_PER_VALUE
    big = int(need / MEMORY_SHARE) + 1
    shape = ClusterShape(
        (WorkerShape("tcp://a", 1, 1, big), WorkerShape("tcp://b", 1, 1, big // 2))
    )
    assert not one_worker_holds(shape, rows, columns)  # the smaller worker decides
    assert one_worker_holds(shape, rows // 2, columns)
    assert one_worker_holds(ClusterShape((WorkerShape("tcp://a", 1, 1, big),)), rows, columns)
    # unknown memory limits: no reason to refuse
    assert one_worker_holds(ClusterShape((WorkerShape("tcp://a", 1, 1, 0),)), rows, columns)
    assert one_worker_holds(None, rows, columns)
