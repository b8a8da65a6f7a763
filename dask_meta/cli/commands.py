"""The commands: ``fit``, ``predict``, ``evaluate`` (from a job) and ``demo``.

Each command checks its whole job (learner, data, columns, output paths) before it
connects to a cluster, and removes the outputs it claimed if the work fails, so that
nothing partial stays behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dask_meta import runtime
from dask_meta.cli.build import (
    build_learner,
    check_columns,
    fitted_features,
    load_learner,
    oos_options,
    read_parquet,
    training_columns,
)
from dask_meta.cli.schema import JobError, checked_type, job_value, required_value
from dask_meta.cluster import (
    close_cluster,
    connect_scheduler,
    dashboard_link,
    local_client,
    start_local_cluster,
)

logger = logging.getLogger("dask_meta")


@dataclass
class Outputs:
    """Output paths of one command: refused if present (unless overwrite), removed if the
    command fails, so that nothing partial stays behind."""

    created: list[tuple[Any, str]] = field(default_factory=list)

    def claim(self, path: Any, what: str, overwrite: bool, storage_options: Any = None) -> str:
        from fsspec.core import url_to_fs

        if not isinstance(path, str) or not path:
            raise JobError(f"{what} must be a path or URL, got {path!r}")
        fs, root = url_to_fs(path, **(storage_options or {}))
        existed = fs.exists(root)
        if existed and (not fs.isdir(root) or fs.ls(root)) and not overwrite:
            raise JobError(
                f"{what} {path} exists; remove it, choose another path, or set overwrite"
            )
        if not existed:
            # an output being replaced is the writer's to keep intact if the work fails
            self.created.append((fs, root))
        return path

    def remove(self) -> None:
        for fs, root in self.created:
            with contextlib.suppress(Exception):
                if fs.exists(root):
                    fs.rm(root, recursive=True)


@contextlib.contextmanager
def connect(job: dict[str, Any], report: str | None) -> Iterator[Any]:
    """A client: to ``cluster.scheduler``, else to a new embedded LocalCluster."""
    from distributed import performance_report

    address = job_value(job, "cluster", "scheduler")
    cluster = None
    if address:
        checked_type(address, str, "cluster.scheduler")
        client = connect_scheduler(address)
        where = f"scheduler {address}"
    else:
        workers = checked_type(job_value(job, "cluster", "workers", 1), int, "cluster.workers")
        threads = checked_type(
            job_value(job, "cluster", "threads", os.cpu_count() or 1), int, "cluster.threads"
        )
        memory = job_value(job, "cluster", "memory_limit", "auto")
        cluster = start_local_cluster(workers, threads, memory, quiet_workers=True)
        client = local_client(cluster, set_as_default=False)
        where = f"LocalCluster {workers} worker(s) x {threads} threads"
    try:
        print(f"dask-meta: {where}; dashboard: {dashboard_link(client)}", flush=True)
        with runtime.as_current(client):
            if report:
                with performance_report(filename=report):
                    yield client
                print(f"dask-meta: performance report written to {report}", flush=True)
            else:
                yield client
    finally:
        close_cluster(client, cluster)


def fit(job: dict[str, Any], args: argparse.Namespace) -> int:
    """Fit the job's learner on ``[data]``, save it to ``model.path`` (and optionally write
    its in-sample CATE)."""
    import dask_meta
    from dask_meta.persistence import save

    learner = build_learner(job)
    path = required_value(job, "data", "path")
    options = job_value(job, "data", "storage_options")
    frame = read_parquet(path, options, "data.path")
    features, outcome, treatment = training_columns(job, frame, path)
    fit_args = {
        k: job_value(job, "fit", k)
        for k in ("n_jobs_cross_fitting", "n_jobs_base_learners", "fit_params")
        if job_value(job, "fit", k) is not None
    }
    sync = job_value(job, "fit", "synchronize_cross_fitting", True)
    fit_args["synchronize_cross_fitting"] = checked_type(
        sync, bool, "fit.synchronize_cross_fitting"
    )
    model_options = job_value(job, "model", "storage_options")
    trusted = checked_type(job_value(job, "model", "trusted", False), bool, "model.trusted")
    folds = checked_type(job_value(job, "model", "folds", True), bool, "model.folds")
    overwrite = checked_type(job_value(job, "model", "overwrite", False), bool, "model.overwrite")
    outputs = Outputs()
    model_path = outputs.claim(
        required_value(job, "model", "path"), "model.path", overwrite, model_options
    )
    predictions = job_value(job, "fit", "predictions")
    if predictions is not None:
        outputs.claim(predictions, "fit.predictions", overwrite)
    try:
        with connect(job, args.report):
            start = time.perf_counter()
            with dask_meta.verbose(not args.quiet):
                learner.fit(frame[features], frame[outcome], frame[treatment], **fit_args)
            seconds = time.perf_counter() - start
            report = learner.fit_report_
            persisted = report.attrs.get("persisted")
            logger.info("training frame kept in the cluster's memory: %s", persisted)
            print(
                f"dask-meta: fitted {type(learner).__name__} ({len(report)} base-model fits) "
                f"on {len(features)} features in {seconds:.1f} s",
                flush=True,
            )
            save(
                learner,
                model_path,
                trusted=trusted,
                folds=folds,
                overwrite=overwrite,
                storage_options=model_options,
            )
            print(f"dask-meta: saved the learner to {model_path}", flush=True)
            if predictions is not None:
                dask_meta.write_predictions(
                    learner, frame[features], predictions, is_oos=False, overwrite=overwrite
                )
                print(f"dask-meta: in-sample CATE written to {predictions}", flush=True)
    except BaseException:
        outputs.remove()
        raise
    return 0


def _command_data(job: dict[str, Any], section: str, what: str) -> tuple[Any, str, Any]:
    """The parquet a command reads: ``<section>.data`` (or ``data.path``), lazily, with its
    path and storage options (``<section>.storage_options`` or ``data.storage_options``)."""
    options = job_value(job, section, "storage_options") or job_value(
        job, "data", "storage_options"
    )
    path = job_value(job, section, "data") or job_value(job, "data", "path")
    if path is None:
        raise JobError(f"the job needs {section}.data (or data.path): {what}")
    return read_parquet(path, options, f"{section}.data"), path, options


def predict(job: dict[str, Any], args: argparse.Namespace) -> int:
    """Write the CATE of ``predict.data`` with the saved learner to ``predict.output``."""
    import dask_meta

    learner = load_learner(job)
    features = fitted_features(learner)
    frame, path, options = _command_data(job, "predict", "the rows to predict")
    keep = job_value(job, "predict", "keep", [])
    keep = [keep] if isinstance(keep, str) else checked_type(keep, list, "predict.keep")
    check_columns(frame, features, "the learner's features", path)
    check_columns(frame, keep, "predict.keep", path)
    is_oos, method = oos_options(job, "predict")
    name = checked_type(job_value(job, "predict", "name", "cate"), str, "predict.name")
    overwrite = checked_type(
        job_value(job, "predict", "overwrite", False), bool, "predict.overwrite"
    )
    outputs = Outputs()
    output = outputs.claim(
        required_value(job, "predict", "output"), "predict.output", overwrite, options
    )
    columns = list(dict.fromkeys([*keep, *features]))
    try:
        with connect(job, args.report):
            dask_meta.write_predictions(
                learner,
                frame[columns],
                output,
                is_oos=is_oos,
                oos_method=method,
                keep=keep or None,
                name=name,
                storage_options=options,
                overwrite=overwrite,
            )
            print(f"dask-meta: CATE written to {output}", flush=True)
    except BaseException:
        outputs.remove()
        raise
    return 0


def evaluate(job: dict[str, Any], args: argparse.Namespace) -> int:
    """Print (and optionally write) the saved learner's scores on ``evaluate.data``."""
    learner = load_learner(job)
    features = fitted_features(learner)
    frame, path, options = _command_data(job, "evaluate", "rows with outcomes")
    outcome = checked_type(required_value(job, "data", "outcome"), str, "data.outcome")
    treatment = checked_type(required_value(job, "data", "treatment"), str, "data.treatment")
    check_columns(frame, [*features, outcome, treatment], "evaluate.data", path)
    is_oos, method = oos_options(job, "evaluate")
    scoring = job_value(job, "evaluate", "scoring")
    if scoring is not None:
        checked_type(scoring, dict, "evaluate.scoring")
    output = job_value(job, "evaluate", "output")
    if output is not None:
        checked_type(output, str, "evaluate.output")
    with connect(job, args.report):
        scores = learner.evaluate(
            frame[features],
            frame[outcome],
            frame[treatment],
            is_oos=is_oos,
            oos_method=method,
            scoring=scoring,
        )
    text = json.dumps({k: float(v) for k, v in scores.items()}, indent=1)
    print(text, flush=True)
    if output is not None:
        import fsspec

        # written once the scores exist: a failed evaluation leaves no file
        with fsspec.open(output, "w", **(options or {})) as f:
            f.write(text + "\n")
    return 0


