"""Calibration fits: the base model timed on a sample of one partition, for the cost model
that chooses the threads per fit (:mod:`dask_meta.plan`)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from dask_meta.backends.bins import binned_dataset, fit_on_subset, subset_features
from dask_meta.backends.rows import gather_rows, training_arrays
from dask_meta.backends.specs import FitSpec, is_pairwise
from dask_meta.backends.threads import fit_params_with_threads, on_threads

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
    timed on its first pair, that time counted once per pair. A LightGBM model whose fits
    share a binned Dataset (``spec.bins``) is timed as those fits run: on row subsets of one
    Dataset of the larger size's rows, built before the timings (the shared Dataset is built
    once per worker, not per fit; timing each fit's own binning, multiplied with the rounds,
    made the fits seem slower and less parallel than they are). ``None`` if the sample
    cannot be fitted (one class only, say): the cost model then goes without this model.
    """
    frame = gather_rows(spec.rows, [part], list(extra))
    if len(frame) < 2:
        return None
    X, y, fit_params = training_arrays(spec, frame)
    order = np.random.default_rng(seed).permutation(len(frame))
    per_row = {name: len(frame) for name in spec.row_params}
    if spec.rows.resample is not None:
        per_row["sample_weight"] = len(frame)
    timed_params, scale = calibration_params(spec.factory, spec.params)
    pairwise = is_pairwise(spec.factory)
    small, large = (min(s, len(frame)) for s in sizes)
    # the rows of the larger size, binned once (shared-bins fits), and the features' names
    sample = np.sort(order[:large])
    names = spec.design.matrix(frame.iloc[:0])
    dataset = None

    def timed(rows: int, n_threads: int) -> float:
        take = np.sort(order[:rows])
        params = fit_params_with_threads(spec.factory, timed_params, spec.thread_param, n_threads)
        model, labels, factor = spec.factory(**params), y[take], scale
        if pairwise:
            # its pairs cost about the same: the first one is timed for all of them
            model, in_pair, labels, n_pairs = model.first_pair(labels)
            take, factor = take[in_pair], scale * n_pairs
        if dataset is not None:
            X_rows = subset_features(names, len(take))
        else:
            X_rows = X.iloc[take] if hasattr(X, "iloc") else X[take]
        kwargs = {
            name: (value[take] if name in per_row else value) for name, value in fit_params.items()
        }
        start = time.perf_counter()
        with threadpool_limits(limits=n_threads):
            if dataset is None:
                model.fit(X_rows, labels, **kwargs)
            else:
                fit_on_subset(model, dataset, np.searchsorted(sample, take), X_rows, labels, kwargs)
        return factor * (time.perf_counter() - start)

    def fastest(rows: int, n_threads: int) -> float:
        # the larger size's times set the per-row cost and the speedup: the faster of two
        return min(timed(rows, n_threads), timed(rows, n_threads))

    try:
        if spec.bins is not None:
            X_sample = X.iloc[sample] if hasattr(X, "iloc") else X[sample]
            dataset = binned_dataset(spec, X_sample, threads)
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
