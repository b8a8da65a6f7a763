"""Small pieces shared by the learners with a treatment stage."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

EPSILON = 1e-9


def clip_to_epsilon(values: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    """metalearners' floor: values with ``|v| < epsilon`` become ``sign(v) * epsilon`` (0 -> +)."""
    bound = np.where(values < 0, -1, 1) * epsilon
    return np.where(np.abs(values) < epsilon, bound, values)


def positive_class(outcome: np.ndarray, is_classification: bool) -> np.ndarray:
    """The expected outcome of ``(n, n_outputs)`` predictions: P(Y=1) or the regression value."""
    return outcome[:, 1] if is_classification else outcome[:, 0]


def effect_outputs(tau: np.ndarray, is_classification: bool) -> np.ndarray:
    """``(n,)`` effects as ``(n, n_outputs)``: ``[-tau, tau]`` for binary classification."""
    return np.stack([-tau, tau], axis=1) if is_classification else tau[:, None]


def treatment_cate_partition(
    X: pd.DataFrame, folds: pd.DataFrame | None, bundle: Any
) -> np.ndarray:
    """CATE ``(n, K-1, n_outputs)`` of one partition from one treatment model per variant."""
    models, design, oos_method, is_classification = bundle
    matrix = design.matrix(X)
    return np.stack(
        [
            effect_outputs(
                m.block_predict(matrix, folds, "predict", oos_method)[:, 0], is_classification
            )
            for m in models
        ],
        axis=1,
    )
