"""Small pieces shared by the learners with a treatment stage."""

from __future__ import annotations

import numpy as np

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
