"""Generated experiments with known effects, built lazily partition by partition.

:func:`make_experiment` returns a lazy Dask DataFrame with the columns

* ``x0..`` numerical covariates, standard normal;
* ``c0..`` categorical covariates (pandas ``category`` dtype whose categories are the
  integers ``0..k-1``, the full set in every partition), drawn Binomial(k - 1, 0.5) like
  metalearners' ``generate_categoricals``;
* ``w`` the treatment in ``0..K-1`` and ``y`` the outcome (float, or 0/1 with
  ``is_classification``);
* the truth: ``cate_1..cate_{K-1}`` (effect of variant k against 0) and
  ``propensity_0..propensity_{K-1}``.

The model, with ``x`` the numerical and ``c_j`` the categorical covariates::

    mu_0(x)   = x @ beta + sum_j beta_j[c_j]
    tau_k(x)  = x @ gamma_k + tau0_k + sum_j gamma_jk[c_j]   ("linear"; "constant": tau0_k)
    P(w=k|x)  = softmax_k(x @ theta_k + sum_j theta_jk[c_j])  (uniform unless observational)
    regression:      y = mu_0 + tau_w + N(0, sigma_y^2),             cate_k = tau_k
    classification:  y ~ Bernoulli(sigmoid(mu_0 + tau_w - b)),
                     cate_k = sigmoid(mu_0 + tau_k - b) - sigmoid(mu_0 - b)

where ``tau_0 = 0`` and the intercept ``b`` makes the share of positives about
``positive_proportion`` (solved on a fixed calibration sample of the design).

Randomness: partition ``i`` draws its numerical covariates, treatment and noise from
``numpy.random.default_rng([seed, i])`` and its categoricals from
``default_rng([seed, i, 1])``; the design comes from ``seed`` alone (numerical coefficients
from ``default_rng([seed, 2**31 - 1])``, categorical ones from ``[seed, 2**31 - 2]``, the
calibration sample from the rows a partition number ``2**31 - 3`` would have). So any number
of rows costs nothing until computed, a partition's rows do not depend on ``n_rows``, the same
arguments always give the same data, and categoricals or a binary outcome leave the streams
of the numerical columns untouched.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd

EFFECTS = ("linear", "constant", "none")

#: Stream keys of the design; partitions use ``[seed, partition]`` (and ``[.., 1]``).
_NUMERICAL_DESIGN = 2**31 - 1
_CATEGORICAL_DESIGN = 2**31 - 2
_CALIBRATION = 2**31 - 3
_CALIBRATION_ROWS = 20_000


@dataclass(frozen=True)
class _Design:
    n_features: int
    n_variants: int
    beta: np.ndarray  # (d,) baseline outcome
    gamma: np.ndarray  # (d, K-1) effect coefficients
    tau0: np.ndarray  # (K-1,) constant part of the effects
    theta: np.ndarray  # (d, K) propensity logits (zeros: randomised)
    sigma_y: float
    # one entry per categorical covariate j, indexed by its category (one-hot coefficients)
    n_categories: tuple[int, ...] = ()
    beta_cat: tuple[np.ndarray, ...] = ()  # (k_j,)
    gamma_cat: tuple[np.ndarray, ...] = ()  # (k_j, K-1)
    theta_cat: tuple[np.ndarray, ...] = ()  # (k_j, K)
    is_classification: bool = False
    intercept: float = 0.0  # b: sigmoid(mu - b) is P(y = 1)


def _draw_design(
    seed: int, n_features: int, n_variants: int, effect: str, observational: bool, sigma_y: float
) -> _Design:
    rng = np.random.default_rng([seed, _NUMERICAL_DESIGN])
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
        raise ValueError(f"effect must be one of {list(EFFECTS)}, got {effect!r}")
    theta = (
        rng.normal(0, 0.3, (n_features, n_variants))
        if observational
        else np.zeros((n_features, n_variants))
    )
    return _Design(n_features, n_variants, beta, gamma, tau0, theta, sigma_y)


def _add_categoricals(
    design: _Design,
    seed: int,
    n_categoricals: int,
    n_categories: int | Sequence[int] | None,
    effect: str,
    observational: bool,
) -> _Design:
    """The categorical part of the design, from its own stream."""
    rng = np.random.default_rng([seed, _CATEGORICAL_DESIGN])
    if n_categories is None:
        # metalearners' generate_categoricals: uniform on 2..10
        counts = tuple(int(c) for c in rng.integers(2, 10, size=n_categoricals, endpoint=True))
    elif isinstance(n_categories, int | np.integer):
        counts = (int(n_categories),) * n_categoricals
    else:
        counts = tuple(int(c) for c in n_categories)
    k = design.n_variants
    beta_cat = tuple(rng.uniform(-1, 1, c) for c in counts)
    if effect == "linear":
        gamma_cat = tuple(rng.uniform(-0.5, 0.5, (c, k - 1)) for c in counts)
    else:
        gamma_cat = tuple(np.zeros((c, k - 1)) for c in counts)
    if observational:
        theta_cat = tuple(rng.normal(0, 0.3, (c, k)) for c in counts)
    else:
        theta_cat = tuple(np.zeros((c, k)) for c in counts)
    return replace(
        design,
        n_categories=counts,
        beta_cat=beta_cat,
        gamma_cat=gamma_cat,
        theta_cat=theta_cat,
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def _calibrate(design: _Design, seed: int, positive_proportion: float) -> _Design:
    """The intercept ``b`` with mean(sigmoid(mu_w - b)) = positive_proportion on the
    calibration sample (bisection: the mean falls monotonically in ``b``)."""
    draws = _draw_rows(design, seed, _CALIBRATION_ROWS, _CALIBRATION)
    mu = draws.mu0 + draws.effect
    lo, hi = float(mu.min()) - 50.0, float(mu.max()) + 50.0
    while hi - lo > 1e-10:
        mid = 0.5 * (lo + hi)
        if _sigmoid(mu - mid).mean() > positive_proportion:
            lo = mid
        else:
            hi = mid
    return replace(design, is_classification=True, intercept=0.5 * (lo + hi))


@dataclass
class _Rows:
    rng: np.random.Generator  # the partition's stream, positioned after the treatment draw
    X: np.ndarray
    codes: np.ndarray  # (n, n_categoricals) category codes
    p: np.ndarray
    w: np.ndarray
    tau: np.ndarray
    mu0: np.ndarray
    effect: np.ndarray  # tau of each row's own variant (0 for variant 0)


def _lookup(tables: tuple[np.ndarray, ...], codes: np.ndarray) -> np.ndarray:
    """Sum over categorical covariates j of ``tables[j][codes[:, j]]`` (one-hot @ coefs)."""
    return sum(table[codes[:, j]] for j, table in enumerate(tables))  # type: ignore[return-value]


def _draw_rows(design: _Design, seed: int, n_rows: int, number: int) -> _Rows:
    rng = np.random.default_rng([seed, number])
    d, k = design.n_features, design.n_variants
    X = rng.normal(size=(n_rows, d))
    logits = X @ design.theta
    tau = X @ design.gamma + design.tau0
    mu0 = X @ design.beta
    m = len(design.n_categories)
    if m:
        codes = np.random.default_rng([seed, number, 1]).binomial(
            np.asarray(design.n_categories) - 1, 0.5, size=(n_rows, m)
        )
        logits = logits + _lookup(design.theta_cat, codes)
        tau = tau + _lookup(design.gamma_cat, codes)
        mu0 = mu0 + _lookup(design.beta_cat, codes)
    else:
        codes = np.zeros((n_rows, 0), dtype=np.int64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(n_rows)[:, None]
    w = np.minimum((u > np.cumsum(p, axis=1)).sum(axis=1), k - 1)
    effect = np.where(w > 0, tau[np.arange(n_rows), np.maximum(w - 1, 0)], 0.0)
    return _Rows(rng, X, codes, p, w, tau, mu0, effect)


def _partition(design: _Design, seed: int, n_rows: int, number: int) -> pd.DataFrame:
    r = _draw_rows(design, seed, n_rows, number)
    k = design.n_variants
    frame = pd.DataFrame(r.X, columns=[f"x{i}" for i in range(design.n_features)])
    for j, count in enumerate(design.n_categories):
        dtype = pd.CategoricalDtype(pd.Index(np.arange(count, dtype=np.int64)))
        frame[f"c{j}"] = pd.Categorical.from_codes(r.codes[:, j], dtype=dtype)
    frame["w"] = r.w.astype(np.int64)
    if design.is_classification:
        b = design.intercept
        frame["y"] = (r.rng.random(n_rows) < _sigmoid(r.mu0 + r.effect - b)).astype(np.int64)
        base = _sigmoid(r.mu0 - b)
        cate = _sigmoid(r.mu0[:, None] + r.tau - b) - base[:, None]
    else:
        frame["y"] = r.mu0 + r.effect + r.rng.normal(0, design.sigma_y, n_rows)
        cate = r.tau
    for j in range(k - 1):
        frame[f"cate_{j + 1}"] = cate[:, j]
    for j in range(k):
        frame[f"propensity_{j}"] = r.p[:, j]
    return frame


# --- argument checks ------------------------------------------------------------------------


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def _check_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _check_categories(n_categories: Any, n_categoricals: int) -> None:
    if n_categories is None:
        return
    if n_categoricals == 0:
        raise ValueError(
            f"n_categories={n_categories!r} is given but n_categoricals=0; pass "
            "n_categoricals >= 1 or leave n_categories None"
        )
    if isinstance(n_categories, int | np.integer) and not isinstance(n_categories, bool):
        _check_int(n_categories, "n_categories", 2)
        return
    if isinstance(n_categories, str | bytes) or not isinstance(n_categories, Sequence):
        raise TypeError(
            "n_categories must be None, an int or a sequence of ints (one per categorical "
            f"covariate), got {type(n_categories).__name__}"
        )
    if len(n_categories) != n_categoricals:
        raise ValueError(
            f"n_categories has {len(n_categories)} entries but n_categoricals={n_categoricals}; "
            "give one number of categories per categorical covariate"
        )
    for j, count in enumerate(n_categories):
        _check_int(count, f"n_categories[{j}]", 2)


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
    n_categoricals: int = 0,
    n_categories: int | Sequence[int] | None = None,
    is_classification: bool = False,
    positive_proportion: float = 0.5,
) -> dd.DataFrame:
    """A lazy Dask DataFrame of a generated experiment (see the module docstring).

    Columns ``x0..x{n_features-1}``, ``c0..c{n_categoricals-1}``, ``w``, ``y``,
    ``cate_1..cate_{K-1}`` and ``propensity_0..propensity_{K-1}``; one partition per
    ``rows_per_partition`` rows (the last one holds the rest). Nothing is drawn until the
    frame is computed.

    ``effect``: "linear" (effects depend on the covariates), "constant" (one effect per
    variant) or "none". ``observational``: treatment probabilities depend on the covariates
    (else every variant has probability 1/K). ``n_categories``: the number of categories of
    every categorical covariate (an int, or one per covariate; at least 2); by default drawn
    from 2..10 per covariate. ``is_classification``: a 0/1 outcome with about
    ``positive_proportion`` positives; the ``cate_k`` columns are then differences of
    probabilities and ``sigma_y`` is not used.
    """
    n_rows = _check_int(n_rows, "n_rows", 1)
    n_features = _check_int(n_features, "n_features", 0)
    n_variants = _check_int(n_variants, "n_variants", 2)
    rows_per_partition = _check_int(rows_per_partition, "rows_per_partition", 1)
    seed = _check_int(seed, "seed", 0)
    n_categoricals = _check_int(n_categoricals, "n_categoricals", 0)
    if n_features + n_categoricals < 1:
        raise ValueError(
            "n_features + n_categoricals must be at least 1 (the experiment needs a covariate), "
            f"got n_features={n_features} and n_categoricals={n_categoricals}"
        )
    _check_categories(n_categories, n_categoricals)
    if not isinstance(effect, str) or effect not in EFFECTS:
        raise ValueError(f"effect must be one of {list(EFFECTS)}, got {effect!r}")
    observational = _check_bool(observational, "observational")
    is_classification = _check_bool(is_classification, "is_classification")
    sigma_y = _check_real(sigma_y, "sigma_y")
    if sigma_y < 0:
        raise ValueError(f"sigma_y must be >= 0 (the noise standard deviation), got {sigma_y}")
    positive_proportion = _check_real(positive_proportion, "positive_proportion")
    if not 0 < positive_proportion < 1:
        raise ValueError(
            f"positive_proportion must be strictly between 0 and 1, got {positive_proportion}"
        )

    design = _draw_design(seed, n_features, n_variants, effect, observational, sigma_y)
    if n_categoricals:
        design = _add_categoricals(
            design, seed, n_categoricals, n_categories, effect, observational
        )
    if is_classification:
        design = _calibrate(design, seed, positive_proportion)
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


def feature_names(frame: dd.DataFrame | pd.DataFrame) -> list[str]:
    """The covariates of a generated experiment: ``x0..`` then ``c0..``."""
    names = [c for c in frame.columns if isinstance(c, str)]
    return [c for c in names if re.fullmatch(r"x\d+", c)] + [
        c for c in names if re.fullmatch(r"c\d+", c)
    ]


def cate_names(frame: dd.DataFrame | pd.DataFrame) -> list[str]:
    """The true effects of a generated experiment: ``cate_1..cate_{K-1}``."""
    return [c for c in frame.columns if isinstance(c, str) and c.startswith("cate_")]


def propensity_names(frame: dd.DataFrame | pd.DataFrame) -> list[str]:
    """The true treatment probabilities of a generated experiment: ``propensity_0..``."""
    return [c for c in frame.columns if isinstance(c, str) and c.startswith("propensity_")]
