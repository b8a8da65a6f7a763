"""Reliability: lost workers, cancellation, no leaks, partition edge cases.

Everything runs on a LocalCluster of this module with nannies (2 workers x 1 thread), whose
worker processes the tests kill with SIGKILL. Waiting for a condition (a task executing, the
scheduler emptied) is polling with a deadline.
"""

from __future__ import annotations

import _thread
import contextlib
import gc
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from _models import FoldFitError, SlowRegressor
from conftest import make_linear_data, own_client
from distributed import Client
from distributed.scheduler import KilledWorker
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import Bootstrap, CrossFitEstimator, DRLearner, TLearner
from dask_meta.planner import FitKilledWorker

FEATURES = ["f0", "f1", "f2"]
SLOW = {"delay": 0.3}
LGBM = {
    "n_estimators": 10,
    "num_leaves": 7,
    "min_child_samples": 5,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}


class ExitingClassifier(ClassifierMixin, BaseEstimator):
    """A classifier whose fit kills the worker process running it, as a segfault would."""

    def fit(self, X, y):
        from distributed import get_worker

        get_worker()  # raises outside a worker: never end the test process itself
        os._exit(1)

    def predict_proba(self, X):
        return np.full((len(X), 2), 0.5)


# --- the cluster and what runs on it ------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    """Its own cluster (the tests kill its workers): 2 nannies with 1 thread each.

    A LocalCluster closes the nanny of a worker that has not come back within
    ``distributed.deploy.lost-worker-timeout`` (15 s); restarting a worker process takes
    longer than that on a loaded 2-core machine. The client's periodic scheduler-info
    refresh is off: it races with ``Client.scheduler_info(n_workers=-1)``, which
    dask_meta.cluster.cluster_shape reads, and now and then leaves it without workers
    (distributed 2026.8; once in some thousands of calls, and these tests make hundreds).
    """
    with (
        dask.config.set(
            {
                "distributed.deploy.lost-worker-timeout": "5 minutes",
                "distributed.client.scheduler-info-interval": "1 hour",
            }
        ),
        own_client() as c,
    ):
        yield c


def poll(condition: Callable[[], object], deadline_s: float, step: float = 0.05) -> object:
    """``condition()`` once it is truthy, or its last value when the deadline passes."""
    deadline = time.monotonic() + deadline_s
    value = condition()
    while not value and time.monotonic() < deadline:
        time.sleep(step)  # polling the cluster with a deadline
        value = condition()
    return value


def _settled(client: Client) -> dict[str, int]:
    """Worker address -> pid, once both workers (restarted ones too) are up."""

    def both_up():
        try:
            pids = client.run(os.getpid)
        except Exception:  # a worker is going away
            return None
        return pids if len(pids) == 2 else None

    pids = poll(both_up, 60)
    assert pids, "the cluster did not get its two workers back"
    return pids  # type: ignore[return-value]


def _n_tasks(client: Client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))


def _managed(client: Client) -> dict[str, tuple[int, int]]:
    """Per worker: (results held, their managed bytes)."""
    return client.run(lambda dask_worker: (len(dask_worker.data), int(dask_worker.state.nbytes)))


def _worker_view(dask_worker) -> tuple[list[str], list[str], list[str]]:
    """On one worker: the keys executing, the persisted training-frame partitions held, and
    the models the planner put on the cluster (``dask_meta-models-*``) held."""
    executing = [str(k) for k, ts in dask_worker.state.tasks.items() if ts.state == "executing"]
    keys = list(dask_worker.data.keys())
    partitions = [k for k in keys if isinstance(k, str) and k.startswith("dask_meta-training-")]
    models = [k for k in keys if isinstance(k, str) and k.startswith("dask_meta-models-")]
    return executing, partitions, models


def _views(client: Client) -> dict[str, tuple[list[str], list[str], list[str]]]:
    try:
        return client.run(_worker_view)
    except Exception:  # a worker died between listing and asking
        return {}


class Killer(threading.Thread):
    """Kills (SIGKILL) the worker process that ``choose(views)`` names, once it names one."""

    def __init__(self, client: Client, choose: Callable[[dict], str | None]):
        super().__init__(daemon=True)
        self.client = client
        self.choose = choose
        self.pids = _settled(client)
        self.killed: str | None = None
        self.views: dict = {}
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            views = _views(self.client)
            victim = self.choose(views) if len(views) == 2 else None
            if victim is not None:
                os.kill(self.pids[victim], signal.SIGKILL)
                self.killed, self.views = victim, views
                return
            self.stop.wait(0.02)  # polling the workers with a deadline

    def __enter__(self) -> Killer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join()


def running(prefix: str) -> Callable[[dict], str | None]:
    """The worker executing a task whose key starts with ``prefix``."""

    def choose(views):
        for address, (executing, *_) in views.items():
            if any(k.startswith(prefix) for k in executing):
                return address
        return None

    return choose


def holding_partitions_beside(prefix: str) -> Callable[[dict], str | None]:
    """Once a task ``prefix...`` executes: a worker holding training partitions, preferably
    not the one running that task (so the loss is of data, not of the running fit)."""

    def choose(views):
        busy = running(prefix)(views)
        if busy is None:
            return None
        holders = [a for a, (_, parts, _) in views.items() if parts]
        others = [a for a in holders if a != busy]
        return (others or holders or [None])[0]

    return choose


def only_here(views: dict, address: str) -> set[str]:
    """The training partitions that ``address`` holds and no other worker does."""
    others = set().union(*(set(v[1]) for a, v in views.items() if a != address))
    return set(views[address][1]) - others


def holding_partitions() -> Callable[[dict], str | None]:
    """As soon as training partitions are in memory (before the fits copy them to the other
    worker): the worker holding most partitions that exist nowhere else."""

    def choose(views):
        holders = [a for a, (_, parts, _) in views.items() if parts]
        if not holders:
            return None
        return max(holders, key=lambda a: len(only_here(views, a)))

    return choose


# --- data and learners --------------------------------------------------------------------


def _frame(n: int = 600, n_variants: int = 2, seed: int = 3) -> pd.DataFrame:
    X, y, w, _ = make_linear_data(n=n, d=len(FEATURES), n_variants=n_variants, seed=seed)
    df = pd.DataFrame(X, columns=FEATURES)
    df["y"] = y
    df["w"] = w
    return df


def _slow_dr(client: Client, **kwargs) -> DRLearner:
    """A DR-learner whose outcome and treatment fits take a while (so they can be hit)."""
    args = {
        "nuisance_model_params": SLOW,
        "treatment_model_params": SLOW,
        "n_folds": 2,
        "random_state": 0,
        "client": client,
    } | kwargs
    return DRLearner(False, 2, SlowRegressor, SlowRegressor, LogisticRegression, **args)


def _cate(client: Client, learner, X) -> tuple[np.ndarray, np.ndarray]:
    return tuple(  # type: ignore[return-value]
        client.compute(
            [learner.predict(X, is_oos=False), learner.predict(X, is_oos=True)], sync=True
        )
    )


def _assert_identical(got, expected, what: str) -> None:
    for a, b, which in zip(got, expected, ("in-sample", "out-of-sample"), strict=True):
        if not np.array_equal(a, b):
            diff = np.abs(a - b)
            raise AssertionError(
                f"{what}, {which} CATE: {int((diff > 0).sum())} values differ, max {diff.max():.3g}"
            )


@pytest.fixture(scope="module")
def dr_data():
    ddf = dd.from_pandas(_frame(), npartitions=3)
    return ddf[FEATURES], ddf["y"], ddf["w"]


@pytest.fixture(scope="module")
def undisturbed(client, dr_data):
    """The CATE of the slow DR-learner with no worker lost."""
    X, y, w = dr_data
    _settled(client)
    return _cate(client, _slow_dr(client).fit(X, y, w), X)


# --- lost workers ---------------------------------------------------------------------------


@pytest.mark.parametrize("persist", [True, False])
def test_lost_worker_running_a_fit(client, dr_data, undisturbed, persist):
    """SIGKILL of the worker running an outcome model's fit: the nanny restarts it, the job
    runs again elsewhere, and the CATE is the undisturbed one bit for bit (with the training
    frame persisted, or read from its source by every fit)."""
    X, y, w = dr_data
    learner = _slow_dr(client, persist=persist)
    with Killer(client, running("dask_meta-fit-variant-outcome-model")) as killer:
        learner.fit(X, y, w)
    assert killer.killed is not None, "no worker was killed: the test proved nothing"
    assert learner.fit_report_.attrs["persisted"] is persist
    assert len(learner.fit_report_) == 12  # 3 jobs of each of 4 cross-fit estimators
    _assert_identical(_cate(client, learner, X), undisturbed, f"persist={persist}, worker lost")


@pytest.mark.parametrize("when", ["persisted", "treatment"])
def test_lost_worker_holding_training_partitions(client, dr_data, undisturbed, when):
    """SIGKILL of a worker holding persisted training partitions: right after they are
    computed (they exist nowhere else and are recomputed from their graph), or while a
    treatment model fits on the other worker (it also held fitted nuisance models and
    derived columns). The fit completes with the undisturbed CATE."""
    X, y, w = dr_data
    # "persisted": the killer sees the partitions between their computation and the first
    # fit that copies one to the other worker; when it first sees them already copied, the
    # loss proves less (nothing to recompute), so that attempt is repeated, up to 3 times
    for _attempt in range(3):
        learner = _slow_dr(client, persist=True)
        choose = (
            holding_partitions()
            if when == "persisted"
            else holding_partitions_beside("dask_meta-fit-treatment-model")
        )
        with Killer(client, choose) as killer:
            learner.fit(X, y, w)
        assert killer.killed is not None, "no worker was killed: the test proved nothing"
        assert killer.views[killer.killed][1], "the killed worker held no training partitions"
        _assert_identical(_cate(client, learner, X), undisturbed, f"partitions lost ({when})")
        if when != "persisted" or only_here(killer.views, killer.killed):
            break
    else:
        raise AssertionError("in 3 attempts the killed worker's partitions had copies elsewhere")


def _fold_columns_held(dask_worker) -> list[str]:
    """The fold columns of a fit (``dask_meta-fold-frame-*``) that one worker holds."""
    keys = dask_worker.data.keys()
    return [k for k in keys if isinstance(k, str) and k.startswith("dask_meta-fold-frame-")]


def test_lost_worker_holding_the_fold_columns(client, dr_data, undisturbed):
    """A fit of persisted data keeps its fold columns on the cluster for in-sample
    prediction. SIGKILL of the worker holding them after the fit: the in-sample CATE,
    computed on that cluster (which reads them), is the undisturbed one bit for bit (they
    are recomputed from their graph)."""
    X, y, w = dr_data
    learner = _slow_dr(client, persist=True).fit(X, y, w)
    pids = _settled(client)
    held = client.run(_fold_columns_held)
    victim = max(held, key=lambda a: len(held[a]))
    assert held[victim], "no worker holds fold columns: the test proved nothing"
    os.kill(pids[victim], signal.SIGKILL)
    assert poll(lambda: victim not in client.scheduler_info(n_workers=-1)["workers"], 30)
    with client.as_current():
        in_sample = learner.predict(X, is_oos=False)
        assert any("fromdelayed" in str(k) for k in dict(in_sample.__dask_graph__()))
        _assert_identical(_cate(client, learner, X), undisturbed, "fold columns lost")
    _settled(client)


def holding_models() -> Callable[[dict], str | None]:
    """The worker holding the models the planner put on the cluster, once a worker does."""

    def choose(views):
        return next((a for a, (_, _, models) in views.items() if models), None)

    return choose


def test_lost_worker_holding_reused_models(client, dr_data, undisturbed):
    """fit_all_treatment after fit_all_nuisance puts the fitted nuisance models on the
    cluster once (for the pseudo-outcomes of every partition). Losing the worker that holds
    them does not fail the fit: they are the result of a task, recomputed elsewhere (data
    put with client.scatter would be lost for good)."""
    X, y, w = dr_data
    learner = _slow_dr(client).fit_all_nuisance(X, y, w)
    with Killer(client, holding_models()) as killer:
        learner.fit_all_treatment(X, y, w)
    assert killer.killed is not None, "no worker was killed: the test proved nothing"
    _assert_identical(_cate(client, learner, X), undisturbed, "reused models lost")


def test_job_that_kills_its_worker_every_time(client, dr_data):
    """A base model whose fit ends its worker process: distributed gives up after
    allowed-failures deaths, and fit raises an error naming the model, fold and task,
    instead of hanging; nothing of the fit stays on the cluster."""
    X, y, w = dr_data
    _settled(client)
    baseline = _n_tasks(client)
    allowed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", 1))
    learner = DRLearner(
        False,
        2,
        LinearRegression,
        LinearRegression,
        ExitingClassifier,
        n_folds=2,
        random_state=0,
        client=client,
    )
    start = time.monotonic()
    try:
        # one fit in flight, so that only the poisonous job sees its workers die
        with pytest.raises(FitKilledWorker) as info:
            learner.fit(X, y, w, n_jobs_cross_fitting=1, n_jobs_base_learners=1)
    finally:
        client.run_on_scheduler(
            lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", allowed)
        )
    elapsed = time.monotonic() - start
    assert isinstance(info.value, KilledWorker)  # what distributed users catch
    message = str(info.value)
    assert "the fit of propensity_model 0 " in message, message
    assert "(task dask_meta-fit-propensity-model-0-" in message, message
    assert "2 workers died" in message and "allowed-failures=1" in message, message
    assert elapsed < 120, f"took {elapsed:.0f}s"
    assert learner.fit_report_ is None
    with pytest.raises(ValueError, match="not fitted"):
        learner.predict(X, is_oos=True)
    assert poll(lambda: _n_tasks(client) <= baseline, 5), "tasks of the failed fit remain"
    _settled(client)


# --- cancellation ---------------------------------------------------------------------------


@contextlib.contextmanager
def ctrl_c_when(client: Client, choose: Callable[[dict], str | None]) -> Iterator[list]:
    """Interrupt the main thread (as Ctrl-C does) once ``choose`` names a worker.

    The SIGINT handler raises only while this block runs, so an interrupt can never land
    in pytest itself.
    """
    armed = threading.Event()
    fired: list[str] = []

    def handler(signum, frame):
        if armed.is_set():
            armed.clear()
            raise KeyboardInterrupt

    def watch(stop: threading.Event) -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            victim = choose(_views(client))
            if victim is not None:
                fired.append(victim)
                _thread.interrupt_main()
                return
            stop.wait(0.02)  # polling the workers with a deadline

    previous = signal.signal(signal.SIGINT, handler)
    stop = threading.Event()
    thread = threading.Thread(target=watch, args=(stop,), daemon=True)
    armed.set()
    thread.start()
    try:
        yield fired
    finally:
        armed.clear()
        stop.set()
        thread.join()
        signal.signal(signal.SIGINT, previous)


def _snapshot(learner):
    return learner.fit_report_, learner._fit_context, dict(learner._treatment_models)


def _assert_unchanged(client, learner, before, X, cate_before) -> None:
    """The learner kept its previous fit: the same objects, the same CATE."""
    report, context, treatment = _snapshot(learner)
    assert report is before[0] and context is before[1]
    assert all(
        a is b for kind in treatment for a, b in zip(treatment[kind], before[2][kind], strict=True)
    )
    _assert_identical(_cate(client, learner, X), cate_before, "after the failed refit")


def _assert_unfitted(learner, X) -> None:
    assert learner.fit_report_ is None
    assert not any(m.is_fitted for ms in learner._nuisance_models.values() for m in ms)
    assert not any(m.is_fitted for ms in learner._treatment_models.values() for m in ms)
    with pytest.raises(ValueError, match="not fitted"):
        learner.predict(X, is_oos=True)


def test_failing_base_model_cancels_the_fit_and_keeps_the_previous_one(client, dr_data):
    """A treatment model raises in a refit on other data (after the nuisance stage): fit
    raises it, no task of the fit is left on the scheduler within 5 s, and the learner keeps
    its previous fit (same models, same CATE) rather than the new nuisance models."""
    X, y, w = dr_data
    _settled(client)
    other = dd.from_pandas(_frame(n=500, seed=4), npartitions=2)
    # fails when fitted on all 500 rows of the other data: the overall treatment model
    learner = _slow_dr(client, treatment_model_params={**SLOW, "fail_rows": 500})
    learner.fit(X, y, w)
    before, cate_before = _snapshot(learner), _cate(client, learner, X)
    baseline = _n_tasks(client)
    with pytest.raises(FoldFitError, match="500 rows") as info:
        learner.fit(other[FEATURES], other["y"], other["w"])
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "treatment_model 0 overall model" in notes, notes
    left = poll(lambda: _n_tasks(client) <= baseline, 5)
    assert left, f"{_n_tasks(client)} tasks on the scheduler, {baseline} before the fit"
    _assert_unchanged(client, learner, before, X, cate_before)


def test_error_after_the_data_is_persisted_leaves_nothing_behind(client, dr_data):
    """fit_all_treatment on other data than fit_all_nuisance: the error comes once the
    training frame is persisted and fingerprinted. The persisted frame leaves the cluster
    within 5 s, although the exception (whose traceback holds its futures) is still alive."""
    X, y, w = dr_data
    _settled(client)
    learner = _slow_dr(client).fit_all_nuisance(X, y, w)
    other = dd.from_pandas(_frame(seed=4), npartitions=3)
    baseline = _n_tasks(client)
    with pytest.raises(ValueError, match="on other data") as info:
        learner.fit_all_treatment(other[FEATURES], other["y"], other["w"])
    assert info.value.__traceback__ is not None
    left = poll(lambda: _n_tasks(client) <= baseline, 5)
    assert left, f"{_n_tasks(client)} tasks on the scheduler, {baseline} before the fit"
    assert learner._fit_context is not None and not any(
        m.is_fitted for ms in learner._treatment_models.values() for m in ms
    )


@pytest.mark.parametrize("stage", ["nuisance", "treatment"])
def test_ctrl_c_during_fit(client, dr_data, stage):
    """KeyboardInterrupt while fit waits for its jobs: every task of the fit leaves the
    scheduler within 5 s. Interrupted in the nuisance stage, a new learner stays unfitted;
    in the treatment stage, a fitted learner keeps its previous fit."""
    X, y, w = dr_data
    _settled(client)
    learner = _slow_dr(client)
    other = dd.from_pandas(_frame(n=500, seed=4), npartitions=2)
    if stage == "treatment":
        learner.fit(other[FEATURES], other["y"], other["w"])
        before, cate_before = _snapshot(learner), _cate(client, learner, other[FEATURES])
    prefix = "dask_meta-fit-variant-outcome" if stage == "nuisance" else "dask_meta-fit-treatment"
    baseline = _n_tasks(client)
    with ctrl_c_when(client, running(prefix)) as fired, pytest.raises(KeyboardInterrupt):
        learner.fit(X, y, w)
    assert fired, "the interrupt was not sent"
    left = poll(lambda: _n_tasks(client) <= baseline, 5)
    assert left, f"{_n_tasks(client)} tasks on the scheduler, {baseline} before the fit"
    if stage == "nuisance":
        _assert_unfitted(learner, X)
    else:
        _assert_unchanged(client, learner, before, other[FEATURES], cate_before)
    # and the learner can be fitted afterwards
    learner.fit(X, y, w)
    assert len(learner.fit_report_) == 12


# --- bootstrap replicates --------------------------------------------------------------------


def _boot_intervals(client: Client, boot: Bootstrap, X) -> tuple[np.ndarray, np.ndarray]:
    return (boot.ate_interval(), client.compute(boot.predict_interval(X, is_oos=True), sync=True))


def test_lost_worker_during_a_bootstrap_gives_the_same_intervals(client, dr_data):
    """SIGKILL of the worker running a replicate's fit: the intervals are those of the run
    with no worker lost, bit for bit (the weights are drawn from the rows, not the worker)."""
    X, y, w = dr_data
    _settled(client)
    quiet = Bootstrap(_slow_dr(client), n_bootstraps=3, random_state=0).fit(X, y, w)
    expected = _boot_intervals(client, quiet, X)
    boot = Bootstrap(_slow_dr(client), n_bootstraps=3, random_state=0)
    with Killer(client, running("dask_meta-fit-treatment-model")) as killer:
        boot.fit(X, y, w)
    assert killer.killed is not None, "no worker was killed: the test proved nothing"
    for got, want in zip(_boot_intervals(client, boot, X), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_failing_replicate_cancels_the_whole_bootstrap(client, dr_data):
    """A replicate's treatment fit raises: the bootstrap raises it naming the replicate,
    its tasks leave the scheduler within 5 s and the learner it was given stays unfitted."""
    X, y, w = dr_data
    _settled(client)
    learner = _slow_dr(client, treatment_model_params={**SLOW, "fail_weighted": True})
    baseline = _n_tasks(client)
    with pytest.raises(FoldFitError, match="weighted rows") as info:
        Bootstrap(learner, n_bootstraps=4, random_state=0).fit(X, y, w)
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "of bootstrap replicate" in notes, notes
    left = poll(lambda: _n_tasks(client) <= baseline, 5)
    assert left, f"{_n_tasks(client)} tasks on the scheduler, {baseline} before the fit"
    _assert_unfitted(learner, X)


# --- no leaks -------------------------------------------------------------------------------


def test_fifty_fits_leave_nothing_behind(client):
    """50 consecutive fits (and predictions) on one client: the scheduler's task count and
    the workers' stored results and managed memory return to their baseline."""
    import dask_meta.backends

    _settled(client)
    # learners of earlier tests in reference cycles hold their fold columns on the cluster
    # until the garbage collector frees them; what they released may still be leaving
    gc.collect()
    poll(lambda: _n_tasks(client) == 0, 5)
    df = _frame(n=200, seed=9)
    ddf = dd.from_pandas(df, npartitions=2)
    X_np, y_np, w_np = df[FEATURES].to_numpy(), df["y"].to_numpy(), df["w"].to_numpy()
    common = {"n_folds": 2, "random_state": 0, "client": client}
    configs = [
        # in-memory data; Dask data persisted and read per pass; a treatment stage;
        # LightGBM on shared binned Datasets (held by the workers outside dask's store)
        lambda: (TLearner(False, 2, LinearRegression, **common), (X_np, y_np, w_np)),
        lambda: (
            TLearner(False, 2, LinearRegression, persist=False, **common),
            (ddf[FEATURES], ddf["y"], ddf["w"]),
        ),
        lambda: (
            DRLearner(False, 2, LinearRegression, LinearRegression, LogisticRegression, **common),
            (ddf[FEATURES], ddf["y"], ddf["w"]),
        ),
        lambda: (
            TLearner(False, 2, LGBMRegressor, nuisance_model_params=LGBM, **common),
            (ddf[FEATURES], ddf["y"], ddf["w"]),
        ),
    ]
    baseline = (_n_tasks(client), _managed(client))
    start = time.monotonic()
    cates = []
    for i in range(50):
        learner, (X, y, w) = configs[i % len(configs)]()
        learner.fit(X, y, w)
        if i % 10 == 0:
            cate = learner.predict(X, is_oos=False)
            cate = cate if isinstance(cate, np.ndarray) else client.compute(cate, sync=True)
            cates.append(cate)
    elapsed = time.monotonic() - start
    assert all(np.isfinite(c).all() for c in cates)
    del learner
    gc.collect()
    back = poll(lambda: (_n_tasks(client), _managed(client)) == baseline, 10)
    assert back, (
        f"after 50 fits: {_n_tasks(client)} tasks and {_managed(client)} (results, bytes) "
        f"per worker; baseline {baseline}"
    )
    assert client.run(lambda: len(dask_meta.backends._bins)) == dict.fromkeys(baseline[1], 0)
    print(f"50 fits in {elapsed:.1f}s")


