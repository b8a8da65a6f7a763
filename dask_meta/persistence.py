"""Saving and loading fitted learners: ``learner.save(path)`` and ``dask_meta.load(path)``.

A saved learner is a directory (a local path or an fsspec URL)::

    manifest.json                 format, package versions, learner class, configuration,
                                  fold strategy, the rest of the learner's state, and the
                                  sha256 checksum of every other file
    models/<kind>-<i>-fold<k>.skops, models/<kind>-<i>-overall.skops
                                  the fitted base models (``.pkl`` when pickled)
    objects/<n>.skops             configuration values JSON cannot hold (e.g. an estimator
                                  instance passed as a parameter)
    folds/<c>/part.<p>.parquet    the fold assignment of the training data: the treatment
                                  and fold ids per row, one file per training partition

**Safety.** Models are stored with `skops <https://skops.readthedocs.io>`_, which loads
without running arbitrary code: a file holding types outside an allow-list is refused
unless the caller trusts them. Trusted by default: skops' own defaults (scikit-learn, numpy,
scipy), :data:`TRUSTED_TYPES` (LightGBM's and XGBoost's scikit-learn models and boosters,
dask-ml's GLMs, dask-meta's wrapper) and, for the estimator classes named in the manifest,
the packages in :data:`TRUSTED_MODULES`. ``load(path, trusted=["pkg.mod.Type"])`` trusts
more types; ``trusted=True`` trusts everything. A model skops cannot store is pickled only
when ``save`` gets ``trusted=True``, and loading pickled files then needs ``trusted=True``.

**Integrity.** Every file's sha256 is in the manifest and is checked at load (fold files
again by the workers each time they read them); the manifest carries a checksum of its own
content (:func:`manifest_checksum`). A changed file raises :class:`ChecksumError`. The
checksums detect corruption and edits, they are not a signature: trust comes from the
allow-list above, not from the checksums. Loading under other versions of the packages
recorded in the manifest warns (:class:`VersionWarning`).

**In-sample prediction after loading.** A fitted learner predicts its training rows
(``is_oos=False``) with the fold models that did not see them, which needs each row's fold
and treatment. ``save`` writes them from the workers (a few bytes per row; the training
data is read once more from its source, so it must still be readable, and the path must be
reachable by the workers); the loaded learner then gives the same in-sample predictions as
before, and checks as before that X is exactly the training data (partitions, lengths and a
fingerprint of the values). ``save(..., folds=False)`` skips this: the loaded learner then
predicts out of sample only and ``is_oos=False`` raises an error saying why.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import io
import json
import math
import os
import pickle
import platform
import re
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from dask_meta import runtime
from dask_meta.crossfit import CrossFitEstimator
from dask_meta.data import Columns, partitions
from dask_meta.factories import flatten
from dask_meta.folds import SplitRef, SplitRequest
from dask_meta.plan import Plan
from dask_meta.registry import is_learner, is_learner_class
from dask_meta.staging import StagedDirectory
from dask_meta.training import FitContext

FORMAT = "dask-meta-learner"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"

#: types dask-meta trusts in skops files on top of skops' defaults (``module.qualname``)
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "collections.OrderedDict",
        "lightgbm.basic.Booster",
        "lightgbm.sklearn.LGBMRegressor",
        "lightgbm.sklearn.LGBMClassifier",
        "xgboost.core.Booster",
        "xgboost.sklearn.XGBRegressor",
        "xgboost.sklearn.XGBClassifier",
        "dask_ml.linear_model.glm.LinearRegression",
        "dask_ml.linear_model.glm.LogisticRegression",
        "dask_ml.linear_model.glm.PoissonRegression",
        "dask_meta.backends.NumpyInput",
        "dask_meta.utils.FixedBinaryPropensity",
    }
)

#: packages whose classes may be named in a manifest (estimator factories, the learner)
TRUSTED_MODULES: tuple[str, ...] = ("sklearn", "lightgbm", "xgboost", "dask_ml", "dask_meta")

#: distributions whose versions every manifest records
_CORE_DISTRIBUTIONS = (
    "dask-meta",
    "dask",
    "distributed",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "skops",
    "lightgbm",
)

_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A file of a saved learner differs from what its manifest recorded."""


