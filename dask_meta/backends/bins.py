"""One binned LightGBM Dataset per worker and fit, shared by the LightGBM fits that bin alike.

LightGBM fits whose binning params agree train on row subsets of one binned Dataset of the
whole training frame, built once per worker (docs/out-of-core.md, "LightGBM: one binned
Dataset per worker"): the binning is done once instead of once per fit, and every fold model
has the bins of all rows. The Datasets live in a per-worker cache, keyed by :func:`bins_key`
and freed by :func:`drop_bins` when the fit ends.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from dask_meta._constants import ROW_ID_COL, W_COL
from dask_meta.backends.rows import row_fit_params
from dask_meta.backends.scores import prediction_sum, sums_predictions
from dask_meta.backends.specs import Design, FitSpec, is_pairwise
from dask_meta.backends.threads import fit_params_with_threads, on_threads
from dask_meta.factories import factory_name

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
    if is_pairwise(factory) and params.get("estimator") is not None:
        estimator = params["estimator"]
        return binned_model(type(estimator), estimator.get_params(deep=False))
    return None


def shares_bins(factory: type, params: dict[str, Any], design: Design) -> bool:
    """Whether fits of this model can train on subsets of one shared binned Dataset.

    LightGBM's sklearn regressors and classifiers (also inside a
    ``PairwisePropensityClassifier``), on DataFrame designs and numpy ones (numpy input)
    alike, so that the same data give the same models in either container; a model that
    needs raw feature values after binning (``linear_tree``) builds its own.
    """
    model = binned_model(factory, params)
    return (
        model is not None
        and design.transform is None
        and len(design.columns) > 0
        and not model[1].get("linear_tree", False)
    )


#: LightGBM finds a Dataset's bin bounds on a sample of at most this many rows (its
#: ``subsample_for_bin``, alias ``bin_construct_sample_cnt``), then puts every row in its bins
_BIN_SAMPLE_ROWS = 200_000
#: the bounds' search costs about this many times as much per sampled row as putting a row
#: in its bins (measured on 20 float features: 1.9 us a row up to the sample's size, then
#: 0.9 us a row on two threads; 3.5 and 1.5 us on one)
_BIN_SEARCH_COST = 1.2


def bin_sample_rows(factory: type, params: dict[str, Any]) -> int:
    """The rows a LightGBM model's binned Dataset finds its bin bounds on, at most."""
    model = binned_model(factory, params)
    assert model is not None, f"{factory_name(factory)} trains on no binned Dataset"
    given = dataset_params(*model)
    for name in ("bin_construct_sample_cnt", "subsample_for_bin"):
        value = given.get(name)
        if isinstance(value, int | np.integer) and not isinstance(value, bool) and value > 0:
            return int(value)
    return _BIN_SAMPLE_ROWS


def binning_cost(n_rows: int, sample_rows: int) -> float:
    """The cost of building a binned Dataset of ``n_rows`` rows, in rows put in their bins:
    every row once, and the search of the bounds on a sample of at most ``sample_rows``.

    One Dataset of all rows costs less than several of a part of them each, beyond the
    sample's size, even when every row is trained on once (a T-learner's variant models):
    the search is paid once."""
    return n_rows + _BIN_SEARCH_COST * min(n_rows, sample_rows)


def bins_key(token: str, factory: type, params: dict[str, Any], design: Design) -> str:
    """The cache key of a shared binned Dataset: one fit's data, columns and bin params.

    The bin params are those the Dataset is built with (:func:`dataset_params`, the model's
    defaults filled in), so that models binning alike share one Dataset however their params
    are spelled: an ``LGBMRegressor`` given ``{"n_estimators": 100}`` and the
    ``LGBMClassifier(n_estimators=100)`` inside a
    :class:`~dask_meta.PairwisePropensityClassifier` (whose params list every default).
    """
    model = binned_model(factory, params)
    assert model is not None, f"{factory_name(factory)} trains on no binned Dataset"
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


def holds_dataset(key: str) -> bool:
    """Whether this worker has built the shared binned Dataset ``key`` already."""
    with _bins_lock:
        return key in _bins


def _binned_dataset(spec: FitSpec, frame: pd.DataFrame) -> Any:
    """This worker's binned Dataset of the whole training frame, built once per fit."""
    assert spec.bins is not None
    with _bins_lock:
        dataset = _bins.get(spec.bins)
        if dataset is None:
            threads = _bins_threads(spec.threads)
            dataset = binned_dataset(spec, spec.design.matrix(frame), threads)
            _bins[spec.bins] = dataset
    return dataset


