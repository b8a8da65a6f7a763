"""Base models for planner tests. They live in an importable module (not a test file) so
that they pickle by reference to the worker processes of the LocalCluster fixture."""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression


class FoldFitError(RuntimeError):
    """Raised by :class:`SlowRegressor` for the one job it is told to fail."""


class SlowRegressor(RegressorMixin, BaseEstimator):
    """A linear regression whose fit takes at least ``delay`` seconds, plus ``delay_per_row``
    seconds per training row.

    The delay stands in for the cost of a real model so that the fit intervals recorded in
    ``fit_report_`` are long enough to compare (it is work being simulated, not a wait for
    something). ``fail_rows``: raise :class:`FoldFitError` when fitted on exactly that many
    rows, which singles out one fold model of one estimator; ``fail_weighted``: raise it when
    some rows weigh more than 1 (a bootstrap replicate's fits).
    """

    def __init__(
        self,
        delay: float = 0.0,
        fail_rows: int | None = None,
        delay_per_row: float = 0.0,
        fail_weighted: bool = False,
    ):
        self.delay = delay
        self.fail_rows = fail_rows
        self.delay_per_row = delay_per_row
        self.fail_weighted = fail_weighted

    def fit(self, X, y, sample_weight=None):
        if self.fail_rows is not None and len(X) == self.fail_rows:
            raise FoldFitError(f"SlowRegressor was told to fail on {len(X)} rows")
        if self.fail_weighted and sample_weight is not None and np.any(sample_weight > 1):
            # a bootstrap replicate's fit (rows drawn more than once), never the point fit
            raise FoldFitError("SlowRegressor was told to fail on weighted rows")
        if self.delay or self.delay_per_row:
            time.sleep(self.delay + self.delay_per_row * len(X))
        self.model_ = LinearRegression().fit(X, y, sample_weight=sample_weight)
        self.n_fit_rows_ = len(X)
        return self

    def predict(self, X):
        return np.asarray(self.model_.predict(X))


class NoSampleWeightRegressor(RegressorMixin, BaseEstimator):
    """A linear regression whose ``fit`` takes no ``sample_weight`` (the R-learner needs one)."""

    def fit(self, X, y):
        self.model_ = LinearRegression().fit(X, y)
        return self

    def predict(self, X):
        return np.asarray(self.model_.predict(X))


def unaligned_frame(values: np.ndarray, columns: list[str], offset: int = 3):
    """A pandas frame holding ``values`` in a float64 block that starts ``offset`` bytes past
    a 64-byte boundary, as partitions do when they arrive at a worker inside a message."""
    import pandas as pd

    n, d = values.shape
    raw = np.zeros(n * d * 8 + 128, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    block = np.ndarray((d, n), dtype=np.float64, buffer=raw, offset=start)
    block[...] = values.T
    frame = pd.DataFrame(block.T, columns=columns, copy=False)
    assert frame.to_numpy().flags.aligned == (offset % 8 == 0)
    return frame


def spend(seconds: float) -> float:
    """A per-partition task that works for ``seconds`` (simulated, as SlowRegressor's fit)."""
    time.sleep(seconds)
    return seconds


class WrongLengthRegressor(RegressorMixin, BaseEstimator):
    """A linear regression whose ``predict`` drops the last row (a broken user model)."""

    def fit(self, X, y, sample_weight=None):
        self.model_ = LinearRegression().fit(X, y, sample_weight=sample_weight)
        return self

    def predict(self, X):
        return np.asarray(self.model_.predict(X))[:-1]


class PredictFailsRegressor(RegressorMixin, BaseEstimator):
    """A linear regression whose ``predict`` raises its own error (a broken user model)."""

    def fit(self, X, y, sample_weight=None):
        self.model_ = LinearRegression().fit(X, y, sample_weight=sample_weight)
        return self

    def predict(self, X):
        raise RuntimeError("this model cannot predict")


def fail_on_partition(part, partition_info=None):
    """A map_partitions function that raises in partition 2 (a write failing part way)."""
    if partition_info is not None and partition_info["number"] == 2:
        raise RuntimeError("partition 2 could not be read")
    return part
