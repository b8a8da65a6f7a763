"""Bootstrap confidence intervals for the CATE and the ATE of any meta-learner.

``Bootstrap(learner, n_bootstraps=100, random_state=0).fit(X, y, w)`` fits a copy of the
learner on the data (the point estimate) and ``n_bootstraps`` copies on Poisson bootstrap
weights (:mod:`dask_meta.resampling`: every row weighs a Poisson(1) count drawn from its
identity, so nothing is resampled or moved; rows of count 0 are skipped), all in one planner
run (:mod:`dask_meta.learners.replicates`). Then:

- :meth:`Bootstrap.predict_interval` gives ``(lower, upper)`` of the CATE per row, in a last
  axis of size 2 (a lazy Dask array for Dask input, one task per partition predicting every
  replicate);
- :meth:`Bootstrap.ate_interval` the interval of the average treatment effect (the mean of
  the in-sample CATE), from the replicates' weighted means computed at fit time (where the
  CATE is a sum of models that were not cross-fitted, each model's sum over the rows it
  trained on comes from the fit itself, and only the other rows are predicted);
- :meth:`Bootstrap.predict_replicates` and ``ate_replicates_`` the replicate estimates.

Intervals are ``"percentile"`` (default), ``"normal"`` or ``"pivot"``, the three
``bootstrap_type`` of EconML's ``BootstrapInference``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, cast

import numpy as np
import pandas as pd

from dask_meta._constants import OVERALL, ROW_ID_COL
from dask_meta._typing import Matrix, Vector
from dask_meta.backends import RowSelection, take_rows
from dask_meta.learners._common import LinearCate
from dask_meta.learners.base import MetaLearner
from dask_meta.learners.replicates import TrainedSums, check_resamplable, fit_replicates
from dask_meta.planner import Limits
from dask_meta.prediction import PartitionFn, Prediction, sum_in_sample
from dask_meta.resampling import Resample, replicate_seeds

#: the interval methods (EconML's ``bootstrap_type``)
METHODS = ("percentile", "normal", "pivot")
#: rows whose estimates of every replicate a task holds at once
ROW_BLOCK = 32_768
#: rows of a partition the ATE pass predicts at once: it holds one fit's estimates at a
#: time, and fewer, larger blocks save each prediction call's fixed costs
ATE_ROW_BLOCK = 262_144


@dataclass(frozen=True)
class Replicates:
    """The CATE predictions of the point fit and of every replicate, for one task per
    partition: their functions and models, and the width of one row's output."""

    fns: tuple[PartitionFn, ...]
    bundles: tuple[Any, ...]
    width: int

    def predict_one(self, fit: int, X: pd.DataFrame, folds: pd.DataFrame | None) -> np.ndarray:
        """``(n, width)``: fit ``fit``'s CATE of the rows (0: the point fit)."""
        if folds is not None:
            folds = folds.reset_index(drop=True)
        estimate = self.fns[fit](X, folds, self.bundles[fit])
        return np.asarray(estimate, dtype=float).reshape(len(X), self.width)

    def predict(self, X: pd.DataFrame, folds: pd.DataFrame | None) -> np.ndarray:
        """``(n, len(fns), width)``: every fit's CATE of the partition's rows."""
        return np.stack([self.predict_one(f, X, folds) for f in range(len(self.fns))], axis=1)

    def blocks(self, X: pd.DataFrame, folds: pd.DataFrame | None) -> Iterator[np.ndarray]:
        """:meth:`predict` of the partition's rows in blocks of :data:`ROW_BLOCK`: a
        partition's estimates of every replicate at once would take ``8 x rows x fits x
        width`` bytes."""
        for start in range(0, max(len(X), 1), ROW_BLOCK):
            rows = slice(start, start + ROW_BLOCK)
            block = X.iloc[rows].reset_index(drop=True)
            yield self.predict(block, None if folds is None else folds.iloc[rows])


@dataclass(frozen=True)
class IntervalRequest:
    """A per-partition interval: the replicates (point fit first), ``alpha`` and method."""

    replicates: Replicates
    alpha: float
    method: str


