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

Modules: :mod:`~dask_meta.cli.schema` (the job file and its keys),
:mod:`~dask_meta.cli.build` (the learner and data a job describes),
:mod:`~dask_meta.cli.commands` (the commands), :mod:`~dask_meta.cli.arguments` (the
argument parser) and :mod:`~dask_meta.cli.console` (:func:`main`, the console script).
See ``docs/cli.md`` for the job keys and flags.
"""

from dask_meta.cli.arguments import build_parser
from dask_meta.cli.build import build_learner, learner_class, resolve_estimator
from dask_meta.cli.console import main
from dask_meta.cli.schema import JOB_KEYS, JobError, apply_override, parse_value, read_job

__all__ = [
    "JOB_KEYS",
    "JobError",
    "apply_override",
    "build_learner",
    "build_parser",
    "learner_class",
    "main",
    "parse_value",
    "read_job",
    "resolve_estimator",
]
