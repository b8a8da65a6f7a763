"""The job: what a job file may hold, reading it, ``--set`` overrides and typed look-ups.

A job is a TOML file of the sections in :data:`JOB_KEYS`; every key can be overridden on
the command line with ``--set section.key=VALUE`` (VALUE is read as TOML, else taken as a
string). Everything wrong with a job raises :class:`JobError` before any cluster starts.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
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


class JobError(ValueError):
    """A problem with the job itself, found before any cluster work (exit code 2)."""


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


def job_value(job: dict[str, Any], section: str, key: str, default: Any = None) -> Any:
    """``section.key`` of the job, or ``default``."""
    return job.get(section, {}).get(key, default)


def required_value(job: dict[str, Any], section: str, key: str) -> Any:
    """``section.key`` of the job; a :class:`JobError` naming the key if it is missing."""
    value = job_value(job, section, key)
    if value is None:
        raise JobError(f"the job needs {section}.{key} ({JOB_KEYS[section][key]})")
    return value


def checked_type(value: Any, kind: type | tuple[type, ...], name: str) -> Any:
    """``value`` if it is a ``kind`` (a bool is not an int); else a :class:`JobError`."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        expected = (
            kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        )
        raise JobError(f"{name} must be {expected}, got {value!r}")
    return value