@dataclass(frozen=True)
class AteSums:
    """The in-sample ATE sums: the replicates (point fit first) and their weights' seeds."""

    replicates: Replicates
    seeds: tuple[int, ...]


def replicates_partition(X: pd.DataFrame, folds: pd.DataFrame | None, bundle: Replicates) -> Any:
    """Every replicate's CATE (the point fit's left out), replicates last (on a worker)."""
    return np.moveaxis(bundle.predict(X, folds)[:, 1:], 1, -1)


def interval_partition(X: pd.DataFrame, folds: pd.DataFrame | None, bundle: IntervalRequest) -> Any:
    """``(n, width, 2)``: the lower and upper bounds of each row's CATE (on a worker)."""
    return np.concatenate(
        [
            bounds(cate[:, 0], cate[:, 1:], bundle.alpha, bundle.method, axis=1)
            for cate in bundle.replicates.blocks(X, folds)
        ]
    )


def weighted_blocks(
    X: pd.DataFrame, folds: pd.DataFrame, seeds: tuple[int, ...]
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, list[np.ndarray]]]:
    """The partition's rows in blocks of :data:`ATE_ROW_BLOCK`: each block, its fold rows
    and every fit's counts of its rows (1 for the point fit, then each replicate's Poisson
    counts drawn from ``seeds``)."""
    for start in range(0, len(X), ATE_ROW_BLOCK):
        rows = slice(start, start + ATE_ROW_BLOCK)
        block_folds = folds.iloc[rows].reset_index(drop=True)
        ids = block_folds[ROW_ID_COL].to_numpy()
        counts = [np.ones(len(ids)), *(Resample(seed).counts(ids) for seed in seeds)]
        yield X.iloc[rows].reset_index(drop=True), block_folds, counts


def ate_partition(X: pd.DataFrame, folds: pd.DataFrame | None, bundle: AteSums) -> np.ndarray:
    """``(fits, width + 1)``: per fit, the sum of count x CATE and of the counts over the
    partition's rows (count 1 for the point fit, the replicate's Poisson counts else).

    A replicate predicts only its rows of positive count (about 63% of them): the others
    weigh nothing in its sums."""
    assert folds is not None
    replicates = bundle.replicates
    sums = np.zeros((len(replicates.fns), replicates.width + 1))
    for block, block_folds, weights in weighted_blocks(X, folds, bundle.seeds):
        for f, counts in enumerate(weights):
            drawn = np.flatnonzero(counts)
            rows = block.iloc[drawn].reset_index(drop=True)
            cate = replicates.predict_one(f, rows, block_folds.iloc[drawn])
            sums[f, :-1] += counts[drawn] @ cate
            sums[f, -1] += counts.sum()
    return sums


@dataclass(frozen=True)
class LinearAteSums:
    """The in-sample ATE sums of fits whose CATE is a sum of models (point fit first): per
    fit, its :class:`LinearCate` and, per model, the rows whose sum the fit gave (None:
    none); the replicates' weights' seeds."""

    cates: tuple[LinearCate, ...]
    given: tuple[tuple[RowSelection | None, ...], ...]
    seeds: tuple[int, ...]


def linear_ate_partition(
    X: pd.DataFrame, folds: pd.DataFrame | None, bundle: LinearAteSums
) -> np.ndarray:
    """``(fits, models + 1)``: per fit, each model's sum of count x prediction over the
    partition's drawn rows but those its fit summed already, and the sum of the counts."""
    assert folds is not None
    design = bundle.cates[0].design
    sums = np.zeros((len(bundle.cates), len(bundle.cates[0].models) + 1))
    for block, block_folds, weights in weighted_blocks(X, folds, bundle.seeds):
        matrix = design.matrix(block)
        for f, (cate, given, counts) in enumerate(
            zip(bundle.cates, bundle.given, weights, strict=True)
        ):
            for m, (model, trained) in enumerate(zip(cate.models, given, strict=True)):
                wanted = counts > 0
                if trained is not None:
                    wanted &= ~trained.mask(block_folds)
                rows = np.flatnonzero(wanted)
                if len(rows):
                    rows_folds = block_folds.iloc[rows].reset_index(drop=True)
                    predicted = model.block_predict(
                        take_rows(matrix, rows), rows_folds, "predict", cate.oos_method
                    )
                    sums[f, m] += counts[rows] @ predicted[:, 0]
            sums[f, -1] += counts.sum()
    return sums


