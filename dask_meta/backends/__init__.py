"""Base-model backends: how one base model is fitted and used on worker data.

Three backends, chosen from the estimator class (:func:`backend_of`):

- ``local`` (any sklearn-like estimator, :mod:`.local`): fitted inside one task, on the
  concatenated rows of that job, with its thread parameter and ``threadpoolctl`` set to the
  threads the task holds (:mod:`.threads`). The job's rows must fit in one worker's memory.
  LightGBM fits that bin alike share one binned Dataset per worker (:mod:`.bins`).
- ``stream`` (dask-ml ``Incremental`` around a ``partial_fit`` estimator, :mod:`.stream`): a
  chain of tasks, one per partition, each calling ``partial_fit`` on that partition's rows of
  the job. Only one partition of a job is in memory at a time: data of any size.
- ``collection`` (``lightgbm.dask.DaskLGBM*``, ``xgboost.dask.DaskXGB*``, dask-ml's
  ``LinearRegression``/``LogisticRegression``, :mod:`.collection`): the estimator's own
  distributed ``fit``, called from the client on a lazy Dask frame of the job's rows; the
  fitted model is turned into a local one for prediction. These run exclusively (gang
  trainers hang when they share workers with other fits, LightGBM#4942).

What a fit is (:class:`FitSpec`, :class:`FitResult`) is in :mod:`.specs`, the rows it reads
in :mod:`.rows`; :mod:`.calibration` times base models for the cost model, :mod:`.predict`
predicts with cross-fitted models, and :mod:`.task_seconds` sums the time of per-partition
tasks. Everything that runs on workers is a small module-level function taking plain
pandas/numpy, so it pickles by reference and can be tested without a cluster.

This package only re-exports the names the rest of dask-meta imports from it.
"""

from dask_meta.backends.bins import _bins as _bins  # the per-worker cache, read by tests
from dask_meta.backends.bins import (
    bin_sample_rows,
    binning_cost,
    bins_key,
    drop_bins,
    shares_bins,
)
from dask_meta.backends.calibration import CALIBRATION_ROUNDS, calibrate_fit, calibration_params
from dask_meta.backends.collection import (
    NumpyInput,
    collection_rows,
    fit_collection,
    lightgbm_float32,
)
from dask_meta.backends.local import fit_local
from dask_meta.backends.predict import predict_block, take_rows
from dask_meta.backends.rows import aligned
from dask_meta.backends.specs import (
    COLLECTION,
    LOCAL,
    STREAM,
    Design,
    FitResult,
    FitSpec,
    RowSelection,
    backend_of,
    check_classes,
    is_categorical_aware,
    supports_sample_weight,
    wrapped_estimator,
)
from dask_meta.backends.stream import fused_stream_step, stream_order, stream_step
from dask_meta.backends.task_seconds import pop_task_seconds, timed_task
from dask_meta.backends.threads import (
    THREAD_PARAMS,
    fit_params_with_threads,
    on_threads,
    requested_threads,
    thread_param_name,
)

__all__ = [
    "CALIBRATION_ROUNDS",
    "COLLECTION",
    "LOCAL",
    "STREAM",
    "THREAD_PARAMS",
    "Design",
    "FitResult",
    "FitSpec",
    "NumpyInput",
    "RowSelection",
    "aligned",
    "backend_of",
    "bin_sample_rows",
    "binning_cost",
    "bins_key",
    "calibrate_fit",
    "calibration_params",
    "check_classes",
    "collection_rows",
    "drop_bins",
    "fit_collection",
    "fit_local",
    "fit_params_with_threads",
    "fused_stream_step",
    "is_categorical_aware",
    "lightgbm_float32",
    "on_threads",
    "pop_task_seconds",
    "predict_block",
    "requested_threads",
    "shares_bins",
    "stream_order",
    "stream_step",
    "supports_sample_weight",
    "take_rows",
    "thread_param_name",
    "timed_task",
    "wrapped_estimator",
]
