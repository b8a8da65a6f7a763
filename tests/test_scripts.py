"""A plain script runs as with metalearners: ``python script.py``, no ``__main__`` guard.

Each script fits on dask-meta's embedded cluster (no client anywhere) in a subprocess,
writes its in-sample CATE and ``fit_report_.attrs["cluster"]``, and is checked against the
same fit in the test process. Without a guard the embedded cluster's worker runs as threads
of the script's process (a worker process would import the script again and fail); with
one, as a process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.linear_model import LinearRegression

from dask_meta import DRLearner, RLearner, TLearner, XLearner

REPO = Path(__file__).resolve().parents[1]

DATA = """\
import json, sys
import numpy as np
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.linear_model import LinearRegression
from dask_meta import DRLearner, RLearner, TLearner, XLearner

rng = np.random.default_rng(0); n = 1000
X = rng.normal(size=(n, 3)); w = rng.integers(0, 2, n); y = X[:, 0] + w + rng.normal(size=n)
"""

#: the learner of each script, as the test process builds it too
LEARNERS = {
    "T-linear": "TLearner(False, 2, LinearRegression, n_folds=2, random_state=0)",
    **{
        name: (
            f"{name}Learner(False, 2, LGBMRegressor, LGBMRegressor, LGBMClassifier, n_folds=2, "
            "random_state=0, nuisance_model_params=P, treatment_model_params=P, "
            "propensity_model_params=P)"
        )
        for name in ("X", "R", "DR")
    },
}
P = {"n_estimators": 10, "num_leaves": 7, "verbose": -1}

FIT = """\
learner = {learner}
cate = learner.fit(X, y, w).predict(X, is_oos=False)
np.save(sys.argv[1], cate)
print(json.dumps({{"cluster": learner.fit_report_.attrs["cluster"]}}))
"""


def _script(learner: str, guarded: bool) -> str:
    fit = FIT.format(learner=learner)
    if guarded:
        fit = 'if __name__ == "__main__":\n' + textwrap.indent(fit, "    ")
    return DATA + f"P = {P!r}\n" + fit


def _run(tmp_path: Path, source: str) -> tuple[np.ndarray, str]:
    script, out = tmp_path / "script.py", tmp_path / "cate.npy"
    script.write_text(source)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(script), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(out), json.loads(done.stdout.strip().splitlines()[-1])["cluster"]


def _expected(learner: str, client) -> np.ndarray:
    rng = np.random.default_rng(0)
    n = 1000
    X = rng.normal(size=(n, 3))
    w = rng.integers(0, 2, n)
    y = X[:, 0] + w + rng.normal(size=n)
    names = {
        "TLearner": TLearner,
        "XLearner": XLearner,
        "RLearner": RLearner,
        "DRLearner": DRLearner,
        "LinearRegression": LinearRegression,
        "LGBMRegressor": LGBMRegressor,
        "LGBMClassifier": LGBMClassifier,
        "P": P,
    }
    model = eval(learner, names)  # the script's own expression
    model.client = client
    return np.asarray(model.fit(X, y, w).predict(X, is_oos=False))


@pytest.mark.parametrize("name", list(LEARNERS))
def test_a_script_without_a_main_guard_runs(tmp_path, client, name):
    cate, cluster = _run(tmp_path, _script(LEARNERS[name], guarded=False))
    assert "in this process" in cluster and "guard" in cluster, cluster
    np.testing.assert_allclose(cate, _expected(LEARNERS[name], client), rtol=1e-9, atol=1e-12)


def test_a_script_with_a_main_guard_keeps_its_worker_process(tmp_path, client):
    learner = LEARNERS["DR"]
    cate, cluster = _run(tmp_path, _script(learner, guarded=True))
    assert cluster.startswith("embedded LocalCluster: 1 worker process"), cluster
    np.testing.assert_allclose(cate, _expected(learner, client), rtol=1e-9, atol=1e-12)
