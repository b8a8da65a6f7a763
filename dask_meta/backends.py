"""Base-model backends: how one base model is fitted and used on worker data (DESIGN §6).

Three backends, chosen from the estimator class (:func:`backend_of`):

- ``local`` (any sklearn-like estimator): fitted inside one task, on the concatenated rows of
  that job, with its thread parameter and ``threadpoolctl`` set to the threads the task
  holds. The job's rows must fit in one worker's memory.
- ``stream`` (dask-ml ``Incremental`` around a ``partial_fit`` estimator): a chain of tasks,
  one per partition, each calling ``partial_fit`` on that partition's rows of the job. Only
  one partition of a job is in memory at a time: data of any size.
- ``collection`` (``lightgbm.dask.DaskLGBM*``, ``xgboost.dask.DaskXGB*``, dask-ml's
  ``LinearRegression``/``LogisticRegression``): the estimator's own distributed ``fit``,
  called from the client on a lazy Dask frame of the job's rows; the fitted model is turned
  into a local one for prediction. These run exclusively (gang trainers hang when they share
  workers with other fits, LightGBM#4942).

Everything that runs on workers is a small module-level function taking plain pandas/numpy,
so it pickles by reference and can be tested without a cluster.
"""

from __future__ import annotations

import contextlib
import inspect
import operator
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from dask_meta._constants import MEAN, MEDIAN, NOT_IN_SPLIT, OVERALL, W_COL

#: Names under which estimators take their thread count, in order of preference.
THREAD_PARAMS = ("n_jobs", "num_threads", "nthread", "thread_count", "n_threads")


def requested_threads(params: dict[str, Any]) -> int | None:
    """The thread count a user asked for in a model's params: ``None`` if unset, -1 = a worker."""
    for name in THREAD_PARAMS:
        value = params.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"model parameter {name}={value!r} must be an int")
        value = int(value)
        if value == -1 or value > 0:
            return value
        raise ValueError(
            f"model parameter {name}={value} is not supported: use a positive thread count "
            "or -1 for all threads of a worker"
        )
    return None


#: Libraries whose estimators run threads of their own unless told otherwise.
_THREADED_MODULES = (
    "lightgbm",
    "xgboost",
    "catboost",
    "sklearn.ensemble",
    "sklearn.neighbors",
    "dask_meta.models",  # hands its threads to the estimator it wraps
)


def thread_param_name(factory: type, params: dict[str, Any]) -> str | None:
    """The parameter through which ``factory`` takes its thread count, if it has one.

    The user's own choice wins; otherwise only estimators known to start threads of their
    own get one (others, such as scikit-learn's linear models, are capped by threadpoolctl
    alone; setting their deprecated ``n_jobs`` would only warn).
    """
    for name in THREAD_PARAMS:
        if name in params:
            return name
    if not factory.__module__.startswith(_THREADED_MODULES):
        return None
    try:
        accepted = set(factory().get_params(deep=False))
    except Exception:
        accepted = set(inspect.signature(factory).parameters)
    for name in THREAD_PARAMS:
        if name in accepted:
            return name
    return None


def fit_params_with_threads(
    factory: type, params: dict[str, Any], thread_param: str | None, threads: int
) -> dict[str, Any]:
    """A model's params for a fit with ``threads`` threads (run under ``threadpool_limits``).

    LightGBM keeps one thread count for its whole process: the last positive ``num_threads``
    any of its calls was given, used from then on by every call from every thread (fits,
    predictions, the model's pickling). Fits with different counts side by side, or a
    prediction beside a fit, change each other's threads, and OpenMP pools grow on threads
    that should run one. ``num_threads=0`` leaves that count unset: each call then uses its
    own thread's OpenMP setting, which ``threadpool_limits`` sets for the fit and the
    worker's environment (``OMP_NUM_THREADS=1``) sets everywhere else. ``n_jobs`` keeps the
    threads the fit was given, for the reader of the model's params.
    """
    out = dict(params)
    if thread_param is not None:
        out[thread_param] = threads
    if factory.__module__.startswith("lightgbm") and factory.__name__ in (
        "LGBMRegressor",
        "LGBMClassifier",
        "LGBMRanker",
        "LGBMModel",
    ):
        out["num_threads"] = 0
    return out


LOCAL = "local"
STREAM = "stream"
COLLECTION = "collection"


def backend_of(factory: type) -> str:
    """Which backend fits estimators of this class (see the module docstring)."""
    module, name = factory.__module__, factory.__name__
    if module.startswith("dask_ml.wrappers") and name == "Incremental":
        return STREAM
    if module.startswith("lightgbm") and name.startswith("DaskLGBM"):
        return COLLECTION
    if module.startswith("xgboost") and name.startswith("DaskXGB"):
        return COLLECTION
    if module.startswith("dask_ml.linear_model") and name in (
        "LinearRegression",
        "LogisticRegression",
        "PoissonRegression",
    ):
        return COLLECTION
    return LOCAL


def wrapped_estimator(factory: type, params: dict[str, Any]) -> Any:
    """The estimator a streaming wrapper (``Incremental(estimator=...)``) trains."""
    estimator = params.get("estimator")
    if estimator is None or not hasattr(estimator, "partial_fit"):
        raise TypeError(
            f"{factory.__name__} needs params={{'estimator': <estimator with partial_fit>}}, "
            f"got estimator={estimator!r}"
        )
    return estimator


def check_classes(factory: type, classes: np.ndarray, kind: str) -> None:
    """Reject a classifier that cannot learn these classes (before any fit)."""
    binary_only = factory.__module__.startswith("dask_ml.linear_model")
    if binary_only and (len(classes) != 2 or set(classes.tolist()) != {0, 1}):
        raise ValueError(
            f"the {kind} is dask-ml's {factory.__name__}, which learns two classes labelled 0 "
            f"and 1 only, but its target has the classes {classes.tolist()}; use a multi-class "
            "classifier (e.g. Incremental(SGDClassifier(loss='log_loss')) or "
            "lightgbm.dask.DaskLGBMClassifier)"
        )


