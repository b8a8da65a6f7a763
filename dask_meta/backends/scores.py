"""A fitted model's predictions on its own training rows, summed as its fit ends.

A bootstrap's in-sample ATE sums, for every fit, each row's count times the CATE. Where the
CATE is made of models that were not cross-fitted (``n_folds=1``), each such model's
prediction on a row it trained on is its prediction on a training row: LightGBM holds those
as its training scores, updated at every boosting round. :class:`PredictionSum` reads them
after the last round and keeps only ``counts @ scores``, so the ATE pass predicts the other
rows only (a T-learner's variant model: the other variants' rows; a DR-learner's effect
model: none).

Only LightGBM regressors with a built-in objective qualify: their training scores are their
``predict`` output. Any other model (or a fit that stopped early, whose model predicts with
its best round, not its last) gives no sum, and the ATE pass predicts all its rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dask_meta._constants import ROW_ID_COL
from dask_meta.backends.specs import FitSpec


def sums_predictions(spec: FitSpec) -> bool:
    """Whether the fit can sum its training rows' predictions from its training scores."""
    if not spec.sum_predictions or spec.is_classifier:
        return False
    try:
        from lightgbm import LGBMRegressor
    except ImportError:  # pragma: no cover - LightGBM is a dependency
        return False
    objective = spec.params.get("objective")
    built_in = objective is None or isinstance(objective, str)
    return issubclass(spec.factory, LGBMRegressor) and built_in


class PredictionSum:
    """A LightGBM callback: after the last boosting round, ``counts @ training scores``.

    ``value`` stays ``None`` if training ended before its last round (early stopping)."""

    order = 100  # after LightGBM's own callbacks

    def __init__(self, counts: np.ndarray) -> None:
        self.counts = counts
        self.value: np.ndarray | None = None
        self.rounds = 0

    def __call__(self, env: Any) -> None:
        if env.iteration + 1 != env.end_iteration:
            return

        def total(scores: np.ndarray, _data: Any) -> tuple[str, float, bool]:
            self.value = np.array([self.counts @ np.asarray(scores, dtype=float)])
            return "dask_meta_prediction_sum", 0.0, False

        env.model.eval_train(feval=total)
        self.rounds = env.iteration + 1

    def add_to(self, fit_params: dict[str, Any]) -> dict[str, Any]:
        """``fit_params`` with this callback after the caller's own."""
        return {**fit_params, "callbacks": [*(fit_params.get("callbacks") or []), self]}

    def of(self, model: Any) -> np.ndarray | None:
        """The sum, if ``model`` predicts with the round it was read at."""
        booster = getattr(model, "booster_", None)
        if self.value is None or booster is None or booster.current_iteration() != self.rounds:
            return None
        best = getattr(booster, "best_iteration", 0)
        return self.value if best in (0, self.rounds) else None


def prediction_sum(
    spec: FitSpec, frame: pd.DataFrame, positions: np.ndarray | None
) -> PredictionSum:
    """The callback for a fit on the rows ``positions`` of ``frame`` (None: all of them),
    weighing each by its bootstrap count (1 for a fit without a resample)."""
    n = len(frame) if positions is None else len(positions)
    if spec.rows.resample is None:
        return PredictionSum(np.ones(n))
    ids = frame[ROW_ID_COL].to_numpy()
    return PredictionSum(spec.rows.resample.counts(ids if positions is None else ids[positions]))
