"""From a job to the objects it describes: the learner, the parquet data and its columns,
and the saved learner of ``model.path``.

Model factories are import paths of installed packages (``module.Class`` or
``module:Class``) naming an estimator class; anything else, like a missing file or column,
raises :class:`~dask_meta.cli.schema.JobError` before any cluster work.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import re
from collections.abc import Sequence
from typing import Any

from dask_meta.cli.schema import JobError, checked_type, job_value, required_value

#: constructor arguments a job cannot give (objects, or not supported from a file)
_NOT_FROM_FILE = {"fitted_nuisance_models", "fitted_propensity_model", "client"}

_LEARNERS = {"S": "SLearner", "T": "TLearner", "X": "XLearner", "R": "RLearner", "DR": "DRLearner"}

_MODULE_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


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
    """The learner class of ``learner.type`` (``"T"``, ``"TLearner"``, ...)."""
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


def load_learner(job: dict[str, Any]) -> Any:
    """The saved learner of ``model.path`` (only trusted types unless ``model.trusted``)."""
    from dask_meta.persistence import load

    path = required_value(job, "model", "path")
    trusted = job_value(job, "model", "trusted", False)
    if not isinstance(trusted, bool | list):
        raise JobError(f"model.trusted must be true/false or a list of type names, got {trusted!r}")
    try:
        return load(
            path, trusted=trusted, storage_options=job_value(job, "model", "storage_options")
        )
    except FileNotFoundError as exc:
        raise JobError(str(exc)) from None


def fitted_features(learner: Any) -> list[Any]:
    """The feature columns a fitted learner was fitted on."""
    return list(learner._fit_context.columns.names)


def oos_options(job: dict[str, Any], section: str) -> tuple[bool, str]:
    """``is_oos`` and ``oos_method`` of ``[predict]`` or ``[evaluate]``, checked."""
    is_oos = checked_type(job_value(job, section, "is_oos", True), bool, f"{section}.is_oos")
    method = job_value(job, section, "oos_method", "overall")
    if method not in ("overall", "mean", "median"):
        raise JobError(f"{section}.oos_method must be overall, mean or median, got {method!r}")
    return is_oos, method


# --- data -----------------------------------------------------------------------------------


def read_parquet(path: Any, storage_options: Any, what: str) -> Any:
    """A lazy Dask DataFrame of parquet data (only metadata is read here)."""
    import dask.dataframe as dd

    if not isinstance(path, str) or not path:
        raise JobError(f"{what} must be a parquet path or URL, got {path!r}")
    options = checked_type(storage_options or {}, dict, f"{what} storage_options")
    try:
        return dd.read_parquet(path, storage_options=options or None)
    except FileNotFoundError:
        raise JobError(f"{what} {path} does not exist") from None
    except Exception as exc:
        raise JobError(f"{what} {path} cannot be read as parquet: {exc}") from exc


def check_columns(frame: Any, columns: Sequence[Any], what: str, path: str) -> None:
    """A :class:`JobError` naming the first of ``columns`` that ``frame`` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise JobError(
            f"{what}: column {missing[0]!r} is not in {path} (it has {list(frame.columns)})"
        )


def training_columns(job: dict[str, Any], frame: Any, path: str) -> tuple[list[str], str, str]:
    """The features, outcome and treatment columns of ``[data]``, checked against ``frame``."""
    outcome = checked_type(required_value(job, "data", "outcome"), str, "data.outcome")
    treatment = checked_type(required_value(job, "data", "treatment"), str, "data.treatment")
    features = job_value(job, "data", "features")
    exclude = checked_type(job_value(job, "data", "exclude", []), list, "data.exclude")
    if features is None:
        features = [c for c in frame.columns if c not in {outcome, treatment, *exclude}]
    else:
        features = checked_type(features, list, "data.features")
    if not features:
        raise JobError("data.features is empty: the learner needs at least one feature")
    check_columns(frame, [*features, outcome, treatment], "data", path)
    return list(features), outcome, treatment
