"""The ``dask-meta`` command line: ``fit``, ``predict``, ``evaluate`` and ``demo``.

A job is a TOML file; every key can be overridden on the command line with
``--set section.key=VALUE`` (VALUE is read as TOML, else taken as a string), and the common
ones have flags (``--model``, ``--data``, ``--output``, ``--scheduler``...). Example::

    [data]
    path = "experiment/"              # parquet: a local path or an fsspec URL
    features = ["x0", "x1", "x2"]     # default: every column but outcome, treatment, exclude
    outcome = "y"
    treatment = "w"

    [learner]
    type = "T"                        # S, T, X, R or DR; then metalearners' arguments
    is_classification = false
    n_variants = 3
    nuisance_model_factory = "lightgbm.LGBMRegressor"
    nuisance_model_params = { n_estimators = 100, verbose = -1 }
    n_folds = 5
    random_state = 0

    [fit]
    n_jobs_cross_fitting = 4

    [model]
    path = "model/"                   # where fit saves the learner (predict/evaluate load it)

    [predict]
    data = "new_rows/"
    output = "cate/"
    keep = ["id"]

Errors in the job (invalid TOML, unknown key, bad import path, a class that is not an
estimator, a missing file or column) are found before any cluster starts and exit with
code 2; failures of the work exit with 1. Either way, stderr ends with one line saying why,
and nothing partial is left in the output paths.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import importlib.metadata
import inspect
import json
import logging
import os
import re
import sys
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

#: every key a job file may hold, per section (``learner`` also takes the learner's
#: constructor arguments, checked against its signature)
JOB_KEYS: dict[str, dict[str, str]] = {
    "cluster": {
        "scheduler": "address of a running scheduler (tcp://host:port); none: a LocalCluster",
        "workers": "workers of the embedded LocalCluster (default 1)",
        "threads": "threads per worker of the embedded LocalCluster (default: the cores)",
        "memory_limit": "memory limit per worker of the embedded LocalCluster ('4GiB', 'auto')",
    },
    "data": {
        "path": "training data: parquet file or directory, local or an fsspec URL",
        "features": "feature columns (default: all but outcome, treatment and exclude)",
        "exclude": "columns that are not features when features is not given",
        "outcome": "outcome column (y)",
        "treatment": "treatment column (w), values 0..n_variants-1",
        "storage_options": "fsspec options for reading the data",
    },
    "learner": {
        "type": "S, T, X, R or DR (or SLearner, ...)",
    },
    "fit": {
        "n_jobs_cross_fitting": "fits of one cross-fit estimator in flight (default: no limit)",
        "n_jobs_base_learners": "cross-fit estimators of one stage in flight (default: no limit)",
        "synchronize_cross_fitting": "share folds between models (default true)",
        "fit_params": "fit parameters, as in metalearners' fit(fit_params=...)",
        "predictions": "also write the in-sample CATE of the training data to this path",
    },
    "model": {
        "path": "directory of the saved learner (fit writes it; predict and evaluate read it)",
        "trusted": "fit: pickle models skops cannot store; predict/evaluate: load them",
        "overwrite": "fit: replace an existing saved learner",
        "folds": "save the fold assignment for in-sample prediction after loading (true)",
        "storage_options": "fsspec options for the model directory",
    },
    "predict": {
        "data": "parquet data to predict (default: data.path)",
        "output": "parquet directory for the CATE, one file per partition",
        "is_oos": "true: new rows (default); false: exactly the training data",
        "oos_method": "overall (default), mean or median",
        "keep": "columns of the data written in front of the CATE (e.g. a row id)",
        "name": "prefix of the CATE columns (default 'cate')",
        "overwrite": "replace an existing output directory",
        "storage_options": "fsspec options for reading and writing",
    },
    "evaluate": {
        "data": "parquet data with features, outcome and treatment (default: data.path)",
        "is_oos": "true (default): out-of-sample scores; false: the training data",
        "oos_method": "overall (default), mean or median",
        "scoring": "scorer names per model kind, as in metalearners' evaluate",
        "output": "also write the scores as JSON to this path",
        "storage_options": "fsspec options for reading the data",
    },
}

#: constructor arguments a job cannot give (objects, or not supported from a file)
_NOT_FROM_FILE = {"fitted_nuisance_models", "fitted_propensity_model", "client"}

_LEARNERS = {"S": "SLearner", "T": "TLearner", "X": "XLearner", "R": "RLearner", "DR": "DRLearner"}

_MODULE_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

logger = logging.getLogger("dask_meta")


class JobError(ValueError):
    """A problem with the job itself, found before any cluster work (exit code 2)."""


# --- the job file ---------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A command-line value: TOML (``3``, ``true``, ``[1, 2]``, ``{a = 1}``) or a string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(job: dict[str, Any], assignment: str) -> None:
    """Apply one ``section.key[.subkey]=VALUE`` override to the job (in place)."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise JobError(f"--set needs KEY=VALUE (e.g. learner.n_folds=3), got {assignment!r}")
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise JobError(f"--set key {key!r} must be section.key (e.g. learner.n_folds)")
    node = job
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise JobError(f"--set {key}: {part!r} is not a table in the job")
        node = child
    node[parts[-1]] = parse_value(text.strip())


