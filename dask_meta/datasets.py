"""Generated experiments with known effects, built lazily partition by partition.

Every partition is drawn from ``numpy.random.default_rng([seed, partition])``; the model
coefficients come from ``seed`` alone, so any number of rows costs nothing until computed
and the same seed always gives the same data.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.dataframe as dd
import numpy as np
import pandas as pd


@dataclass(frozen=True)
class _Design:
    n_features: int
    n_variants: int
    beta: np.ndarray  # (d,) baseline outcome
    gamma: np.ndarray  # (d, K-1) effect coefficients
    tau0: np.ndarray  # (K-1,) constant part of the effects
    theta: np.ndarray  # (d, K) propensity logits (zeros: randomised)
    sigma_y: float


def _draw_design(
    seed: int, n_features: int, n_variants: int, effect: str, observational: bool, sigma_y: float
) -> _Design:
    rng = np.random.default_rng([seed, 2**31 - 1])
    beta = rng.uniform(-1, 1, n_features)
    if effect == "linear":
        gamma = np.zeros((n_features, n_variants - 1))
        # effects depend on a few features, differently per variant
        for k in range(n_variants - 1):
            idx = rng.choice(n_features, size=min(3, n_features), replace=False)
            gamma[idx, k] = rng.uniform(0.5, 1.5, len(idx)) * rng.choice([-1, 1], len(idx))
        tau0 = rng.uniform(-1, 1, n_variants - 1)
    elif effect == "constant":
        gamma = np.zeros((n_features, n_variants - 1))
        tau0 = rng.uniform(-2, 2, n_variants - 1)
    elif effect == "none":
        gamma = np.zeros((n_features, n_variants - 1))
        tau0 = np.zeros(n_variants - 1)
    else:
        raise ValueError(f"effect must be 'linear', 'constant' or 'none', got {effect!r}")
    theta = (
        rng.normal(0, 0.3, (n_features, n_variants))
        if observational
        else np.zeros((n_features, n_variants))
    )
    return _Design(n_features, n_variants, beta, gamma, tau0, theta, sigma_y)


def _partition(design: _Design, seed: int, n_rows: int, number: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, number])
    d, k = design.n_features, design.n_variants
    X = rng.normal(size=(n_rows, d))
    logits = X @ design.theta
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(n_rows)[:, None]
    w = np.minimum((u > np.cumsum(p, axis=1)).sum(axis=1), k - 1)
    tau = X @ design.gamma + design.tau0
    mu0 = X @ design.beta
    effect = np.where(w > 0, tau[np.arange(n_rows), np.maximum(w - 1, 0)], 0.0)
    y = mu0 + effect + rng.normal(0, design.sigma_y, n_rows)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(d)])
    frame["w"] = w.astype(np.int64)
    frame["y"] = y
    for j in range(k - 1):
        frame[f"cate_{j + 1}"] = tau[:, j]
    for j in range(k):
        frame[f"propensity_{j}"] = p[:, j]
    return frame


def make_experiment(
    n_rows: int,
    n_features: int = 20,
    n_variants: int = 3,
    *,
    effect: str = "linear",
    observational: bool = True,
    sigma_y: float = 1.0,
    rows_per_partition: int = 250_000,
    seed: int = 0,
) -> dd.DataFrame:
    """A lazy Dask DataFrame: features ``x0..``, treatment ``w``, outcome ``y``, and the true
    ``cate_1..cate_{K-1}`` and ``propensity_0..`` columns."""
    if n_rows < 1 or rows_per_partition < 1:
        raise ValueError("n_rows and rows_per_partition must be positive")
    if n_variants < 2:
        raise ValueError("n_variants must be at least 2")
    design = _draw_design(seed, n_features, n_variants, effect, observational, sigma_y)
    sizes = [rows_per_partition] * (n_rows // rows_per_partition)
    if n_rows % rows_per_partition:
        sizes.append(n_rows % rows_per_partition)
    meta = _partition(design, seed, 0, 0)
    return dd.from_map(
        _partition,
        [design] * len(sizes),
        [seed] * len(sizes),
        sizes,
        list(range(len(sizes))),
        meta=meta,
        enforce_metadata=False,
    )


def feature_names(frame: dd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("x")]


def cate_names(frame: dd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("cate_")]