def linear_ates(
    cates: list[LinearCate], trained: TrainedSums, sums: np.ndarray, width: tuple[int, int]
) -> np.ndarray:
    """``(fits, *width)``: every fit's ATE from the partitions' sums and its trained sums."""
    totals = sums[:, :-1].copy()
    for f, cate in enumerate(cates):
        for m, need in enumerate(cate.needs):
            if need in trained[f]:
                totals[f, m] += trained[f][need].total[0]
    ates = np.zeros((len(cates), *width))
    for k, o, m, coef in cates[0].terms:
        ates[:, k, o] += coef * totals[:, m]
    return ates / sums[:, -1][:, None, None]


def bounds(
    point: np.ndarray, replicates: np.ndarray, alpha: float, method: str, axis: int
) -> np.ndarray:
    """Lower and upper bounds (a new last axis) from the replicates along ``axis``."""
    low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2], axis=axis)
    if method == "percentile":
        return np.stack([low, high], axis=-1)
    if method == "pivot":
        return np.stack([2 * point - high, 2 * point - low], axis=-1)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    spread = z * np.std(replicates, axis=axis, ddof=1)
    return np.stack([point - spread, point + spread], axis=-1)


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, float | int) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a number in (0, 1), e.g. 0.05, got {alpha!r}")
    return float(alpha)


def _check_method(method: Any) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    return str(method)