def binned_dataset(spec: FitSpec, X: Any, threads: int) -> Any:
    """A binned LightGBM Dataset of the features ``X`` for the fits of ``spec``'s model,
    built with ``threads`` threads."""
    model = binned_model(spec.factory, spec.params)
    assert model is not None, f"{factory_name(spec.factory)} trains on no binned Dataset"
    params = dataset_params(*model)
    params["num_threads"] = 0  # the thread's OpenMP setting: see fit_params_with_threads
    return on_threads(threads, _construct, X, params, threads)


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


def label_columns(spec: FitSpec) -> set[str]:
    """Training-frame columns a shared-bins fit reads besides the binned features."""
    columns = {W_COL, spec.target, *spec.row_params.values()}
    if spec.rows.fold_col is not None:
        columns.add(spec.rows.fold_col)
    if spec.rows.resample is not None:
        columns.add(ROW_ID_COL)
    return columns


def fit_binned(
    spec: FitSpec,
    frame: pd.DataFrame,
    keep: np.ndarray,
    counts: np.ndarray | None = None,
    template: pd.DataFrame | None = None,
) -> tuple[Any, np.ndarray | None]:
    """Fit a LightGBM model on the rows ``keep`` of the training frame (all partitions,
    derived columns included), through the worker's shared binned Dataset; with it, its
    training rows' prediction sum if the spec asks for one (:mod:`.scores`). ``counts``:
    a bootstrap replicate's counts of every row of ``frame``, if drawn already.

    ``frame`` needs the features only if this worker has not built the Dataset yet;
    ``template`` (an empty frame with the features' columns and dtypes) gives the model its
    feature names and categories when ``frame`` lacks them."""
    dataset = _binned_dataset(spec, frame)
    positions = np.flatnonzero(keep)
    # column by column: the selected rows of the whole frame would copy the features too
    y = frame[spec.target].to_numpy()[positions]
    fit_params = row_fit_params(spec, frame, positions, counts)
    params = fit_params_with_threads(spec.factory, spec.params, spec.thread_param, spec.threads)
    model = spec.factory(**params)
    names = spec.design.matrix(template if template is not None else frame.iloc[:0])

    def fit_subset(estimator: Any, rows: np.ndarray, label: np.ndarray, kwargs: dict) -> None:
        X = subset_features(names, len(label))
        fit_on_subset(estimator, dataset, rows, X, label, kwargs)

    summed = prediction_sum(spec, frame, positions) if sums_predictions(spec) else None
    with threadpool_limits(limits=spec.threads):
        if is_pairwise(spec.factory):  # one subset per pair, of this fit's rows
            weight = fit_params.pop("sample_weight", None)
            model.fit_pairs(
                subset_features(names, len(y)),
                y,
                lambda pair, rows, label, kwargs: fit_subset(pair, positions[rows], label, kwargs),
                weight,
                **fit_params,
            )
        else:
            if summed is not None:
                fit_params = summed.add_to(fit_params)
            fit_subset(model, positions, y, fit_params)
    return model, None if summed is None else summed.of(model)


def subset_features(names: Any, n_rows: int) -> Any:
    """What a fit on a Dataset subset of ``n_rows`` rows is given as X: the features are
    in the subset already, so it sees their names only (a DataFrame design's empty frame
    ``names``), or an array of the subset's shape that takes no memory (a numpy design:
    LightGBM checks a numpy X against the labels' length)."""
    if isinstance(names, pd.DataFrame):
        return names
    return np.broadcast_to(np.zeros((1, names.shape[1])), (n_rows, names.shape[1]))


def fit_on_subset(
    estimator: Any, dataset: Any, rows: np.ndarray, X: Any, label: np.ndarray, kwargs: dict
) -> None:
    """``estimator.fit(X, label, **kwargs)`` on the rows ``rows`` of the binned ``dataset``
    (X as :func:`subset_features` gives it): the estimator's own ``fit`` does its label
    encoding, parameter processing and bookkeeping, on rows binned already."""
    import lightgbm.sklearn

    if not hasattr(lightgbm.sklearn.Dataset, "__wrapped__"):
        with _bins_lock:
            if not hasattr(lightgbm.sklearn.Dataset, "__wrapped__"):
                lightgbm.sklearn.Dataset = _shared_dataset_switch(  # type: ignore[misc,assignment]
                    lightgbm.sklearn.Dataset
                )
    _pending_subset.value = dataset.subset(rows).construct()
    try:
        estimator.fit(X, label, **kwargs)
    finally:
        _pending_subset.value = None
