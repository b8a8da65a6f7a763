"""Objects the workers cannot import end the call with a clear error, never a hang.

A class or function from a file loaded by path lives in a module only the client has: the
workers die or stop reading while they unpickle a task that carries it. These tests load
such a module in the test process only and run on a cluster of their own (a hang must not
take the session's cluster with it).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import threading
import time
import uuid

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from conftest import own_client
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import CrossFitEstimator, DRLearner, TLearner, WorkerImportError
from dask_meta.loading import Shipment, unpickle_errors

SOURCE = '''
from sklearn.linear_model import LinearRegression


class PathRegressor(LinearRegression):
    """A regressor of a module the workers cannot import."""


def make_path_regressor(**params):
    """A factory function of a module the workers cannot import."""
    return LinearRegression(**params)


def path_scorer(estimator, X, y):
    return float(len(y))


def stop_early(env):
    """A LightGBM-style callback."""
'''

#: the call must end well before this many seconds (a hang waits forever)
LIMIT = 60


@pytest.fixture(scope="module")
def lone_client():
    with own_client() as client:
        yield client


@pytest.fixture
def path_module(tmp_path):
    """A module loaded from a file by path, under a fresh name only this process knows."""
    name = f"user_models_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(SOURCE)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(name, None)


def data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    w = pd.Series(rng.integers(0, 2, n))
    y = pd.Series(X["a"] + w + rng.normal(size=n))
    return X, y, w


def t_learner(factory, client):
    return TLearner(False, 2, factory, n_folds=2, client=client)


def within_limit(call):
    """Run ``call`` in a thread; fail the test if it has not returned within LIMIT s."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    start = time.perf_counter()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(LIMIT)
    assert not thread.is_alive(), f"the call was still running after {LIMIT} s"
    outcome["seconds"] = time.perf_counter() - start
    return outcome


def test_a_base_model_class_the_workers_cannot_import_is_a_clear_error(lone_client, path_module):
    X, y, w = data()
    outcome = within_limit(lambda: t_learner(path_module.PathRegressor, lone_client).fit(X, y, w))
    error = outcome.get("error")
    assert isinstance(error, WorkerImportError), error
    message = str(error)
    assert f"{path_module.__name__}.PathRegressor" in message
    assert "variant_outcome_model" in message
    assert f"No module named {path_module.__name__!r}" in message
    assert f"client.upload_file({path_module.__file__!r})" in message
    # the cluster kept its workers: the next fit in the process works
    assert len(lone_client.scheduler_info()["workers"]) == 2
    fitted = t_learner(LinearRegression, lone_client).fit(X, y, w)
    assert fitted.predict(X, is_oos=False).shape == (len(X), 1, 1)


def test_the_fix_the_error_names_makes_the_fit_work(lone_client, path_module):
    X, y, w = data()
    learner = t_learner(path_module.PathRegressor, lone_client)
    assert isinstance(within_limit(lambda: learner.fit(X, y, w)).get("error"), WorkerImportError)
    lone_client.upload_file(path_module.__file__)
    # the upload imports the file again here too (the scheduler is in this process): take the
    # class from the module now under its name, as a user's next import would
    uploaded = sys.modules[path_module.__name__].PathRegressor
    learner = t_learner(uploaded, lone_client).fit(X, y, w)
    reference = t_learner(LinearRegression, lone_client).fit(X, y, w)
    np.testing.assert_allclose(
        learner.predict(X, is_oos=True), reference.predict(X, is_oos=True), rtol=1e-12
    )


def test_a_scorer_the_workers_cannot_import_is_a_clear_error(lone_client, path_module):
    X, y, w = data()
    learner = t_learner(LinearRegression, lone_client).fit(X, y, w)
    scoring = {"variant_outcome_model": [path_module.path_scorer]}
    outcome = within_limit(lambda: learner.evaluate(X, y, w, is_oos=False, scoring=scoring))
    error = outcome.get("error")
    assert isinstance(error, WorkerImportError), error
    assert f"the scorer {path_module.__name__}.path_scorer" in str(error)
    # a scoring key the learner does not have is not sent, so not checked
    other = {"no_such_model": [path_module.path_scorer]}
    assert learner.evaluate(X, y, w, is_oos=False, scoring=other) == learner.evaluate(
        X, y, w, is_oos=False
    )


