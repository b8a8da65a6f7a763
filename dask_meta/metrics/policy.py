"""``policy_value``: the estimated mean outcome of treating where the CATE is high (IPW, AIPW).

One pass of per-partition sums, the validation riding along.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dask_meta._typing import Vector
from dask_meta.metrics.inputs import (
    _CATE,
    _E,
    _MU0,
    _MU1,
    _W,
    _Y,
    _check_variant,
    _inputs,
    _pick_cate,
)
from dask_meta.metrics.runner import _Runner
from dask_meta.metrics.validation import _merge_sums, _summarise, _Summary, _used_rows, _validate


def _policy_sums(
    part: pd.DataFrame, variant: int | None, threshold: float
) -> tuple[_Summary, np.ndarray]:
    summary = _summarise(part, variant)
    used, t = _used_rows(part, variant)
    c = part[_CATE].to_numpy(dtype=float)[used]
    y = part[_Y].to_numpy(dtype=float)[used]
    treat = (c > threshold).astype(float)
    mu0 = part[_MU0].to_numpy(dtype=float)[used] if _MU0 in part else np.zeros(len(y))
    mu1 = part[_MU1].to_numpy(dtype=float)[used] if _MU1 in part else np.zeros(len(y))
    e = part[_E].to_numpy(dtype=float)[used] if _E in part else None
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = treat * mu1 + (1 - treat) * mu0
        r_t = treat * t * (y - mu1) / (1.0 if e is None else e)
        r_c = (1 - treat) * (1 - t) * (y - mu0) / (1.0 if e is None else 1 - e)
    sums = np.array([len(y), t.sum(), direct.sum(), r_t.sum(), r_c.sum()])
    return summary, sums


def policy_value(
    y: Vector,
    cate: Vector,
    w: Vector,
    *,
    threshold: float = 0.0,
    propensity: Any = None,
    mu0: Any = None,
    mu1: Any = None,
    variant: int | None = None,
    client: Any = None,
) -> float:
    """Estimated mean outcome of the policy "treat with ``variant`` where CATE > threshold".

    Over the rows with ``w`` in ``{0, variant}`` (``n`` rows, ``t = 1{w = variant}``,
    ``pi = 1{cate > threshold}``, ``e`` the propensity):

    * IPW (no ``mu0``/``mu1``): ``mean(pi t y / e + (1 - pi)(1 - t) y / (1 - e))``;
    * AIPW / doubly robust (``mu0`` and ``mu1``, outcome predictions under control and under
      the variant): ``mean(pi (mu1 + t (y - mu1) / e) + (1 - pi)(mu0 + (1 - t)(y - mu0) /
      (1 - e)))``.

    ``propensity``: ``P(w = variant | x, w in {0, variant})`` per row, or one number (a
    randomised experiment); ``None`` uses the observed share of the variant, which is right
    for a randomised experiment with a constant assignment probability.
    """
    variant = _check_variant(variant)
    if (mu0 is None) != (mu1 is None):
        raise ValueError("pass both mu0 and mu1 (outcome predictions) for the AIPW value")
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number, got {threshold!r}") from None
    cate = _pick_cate(cate, variant)
    inputs = _inputs(
        {
            _CATE: ("cate", cate),
            _Y: ("y", y),
            _W: ("w", w),
            _E: ("propensity", propensity),
            _MU0: ("mu0", mu0),
            _MU1: ("mu1", mu1),
        }
    )
    runner = _Runner(inputs, client)
    summary, sums = runner.reduce("policy", _policy_sums, _merge_sums, variant, threshold)
    _validate(summary, inputs.names, variant)
    n, n_t, direct, r_t, r_c = sums
    a, b = (1.0, 1.0) if propensity is not None else (n / n_t, n / (n - n_t))
    return float((direct + a * r_t + b * r_c) / n)