class UntrustedError(ValueError):
    """A saved learner holds types (or pickled files) the caller did not trust."""


class VersionWarning(UserWarning):
    """A learner is loaded under other package versions than it was saved with."""


# --- checksums ------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """The sha256 of a manifest's content (without its own ``checksum`` entry).

    Computed over the canonical JSON form (sorted keys, no spaces), so that the manifest can
    be read and re-written by other tools without changing it.
    """
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return _sha256(text.encode())


# --- trust ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Trust:
    everything: bool
    extra: frozenset[str]

    @classmethod
    def of(cls, trusted: bool | Iterable[str]) -> _Trust:
        if isinstance(trusted, bool):
            return cls(trusted, frozenset())
        if isinstance(trusted, str):
            raise TypeError(
                f"trusted must be a bool or a list of type names, got the string {trusted!r}; "
                f"pass [{trusted!r}]"
            )
        return cls(False, frozenset(str(t) for t in trusted))

    def type_ok(self, name: str) -> bool:
        return self.everything or name in TRUSTED_TYPES or name in self.extra

    def class_ok(self, name: str) -> bool:
        return self.type_ok(name) or name.split(".")[0] in TRUSTED_MODULES


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# --- writing ----------------------------------------------------------------------------------


@dataclass
class _Writer:
    """Encodes a learner's state as JSON plus files held in memory until written."""

    trusted: bool
    files: dict[str, bytes] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    modules: set[str] = field(default_factory=set)
    contexts: list[Any] = field(default_factory=list)
    n_objects: int = 0

    def store(self, obj: Any, stem: str, what: str) -> dict[str, str]:
        """Store one object (a fitted model) with skops, or pickle when trusted."""
        import skops.io

        self.modules.add(type(obj).__module__)
        try:
            data = skops.io.dumps(obj)
            # reload: skops writes some objects it cannot read back (e.g. enum members)
            skops.io.loads(data, trusted=skops.io.get_untrusted_types(data=data))
        except Exception as exc:
            if not self.trusted:
                raise TypeError(
                    f"{what} ({_type_name(type(obj))}) cannot be stored with skops "
                    f"({type(exc).__name__}: {exc}); save(..., trusted=True) stores it with "
                    "pickle, and loading it then needs load(..., trusted=True)"
                ) from exc
            name = f"{stem}.pkl"
            self.files[name] = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
            self.formats[name] = "pickle"
            return {"__model__": name, "format": "pickle"}
        name = f"{stem}.skops"
        self.files[name] = data
        self.formats[name] = "skops"
        return {"__model__": name, "format": "skops"}

    def encode(self, value: Any, where: str) -> Any:
        """JSON for plain values; files for models and anything JSON cannot hold."""

        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, list):
            return [self.encode(v, f"{where}.{i}") for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, where) for v in value]}
        if isinstance(value, set | frozenset):
            items = sorted(value, key=repr)
            return {"__set__": [self.encode(v, where) for v in items]}
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: self.encode(v, f"{where}.{k}") for k, v in value.items()}
            return {
                "__dict__": [
                    [self.encode(k, where), self.encode(v, f"{where}[{k!r}]")]
                    for k, v in value.items()
                ]
            }
        if isinstance(value, type):
            self.modules.add(value.__module__)
            return {"__class__": f"{value.__module__}:{value.__qualname__}"}
        if isinstance(value, functools.partial) and isinstance(flatten(value, {})[0], type):
            # a factory such as partial(LGBMRegressor, n_estimators=5): its class and
            # arguments, loaded as the class is (no pickle, the same trust)
            return {
                "__partial__": self.encode(value.func, where),
                "args": self.encode(list(value.args), f"{where}.args"),
                "keywords": self.encode(dict(value.keywords), f"{where}.keywords"),
            }
        if isinstance(value, np.generic) and value.dtype.kind in "biuU":
            return {"__scalar__": value.item(), "dtype": str(value.dtype)}
        if isinstance(value, np.ndarray) and _plain_array(value):
            return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
        if isinstance(value, pd.DataFrame) and _plain_frame(value):
            return {
                "__frame__": {
                    "columns": [self.encode(c, where) for c in value.columns],
                    "dtypes": [str(t) for t in value.dtypes],
                    "data": [self.encode(value[c].tolist(), where) for c in value.columns],
                    "attrs": self.encode(dict(value.attrs), where),
                }
            }
        if isinstance(value, FitContext):
            for i, context in enumerate(self.contexts):
                if context is value:
                    return {"__context__": i}
            self.contexts.append(value)
            return {"__context__": len(self.contexts) - 1}
        if isinstance(value, CrossFitEstimator):
            return self.crossfit(value, _stem(where))
        if is_dataclass(value) and type(value) in _dataclasses():
            return {
                "__dataclass__": f"{type(value).__module__}:{type(value).__qualname__}",
                "fields": {
                    f.name: self.encode(getattr(value, f.name), f"{where}.{f.name}")
                    for f in fields(value)
                },
            }
        self.n_objects += 1
        stored = self.store(value, f"objects/{self.n_objects}", f"the value of {where}")
        return {"__object__": stored["__model__"], "format": stored["format"]}

    def crossfit(self, cfe: Any, stem: str) -> dict[str, Any]:
        # the whole context (``__getstate__`` ships a slim one to the workers): the saved
        # fold assignment is its fold frame
        state = dict(cfe.__getstate__(), _context=cfe._context)
        models = state.pop("_estimators")
        overall = state.pop("_overall_estimator")
        encoded = {k: self.encode(v, f"{stem}.{k}") for k, v in state.items()}
        encoded["_estimators"] = [
            self.store(m, f"models/{stem}-fold{k}", f"fold model {k} of {stem}")
            for k, m in enumerate(models)
        ]
        encoded["_overall_estimator"] = (
            None
            if overall is None
            else self.store(overall, f"models/{stem}-overall", f"the overall model of {stem}")
        )
        return {"__crossfit__": encoded}


