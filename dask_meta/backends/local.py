"""The local backend: one base model fitted inside one task, on all the rows of its job.

The task holds ``spec.threads`` threads; the job's rows must fit in one worker's memory.
LightGBM fits that share bins train on the worker's binned Dataset (:mod:`.bins`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from dask_meta._constants import ROW_ID_COL
from dask_meta.backends.bins import fit_binned, holds_dataset, label_columns
from dask_meta.backends.rows import gather_rows, training_arrays
from dask_meta.backends.scores import prediction_sum, sums_predictions
from dask_meta.backends.specs import FitResult, FitSpec, RowSelection
from dask_meta.backends.threads import fit_params_with_threads, on_threads, worker_address
from dask_meta.factories import factory_name


def fit_local(spec: FitSpec, n_parts: int, *parts: pd.DataFrame) -> FitResult:
    """Fit one base model on its rows (runs on a worker, holding ``spec.threads`` threads).

    ``parts`` are the training frame's partitions followed, if present, by as many
    partitions of derived columns.
    """
    start = time.time()
    model, n_rows, total = on_threads(spec.threads, _fit_local, spec, n_parts, parts)
    classes = None
    if spec.is_classifier:  # a duck-typed model used for probabilities may not record them
        classes = np.asarray(getattr(model, "classes_", spec.classes))
    return FitResult(model, n_rows, worker_address(), start, time.time(), classes, total)


def _fit_local(
    spec: FitSpec, n_parts: int, parts: Sequence[pd.DataFrame]
) -> tuple[Any, int, np.ndarray | None]:
    """The fitted model, its rows and, if asked for, its training rows' prediction sum."""
    if spec.bins is not None:
        main = list(parts[:n_parts])
        if holds_dataset(spec.bins):
            # this worker holds the binned features already: gather only the columns that
            # choose the rows and give the labels, not the feature matrix once more
            wanted = label_columns(spec)
            main = [p[[c for c in p.columns if c in wanted]] for p in main]
        whole = gather_rows(RowSelection(), main, parts[n_parts:])
        resample = spec.rows.resample
        counts = None if resample is None else resample.counts(whole[ROW_ID_COL].to_numpy())
        keep = spec.rows.mask(whole, counts)
        if not keep.any():
            raise ValueError(
                f"no training rows for {factory_name(spec.factory)} (target {spec.target}): the "
                "selection of rows for this model is empty"
            )
        model, total = fit_binned(spec, whole, keep, counts, template=parts[0].iloc[:0])
        return model, int(keep.sum()), total
    frame = gather_rows(spec.rows, parts[:n_parts], parts[n_parts:])
    if len(frame) == 0:
        raise ValueError(
            f"no training rows for {factory_name(spec.factory)} (target {spec.target}): the "
            "selection of rows for this model is empty"
        )
    X, y, fit_params = training_arrays(spec, frame)
    params = fit_params_with_threads(spec.factory, spec.params, spec.thread_param, spec.threads)
    summed = prediction_sum(spec, frame, None) if sums_predictions(spec) else None
    if summed is not None:
        fit_params = summed.add_to(fit_params)
    with threadpool_limits(limits=spec.threads):
        model = spec.factory(**params).fit(X, y, **fit_params)
    return model, len(frame), None if summed is None else summed.of(model)