def supports_sample_weight(factory: type, params: dict[str, Any] | None = None) -> bool:
    """Whether fits of this estimator class take a per-row ``sample_weight``."""
    backend = backend_of(factory)
    if backend == STREAM:
        inner = wrapped_estimator(factory, params or {})
        return "sample_weight" in inspect.signature(inner.partial_fit).parameters
    if backend == COLLECTION and factory.__module__.startswith("dask_ml"):
        return False  # dask-glm has no weights
    return "sample_weight" in inspect.signature(factory.fit).parameters  # type: ignore[attr-defined]


def is_categorical_aware(model: Any) -> bool:
    """Whether a model reads pandas ``category`` columns natively (metalearners' rule)."""
    name = type(model).__name__
    module = type(model).__module__
    if name in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"):
        return getattr(model, "categorical_features", None) == "from_dtype"
    if module.startswith("lightgbm") and name in ("LGBMClassifier", "LGBMRegressor"):
        return True
    if module.startswith("xgboost") and name in ("XGBClassifier", "XGBRegressor"):
        return bool(getattr(model, "enable_categorical", False))
    if module.startswith("glum"):
        return name in ("GeneralizedLinearRegressor", "GeneralizedLinearRegressorCV")
    return False


@dataclass(frozen=True)
class Design:
    """How the feature matrix a base model sees is built from a frame of rows.

    ``columns`` are training-frame columns (``()`` means one constant column, as
    metalearners does for ``feature_set=[]``); ``as_numpy`` hands the model a numpy array
    (numpy/Dask-array input) instead of a DataFrame. ``transform`` (optional, module-level)
    adds learner-specific columns such as the S-learner's treatment encoding; it gets the
    selected frame and the treatment vector.
    """

    columns: tuple[Any, ...]
    as_numpy: bool
    transform: Callable[..., Any] | None = None
    transform_args: tuple[Any, ...] = ()

    def matrix(self, frame: pd.DataFrame, w: np.ndarray | None = None) -> Any:
        if not self.columns and self.transform is None:
            return np.ones((len(frame), 1))
        X = frame[list(self.columns)]
        if self.transform is not None:
            return self.transform(X, w, self.as_numpy, *self.transform_args)
        return X.to_numpy() if self.as_numpy else X


@dataclass(frozen=True)
class RowSelection:
    """Which rows of the training frame a job trains on.

    ``variants``: keep rows whose treatment is in this set (``None``: all rows).
    ``fold_col``/``fold``: for a fold model, drop the rows of fold ``fold`` and the rows
    outside the split (fold id -1); for the overall model (``fold=None``) keep every row of
    the split.
    """

    variants: tuple[int, ...] | None = None
    fold_col: str | None = None
    fold: int | None = None

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        keep = np.ones(len(frame), dtype=bool)
        if self.variants is not None:
            keep &= np.isin(frame[W_COL].to_numpy(), self.variants)
        if self.fold_col is not None:
            folds = frame[self.fold_col].to_numpy()
            keep &= folds != NOT_IN_SPLIT
            if self.fold is not None:
                keep &= folds != self.fold
        return keep


@dataclass(frozen=True)
class FitSpec:
    """Everything one fit task needs, apart from the data."""

    factory: type
    params: dict[str, Any]
    design: Design
    target: str
    rows: RowSelection
    threads: int
    thread_param: str | None
    fit_params: dict[str, Any] = field(default_factory=dict)
    #: fit parameters given per row, read from these training-frame columns
    row_params: dict[str, str] = field(default_factory=dict)
    is_classifier: bool = False
    #: a classifier's classes, known from the first pass over the data (collection fits of
    #: models that do not record them)
    classes: np.ndarray | None = None
    #: key of the shared binned LightGBM Dataset this fit trains on (None: its own data)
    bins: str | None = None


@dataclass
class FitResult:
    model: Any
    n_rows: int
    worker: str | None
    start: float
    end: float
    classes: np.ndarray | None = None


# --- native thread pools: multi-threaded fits keep to a few OS threads --------------------
#
# OpenMP (libgomp, which LightGBM and XGBoost use) gives every OS thread that starts a
# parallel region a pool of its own. Once a worker's task threads have each started one, the
# process holds more OpenMP threads than the machine has cores, libgomp throttles its spin
# waits, and every multi-threaded fit of the process slows down for good: 2-thread LightGBM
# on 200k rows takes 2.0 to 3.7 s instead of 1.2 s after a second task thread has run one
# (1 x 2-thread worker, measured). Multi-threaded work therefore runs on a pool of
# ``worker threads // threads`` OS threads kept for it, never on the task threads themselves,
# so the OpenMP threads never outnumber the worker's threads.

_native_lock = threading.Lock()
_native_pool: tuple[int, ThreadPoolExecutor] | None = None
#: on a native pool's thread: its ``threads`` and the worker's ``worker_threads``
_native_local = threading.local()