def test_a_fit_param_callback_the_workers_cannot_import_is_a_clear_error(lone_client, path_module):
    X, y, w = data()
    learner = DRLearner(
        False,
        2,
        LinearRegression,
        LinearRegression,
        LogisticRegression,
        n_folds=2,
        client=lone_client,
    )
    fit_params = {"treatment": {"treatment_model": {"callbacks": [path_module.stop_early]}}}
    outcome = within_limit(lambda: learner.fit(X, y, w, fit_params=fit_params))
    error = outcome.get("error")
    assert isinstance(error, WorkerImportError), error
    assert "the fit params of the treatment_model model: callbacks" in str(error)


def test_a_lone_cross_fit_estimator_checks_its_model(lone_client, path_module):
    X, y, _ = data()
    cfe = CrossFitEstimator(2, path_module.PathRegressor, client=lone_client)
    outcome = within_limit(lambda: cfe.fit(X, y))
    assert isinstance(outcome.get("error"), WorkerImportError), outcome.get("error")
    assert not cfe.is_fitted


def test_a_fitted_model_whose_class_the_workers_cannot_import_is_refused_at_predict(
    lone_client, path_module
):
    # a fitted learner predicting where its models' module is missing (loaded from disk on
    # another cluster, say): here one of its fold models is replaced by such a model
    X, y, w = data()
    learner = t_learner(LinearRegression, lone_client).fit(X, y, w)
    cfe = learner._nuisance_models["variant_outcome_model"][0]
    cfe._estimators[0] = path_module.PathRegressor().fit(X, y)
    for call in (
        lambda: learner.predict(X, is_oos=False),
        lambda: learner.evaluate(X, y, w, is_oos=False),
    ):
        outcome = within_limit(call)
        assert isinstance(outcome.get("error"), WorkerImportError), outcome.get("error")
        assert f"{path_module.__name__}.PathRegressor" in str(outcome["error"])


def test_unpicklable_params_are_named_before_anything_is_sent(lone_client):
    X, y, w = data()
    learner = TLearner(
        False,
        2,
        LinearRegression,
        nuisance_model_params={"copy_X": threading.Lock()},
        n_folds=2,
        client=lone_client,
    )
    with pytest.raises(TypeError, match="the params of the variant_outcome_model model"):
        learner.fit(X, y, w)


def test_a_worker_reports_what_does_not_unpickle(path_module):
    good = cloudpickle.dumps(LinearRegression)
    bad = cloudpickle.dumps(path_module.PathRegressor)
    sys.modules.pop(path_module.__name__)  # as on a worker: the module is not there
    errors = unpickle_errors(Shipment({"good": good, "bad": bad}))
    assert list(errors) == ["bad"]
    assert errors["bad"].module == path_module.__name__
    assert errors["bad"].error.startswith("ModuleNotFoundError")


@pytest.mark.parametrize("kind", ["function", "partial"])
def test_a_factory_the_workers_cannot_import_is_a_clear_error(lone_client, path_module, kind):
    """Factories that are not classes are checked as classes are: a function, or a partial
    of a class, from a module the workers cannot import."""
    X, y, w = data()
    factory = (
        path_module.make_path_regressor
        if kind == "function"
        else functools.partial(path_module.PathRegressor, fit_intercept=False)
    )
    outcome = within_limit(lambda: t_learner(factory, lone_client).fit(X, y, w))
    error = outcome.get("error")
    assert isinstance(error, WorkerImportError), error
    name = "make_path_regressor" if kind == "function" else "PathRegressor"
    assert f"{path_module.__name__}.{name}" in str(error)
    assert f"No module named {path_module.__name__!r}" in str(error)