def read_job(path: str | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The job: the TOML file (if any) with the overrides applied, its keys checked."""
    job: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                job = tomllib.load(f)
        except FileNotFoundError:
            raise JobError(f"job file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise JobError(f"job file {path} is not valid TOML: {exc}") from None
    for assignment in overrides:
        apply_override(job, assignment)
    for section, values in job.items():
        if section not in JOB_KEYS:
            raise JobError(
                f"unknown section [{section}] in the job; sections are {sorted(JOB_KEYS)}"
            )
        if not isinstance(values, dict):
            raise JobError(f"[{section}] must be a table of keys, got {values!r}")
        if section == "learner":
            continue  # checked against the learner's signature in build_learner
        unknown = sorted(set(values) - set(JOB_KEYS[section]))
        if unknown:
            raise JobError(
                f"unknown key {section}.{unknown[0]} in the job; [{section}] takes "
                f"{sorted(JOB_KEYS[section])}"
            )
    return job


def _get(job: dict[str, Any], section: str, key: str, default: Any = None) -> Any:
    return job.get(section, {}).get(key, default)


def _require(job: dict[str, Any], section: str, key: str) -> Any:
    value = _get(job, section, key)
    if value is None:
        raise JobError(f"the job needs {section}.{key} ({JOB_KEYS[section][key]})")
    return value


def _typed(value: Any, kind: type | tuple[type, ...], name: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        expected = (
            kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        )
        raise JobError(f"{name} must be {expected}, got {value!r}")
    return value


# --- import paths ---------------------------------------------------------------------------


@functools.cache
def _installed_packages() -> frozenset[str]:
    return frozenset(importlib.metadata.packages_distributions())


def resolve_estimator(path: Any, name: str = "estimator") -> type:
    """Resolve ``module:Class`` or ``module.Class`` of an installed package to an
    estimator class (a class with ``fit``); anything else raises :class:`JobError`."""
    if not isinstance(path, str) or not path.strip():
        raise JobError(f"{name} must be an import path such as 'lightgbm.LGBMRegressor'")
    text = path.strip()
    if ":" in text:
        module_name, _, attr = text.partition(":")
        candidates = [(module_name, attr)]
    else:
        pieces = text.split(".")
        if len(pieces) < 2:
            raise JobError(
                f"{name} {text!r} is not an import path: use module.Class or module:Class "
                "(e.g. lightgbm.LGBMRegressor)"
            )
        candidates = [
            (".".join(pieces[:i]), ".".join(pieces[i:])) for i in range(len(pieces) - 1, 0, -1)
        ]
    for module_name, attr in candidates:
        if not _MODULE_PATH.match(module_name) or not _MODULE_PATH.match(attr):
            raise JobError(f"{name} {text!r} is not an import path (module.Class or module:Class)")
    top = candidates[0][0].split(".")[0]
    if top not in _installed_packages():
        raise JobError(
            f"{name} {text!r}: {top!r} is not an installed package (pip install it, or fix "
            "the import path)"
        )
    obj: Any = None
    error = ""
    for module_name, attr in candidates:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            error = f"cannot import {module_name!r} ({exc})"
            continue
        obj = module
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            error = f"{module_name!r} has no attribute {attr!r}"
            obj = None
            continue
        break
    if obj is None:
        raise JobError(f"{name} {text!r}: {error}")
    if not isinstance(obj, type) or not callable(getattr(obj, "fit", None)):
        raise JobError(
            f"{name} {text!r} is not an estimator class (a class with a fit method), got "
            f"{type(obj).__name__} {obj!r}"
        )
    return obj


def _factories(value: Any, name: str) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return {kind: resolve_estimator(v, f"{name}.{kind}") for kind, v in value.items()}
    return resolve_estimator(value, name)


# --- the learner ----------------------------------------------------------------------------


def learner_class(name: Any) -> type:
    import dask_meta

    if not isinstance(name, str):
        raise JobError(f"learner.type must be one of {list(_LEARNERS)}, got {name!r}")
    key = name.strip().upper().removesuffix("LEARNER")
    if key not in _LEARNERS:
        raise JobError(f"learner.type must be one of {list(_LEARNERS)}, got {name!r}")
    return getattr(dask_meta, _LEARNERS[key])


def build_learner(job: dict[str, Any]) -> Any:
    """The unfitted learner of the job (import paths resolved, arguments checked)."""
    spec = dict(job.get("learner", {}))
    if not spec:
        raise JobError("the job needs a [learner] table (type, n_variants, model factories...)")
    cls = learner_class(spec.pop("type", None))
    allowed = sorted(
        {
            name
            for klass in cls.__mro__
            if "__init__" in vars(klass)
            for name, p in inspect.signature(vars(klass)["__init__"]).parameters.items()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and name not in {"self", *_NOT_FROM_FILE}
        }
    )
    for key in spec:
        if key not in allowed:
            raise JobError(
                f"unknown key learner.{key} for {cls.__name__}; it takes {['type', *allowed]}"
            )
    for key in ("nuisance_model_factory", "treatment_model_factory", "propensity_model_factory"):
        if key in spec:
            spec[key] = _factories(spec[key], f"learner.{key}")
    if isinstance(spec.get("plan"), dict):
        # [learner.plan] threads_per_model = 2 ...: an explicit plan; "auto" stays a string
        from dask_meta.plan import Plan

        try:
            spec["plan"] = Plan(**spec["plan"])
        except (TypeError, ValueError) as exc:
            raise JobError(f"learner.plan: {exc}") from None
    try:
        return cls(**spec)
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise JobError(f"learner: {exc}") from exc


# --- data -----------------------------------------------------------------------------------


def read_parquet(path: Any, storage_options: Any, what: str) -> Any:
    """A lazy Dask DataFrame of parquet data (only metadata is read here)."""
    import dask.dataframe as dd

    if not isinstance(path, str) or not path:
        raise JobError(f"{what} must be a parquet path or URL, got {path!r}")
    options = _typed(storage_options or {}, dict, f"{what} storage_options")
    try:
        return dd.read_parquet(path, storage_options=options or None)
    except FileNotFoundError:
        raise JobError(f"{what} {path} does not exist") from None
    except Exception as exc:
        raise JobError(f"{what} {path} cannot be read as parquet: {exc}") from exc


def _check_columns(frame: Any, columns: Sequence[Any], what: str, path: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise JobError(
            f"{what}: column {missing[0]!r} is not in {path} (it has {list(frame.columns)})"
        )


def training_columns(job: dict[str, Any], frame: Any, path: str) -> tuple[list[str], str, str]:
    outcome = _typed(_require(job, "data", "outcome"), str, "data.outcome")
    treatment = _typed(_require(job, "data", "treatment"), str, "data.treatment")
    features = _get(job, "data", "features")
    exclude = _typed(_get(job, "data", "exclude", []), list, "data.exclude")
    if features is None:
        features = [c for c in frame.columns if c not in {outcome, treatment, *exclude}]
    else:
        features = _typed(features, list, "data.features")
    if not features:
        raise JobError("data.features is empty: the learner needs at least one feature")
    _check_columns(frame, [*features, outcome, treatment], "data", path)
    return list(features), outcome, treatment


# --- outputs --------------------------------------------------------------------------------


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
        if fs.exists(root) and (not fs.isdir(root) or fs.ls(root)) and not overwrite:
            raise JobError(
                f"{what} {path} exists; remove it, choose another path, or set overwrite"
            )
        self.created.append((fs, root))
        return path

    def remove(self) -> None:
        for fs, root in self.created:
            with contextlib.suppress(Exception):
                if fs.exists(root):
                    fs.rm(root, recursive=True)


# --- the cluster ----------------------------------------------------------------------------


_QUIET_WORKERS = "DASK_LOGGING__DISTRIBUTED"


@contextlib.contextmanager
def connect(job: dict[str, Any], report: str | None) -> Iterator[Any]:
    """A client: to ``cluster.scheduler``, else to a new embedded LocalCluster."""
    from distributed import Client, LocalCluster, performance_report

    address = _get(job, "cluster", "scheduler")
    cluster = None
    if address:
        _typed(address, str, "cluster.scheduler")
        client = Client(address, timeout="30s")
        client.wait_for_workers(1, timeout=60)
        where = f"scheduler {address}"
    else:
        workers = _typed(_get(job, "cluster", "workers", 1), int, "cluster.workers")
        threads = _typed(
            _get(job, "cluster", "threads", os.cpu_count() or 1), int, "cluster.threads"
        )
        memory = _get(job, "cluster", "memory_limit", "auto")
        # quiet worker processes: they read the logging level from the environment
        previous = os.environ.get(_QUIET_WORKERS)
        os.environ.setdefault(_QUIET_WORKERS, "warning")
        try:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=threads,
                memory_limit=memory,
                resources={"threads": threads},
                dashboard_address=":0",
            )
        finally:
            if previous is None:
                os.environ.pop(_QUIET_WORKERS, None)
        client = Client(cluster)
        where = f"LocalCluster {workers} worker(s) x {threads} threads"
    try:
        print(f"dask-meta: {where}; dashboard: {client.dashboard_link}", flush=True)
        with client.as_current():
            if report:
                with performance_report(filename=report):
                    yield client
                print(f"dask-meta: performance report written to {report}", flush=True)
            else:
                yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# --- the commands ---------------------------------------------------------------------------


def _fit(job: dict[str, Any], args: argparse.Namespace) -> int:
    import dask_meta
    from dask_meta.persistence import save

    learner = build_learner(job)
    path = _require(job, "data", "path")
    options = _get(job, "data", "storage_options")
    frame = read_parquet(path, options, "data.path")
    features, outcome, treatment = training_columns(job, frame, path)
    fit_args = {
        k: _get(job, "fit", k)
        for k in ("n_jobs_cross_fitting", "n_jobs_base_learners", "fit_params")
        if _get(job, "fit", k) is not None
    }
    sync = _get(job, "fit", "synchronize_cross_fitting", True)
    fit_args["synchronize_cross_fitting"] = _typed(sync, bool, "fit.synchronize_cross_fitting")
    model_options = _get(job, "model", "storage_options")
    trusted = _typed(_get(job, "model", "trusted", False), bool, "model.trusted")
    folds = _typed(_get(job, "model", "folds", True), bool, "model.folds")
    overwrite = _typed(_get(job, "model", "overwrite", False), bool, "model.overwrite")
    outputs = Outputs()
    model_path = outputs.claim(
        _require(job, "model", "path"), "model.path", overwrite, model_options
    )
    predictions = _get(job, "fit", "predictions")
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
                dask_meta.write_predictions(learner, frame[features], predictions, is_oos=False)
                print(f"dask-meta: in-sample CATE written to {predictions}", flush=True)
    except BaseException:
        outputs.remove()
        raise
    return 0


def _load(job: dict[str, Any]) -> Any:
    from dask_meta.persistence import load

    path = _require(job, "model", "path")
    trusted = _get(job, "model", "trusted", False)
    if not isinstance(trusted, bool | list):
        raise JobError(f"model.trusted must be true/false or a list of type names, got {trusted!r}")
    try:
        return load(path, trusted=trusted, storage_options=_get(job, "model", "storage_options"))
    except FileNotFoundError as exc:
        raise JobError(str(exc)) from None


def _feature_names(learner: Any) -> list[Any]:
    return list(learner._fit_context.columns.names)


def _oos(job: dict[str, Any], section: str) -> tuple[bool, str]:
    is_oos = _typed(_get(job, section, "is_oos", True), bool, f"{section}.is_oos")
    method = _get(job, section, "oos_method", "overall")
    if method not in ("overall", "mean", "median"):
        raise JobError(f"{section}.oos_method must be overall, mean or median, got {method!r}")
    return is_oos, method


def _predict(job: dict[str, Any], args: argparse.Namespace) -> int:
    import dask_meta

    learner = _load(job)
    features = _feature_names(learner)
    options = _get(job, "predict", "storage_options") or _get(job, "data", "storage_options")
    path = _get(job, "predict", "data") or _get(job, "data", "path")
    if path is None:
        raise JobError("the job needs predict.data (or data.path): the rows to predict")
    frame = read_parquet(path, options, "predict.data")
    keep = _get(job, "predict", "keep", [])
    keep = [keep] if isinstance(keep, str) else _typed(keep, list, "predict.keep")
    _check_columns(frame, features, "the learner's features", path)
    _check_columns(frame, keep, "predict.keep", path)
    is_oos, method = _oos(job, "predict")
    name = _typed(_get(job, "predict", "name", "cate"), str, "predict.name")
    overwrite = _typed(_get(job, "predict", "overwrite", False), bool, "predict.overwrite")
    outputs = Outputs()
    output = outputs.claim(_require(job, "predict", "output"), "predict.output", overwrite, options)
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


def _evaluate(job: dict[str, Any], args: argparse.Namespace) -> int:
    learner = _load(job)
    features = _feature_names(learner)
    options = _get(job, "evaluate", "storage_options") or _get(job, "data", "storage_options")
    path = _get(job, "evaluate", "data") or _get(job, "data", "path")
    if path is None:
        raise JobError("the job needs evaluate.data (or data.path): rows with outcomes")
    frame = read_parquet(path, options, "evaluate.data")
    outcome = _typed(_require(job, "data", "outcome"), str, "data.outcome")
    treatment = _typed(_require(job, "data", "treatment"), str, "data.treatment")
    _check_columns(frame, [*features, outcome, treatment], "evaluate.data", path)
    is_oos, method = _oos(job, "evaluate")
    scoring = _get(job, "evaluate", "scoring")
    if scoring is not None:
        _typed(scoring, dict, "evaluate.scoring")
    output = _get(job, "evaluate", "output")
    if output is not None:
        _typed(output, str, "evaluate.output")
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


def _demo(args: argparse.Namespace) -> int:
    import numpy as np
    from distributed import Client, LocalCluster

    from dask_meta import TLearner
    from dask_meta.datasets import cate_names, feature_names, make_experiment

    cluster = LocalCluster(
        n_workers=args.workers,
        threads_per_worker=args.threads,
        resources={"threads": args.threads},
        dashboard_address=":0",
    )
    client = Client(cluster)
    try:
        print(f"dask-meta demo: LocalCluster {args.workers} worker(s) x {args.threads} threads")
        print(f"dashboard: {client.dashboard_link}")
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
        rmse = np.sqrt(((cate - truth) ** 2).mean(axis=0)).compute()
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
        print(f"dashboard: {client.dashboard_link}")
    finally:
        client.close()
        cluster.close()
    return 0


# --- argument parsing -----------------------------------------------------------------------


def _job_arguments(parser: argparse.ArgumentParser, config_required: bool) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="JOB.toml",
        required=config_required,
        help="the job file (TOML)" + ("" if config_required else "; optional here"),
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override a job key, e.g. --set learner.n_folds=3 or "
        "--set 'learner.nuisance_model_params={n_estimators=50}' (VALUE is read as TOML, "
        "else as a string); repeatable, applied in order after the file",
    )
    cluster = parser.add_argument_group("cluster (job section [cluster])")
    cluster.add_argument("--scheduler", metavar="ADDRESS", help="connect to this scheduler")
    cluster.add_argument("--workers", type=int, help="embedded LocalCluster: workers")
    cluster.add_argument("--threads", type=int, help="embedded LocalCluster: threads per worker")
    cluster.add_argument(
        "--memory-limit", metavar="SIZE", help="embedded LocalCluster: memory per worker"
    )
    parser.add_argument(
        "--report", metavar="FILE.html", help="write a Dask performance report of the work"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log dask_meta's stages (INFO)"
    )


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    """Dedicated flags as job keys (applied after the file and --set)."""
    pairs: list[tuple[str, Any]] = [
        ("cluster.scheduler", args.scheduler),
        ("cluster.workers", args.workers),
        ("cluster.threads", args.threads),
        ("cluster.memory_limit", args.memory_limit),
        ("model.path", getattr(args, "model", None)),
    ]
    if args.command == "fit":
        pairs += [("model.overwrite", True if args.overwrite else None)]
        pairs += [("model.trusted", True if args.trusted else None)]
    else:
        section = args.command
        pairs += [
            (f"{section}.data", args.data),
            (f"{section}.output", args.output),
            (f"{section}.is_oos", False if args.in_sample else None),
            (f"{section}.oos_method", args.oos_method),
            ("model.trusted", True if args.trusted else None),
        ]
        if section == "predict":
            pairs += [("predict.keep", args.keep or None)]
            pairs += [("predict.overwrite", True if args.overwrite else None)]
    out = []
    for key, value in pairs:
        if value is None:
            continue
        out.append(f"{key}={json.dumps(value)}")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dask-meta",
        description="CATE meta-learners (S, T, X, R, DR) on Dask: fit, predict and evaluate "
        "from a TOML job file, on a running cluster (--scheduler) or an embedded LocalCluster.",
        epilog="Run 'dask-meta COMMAND --help' for a command's options. Job keys: "
        + "; ".join(f"[{s}] {', '.join(k)}" for s, k in JOB_KEYS.items())
        + " (and the learner's constructor arguments).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = sub.add_parser(
        "fit",
        help="fit a learner on parquet data and save it",
        description="Fit the job's learner on [data] and save it to model.path (with the "
        "fold assignment, so that in-sample prediction works after loading). Shows a "
        "progress bar of the base-model fits and the dashboard link.",
    )
    _job_arguments(fit, config_required=True)
    fit.add_argument("--model", metavar="DIR", help="where to save the learner (model.path)")
    fit.add_argument("--overwrite", action="store_true", help="replace an existing model.path")
    fit.add_argument(
        "--trusted",
        action="store_true",
        help="pickle models that skops cannot store (loading them then needs --trusted)",
    )

    for name, text in (
        ("predict", "write the CATE of parquet data with a saved learner"),
        ("evaluate", "score a saved learner's base models on parquet data (JSON)"),
    ):
        command = sub.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ". Loads model.path (checksums "
            "verified; only trusted types unless --trusted).",
        )
        _job_arguments(command, config_required=False)
        command.add_argument("--model", metavar="DIR", help="the saved learner (model.path)")
        command.add_argument("--data", metavar="PATH", help=f"parquet data ({name}.data)")
        command.add_argument(
            "--output",
            metavar="PATH",
            help="CATE parquet directory (predict.output)"
            if name == "predict"
            else "also write the scores to this JSON file (evaluate.output)",
        )
        command.add_argument(
            "--in-sample",
            action="store_true",
            help=f"the data is exactly the training data ({name}.is_oos=false)",
        )
        command.add_argument(
            "--oos-method", choices=["overall", "mean", "median"], help=f"{name}.oos_method"
        )
        command.add_argument(
            "--trusted", action="store_true", help="load pickled models and untrusted types"
        )
        if name == "predict":
            command.add_argument(
                "--keep",
                metavar="COLUMN",
                action="append",
                help="a column of the data to write before the CATE (repeatable)",
            )
            command.add_argument(
                "--overwrite", action="store_true", help="replace an existing output"
            )

    demo = sub.add_parser(
        "demo",
        help="fit a learner on generated data on an embedded LocalCluster",
        description="Fit a T-learner with LightGBM on generated data on an embedded "
        "LocalCluster and print the RMSE against the true CATE.",
    )
    demo.add_argument("--rows", type=int, default=200_000)
    demo.add_argument("--features", type=int, default=20)
    demo.add_argument("--variants", type=int, default=3)
    demo.add_argument("--folds", type=int, default=5)
    demo.add_argument("--workers", type=int, default=1)
    demo.add_argument("--threads", type=int, default=2)
    demo.add_argument("--seed", type=int, default=0)
    return parser


def _one_line(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, JobError) else f"{type(exc).__name__}: {exc}"
    notes = [n for n in getattr(exc, "__notes__", []) if isinstance(n, str)]
    if notes:
        text += " (" + "; ".join(notes) + ")"
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "verbose", False):
        logging.getLogger("dask_meta").setLevel(logging.INFO)
    if args.command != "demo":
        logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        if args.command == "demo":
            return _demo(args)
        job = read_job(args.config, [*args.overrides, *_flag_overrides(args)])
        run = {"fit": _fit, "predict": _predict, "evaluate": _evaluate}[args.command]
        return run(job, args)
    except JobError as exc:
        print(f"dask-meta {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dask-meta {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one-line reason, non-zero exit
        print(f"dask-meta {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