def demo(args: argparse.Namespace) -> int:
    """Fit a T-learner with LightGBM on generated data on a new LocalCluster and print the
    RMSE of its in-sample CATE against the true one."""
    import numpy as np

    from dask_meta import TLearner
    from dask_meta.datasets import cate_names, feature_names, make_experiment

    cluster = start_local_cluster(args.workers, args.threads)
    client = local_client(cluster, set_as_default=False)
    try:
        # eager Dask calls (the row counts of to_dask_array) run on this cluster too
        with runtime.as_current(client):
            print(f"dask-meta demo: LocalCluster {args.workers} worker(s) x {args.threads} threads")
            print(f"dashboard: {dashboard_link(client)}")
            data = make_experiment(args.rows, args.features, args.variants, seed=args.seed)
            features = feature_names(data)
            from lightgbm import LGBMRegressor

            learner = TLearner(
                is_classification=False,
                n_variants=args.variants,
                nuisance_model_factory=LGBMRegressor,
                nuisance_model_params={"n_estimators": 100, "verbose": -1},
                n_folds=args.folds,
                random_state=args.seed,
            )
            start = time.perf_counter()
            learner.fit(data[features], data["y"], data["w"])
            fit_time = time.perf_counter() - start
            cate = learner.predict(data[features], is_oos=False)[:, :, 0]
            truth = data[cate_names(data)].to_dask_array(lengths=True)
            rmse = runtime.compute_now(np.sqrt(((cate - truth) ** 2).mean(axis=0)), client)
            wall = time.perf_counter() - start
            report = learner.fit_report_
            assert report is not None
            print(
                f"T-learner, LightGBM, {args.rows:,} rows x {args.features} features, "
                f"{args.variants} variants, {args.folds} folds: {len(report)} fits"
            )
            for k, value in enumerate(rmse, start=1):
                print(f"  RMSE against the true CATE, variant {k} vs 0: {value:.4f}")
            print(f"  fit wall time {fit_time:.1f} s; fit + in-sample CATE + RMSE {wall:.1f} s")
            print(f"dashboard: {dashboard_link(client)}")
    finally:
        close_cluster(client, cluster)
    return 0
