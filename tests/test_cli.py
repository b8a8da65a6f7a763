"""The ``dask-meta`` command line: fit / predict / evaluate from a TOML job, against the test
cluster, an embedded LocalCluster, and a separately started scheduler and worker; bad jobs;
--help; --report; the progress bar."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMRegressor

import dask_meta
from dask_meta import TLearner
from dask_meta.cli import main
from dask_meta.datasets import make_experiment

BIN = Path(sys.executable).parent
FEATURES = ["x0", "x1", "x2", "x3", "x4"]
PARAMS = {"n_estimators": 10, "verbose": -1, "min_child_samples": 10}

JOB = """
[data]
path = "{train}"
features = ["x0", "x1", "x2", "x3", "x4"]
outcome = "y"
treatment = "w"

[learner]
type = "T"
is_classification = false
n_variants = 3
nuisance_model_factory = "lightgbm.LGBMRegressor"
nuisance_model_params = {{ n_estimators = 10, verbose = -1, min_child_samples = 10 }}
n_folds = 5
random_state = 7

[fit]
n_jobs_cross_fitting = 2

[model]
path = "{model}"

[predict]
data = "{new}"
output = "{cate}"
keep = ["x0"]
"""


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``dask-meta`` in this process: exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def read_cate(path: Path) -> pd.DataFrame:
    files = sorted(path.glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Generated parquet data: 3 training files of 1,000 rows, 2 files of new rows; a job."""
    root = tmp_path_factory.mktemp("cli")
    with dask.config.set(scheduler="synchronous"):
        make_experiment(3_000, 5, 3, rows_per_partition=1_000, seed=1).to_parquet(
            root / "train", write_index=False
        )
        make_experiment(1_000, 5, 3, rows_per_partition=500, seed=2).to_parquet(
            root / "new", write_index=False
        )
    job = root / "job.toml"
    job.write_text(
        JOB.format(train=root / "train", new=root / "new", model=root / "model", cate=root / "cate")
    )
    return root


@pytest.fixture(scope="module")
def fitted(experiment, cluster):
    """``dask-meta fit`` (n_folds overridden to 2) then ``dask-meta predict``, on the test
    cluster; their exit codes and output."""
    address = cluster.scheduler_address
    job = str(experiment / "job.toml")
    fit = run_cli("fit", "-c", job, "--scheduler", address, "--set", "learner.n_folds=2")
    predict = run_cli("predict", "-c", job, "--scheduler", address)
    return {"fit": fit, "predict": predict, "root": experiment}


def python_api_learner(root: Path, client) -> tuple[TLearner, dd.DataFrame]:
    train = dd.read_parquet(root / "train")
    learner = TLearner(
        is_classification=False,
        n_variants=3,
        nuisance_model_factory=LGBMRegressor,
        nuisance_model_params=PARAMS,
        n_folds=2,
        random_state=7,
        client=client,
    )
    learner.fit(train[FEATURES], train["y"], train["w"], n_jobs_cross_fitting=2)
    return learner, train


def test_fit_then_predict_equals_the_python_api(fitted, client):
    root = fitted["root"]
    code, out, err = fitted["fit"]
    assert code == 0, err
    assert "dashboard: http" in out
    assert "saved the learner to" in out
    # the progress bar of the fit's jobs: 3 variants x (2 folds + overall)
    assert "TLearner [########################] 9/9 fits" in err
    manifest = json.loads((root / "model" / "manifest.json").read_text())
    config = manifest["learner"]["configuration"]
    assert config["n_folds"] == {"variant_outcome_model": 2}  # --set learner.n_folds=2
    assert config["nuisance_model_factory"] == {
        "variant_outcome_model": {"__class__": "lightgbm.sklearn:LGBMRegressor"}
    }
    code, out, err = fitted["predict"]
    assert code == 0, err
    assert "CATE written to" in out

    cate = read_cate(root / "cate")
    assert list(cate.columns) == ["x0", "cate_1", "cate_2"]
    learner, _ = python_api_learner(root, client)
    new = dd.read_parquet(root / "new")
    expected = learner.predict(new[FEATURES], is_oos=True).compute()[:, :, 0]
    assert cate.shape == (1_000, 3)
    assert np.array_equal(cate[["cate_1", "cate_2"]].to_numpy(), expected)
    assert np.array_equal(cate["x0"].to_numpy(), new["x0"].compute().to_numpy())


