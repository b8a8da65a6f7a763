"""Worker side of the treatment stage: nuisance predictions and derived targets per partition.

The fit run (:mod:`dask_meta.learners.jobs`) maps these functions over the training
partitions as soon as the nuisance models they need are fitted. The fitted models reach the
worker as fit results (futures), from which :class:`NeedSource` rebuilds each cross-fit
estimator there: nothing goes through the client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dask_meta._constants import OVERALL
from dask_meta.crossfit import CrossFitEstimator, assemble
from dask_meta.folds import SplitRef

Need = tuple[str, int]


@dataclass(frozen=True)
class NeedSource:
    """How a worker gets one fitted nuisance estimator from the task's arguments.

    With a ``template``: the fold models' fit results (one argument per fold of ``folds``)
    assembled into a clone of it. Without: a reused (prefitted) estimator, one argument.
    """

    template: CrossFitEstimator | None = None
    split: SplitRef | None = None
    folds: tuple[int | None, ...] = ()

    @property
    def n_args(self) -> int:
        return 1 if self.template is None else len(self.folds)

    def model(self, args: Sequence[Any]) -> CrossFitEstimator:
        if self.template is None:
            return args[0]
        assert self.split is not None
        return assemble(self.template, self.split, self.folds, *args)


@dataclass(frozen=True)
class DerivedTarget:
    """A treatment model's target (and weight) columns from ``fn`` (see ``Derivation``)."""

    fn: Callable[..., Any]
    fn_args: tuple[Any, ...]
    needs: tuple[Need, ...]
    target: str
    #: the weight column, or None when ``fn`` returns the target alone
    weight: str | None

    def frame(self, part: pd.DataFrame, inputs: dict[Need, Any]) -> pd.DataFrame:
        out = self.fn(part.reset_index(drop=True), inputs, *self.fn_args)
        if self.weight is None:
            return pd.DataFrame({self.target: np.asarray(out, dtype=float)})
        values, weights = out
        return pd.DataFrame(
            {
                self.target: np.asarray(values, dtype=float),
                self.weight: np.asarray(weights, dtype=float),
            }
        )


def derive_partition(
    part: pd.DataFrame,
    *,
    derived: DerivedTarget,
    sources: tuple[NeedSource, ...],
    source_args: list[Any],
) -> pd.DataFrame:
    """Derived columns of one training partition from the fitted nuisance models.

    ``source_args`` (fit results or reused estimators, resolved from futures by Dask) are
    consumed by the ``sources`` in order.
    """
    models = {}
    i = 0
    for need, source in zip(derived.needs, sources, strict=True):
        models[need] = source.model(source_args[i : i + source.n_args])
        i += source.n_args
    return derived.frame(part, models)


@dataclass(frozen=True)
class NeedPrediction:
    """One nuisance estimator's predictions on the training partitions."""

    source: NeedSource
    design: Any
    method: str


def predict_need_partition(
    part: pd.DataFrame, *, need: NeedPrediction, source_args: list[Any]
) -> np.ndarray:
    """One nuisance estimator's predictions ``(n, n_outputs)`` for a training partition:
    in-sample for the rows in its split, from its overall model for the others."""
    model = need.source.model(source_args)
    part = part.reset_index(drop=True)
    return model.block_predict(need.design.matrix(part), part, need.method, OVERALL)


def derive_from_predictions(
    part: pd.DataFrame, *predictions: np.ndarray, derived: DerivedTarget
) -> pd.DataFrame:
    """Derived columns of one training partition from shared nuisance predictions."""
    return derived.frame(part, dict(zip(derived.needs, predictions, strict=True)))