# --- partition edge cases -------------------------------------------------------------------


def _pieces(df: pd.DataFrame, bounds) -> dd.DataFrame:
    """One partition per (start, stop) row range (empty ranges give empty partitions)."""
    return dd.concat([dd.from_pandas(df.iloc[a:b], npartitions=1, sort=False) for a, b in bounds])


def _edge_frame(n: int = 300) -> pd.DataFrame:
    df = _frame(n=n, n_variants=3, seed=11)
    df["id"] = np.arange(n, dtype=np.int64)
    # a categorical covariate that matters for y; the first third of the rows has only the
    # categories p and q, the rest q, r and s
    rows = np.arange(n)
    df["g"] = pd.Categorical(
        np.where(rows < n // 3, np.array(["p", "q"])[rows % 2], np.array(["q", "r", "s"])[rows % 3])
    )
    df["y"] += df["g"].cat.codes.to_numpy() * 0.5
    return df


def _edge_learner(name: str, client: Client, strategy: str):
    kwargs: dict = {"n_folds": 2, "random_state": 5, "client": client, "fold_strategy": strategy}
    if strategy == "hash":
        kwargs |= {"fold_key": "id", "feature_set": [*FEATURES, "g"]}
    if name == "T":
        return TLearner(False, 3, LGBMRegressor, nuisance_model_params=LGBM, **kwargs)
    return DRLearner(
        False,
        3,
        LGBMRegressor,
        LGBMRegressor,
        LGBMClassifier,
        nuisance_model_params=LGBM,
        treatment_model_params=LGBM,
        propensity_model_params=LGBM,
        **kwargs,
    )


def _edge_cate(client, name, strategy, ddf):
    columns = [*FEATURES, "g"] + (["id"] if strategy == "hash" else [])
    learner = _edge_learner(name, client, strategy).fit(ddf[columns], ddf["y"], ddf["w"])
    return _cate(client, learner, ddf[columns])


def _edge_cases(tmp_path) -> dict[str, tuple[pd.DataFrame, dd.DataFrame]]:
    """{case: (the rows in one pandas frame, the same rows in awkward partitions)}."""
    df = _edge_frame()
    by_variant = df.sort_values("w", kind="stable").reset_index(drop=True)
    cuts = np.searchsorted(by_variant["w"].to_numpy(), [1, 2]).tolist()
    # categories missing from partitions, and unknown to Dask: one parquet file per
    # partition, each with only the categories of its own rows
    folder = tmp_path / "categorical"
    folder.mkdir()
    for i, (a, b) in enumerate(((0, 100), (100, 220), (220, 300))):
        part = df.iloc[a:b].copy()
        part["g"] = pd.Categorical(part["g"].astype(str))
        part.to_parquet(folder / f"part.{i}.parquet", index=False)
    categorical = dd.read_parquet(folder)
    assert not categorical["g"].cat.known
    files = sorted(folder.glob("*.parquet"))
    assert [len(pd.read_parquet(f)["g"].cat.categories) for f in files] == [2, 3, 3]
    return {
        "empty partitions": (
            df,
            _pieces(df, [(0, 0), (0, 150), (150, 150), (150, 300), (300, 300)]),
        ),
        "one-row partitions": (df, _pieces(df, [(0, 1), (1, 150), (150, 151), (151, 300)])),
        "single-variant partitions": (
            by_variant,
            _pieces(by_variant, [(0, cuts[0]), (cuts[0], cuts[1]), (cuts[1], 300)]),
        ),
        "partition-specific categories": (df, categorical),
    }


@pytest.fixture(scope="module")
def edge_cases(tmp_path_factory):
    return _edge_cases(tmp_path_factory.mktemp("edges"))


EDGE_CASES = [
    "empty partitions",
    "one-row partitions",
    "single-variant partitions",
    "partition-specific categories",
]


@pytest.mark.parametrize("case", EDGE_CASES)
@pytest.mark.parametrize(("name", "strategy"), [("T", "hash"), ("DR", "sklearn")])
def test_partition_edge_cases_give_the_one_partition_cate(client, edge_cases, case, name, strategy):
    """Folds that follow the rows ("hash" on a row id, "sklearn" on row positions): the
    awkwardly partitioned data give the CATE of the same rows in one partition, bit for bit."""
    one, awkward = edge_cases[case]
    expected = _edge_cate(client, name, strategy, dd.from_pandas(one, npartitions=1))
    got = _edge_cate(client, name, strategy, awkward)
    _assert_identical(got, expected, f"{name}-learner, {strategy} folds, {case}")
    assert not np.array_equal(got[0], got[1])  # in-sample is cross-fitted


def test_cross_fit_estimator_on_partition_specific_categories(client, edge_cases):
    """CrossFitEstimator.fit (and the explainer's surrogates, which fit the same way) casts
    every partition to the union of the categories too: without it the concatenated rows
    fall back to strings and LightGBM refuses them."""
    one, awkward = edge_cases["partition-specific categories"]
    columns = [*FEATURES, "g", "id"]

    def fitted(ddf):
        cfe = CrossFitEstimator(
            2,
            LGBMRegressor,
            LGBM,
            random_state=5,
            fold_strategy="hash",
            fold_key="id",
            client=client,
        )
        cfe.fit(ddf[columns], ddf["y"])
        return cfe.predict(ddf[columns], is_oos=False).compute()

    expected = fitted(dd.from_pandas(one, npartitions=1))
    got = fitted(awkward)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("case", EDGE_CASES)
def test_partition_edge_cases_with_partition_folds(client, edge_cases, case):
    """The default "partition" folds on the same data: the fit succeeds, folds stay
    balanced, and the out-of-sample CATE (overall models: the same rows in the same order)
    equals that of one partition."""
    one, awkward = edge_cases[case]
    expected = _edge_cate(client, "T", "partition", dd.from_pandas(one, npartitions=1))
    got = _edge_cate(client, "T", "partition", awkward)
    assert np.isfinite(got[0]).all() and got[0].shape == (300, 2, 1)
    np.testing.assert_array_equal(got[1], expected[1])