def test_in_sample_predict_and_evaluate_equal_the_python_api(fitted, cluster, client, tmp_path):
    root = fitted["root"]
    assert fitted["fit"][0] == 0
    address = cluster.scheduler_address
    job = str(root / "job.toml")
    train_path = str(root / "train")
    code, _, err = run_cli(
        "predict", "-c", job, "--scheduler", address, "--data", train_path, "--in-sample",
        "--output", str(tmp_path / "in_sample"), "--set", "predict.keep=[]",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = run_cli(
        "evaluate", "--model", str(root / "model"), "--data", train_path, "--in-sample",
        "--set", "data.outcome=y", "--set", "data.treatment=w", "--scheduler", address,
        "--output", str(tmp_path / "scores.json"),
    )  # fmt: skip
    assert code == 0, err

    learner, train = python_api_learner(root, client)
    expected = learner.predict(train[FEATURES], is_oos=False).compute()[:, :, 0]
    got = read_cate(tmp_path / "in_sample")
    assert list(got.columns) == ["cate_1", "cate_2"]
    assert np.array_equal(got.to_numpy(), expected)
    scores = learner.evaluate(train[FEATURES], train["y"], train["w"], is_oos=False)
    printed = json.loads(out[out.index("{") :])
    assert printed == {k: float(v) for k, v in scores.items()}
    assert set(printed) == {
        f"variant_outcome_model_{k}_neg_root_mean_squared_error" for k in range(3)
    }
    assert json.loads((tmp_path / "scores.json").read_text()) == printed


BAD_JOBS = [
    ("--set", "learner.nuisance_model_factory=lightgbm.NoSuchModel",
     "'lightgbm' has no attribute 'NoSuchModel'"),
    ("--set", "learner.nuisance_model_factory=nosuchpackage.Model",
     "'nosuchpackage' is not an installed package"),
    ("--set", "learner.nuisance_model_factory=numpy.ndarray",
     "'numpy.ndarray' is not an estimator class"),
    ("--set", "learner.nuisance_model_factory=sklearn.base:clone",
     "'sklearn.base:clone' is not an estimator class"),
    ("--set", "learner.nuisance_model_factory=LGBMRegressor", "is not an import path"),
    ("--set", "learner.n_fold=3", "unknown key learner.n_fold for TLearner"),
    ("--set", "fit.n_jobs=3", "unknown key fit.n_jobs"),
    ("--set", "clusters.workers=3", "unknown section [clusters]"),
    ("--set", "learner.type=Q", "learner.type must be one of"),
    ("--set", "data.outcome=outcome", "column 'outcome' is not in"),
    ("--set", "data.features=['x0', 'x9']", "column 'x9' is not in"),
    ("--set", "data.path=/nonexistent/train", "/nonexistent/train does not exist"),
    ("--set", "learner.plan='fastest'", "plan must be None (the cost model from 100,000"),
    ("--set", "learner.plan={threads_per_model=0}",
     "learner.plan: threads_per_model must be None, -1 or a positive int, got 0"),
    ("--set", "learner.plan={threads=2}", "learner.plan: "),
    ("--set", "learner.nuisance_model_factory=lightgbm.LGBMClassifier",
     "learner: The nuisance model variant_outcome_model is supposed to be used with the "
     "predict method 'predict' but LGBMClassifier is a classifier"),
]  # fmt: skip


@pytest.mark.parametrize(("flag", "value", "reason"), BAD_JOBS)
def test_bad_jobs_fail_with_one_line_before_any_cluster_work(
    experiment, tmp_path, flag, value, reason
):
    model = tmp_path / "model"
    # an address nothing listens on: reaching the cluster would fail differently
    code, out, err = run_cli(
        "fit", "-c", str(experiment / "job.toml"), "--model", str(model),
        "--scheduler", "tcp://127.0.0.1:9", flag, value,
    )  # fmt: skip
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dask-meta fit: error: ")
    assert reason in lines[0]
    assert out == ""  # not even the dashboard line: no cluster was contacted
    assert not model.exists()


def test_bad_job_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[learner\ntype = 'T'\n")
    for config, reason in (
        (bad, "is not valid TOML"),
        (tmp_path / "missing.toml", "missing.toml does not exist"),
    ):
        code, _, err = run_cli("fit", "-c", str(config))
        assert code == 2
        assert err.count("\n") == 1 and reason in err
    code, _, err = run_cli(
        "predict", "--model", str(tmp_path / "nomodel"), "--data", "x", "--output", "y"
    )
    assert code == 2 and "nomodel does not exist" in err


def test_existing_output_is_refused_and_failed_work_leaves_nothing(fitted, cluster, tmp_path):
    root = fitted["root"]
    job = str(root / "job.toml")
    address = cluster.scheduler_address
    cate = root / "cate"
    before = sorted(p.name for p in cate.iterdir())
    code, _, err = run_cli("predict", "-c", job, "--scheduler", address)
    assert code == 2 and "predict.output" in err and "exists" in err
    assert sorted(p.name for p in cate.iterdir()) == before
    # a failure after the learner was saved (the in-sample CATE cannot be written under a
    # file): the saved learner is removed again
    model = tmp_path / "model"
    (tmp_path / "a_file").write_text("")
    code, out, err = run_cli(
        "fit", "-c", job, "--scheduler", address, "--model", str(model), "--quiet",
        "--set", "learner.n_folds=2", "--set", f"fit.predictions='{tmp_path}/a_file/cate'",
    )  # fmt: skip
    assert code == 1
    assert "saved the learner to" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dask-meta fit: error: ")
    assert not model.exists()


def test_help_for_every_command(capsys):
    for command in ("fit", "predict", "evaluate", "demo"):
        with pytest.raises(SystemExit) as stop:
            main([command, "--help"])
        assert stop.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: dask-meta {command}")
        if command != "demo":
            assert "--scheduler ADDRESS" in out and "--set KEY=VALUE" in out
            assert "--report FILE.html" in out
    # the console script itself
    done = subprocess.run(
        [str(BIN / "dask-meta"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0
    for command in ("fit", "predict", "evaluate", "demo"):
        assert command in done.stdout


def test_report_on_an_embedded_local_cluster(fitted, tmp_path):
    root = fitted["root"]
    assert fitted["fit"][0] == 0
    report = tmp_path / "report.html"
    code, out, err = run_cli(
        "evaluate", "--model", str(root / "model"), "--data", str(root / "new"),
        "--set", "data.outcome=y", "--set", "data.treatment=w",
        "--workers", "1", "--threads", "1", "--memory-limit", "2GiB", "--report", str(report),
    )  # fmt: skip
    assert code == 0, err
    assert "LocalCluster 1 worker(s) x 1 threads; dashboard: http" in out
    scores = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert len(scores) == 3 and all(v < 0 for v in scores.values())
    html = report.read_text()
    assert "Dask Performance Report" in html
    assert f"performance report written to {report}" in out


def _wait_for_address(scheduler_file: Path, process: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {process.returncode}")
        if scheduler_file.exists():
            with contextlib.suppress(json.JSONDecodeError):
                return json.loads(scheduler_file.read_text())["address"]
        time.sleep(0.2)
    raise TimeoutError(f"no scheduler address in {scheduler_file} after {timeout} s")


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def test_cli_against_a_separate_scheduler_and_worker(fitted, tmp_path):
    root = fitted["root"]
    assert fitted["predict"][0] == 0
    scheduler_file = tmp_path / "scheduler.json"
    log = (tmp_path / "cluster.log").open("w")
    scheduler = worker = None
    try:
        scheduler = subprocess.Popen(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        address = _wait_for_address(scheduler_file, scheduler, timeout=120)
        assert address.startswith("tcp://127.0.0.1:")
        worker = subprocess.Popen(
            [str(BIN / "dask"), "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
             "--resources", "threads=1", "--memory-limit", "2GiB", "--dashboard-address",
             "127.0.0.1:0"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        job = str(root / "job.toml")
        common = ["--scheduler", address, "--quiet"]
        fit = subprocess.run(
            [str(BIN / "dask-meta"), "fit", "-c", job, "--model", str(tmp_path / "model"),
             "--set", "learner.n_folds=2", *common],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert fit.returncode == 0, fit.stderr
        assert f"scheduler {address}; dashboard: http" in fit.stdout
        predict = subprocess.run(
            [str(BIN / "dask-meta"), "predict", "-c", job, "--model", str(tmp_path / "model"),
             "--output", str(tmp_path / "cate"), *common],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert predict.returncode == 0, predict.stderr
    finally:
        _stop(worker)
        _stop(scheduler)
        log.close()
    # the same job on another cluster (1 worker x 1 thread): the same CATE
    got = read_cate(tmp_path / "cate")
    expected = read_cate(root / "cate")
    assert got.shape == (1_000, 3)
    assert np.array_equal(got.to_numpy(), expected.to_numpy())


def test_progress_bar_and_stage_logs_in_the_python_api(default_client, caplog):
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(600, 3)), columns=["a", "b", "c"])
    y = X["a"] + np.random.default_rng(1).normal(size=600)
    w = np.arange(600) % 2
    learner = TLearner(False, 2, nuisance_model_factory=LGBMRegressor, nuisance_model_params=PARAMS,
                       n_folds=2, random_state=0)  # fmt: skip
    quiet = io.StringIO()
    with contextlib.redirect_stderr(quiet):
        learner.fit(X, y, w)
    assert quiet.getvalue() == ""  # off by default

    shown = io.StringIO()
    with (
        caplog.at_level(logging.INFO, logger="dask_meta"),
        contextlib.redirect_stderr(shown),
        dask_meta.verbose(),
    ):
        assert dask.config.get("dask_meta.progress") is True
        learner.fit(X, y, w)
    assert dask.config.get("dask_meta.progress", default=False) is False  # restored
    lines = shown.getvalue().splitlines()
    # not a terminal: one line per tenth of the jobs, the last one complete
    assert lines[-1].startswith("TLearner [########################] 6/6 fits  nuisance 6/6")
    assert 2 <= len(lines) <= 12
    messages = [r.getMessage() for r in caplog.records if r.name == "dask_meta"]
    assert "TLearner: nuisance stage started (6 fits)" in messages
    assert any(m.startswith("TLearner: nuisance stage done: 6 fits in ") for m in messages)
    assert any("keeping the training-frame in the cluster's memory" in m for m in messages)


def test_demo_runs_from_the_console_script():
    """The README's main job, small: fit on generated data on an embedded LocalCluster."""
    done = subprocess.run(
        [str(BIN / "dask-meta"), "demo", "--rows", "4000", "--features", "3", "--folds", "2",
         "--workers", "1", "--threads", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rmse = [
        float(line.rsplit(":", 1)[1])
        for line in done.stdout.splitlines()
        if "RMSE against the true CATE" in line
    ]
    assert len(rmse) == 2 and all(0 < r < 5 for r in rmse)
    assert "dashboard: http" in done.stdout


def test_predict_checks_the_data_against_the_training_schema(fitted, cluster, tmp_path):
    """New data without a feature the learner was fitted on: one error line naming it, exit
    code 2 (a bad job, found from the parquet's schema before any cluster work), and no
    output written."""
    root = fitted["root"]
    new = pd.read_parquet(root / "new").drop(columns=["x3"])
    new.to_parquet(tmp_path / "new.parquet", index=False)
    out = tmp_path / "cate"
    code, _, err = run_cli(
        "predict", "-c", str(root / "job.toml"), "--scheduler", cluster.scheduler_address,
        "--data", str(tmp_path / "new.parquet"), "--output", str(out),
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("dask-meta predict: error: "), err
    assert "column 'x3' is not in" in lines[0]
    assert not out.exists()