def _worker_threads() -> int:
    """The threads of the worker this runs on (of the machine outside a worker)."""
    known = getattr(_native_local, "worker_threads", None)
    if known is not None:
        return int(known)
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ValueError, AttributeError):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def on_threads(threads: int, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, run on an OS thread kept for ``threads``-thread native work.

    One-thread work, and work asking for the threads of the native thread it is called
    from, runs in the calling thread. The task thread waits (it holds the ``threads``
    resource meanwhile); exceptions propagate as they are.
    """
    if threads <= 1 or threads == getattr(_native_local, "threads", None):
        return fn(*args)
    global _native_pool
    worker_threads = _worker_threads()
    with _native_lock:
        if _native_pool is None or _native_pool[0] != threads:
            if _native_pool is not None:
                # its threads end once their work is done, and their OpenMP pools with them
                _native_pool[1].shutdown(wait=False)
            slots = max(1, worker_threads // threads)
            _native_pool = (
                threads,
                ThreadPoolExecutor(slots, thread_name_prefix=f"dask-meta-{threads}-threads"),
            )
        pool = _native_pool[1]
    return pool.submit(_run_native, threads, worker_threads, fn, args).result()


def _run_native(threads: int, worker_threads: int, fn: Callable[..., Any], args: tuple) -> Any:
    _native_local.threads = threads
    _native_local.worker_threads = worker_threads
    return fn(*args)


def _current_worker() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except ValueError:
        return None


def aligned(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with memory-aligned column buffers (a copy only when needed).

    Partitions can arrive from another worker at unaligned byte offsets, and numpy sums in
    another order on unaligned buffers: results would differ in the last bit between runs.
    """
    for column in frame.columns:
        values = frame[column].to_numpy()
        if isinstance(values, np.ndarray) and not values.flags.aligned:
            return frame.copy(deep=True)
    return frame


def gather_rows(
    selection: RowSelection, parts: Sequence[pd.DataFrame], extra: Sequence[pd.DataFrame] = ()
) -> pd.DataFrame:
    """Concatenate the selected rows of all partitions, in partition order.

    ``extra`` holds per-partition frames of derived columns (same rows as ``parts``).
    """
    selected = []
    for i, part in enumerate(parts):
        if extra:
            part = pd.concat([part, extra[i].set_axis(part.index)], axis=1)
        keep = selection.mask(part)
        selected.append(part[keep] if not keep.all() else part)
    frame = pd.concat(selected, ignore_index=True) if len(selected) > 1 else selected[0]
    return aligned(frame.reset_index(drop=True))


def fit_local(spec: FitSpec, n_parts: int, *parts: pd.DataFrame) -> FitResult:
    """Fit one base model on its rows (runs on a worker, holding ``spec.threads`` threads).

    ``parts`` are the training frame's partitions followed, if present, by as many
    partitions of derived columns.
    """
    start = time.time()
    model, n_rows = on_threads(spec.threads, _fit_local, spec, n_parts, parts)
    classes = np.asarray(model.classes_) if spec.is_classifier else None
    return FitResult(model, n_rows, _current_worker(), start, time.time(), classes)


def _fit_local(spec: FitSpec, n_parts: int, parts: Sequence[pd.DataFrame]) -> tuple[Any, int]:
    if spec.bins is not None:
        main = list(parts[:n_parts])
        with _bins_lock:
            built = spec.bins in _bins
        if built:
            # this worker holds the binned features already: gather only the columns that
            # choose the rows and give the labels, not the feature matrix once more
            wanted = _label_columns(spec)
            main = [p[[c for c in p.columns if c in wanted]] for p in main]
        whole = gather_rows(RowSelection(), main, parts[n_parts:])
        keep = spec.rows.mask(whole)
        if not keep.any():
            raise ValueError(
                f"no training rows for {spec.factory.__name__} (target {spec.target}): the "
                "selection of rows for this model is empty"
            )
        return fit_binned(spec, whole, keep, template=parts[0].iloc[:0]), int(keep.sum())
    frame = gather_rows(spec.rows, parts[:n_parts], parts[n_parts:])
    if len(frame) == 0:
        raise ValueError(
            f"no training rows for {spec.factory.__name__} (target {spec.target}): the "
            "selection of rows for this model is empty"
        )
    X, y, fit_params = _training_arrays(spec, frame)
    params = fit_params_with_threads(spec.factory, spec.params, spec.thread_param, spec.threads)
    with threadpool_limits(limits=spec.threads):
        model = spec.factory(**params).fit(X, y, **fit_params)
    return model, len(frame)


def _training_arrays(spec: FitSpec, frame: pd.DataFrame) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """The feature matrix, target and fit parameters of a job's selected rows."""
    w = frame[W_COL].to_numpy() if W_COL in frame.columns else None
    X = spec.design.matrix(frame, w)
    y = frame[spec.target].to_numpy()
    fit_params = dict(spec.fit_params)
    for name, column in spec.row_params.items():
        fit_params[name] = frame[column].to_numpy()
    return X, y, fit_params


#: Libraries whose ``n_estimators`` counts trees or boosting rounds that each cost about the
#: same: their calibration fits grow at most this many, and the times are scaled up.
_ROUND_MODULES = ("lightgbm", "xgboost", "sklearn.ensemble")
CALIBRATION_ROUNDS = 20


def calibration_params(factory: type, params: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """A calibration fit's params and the factor its times are multiplied by.

    A tree ensemble of ``n_estimators`` rounds costs about ``n_estimators`` times one round
    (LightGBM, XGBoost, scikit-learn's forests and boosting; ``max_iter`` for scikit-learn's
    histogram gradient boosting, timed without early stopping), so it is timed with
    :data:`CALIBRATION_ROUNDS` of them and scaled by ``n_estimators / CALIBRATION_ROUNDS``;
    that also overstates the part of the fit that does not grow with the rounds (binning),
    which is small beside the rounds. Other models are timed as they are (factor 1), except
    :class:`~dask_meta.models.PairwisePropensityClassifier`, timed as its estimator would be.
    """
    inner = params.get("estimator")
    if factory.__module__ == "dask_meta.models" and inner is not None:
        inner_params, scale = calibration_params(type(inner), inner.get_params(deep=False))
        return {**params, "estimator": clone(inner).set_params(**inner_params)}, scale
    if not factory.__module__.startswith(_ROUND_MODULES):
        return dict(params), 1.0
    try:
        defaults = factory().get_params(deep=False)
    except Exception:
        defaults = {}
    # scikit-learn's histogram gradient boosting counts its rounds in max_iter
    name = "n_estimators" if "n_estimators" in {*params, *defaults} else "max_iter"
    rounds = params.get(name, defaults.get(name))
    if isinstance(rounds, bool) or not isinstance(rounds, int | np.integer):
        return dict(params), 1.0
    if rounds <= CALIBRATION_ROUNDS:
        return dict(params), 1.0
    timed = {**params, name: CALIBRATION_ROUNDS}
    if "early_stopping" in defaults:
        # every timed round runs, as the scaling assumes (a fit that stops early costs less)
        timed["early_stopping"] = False
    return timed, float(rounds) / CALIBRATION_ROUNDS


def calibrate_fit(
    spec: FitSpec, sizes: tuple[int, int], threads: int, seed: int, part: pd.DataFrame, *extra
) -> tuple[tuple[int, int], tuple[float, float], tuple[float, float], float] | None:
    """Time the base model on a sample of one partition (runs on a worker, holding it whole).

    Fits with one thread and with ``threads`` threads on ``sizes`` rows each (fewer if the
    partition's selection is smaller; the larger size the faster of two fits); tree
    ensembles grow fewer rounds and their times are scaled (:func:`calibration_params`), the
    factor is returned last. A :class:`~dask_meta.models.PairwisePropensityClassifier` is
    timed on its first pair, that time counted once per pair. ``None`` if the sample cannot
    be fitted (one class only, say): the cost model then goes without this model.
    """
    frame = gather_rows(spec.rows, [part], list(extra))
    if len(frame) < 2:
        return None
    X, y, fit_params = _training_arrays(spec, frame)
    order = np.random.default_rng(seed).permutation(len(frame))
    per_row = {name: len(frame) for name in spec.row_params}
    timed_params, scale = calibration_params(spec.factory, spec.params)
    pairwise = _is_pairwise(spec.factory)

    def timed(rows: int, n_threads: int) -> float:
        take = np.sort(order[:rows])
        params = fit_params_with_threads(spec.factory, timed_params, spec.thread_param, n_threads)
        model, labels, factor = spec.factory(**params), y[take], scale
        if pairwise:
            # its pairs cost about the same: the first one is timed for all of them
            model, in_pair, labels, n_pairs = model.first_pair(labels)
            take, factor = take[in_pair], scale * n_pairs
        X_rows = X.iloc[take] if hasattr(X, "iloc") else X[take]
        kwargs = {
            name: (value[take] if name in per_row else value) for name, value in fit_params.items()
        }
        start = time.perf_counter()
        with threadpool_limits(limits=n_threads):
            model.fit(X_rows, labels, **kwargs)
        return factor * (time.perf_counter() - start)

    def fastest(rows: int, n_threads: int) -> float:
        # the larger size's times set the per-row cost and the speedup: the faster of two
        return min(timed(rows, n_threads), timed(rows, n_threads))

    small, large = (min(s, len(frame)) for s in sizes)
    try:
        # imports and first-call costs (an OpenMP pool's start) stay out of the timings
        timed(min(small, 1_000), 1)
        seconds_1 = (timed(small, 1), fastest(large, 1))
        seconds_n = seconds_1
        if threads > 1:
            # where the fits will run: on the native pool's thread (see on_threads)
            on_threads(threads, timed, min(small, 1_000), threads)
            seconds_n = (
                on_threads(threads, timed, small, threads),
                on_threads(threads, fastest, large, threads),
            )
    except Exception:
        return None
    return (small, large), seconds_1, seconds_n, scale


# --- thread-seconds of a fit's per-partition work ----------------------------------------

#: per fit token: seconds this worker spent in the fit's per-partition tasks (the nuisance
#: predictions and derived targets of the treatment stage; one thread each)
_task_seconds: dict[str, float] = {}
_task_seconds_lock = threading.Lock()


def timed_task(fn: Callable[..., Any], token: str, /, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, its duration added to this worker's total for ``token``."""
    start = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        with _task_seconds_lock:
            _task_seconds[token] = _task_seconds.get(token, 0.0) + time.perf_counter() - start


def pop_task_seconds(token: str) -> float:
    """This worker's total for ``token``, forgotten (runs on every worker when a fit ends)."""
    with _task_seconds_lock:
        return _task_seconds.pop(token, 0.0)


# --- shared binned data for LightGBM (DESIGN §6 fast path) -----------------------------------

#: LightGBM parameters that only shape training, not the binned Dataset; models whose other
#: parameters agree share one binned Dataset of the training frame per worker and fit
#: (``random_state`` stays in: it seeds the sample the bin bounds come from)
_TRAINING_ONLY_PARAMS = frozenset(
    {
        "boosting_type",
        "class_weight",
        "colsample_bytree",
        "importance_type",
        "learning_rate",
        "max_depth",
        "min_child_weight",
        "min_split_gain",
        "n_estimators",
        "n_jobs",
        "num_leaves",
        "num_threads",
        "objective",
        "reg_alpha",
        "reg_lambda",
        "subsample",
        "subsample_freq",
        "verbose",
        "verbosity",
    }
)


def binned_model(factory: type, params: dict[str, Any]) -> tuple[type, dict[str, Any]] | None:
    """The LightGBM model whose fits can train on a shared binned Dataset, and its params:
    the model itself, or the estimator a :class:`~dask_meta.PairwisePropensityClassifier`
    fits once per pair (on subsets of the same Dataset); ``None`` for other models."""
    if factory.__module__.startswith("lightgbm") and factory.__name__ in (
        "LGBMRegressor",
        "LGBMClassifier",
    ):
        return factory, params
    if _is_pairwise(factory) and params.get("estimator") is not None:
        estimator = params["estimator"]
        return binned_model(type(estimator), estimator.get_params(deep=False))
    return None


def _is_pairwise(factory: type) -> bool:
    return factory.__module__ == "dask_meta.models" and factory.__name__ == (
        "PairwisePropensityClassifier"
    )


def shares_bins(factory: type, params: dict[str, Any], design: Design) -> bool:
    """Whether fits of this model can train on subsets of one shared binned Dataset.

    LightGBM's sklearn regressors and classifiers (also inside a
    ``PairwisePropensityClassifier``) on DataFrame designs; a model that needs raw feature
    values after binning (``linear_tree``) builds its own.
    """
    model = binned_model(factory, params)
    return (
        model is not None
        and not design.as_numpy
        and design.transform is None
        and len(design.columns) > 0
        and not model[1].get("linear_tree", False)
    )


def bins_key(token: str, factory: type, params: dict[str, Any], design: Design) -> str:
    """The cache key of a shared binned Dataset: one fit's data, columns and bin params.

    The bin params are those the Dataset is built with (:func:`dataset_params`, the model's
    defaults filled in), so that models binning alike share one Dataset however their params
    are spelled: an ``LGBMRegressor`` given ``{"n_estimators": 100}`` and the
    ``LGBMClassifier(n_estimators=100)`` inside a
    :class:`~dask_meta.PairwisePropensityClassifier` (whose params list every default).
    """
    model = binned_model(factory, params)
    assert model is not None, f"{factory.__name__} trains on no binned Dataset"
    binning = sorted(
        (k, repr(v)) for k, v in dataset_params(*model).items() if k not in _TRAINING_ONLY_PARAMS
    )
    return f"{token}|{design.columns!r}|{binning!r}"


_bins: dict[str, Any] = {}
_bins_lock = threading.Lock()
_pending_subset = threading.local()


def drop_bins(token: str) -> int:
    """Free the binned Datasets of one fit (runs on every worker when the fit ends)."""
    with _bins_lock:
        keys = [k for k in _bins if k.startswith(f"{token}|")]
        for k in keys:
            del _bins[k]
    return len(keys)


def _binned_dataset(spec: FitSpec, frame: pd.DataFrame) -> Any:
    """This worker's binned Dataset of the whole training frame, built once per fit."""
    assert spec.bins is not None
    with _bins_lock:
        dataset = _bins.get(spec.bins)
        if dataset is None:
            model = binned_model(spec.factory, spec.params)
            assert model is not None
            params = dataset_params(*model)
            params["num_threads"] = 0  # the thread's OpenMP setting: see fit_params_with_threads
            threads = _bins_threads(spec.threads)
            dataset = on_threads(threads, _construct, spec.design.matrix(frame), params, threads)
            _bins[spec.bins] = dataset
    return dataset


def dataset_params(factory: type, params: dict[str, Any]) -> dict[str, Any]:
    """The binned Dataset's parameters of a LightGBM model: its own, without the objective's."""
    return {
        k: v
        for k, v in factory(**params)._process_params(stage="predict").items()
        if k not in ("objective", "metric", "num_class")
    }


def _bins_threads(threads: int) -> int:
    """Threads to build a shared binned Dataset with, from a fit of ``threads`` threads.

    All of the worker's, when its fits hold ``threads`` resources: the worker's other fits
    of this data wait for the Dataset, their threads idle, and no fit holds the kept thread
    of the worker's whole thread count (it would hold all of them). Without resources a
    fit could hold that thread and wait for this Dataset: the fit's own threads then.
    """
    with contextlib.suppress(ValueError, AttributeError):  # not on a worker
        from distributed import get_worker

        state = get_worker().state
        if state.total_resources.get("threads") == state.nthreads:
            return max(threads, int(state.nthreads))
    return threads


def _construct(X: Any, params: dict[str, Any], threads: int) -> Any:
    import lightgbm

    with threadpool_limits(limits=threads):
        return lightgbm.Dataset(X, label=np.zeros(len(X)), params=params).construct()


def _shared_dataset_switch(real: Callable[..., Any]) -> Callable[..., Any]:
    """``lightgbm.sklearn.Dataset`` that hands ``LGBMModel.fit`` a prepared subset.

    Only inside :func:`fit_binned` (thread-local): the estimator's own ``fit`` then does all
    its label encoding, parameter processing and bookkeeping, on already binned rows.
    """

    def dataset(data: Any = None, label: Any = None, weight: Any = None, **kwargs: Any) -> Any:
        subset = getattr(_pending_subset, "value", None)
        if subset is None:
            return real(data, label=label, weight=weight, **kwargs)
        _pending_subset.value = None
        subset.set_label(label)
        if weight is not None:
            subset.set_weight(weight)
        return subset

    dataset.__wrapped__ = real  # type: ignore[attr-defined]
    return dataset


def _label_columns(spec: FitSpec) -> set[str]:
    """Training-frame columns a shared-bins fit reads besides the binned features."""
    columns = {W_COL, spec.target, *spec.row_params.values()}
    if spec.rows.fold_col is not None:
        columns.add(spec.rows.fold_col)
    return columns


def fit_binned(
    spec: FitSpec, frame: pd.DataFrame, keep: np.ndarray, template: pd.DataFrame | None = None
) -> Any:
    """Fit a LightGBM model on the rows ``keep`` of the training frame (all partitions,
    derived columns included), through the worker's shared binned Dataset.

    ``frame`` needs the features only if this worker has not built the Dataset yet;
    ``template`` (an empty frame with the features' columns and dtypes) gives the model its
    feature names and categories when ``frame`` lacks them."""
    import lightgbm.sklearn

    if not hasattr(lightgbm.sklearn.Dataset, "__wrapped__"):
        with _bins_lock:
            if not hasattr(lightgbm.sklearn.Dataset, "__wrapped__"):
                lightgbm.sklearn.Dataset = _shared_dataset_switch(  # type: ignore[misc,assignment]
                    lightgbm.sklearn.Dataset
                )
    dataset = _binned_dataset(spec, frame)
    positions = np.flatnonzero(keep)
    # column by column: the selected rows of the whole frame would copy the features too
    y = frame[spec.target].to_numpy()[positions]
    fit_params = dict(spec.fit_params)
    for name, column in spec.row_params.items():
        fit_params[name] = frame[column].to_numpy()[positions]
    params = fit_params_with_threads(spec.factory, spec.params, spec.thread_param, spec.threads)
    model = spec.factory(**params)
    # the features are in the subsets already: fit sees their names only
    names = spec.design.matrix(template if template is not None else frame.iloc[:0])

    def fit_subset(estimator: Any, rows: np.ndarray, label: np.ndarray, kwargs: dict) -> None:
        _pending_subset.value = dataset.subset(rows).construct()
        try:
            estimator.fit(names, label, **kwargs)
        finally:
            _pending_subset.value = None

    with threadpool_limits(limits=spec.threads):
        if _is_pairwise(spec.factory):  # one subset per pair, of this fit's rows
            weight = fit_params.pop("sample_weight", None)
            model.fit_pairs(
                names,
                y,
                lambda pair, rows, label, kwargs: fit_subset(pair, positions[rows], label, kwargs),
                weight,
                **fit_params,
            )
        else:
            fit_subset(model, positions, y, fit_params)
    return model


# --- stream backend: a chain of partial_fit calls, one partition at a time -----------------


@dataclass
class StreamState:
    """A streaming fit between two partitions: the model so far and what it has seen."""

    model: Any
    n_rows: int
    start: float
    classes: set = field(default_factory=set)


def stream_order(params: dict[str, Any], n_parts: int) -> list[int]:
    """The partition order of a streaming fit: dask-ml ``Incremental``'s block order."""
    order = list(range(n_parts))
    if params.get("shuffle_blocks", True):
        from sklearn.utils import check_random_state

        check_random_state(params.get("random_state")).shuffle(order)
    return order


def stream_step(
    spec: FitSpec,
    state: StreamState | None,
    final: bool,
    part: pd.DataFrame,
    *extra: pd.DataFrame,
) -> StreamState | FitResult:
    """``partial_fit`` the job's rows of one partition (runs on a worker).

    The first step clones the wrapped estimator; partitions without rows of the job pass
    the model through. The last step (``final``) returns the :class:`FitResult`.
    """
    if state is None:
        from sklearn.base import clone

        state = StreamState(clone(wrapped_estimator(spec.factory, spec.params)), 0, time.time())
    frame = gather_rows(spec.rows, [part], extra)
    if len(frame):
        X, y, fit_params = _training_arrays(spec, frame)
        on_threads(spec.threads, _partial_fit, spec, state.model, X, y, fit_params)
        state.n_rows += len(frame)
        if spec.is_classifier:
            state.classes.update(np.unique(y).tolist())
    if not final:
        return state
    if state.n_rows == 0:
        raise ValueError(
            f"no training rows for {spec.factory.__name__} (target {spec.target}): the "
            "selection of rows for this model is empty"
        )
    # classes the rows showed: partial_fit's `classes` argument lists all classes up front
    classes = np.asarray(sorted(state.classes)) if spec.is_classifier else None
    return FitResult(
        state.model, state.n_rows, _current_worker(), state.start, time.time(), classes
    )


def _partial_fit(spec: FitSpec, model: Any, X: Any, y: np.ndarray, fit_params: dict) -> None:
    with threadpool_limits(limits=spec.threads):
        model.partial_fit(X, y, **fit_params)


def fused_stream_step(
    specs: Sequence[FitSpec],
    states: Sequence[StreamState] | None,
    final: bool,
    part: pd.DataFrame,
    *extra: pd.DataFrame,
) -> list[Any]:
    """One partition for all fold models of a streaming estimator: one read, several fits.

    ``specs`` are the fits of one cross-fit estimator (its folds and overall model); each
    takes its own rows of the partition, as :func:`stream_step` would.
    """
    previous: Sequence[StreamState | None] = [None] * len(specs) if states is None else states
    return [
        stream_step(spec, state, final, part, *extra)
        for spec, state in zip(specs, previous, strict=True)
    ]


# --- collection backend: the estimator's own distributed fit, called from the client -------

#: Column names of the frame a collection fit reads (features keep their names).
FIT_Y = "__dask_meta_fit_y__"


def collection_rows(spec: FitSpec, part: pd.DataFrame, *extra: pd.DataFrame) -> pd.DataFrame:
    """One partition of a collection job's input: its selected rows, features, target and
    per-row fit parameters (runs on a worker)."""
    frame = gather_rows(spec.rows, [part], extra)
    X, y, fit_params = _training_arrays(spec, frame)
    out = (
        X
        if isinstance(X, pd.DataFrame)
        else pd.DataFrame(np.asarray(X), columns=[f"x{i}" for i in range(np.asarray(X).shape[1])])
    )
    out = out.reset_index(drop=True).copy()
    out[FIT_Y] = y
    for name, values in fit_params.items():
        if isinstance(values, np.ndarray) and values.shape[:1] == (len(frame),):
            out[f"__dask_meta_fit_{name}__"] = values
    return out


def row_fit_params(spec: FitSpec) -> dict[str, str]:
    """Per-row fit parameters of a collection job and the columns that carry them."""
    return {name: f"__dask_meta_fit_{name}__" for name in spec.row_params}


class NumpyInput:
    """A fitted model that only predicts numpy (dask-glm), usable on pandas partitions."""

    def __init__(self, model: Any) -> None:
        self.model = model
        if hasattr(model, "classes_"):
            self.classes_ = model.classes_

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.model.predict(np.asarray(X, dtype=float)))

    def predict_proba(self, X: Any) -> np.ndarray:
        proba = np.asarray(self.model.predict_proba(np.asarray(X, dtype=float)))
        if proba.ndim == 1:
            # dask-ml's LogisticRegression gives P(class 1) only
            proba = np.column_stack([1.0 - proba, proba])
        return proba


def to_local(model: Any) -> Any:
    """A collection estimator's fitted model as an in-memory model for partition predicts."""
    module, name = type(model).__module__, type(model).__name__
    if module.startswith("lightgbm"):
        return model.to_local()
    if module.startswith("xgboost"):
        import xgboost

        local_type = xgboost.XGBClassifier if "Classifier" in name else xgboost.XGBRegressor
        local = local_type()
        local.load_model(bytearray(model.get_booster().save_raw("json")))
        return local
    return NumpyInput(model)


def lightgbm_float32(factory: type, meta: pd.DataFrame) -> bool:
    """Whether a collection fit gives ``lightgbm.dask`` one float32 part per worker (all-numeric
    features) instead of the partitions as they are.

    Each ``lightgbm.dask`` worker holds its parts and concatenates them (``np.concatenate`` or
    ``pd.concat``) for the whole fit: two copies of its share of the rows. One float32 frame
    per worker, a single block, passes through that concatenation and LightGBM's conversion to
    numpy without a copy: one copy of half the size, a quarter of the memory of float64 parts.
    LightGBM bins the values, so float32 moves a value only where a bin bound falls between it
    and its float32 rounding. Categorical columns (the S-learner's treatment, categorical
    covariates) keep the pandas path, which declares them to LightGBM.
    """
    return factory.__module__.startswith("lightgbm") and all(
        pd.api.types.is_numeric_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype)
        for dtype in meta.dtypes
    )


def _float32_block(
    part: pd.DataFrame, features: Sequence[Any], columns: Sequence[str]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One partition: its features as a float32 matrix and its 1-d columns (on a worker)."""
    return part[list(features)].to_numpy(dtype=np.float32), [part[c].to_numpy() for c in columns]


def _worker_part(
    blocks: list[tuple[np.ndarray, list[np.ndarray]]],
    features: Sequence[Any],
    columns: Sequence[str],
) -> list[Any]:
    """A worker's blocks as ``[X, *columns]``: X one float32 frame of a single block, the
    columns Series (on the worker that holds the blocks).

    Blocks that only ``blocks`` refers to are freed as they are copied: the frame's pages are
    committed as they are written, so joining needs one block more than the frame."""
    n = sum(len(X) for X, _ in blocks)
    X = np.empty((n, len(features)), dtype=np.float32)
    values: list[list[np.ndarray]] = [[] for _ in columns]
    start = 0
    while blocks:
        block, cols = blocks.pop(0)
        X[start : start + len(block)] = block
        start += len(block)
        for out, col in zip(values, cols):
            out.append(col)
        del block, cols
    frame = pd.DataFrame(X, columns=pd.Index(list(features)), copy=False)
    part = [frame] + [pd.Series(np.concatenate(v), name=c) for v, c in zip(values, columns)]
    _release_unused_memory()
    return part


def _cull(graph: dict[Any, Any], keys: Sequence[Any]) -> tuple[dict[Any, Any], set[Any]]:
    """The part of a graph (key -> task) that ``keys`` need, and the keys it refers to but
    does not define (results held by the cluster: persisted partitions, fitted models)."""
    needed: dict[Any, Any] = {}
    outside: set[Any] = set()
    stack = list(keys)
    while stack:
        key = stack.pop()
        if key in needed or key in outside:
            continue
        if key not in graph:
            outside.add(key)
            continue
        needed[key] = graph[key]
        stack.extend(graph[key].dependencies)
    return needed, outside


def _read_worker_part(
    graph: bytes,
    keys: Sequence[Any],
    held: dict[Any, Any],
    features: Sequence[Any],
    columns: Sequence[str],
) -> list[Any]:
    """A worker's share of partitions (``keys`` of the pickled ``graph``: as an argument, its
    tasks would run before this one), computed here one at a time and joined as
    :func:`_worker_part` does: one partition in memory beside the share. ``held``: the values
    of the keys the graph refers to but does not define."""
    import cloudpickle
    import dask
    from dask._task_spec import DataNode

    tasks = cloudpickle.loads(graph)
    tasks.update({key: DataNode(key, value) for key, value in held.items()})
    blocks = []
    for key in keys:
        frame = dask.get(_cull(tasks, [key])[0], key)
        blocks.append(_float32_block(frame, features, columns))
        del frame
        _release_unused_memory()
    return _worker_part(blocks, features, columns)


def _release_unused_memory() -> None:
    """Hand freed memory back to the operating system before a gang fit: pyarrow's allocator
    (mimalloc or jemalloc) keeps what a parquet read freed (0.18 GiB after reading 4M rows of
    27 float64 columns), and glibc keeps its freed small blocks; both count against the
    worker's memory limit while LightGBM trains."""
    import contextlib
    import ctypes

    with contextlib.suppress(ImportError, AttributeError):  # pyarrow absent or < 9
        import pyarrow

        pyarrow.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _n_rows(part: list[Any]) -> int:
    return len(part[0])


def _one_part_per_worker(
    client: Any, frame: Any, features: Sequence[Any], columns: Sequence[str], lazy: bool
) -> list[Any]:
    """``[X, *columns]`` of ``frame`` as Dask collections of one partition per worker, each
    in that worker's memory: X float32 features, then the columns.

    ``lazy`` partitions (read from the source) are split into one contiguous share per worker,
    and each worker computes its share itself, one partition at a time, into its frame: it
    never holds more than its share and one partition (results the graph refers to, such as
    fitted models, are passed in as futures). Persisted partitions are turned into float32
    blocks where they live, then each worker joins the blocks it holds. ``lightgbm.dask``
    trains each worker on the part it holds. X and the columns come from one task per
    partition: they cannot misalign.
    """
    import cloudpickle
    import dask
    import dask.dataframe as dd
    from dask._task_spec import convert_legacy_graph
    from distributed import Future, wait

    features, columns = list(features), list(columns)
    parts = frame.to_delayed()
    if not lazy:  # persisted: join the blocks where they are
        blocks = client.compute(
            [dask.delayed(_float32_block, pure=True)(p, features, columns) for p in parts]
        )
        with client.as_current():
            wait(blocks)
        holders = client.who_has(blocks)
        by_worker: dict[str, list[Any]] = {}
        for block in blocks:
            by_worker.setdefault(sorted(holders[block.key])[0], []).append(block)
        joined = {
            w: client.submit(
                _worker_part, mine, features, columns, workers=[w], allow_other_workers=True
            )
            for w, mine in by_worker.items()
        }
        del blocks, by_worker  # freed once joined: each worker then holds its part
    else:
        graph: dict[Any, Any] = {}
        for source in {id(p.__dask_graph__()): p.__dask_graph__() for p in parts}.values():
            graph.update(convert_legacy_graph(dict(source)))
        workers = sorted(client.scheduler_info()["workers"])
        shares = [s for s in np.array_split(np.arange(len(parts)), len(workers)) if len(s)]
        joined = {}
        for w, share in zip(workers, shares):
            keys = [parts[i].key for i in share]
            needed, outside = _cull(graph, keys)
            held: dict[Any, Any] = {key: Future(key, client) for key in outside}
            joined[w] = client.submit(
                _read_worker_part,
                cloudpickle.dumps(needed),
                keys,
                held,
                features,
                columns,
                workers=[w],
                allow_other_workers=True,
                pure=False,
            )
    with client.as_current():
        wait(list(joined.values()))
    for part in joined.values():
        if part.status == "error":
            part.result()  # raises the worker's error here
    # a worker whose share selected no rows takes no part (LightGBM rejects empty data)
    sizes = client.gather({w: client.submit(_n_rows, part) for w, part in joined.items()})
    joined = {w: part for w, part in joined.items() if sizes[w]}
    metas = [frame._meta[features].astype(np.float32)] + [frame._meta[c] for c in columns]
    out = []
    for i, meta in enumerate(metas):
        items = [
            client.submit(operator.getitem, part, i, workers=[w], allow_other_workers=True)
            for w, part in joined.items()
        ]
        out.append(dd.from_delayed(items, meta=meta))
    return out


def fit_collection(
    spec: FitSpec, client: Any, frame: Any, n_rows: int, lazy: bool = True
) -> FitResult:
    """Fit a collection estimator on a lazy Dask frame of :func:`collection_rows` (on the
    client; the estimator distributes its own work); ``lazy``: the frame's graph reads its
    rows from the source, no persisted partitions (futures) in it."""
    start = time.time()
    params = dict(spec.params)
    if "client" in inspect.signature(spec.factory.__init__).parameters:  # type: ignore[misc]
        params.setdefault("client", client)
    features = [
        c for c in frame.columns if c != FIT_Y and not str(c).startswith("__dask_meta_fit_")
    ]
    X, y = frame[features], frame[FIT_Y]
    fit_params: dict[str, Any] = dict(spec.fit_params)
    for name, column in row_fit_params(spec).items():
        fit_params[name] = frame[column]
    with client.as_current():
        if lightgbm_float32(spec.factory, frame._meta[features]):
            carried = row_fit_params(spec)
            columns = [FIT_Y, *carried.values()]
            X, y, *values = _one_part_per_worker(client, frame, features, columns, lazy)
            fit_params.update(zip(carried, values))
        model = spec.factory(**params)
        if spec.factory.__module__.startswith("dask_ml"):
            # dask-glm needs arrays with known chunks, and numpy blocks
            X = X.to_dask_array(lengths=True).astype(float)
            y = y.to_dask_array(lengths=X.chunks[0])
        model.fit(X, y, **fit_params)
    local = to_local(model)
    classes = None
    if spec.is_classifier:
        if not hasattr(local, "classes_"):
            local.classes_ = spec.classes
        classes = np.asarray(local.classes_)
    return FitResult(local, n_rows, None, start, time.time(), classes)


# --- prediction ---------------------------------------------------------------------------


def _model_output(model: Any, X: Any, method: str, n_outputs: int) -> np.ndarray:
    out = np.asarray(getattr(model, method)(X), dtype=float)
    return out.reshape(len(out), n_outputs)


def predict_block(
    fold_models: Sequence[Any],
    overall_model: Any,
    X: Any,
    fold_ids: np.ndarray | None,
    method: str,
    oos_method: str,
    n_outputs: int,
) -> np.ndarray:
    """Predict a block of rows with a cross-fitted model: ``(n, n_outputs)``.

    Rows with a fold id >= 0 are in-sample: each is predicted by the fold model that did not
    see it. The other rows (all rows when ``fold_ids`` is None) are out-of-sample and use
    ``oos_method``: the overall model, or the mean or median of the fold models.
    """
    # one thread: prediction tasks run one per partition on every worker thread (models
    # fitted with several threads would oversubscribe the cores and grow OpenMP pools on
    # task threads, see on_threads); predictions do not depend on the thread count.
    # threadpool_limits costs ~5 ms a call: only for models that run threads of their own.
    threaded = any(
        type(m).__module__.startswith(_THREADED_MODULES) for m in [*fold_models, overall_model]
    )
    with threadpool_limits(limits=1) if threaded else contextlib.nullcontext():
        return _predict_block(
            fold_models, overall_model, X, fold_ids, method, oos_method, n_outputs
        )


def _predict_block(
    fold_models: Sequence[Any],
    overall_model: Any,
    X: Any,
    fold_ids: np.ndarray | None,
    method: str,
    oos_method: str,
    n_outputs: int,
) -> np.ndarray:
    n = len(X)
    out = np.empty((n, n_outputs))
    if fold_ids is None:
        oos = np.ones(n, dtype=bool)
    else:
        oos = fold_ids == NOT_IN_SPLIT
        for k, model in enumerate(fold_models):
            rows = np.flatnonzero(fold_ids == k)
            if len(rows):
                out[rows] = _model_output(model, _take(X, rows), method, n_outputs)
    if oos.any():
        X_oos = X if oos.all() else _take(X, np.flatnonzero(oos))
        out[oos] = _predict_oos(fold_models, overall_model, X_oos, method, oos_method, n_outputs)
    return out


def _predict_oos(
    fold_models: Sequence[Any],
    overall_model: Any,
    X: Any,
    method: str,
    oos_method: str,
    n_outputs: int,
) -> np.ndarray:
    if oos_method == OVERALL:
        return _model_output(overall_model, X, method, n_outputs)
    stacked = np.stack([_model_output(m, X, method, n_outputs) for m in fold_models], axis=-1)
    if oos_method == MEAN:
        return np.mean(stacked, axis=-1)
    if oos_method == MEDIAN:
        return np.median(stacked, axis=-1)
    raise ValueError(f"oos_method={oos_method!r} is not one of 'overall', 'mean', 'median'")


def _take(X: Any, rows: np.ndarray) -> Any:
    if isinstance(X, pd.DataFrame):
        return X.iloc[rows]
    return X[rows]