class Bootstrap:
    """Bootstrap intervals of a meta-learner's CATE and ATE, fitted on the cluster.

    ``learner``: an unfitted or fitted dask-meta learner (it is not changed: the bootstrap
    fits copies). ``n_bootstraps``: replicates. ``random_state``: seeds the replicates'
    weights (the learner's own ``random_state`` seeds its folds, which every replicate
    shares). Every base model must take ``sample_weight``.
    """

    def __init__(
        self, learner: MetaLearner, n_bootstraps: int = 100, random_state: int | None = None
    ) -> None:
        self.learner = learner
        self.n_bootstraps = n_bootstraps
        self.random_state = random_state

    def _check_arguments(self) -> None:
        if not isinstance(self.learner, MetaLearner):
            raise TypeError(
                "learner must be a dask-meta learner (SLearner, TLearner, XLearner, RLearner "
                f"or DRLearner), got {type(self.learner).__name__}"
            )
        n = self.n_bootstraps
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
            raise ValueError(f"n_bootstraps must be an int >= 2, got {n!r}")
        seed = self.random_state
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
            raise TypeError(f"random_state must be an int or None, got {seed!r}")
        check_resamplable(self.learner)

    def fit(
        self,
        X: Matrix,
        y: Vector,
        w: Vector,
        n_jobs_cross_fitting: int | None = None,
        fit_params: dict | None = None,
        synchronize_cross_fitting: bool = True,
        n_jobs_base_learners: int | None = None,
    ) -> Bootstrap:
        """Fit the point estimate and the replicates (the learner's ``fit`` arguments)."""
        self._check_arguments()
        self.learner._validate_fit_args(synchronize_cross_fitting)
        fits = [type(self.learner)(**self.learner.init_args) for _ in range(self.n_bootstraps + 1)]
        seeds = replicate_seeds(
            None if self.random_state is None else int(self.random_state), self.n_bootstraps
        )
        limits = Limits(n_jobs_cross_fitting, n_jobs_base_learners)
        report, trained = fit_replicates(
            fits, seeds, X, y, w, limits, fit_params, bool(synchronize_cross_fitting)
        )
        self.learner_: MetaLearner = fits[0]
        self.replicates_: list[MetaLearner] = fits[1:]
        self.seeds_ = seeds
        self.fit_report_ = report
        tail = self.learner_._cate(False, OVERALL).tail
        ates = self._ates(X, fits, trained, seeds, (tail[0], tail[1]))
        self.ate_: np.ndarray = ates[0].reshape(tail)
        self.ate_replicates_: np.ndarray = ates[1:].reshape((self.n_bootstraps, *tail))
        return self

    def _ates(
        self,
        X: Matrix,
        fits: list[MetaLearner],
        trained: TrainedSums,
        seeds: tuple[int, ...],
        width: tuple[int, int],
    ) -> np.ndarray:
        """``(fits, *width)``: every fit's ATE, the count-weighted mean of its in-sample
        CATE, from the fits' trained sums where its CATE is linear in its models."""
        if fits[0]._linear_cate(OVERALL) is None or not any(trained):
            request = AteSums(self._replicates(False, OVERALL), seeds)
            sums = self._in_sample_sums(X, ate_partition, request)
            return (sums[:, :-1] / sums[:, -1:]).reshape((len(fits), *width))
        # the fits are copies of one learner: every one's CATE is linear when the first's is
        cates = tuple(cast(LinearCate, fit._linear_cate(OVERALL)) for fit in fits)
        given = tuple(
            tuple(own[need].rows if need in own else None for need in cate.needs)
            for cate, own in zip(cates, trained, strict=True)
        )
        sums = self._in_sample_sums(X, linear_ate_partition, LinearAteSums(cates, given, seeds))
        return linear_ates(list(cates), trained, sums, width)

    def _in_sample_sums(self, X: Matrix, fn: PartitionFn, bundle: Any) -> np.ndarray:
        return sum_in_sample(
            X,
            self.learner_._fit_context,  # type: ignore[arg-type]
            fn,
            bundle,
            self.learner_._predict_client(),
            "bootstrap-ate",
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "learner_"):
            raise ValueError("This Bootstrap is not fitted yet; call fit first.")

    def _replicates(self, is_oos: bool, oos_method: str) -> Replicates:
        predictions: list[Prediction] = [
            learner._cate(is_oos, oos_method) for learner in [self.learner_, *self.replicates_]
        ]
        width = int(np.prod(predictions[0].tail))
        return Replicates(
            tuple(p.fn for p in predictions), tuple(p.bundle for p in predictions), width
        )

    def predict(self, X: Matrix, is_oos: bool, oos_method: str = OVERALL) -> Any:
        """The point estimate: the learner fitted on the data (its ``predict``)."""
        self._check_fitted()
        return self.learner_.predict(X, is_oos, oos_method)

    def predict_replicates(self, X: Matrix, is_oos: bool, oos_method: str = OVERALL) -> Any:
        """Every replicate's CATE: ``(n, n_variants - 1, n_outputs, n_bootstraps)``."""
        self._check_fitted()
        prediction = self.learner_._cate(is_oos, oos_method)
        return self.learner_._map(
            X,
            is_oos,
            replicates_partition,
            self._replicates(is_oos, oos_method),
            (*prediction.tail, self.n_bootstraps),
            "bootstrap-replicates",
        )

    def predict_interval(
        self,
        X: Matrix,
        is_oos: bool,
        alpha: float = 0.05,
        oos_method: str = OVERALL,
        method: str = "percentile",
    ) -> Any:
        """The ``1 - alpha`` interval of every row's CATE: ``(n, n_variants - 1, n_outputs,
        2)``, lower then upper bound; lazy for Dask X (one task per partition)."""
        self._check_fitted()
        request = IntervalRequest(
            self._replicates(is_oos, oos_method), _check_alpha(alpha), _check_method(method)
        )
        tail = self.learner_._cate(is_oos, oos_method).tail
        return self.learner_._map(
            X, is_oos, interval_partition, request, (*tail, 2), "bootstrap-interval"
        )

    def ate_interval(self, alpha: float = 0.05, method: str = "percentile") -> np.ndarray:
        """The ``1 - alpha`` interval of the ATE: ``(n_variants - 1, n_outputs, 2)``."""
        self._check_fitted()
        return bounds(
            self.ate_, self.ate_replicates_, _check_alpha(alpha), _check_method(method), axis=0
        )

    @property
    def ate_stderr_(self) -> np.ndarray:
        """The replicates' standard deviation of the ATE: its bootstrap standard error."""
        self._check_fitted()
        return np.std(self.ate_replicates_, axis=0, ddof=1)  # type: ignore[no-any-return]