def _stem(where: str) -> str:
    """A file name stem from an attribute path: ``_nuisance_models.kind.0`` ->
    ``nuisance_models-kind-0``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", where.lstrip("_").replace(".", "-"))


def _plain_array(a: np.ndarray) -> bool:
    if a.dtype.kind in "biuU":
        return True
    return a.dtype.kind == "f" and bool(np.isfinite(a).all())


def _plain_frame(frame: pd.DataFrame) -> bool:
    return (
        isinstance(frame.index, pd.RangeIndex)
        and frame.index.start == 0
        and frame.index.step == 1
        and frame.columns.is_unique
    )


def _dataclasses() -> dict[type, str]:
    """dask-meta's own small value types that a manifest may name."""

    return {
        Columns: "columns",
        SplitRef: "split",
        SplitRequest: "split request",
        Plan: "parallelism plan",
    }


def _write_fold_part(part: pd.DataFrame, url: str, storage_options: dict) -> tuple[str, int, int]:
    """Write one partition of a fold frame (runs on a worker); its sha256, size and rows."""
    import fsspec

    buffer = io.BytesIO()
    part.reset_index(drop=True).to_parquet(buffer, index=False)
    data = buffer.getvalue()
    with fsspec.open(url, "wb", **storage_options) as f:
        f.write(data)
    return _sha256(data), len(data), len(part)


def _read_fold_part(url: str, sha256: str, storage_options: dict) -> pd.DataFrame:
    """Read one partition of a saved fold frame (runs on a worker), checking its sha256."""
    import fsspec

    with fsspec.open(url, "rb", **storage_options) as f:
        data = f.read()
    if _sha256(data) != sha256:
        raise ChecksumError(
            f"{url} changed after the learner was saved (sha256 mismatch); the fold "
            "assignment is not the one the models were fitted with"
        )
    return pd.read_parquet(io.BytesIO(data))


def _versions(modules: Iterable[str]) -> dict[str, str]:
    by_module = importlib.metadata.packages_distributions()
    names = set(_CORE_DISTRIBUTIONS)
    for module in modules:
        names |= set(by_module.get(module.split(".")[0], ()))
    out = {"python": platform.python_version()}
    for name in sorted(names):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _fs(path: str | os.PathLike[str], storage_options: dict | None) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(os.fspath(path), **(storage_options or {}))
    return fs, str(root).rstrip("/")


def save(
    learner: Any,
    path: str | os.PathLike[str],
    *,
    trusted: bool = False,
    folds: bool = True,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Save a fitted learner to the directory ``path`` (local or an fsspec URL).

    ``trusted=True`` lets models that skops cannot store be pickled (loading them then needs
    ``load(..., trusted=True)``). ``folds`` writes the fold assignment of the training data
    from the workers, so that the loaded learner predicts in-sample (``is_oos=False``) as
    this one does (module docstring). The save is all or nothing: the files go to a hidden
    sibling directory, which replaces ``path`` once complete; if saving fails, the sibling
    is removed and ``path`` is as it was. An existing non-empty ``path`` is refused unless
    ``overwrite=True``, which replaces it whole.
    Returns ``path`` as a string.
    """
    if not is_learner(learner):
        raise TypeError(f"save needs a dask_meta learner, got {type(learner).__name__}")
    if learner._fit_context is None:
        raise ValueError(
            f"This {type(learner).__name__} is not fitted yet; call fit before saving it."
        )
    if not isinstance(trusted, bool):
        raise TypeError(f"trusted must be True or False when saving, got {trusted!r}")
    # everything but the fold files is encoded in memory first: a model that cannot be
    # stored fails here, before anything is written
    writer = _Writer(trusted=trusted)
    state = dict(learner.__getstate__())
    public = {k: v for k, v in state.items() if not k.startswith("_")}
    private = {k: v for k, v in state.items() if k.startswith("_")}
    configuration = {k: writer.encode(v, k) for k, v in public.items()}
    encoded_state = {k: writer.encode(v, k) for k, v in private.items()}
    contexts = [
        {
            "columns": writer.encode(c.columns, "columns"),
            "lengths": [int(n) for n in c.lengths],
            "fingerprints": [int(f) for f in c.fingerprints],
            "folds": None,
        }
        for c in writer.contexts
    ]
    writer.modules.add(type(learner).__module__)

    # every file goes to a hidden sibling, which replaces ``path`` once complete: a failure
    # leaves ``path`` as it was (a learner loaded from ``path`` reads its fold files from
    # there while they are copied)
    target = StagedDirectory.claim(path, storage_options, overwrite)
    fs, root = target.fs, target.staging
    try:
        checksums: dict[str, dict[str, Any]] = {}
        for name, data in writer.files.items():
            fs.makedirs(f"{root}/{os.path.dirname(name)}", exist_ok=True)
            fs.pipe_file(f"{root}/{name}", data)
            checksums[name] = {
                "sha256": _sha256(data),
                "bytes": len(data),
                "format": writer.formats[name],
            }
        if folds:
            for i, (context, spec) in enumerate(zip(writer.contexts, contexts, strict=True)):
                spec["folds"] = _save_folds(
                    learner, context, i, fs, root, storage_options or {}, checksums
                )
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": _versions(writer.modules),
            "learner": {
                "class": f"{type(learner).__module__}:{type(learner).__qualname__}",
                "configuration": configuration,
                "state": encoded_state,
            },
            "fold_strategy": {
                "strategy": learner.fold_strategy,
                "fold_key": learner.fold_key,
                "seed": learner._seed,
                "folds_saved": bool(folds),
            },
            "contexts": contexts,
            "files": checksums,
        }
        manifest["checksum"] = manifest_checksum(manifest)
        text = json.dumps(manifest, indent=1, allow_nan=False)
        fs.pipe_file(f"{root}/{MANIFEST}", text.encode())
    except BaseException:
        target.abandon()
        raise
    target.commit()
    return os.fspath(path)


def _save_folds(
    learner: Any,
    context: Any,
    number: int,
    fs: Any,
    root: str,
    storage_options: dict,
    checksums: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Write a fit context's fold frame from the workers, one file per training partition."""

    client = learner._predict_client()
    fold_frame = context.folds_for(client)
    meta = fold_frame._meta
    token = runtime.new_token()
    names = [f"folds/{number}/part.{i:06d}.parquet" for i in range(len(context.lengths))]
    parts = partitions(fold_frame)
    if len(parts) != len(names):
        raise ValueError(
            f"the fold assignment has {len(parts)} partitions where the training data had "
            f"{len(names)}; save(..., folds=False) saves the learner without it"
        )
    fs.makedirs(f"{root}/folds/{number}", exist_ok=True)
    tasks = [
        dask.delayed(_write_fold_part, pure=False)(
            part,
            fs.unstrip_protocol(f"{root}/{name}"),
            storage_options,
            dask_key_name=runtime.task_key("save-folds", i, token),
        )
        for i, (part, name) in enumerate(zip(parts, names, strict=True))
    ]
    try:
        written = runtime.gather_tasks(client, tasks)
    except Exception as exc:
        exc.add_note(
            "dask_meta: writing the fold assignment reads the training data again from its "
            "source; save(..., folds=False) saves the learner without it (out-of-sample "
            "prediction only)"
        )
        raise
    for name, (sha, size, rows), expected in zip(names, written, context.lengths, strict=True):
        if rows != expected:
            raise ValueError(
                f"a partition of the training data has {rows} rows now where it had "
                f"{expected} at fit time: the data changed since fit"
            )
        checksums[name] = {"sha256": sha, "bytes": size, "format": "parquet"}
    return {"files": names, "dtypes": {str(c): str(t) for c, t in meta.dtypes.items()}}


# --- reading ---------------------------------------------------------------------------------


@dataclass
class _Reader:
    fs: Any
    root: str
    trust: _Trust
    manifest: dict[str, Any]
    storage_options: dict[str, Any]
    contexts: list[Any] = field(default_factory=list)
    modules: set[str] = field(default_factory=set)

    def read(self, name: str) -> bytes:
        data = self.fs.cat_file(f"{self.root}/{name}")
        if _sha256(data) != self.manifest["files"][name]["sha256"]:
            raise ChecksumError(f"{name} changed after the learner was saved (sha256 mismatch)")
        return bytes(data)

    def model(self, name: str, fmt: str) -> Any:
        import skops.io

        if name not in self.manifest["files"]:
            raise ChecksumError(f"{name} is not listed in {MANIFEST}")
        data = self.read(name)
        if fmt == "pickle" or self.manifest["files"][name].get("format") == "pickle":
            if not self.trust.everything:
                raise UntrustedError(
                    f"{name} was saved with pickle (save(..., trusted=True): skops could not "
                    "store that model); loading pickle can run arbitrary code, so it needs "
                    "load(..., trusted=True), only for files from a source you trust"
                )
            return pickle.loads(data)
        untrusted = skops.io.get_untrusted_types(data=data)
        refused = [t for t in untrusted if not self.trust.type_ok(t)]
        if refused:
            raise UntrustedError(
                f"{name} holds types dask_meta does not trust by default: {refused}; if you "
                f"trust them, pass load(..., trusted={refused!r}) (or trusted=True)"
            )
        return skops.io.loads(data, trusted=untrusted)

    def cls(self, ref: str) -> type:
        module, _, qualname = ref.partition(":")
        name = f"{module}.{qualname}"
        if not self.trust.class_ok(name):
            raise UntrustedError(
                f"{MANIFEST} names the class {name}, outside the packages dask_meta trusts "
                f"{list(TRUSTED_MODULES)}; if you trust it, pass load(..., trusted=[{name!r}]) "
                "(or trusted=True)"
            )
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        if not isinstance(obj, type):
            raise TypeError(f"{name} in {MANIFEST} is not a class")
        self.modules.add(module)
        return obj

    def decode(self, value: Any) -> Any:

        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if not isinstance(value, dict):
            raise ValueError(f"{MANIFEST} holds an unexpected value {value!r}")
        if "__float__" in value:
            return float(value["__float__"])
        if "__tuple__" in value:
            return tuple(self.decode(v) for v in value["__tuple__"])
        if "__set__" in value:
            return {self.decode(v) for v in value["__set__"]}
        if "__dict__" in value:
            return {self.decode(k): self.decode(v) for k, v in value["__dict__"]}
        if "__class__" in value:
            return self.cls(value["__class__"])
        if "__partial__" in value:
            return functools.partial(
                self.decode(value["__partial__"]),
                *self.decode(value["args"]),
                **self.decode(value["keywords"]),
            )
        if "__scalar__" in value:
            return np.dtype(value["dtype"]).type(value["__scalar__"])
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"])
        if "__frame__" in value:
            spec = value["__frame__"]
            columns = [self.decode(c) for c in spec["columns"]]
            frame = pd.DataFrame(
                {c: self.decode(d) for c, d in zip(columns, spec["data"], strict=True)},
                columns=columns,
            )
            for c, dtype in zip(columns, spec["dtypes"], strict=True):
                if dtype != "object" and str(frame[c].dtype) != dtype:
                    frame[c] = frame[c].astype(dtype)
            frame.attrs.update(self.decode(spec["attrs"]))
            return frame
        if "__context__" in value:
            return self.contexts[value["__context__"]]
        if "__model__" in value:
            return self.model(value["__model__"], value.get("format", "skops"))
        if "__object__" in value:
            return self.model(value["__object__"], value.get("format", "skops"))
        if "__dataclass__" in value:
            module, _, qualname = value["__dataclass__"].partition(":")
            allowed = {f"{c.__module__}:{c.__qualname__}": c for c in _dataclasses()}
            if value["__dataclass__"] not in allowed:
                raise UntrustedError(f"{MANIFEST} names an unknown type {module}.{qualname}")
            kwargs = {k: self.decode(v) for k, v in value["fields"].items()}
            return allowed[value["__dataclass__"]](**kwargs)
        if "__crossfit__" in value:
            cfe = CrossFitEstimator.__new__(CrossFitEstimator)
            cfe.__dict__.update({k: self.decode(v) for k, v in value["__crossfit__"].items()})
            return cfe
        return {k: self.decode(v) for k, v in value.items()}

    def context(self, spec: dict[str, Any]) -> Any:

        columns = self.decode(spec["columns"])
        lengths = tuple(int(n) for n in spec["lengths"])
        fingerprints = tuple(int(f) for f in spec["fingerprints"])
        folds = spec.get("folds")
        if folds is None:
            fold_frame: Any = _MissingFolds()
        else:
            meta = pd.DataFrame(
                {c: pd.Series(dtype=t) for c, t in folds["dtypes"].items()},
            )
            names = folds["files"]
            fold_frame = dd.from_map(
                _read_fold_part,
                [self.fs.unstrip_protocol(f"{self.root}/{name}") for name in names],
                [self.manifest["files"][name]["sha256"] for name in names],
                storage_options=self.storage_options,
                meta=meta,
                divisions=[None] * (len(names) + 1),
                label="dask_meta-saved-folds",
                enforce_metadata=False,
            )
        return FitContext(columns, fold_frame, lengths, fingerprints)


class _MissingFolds:
    """Stands in for the fold frame of a learner saved with ``folds=False``."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise ValueError(
            "this learner was saved without the fold assignment of its training data "
            "(save(..., folds=False)), so it cannot predict in-sample (is_oos=False); use "
            "is_oos=True, or save it again with folds=True"
        )

    def __repr__(self) -> str:
        return "<fold assignment not saved>"


def _verify(fs: Any, root: str, manifest: dict[str, Any]) -> None:
    """Check every file against its recorded sha256 (streamed: constant memory)."""
    for name, entry in sorted(manifest["files"].items()):
        full = f"{root}/{name}"
        if not fs.exists(full):
            raise ChecksumError(f"{name}, listed in {MANIFEST}, is missing")
        digest = hashlib.sha256()
        with fs.open(full, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != entry["sha256"]:
            raise ChecksumError(f"{name} changed after the learner was saved (sha256 mismatch)")


def _check_versions(saved: dict[str, str]) -> None:
    now = _versions(())
    differences = []
    for name, version in sorted(saved.items()):
        current = now.get(name)
        if current is None and name != "python":
            try:
                current = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                current = "not installed"
        if current != version:
            differences.append(f"{name} {version} (now {current})")
    if differences:
        warnings.warn(
            "this learner was saved under other package versions: "
            + ", ".join(differences)
            + "; its models may load differently or predict other values",
            VersionWarning,
            stacklevel=3,
        )


def read_manifest(
    path: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The manifest of a saved learner, its own checksum verified (files are not read)."""
    fs, root = _fs(path, storage_options)
    full = f"{root}/{MANIFEST}"
    if not fs.exists(full):
        if not fs.exists(root):
            raise FileNotFoundError(f"{path} does not exist")
        raise FileNotFoundError(f"{path} is not a saved dask_meta learner (no {MANIFEST})")
    try:
        manifest = json.loads(fs.cat_file(full))
    except json.JSONDecodeError as exc:
        raise ChecksumError(f"{MANIFEST} of {path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a saved dask_meta learner ({MANIFEST} has no format)")
    if manifest.get("checksum") != manifest_checksum(manifest):
        raise ChecksumError(f"{MANIFEST} of {path} changed after saving (checksum mismatch)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} was saved in format version {manifest.get('format_version')}; this "
            f"dask_meta reads version {FORMAT_VERSION}"
        )
    return manifest


def load(
    path: str | os.PathLike[str],
    *,
    trusted: bool | Sequence[str] = False,
    storage_options: dict[str, Any] | None = None,
) -> Any:
    """Load a learner saved with :func:`save` / ``learner.save(path)``.

    Every file is checked against the manifest's sha256 first (:class:`ChecksumError`).
    ``trusted``: ``False`` (default) loads only the types dask-meta trusts (module
    docstring); a list of type names (``"module.Class"``) trusts those too; ``True``
    trusts everything, pickled models included. Other package versions than at saving time
    give a :class:`VersionWarning`. The learner has no client: it uses the default client
    (or the embedded cluster) when it predicts.
    """
    trust = _Trust.of(trusted)
    manifest = read_manifest(path, storage_options=storage_options)
    fs, root = _fs(path, storage_options)
    _verify(fs, root, manifest)
    reader = _Reader(fs, root, trust, manifest, dict(storage_options or {}))
    learner_cls: Any = reader.cls(manifest["learner"]["class"])
    if not is_learner_class(learner_cls):
        raise TypeError(f"{learner_cls.__name__} in {MANIFEST} is not a dask_meta learner")
    reader.contexts = [reader.context(c) for c in manifest["contexts"]]
    _check_versions(manifest["versions"])
    learner = learner_cls.__new__(learner_cls)
    state = {k: reader.decode(v) for k, v in manifest["learner"]["configuration"].items()}
    state |= {k: reader.decode(v) for k, v in manifest["learner"]["state"].items()}
    learner.__dict__.update(state)
    return learner
