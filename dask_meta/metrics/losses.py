"""The R-loss and the DR-loss of CATE estimates: one pass of per-partition sums."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from dask_meta._typing import Vector
from dask_meta.metrics.inputs import (
    _CATE,
    _E,
    _M,
    _W,
    _WRES,
    _Y,
    _YRES,
    _check_variant,
    _inputs,
    _pick_cate,
)
from dask_meta.metrics.runner import _Runner
from dask_meta.metrics.scores import _dr_rows, _dr_values
from dask_meta.metrics.validation import _merge_sums, _summarise, _Summary, _used_rows, _validate


def _loss_sums(part: pd.DataFrame, variant: int | None, kind: str) -> tuple[_Summary, np.ndarray]:
    summary = _summarise(part, variant)
    if kind == "dr":
        tau, phi = _dr_rows(part, variant)
        return summary, np.array([len(tau), float(np.sum((phi - tau) ** 2))])
    used, t = _used_rows(part, variant)

    def col(role: str) -> np.ndarray:
        return part[role].to_numpy(dtype=float)[used]

    tau = col(_CATE)
    if _YRES in part:
        residual = col(_YRES) - tau * col(_WRES)
    else:
        residual = (col(_Y) - col(_M)) - tau * (t - col(_E))
    return summary, np.array([len(tau), float(np.sum(residual**2))])


def _root(mean: float, squared: bool) -> float:
    return mean if squared else math.sqrt(mean)


def r_loss(
    cate_estimates: Vector,
    outcome_estimates: Vector | None = None,
    propensity_scores: Vector | None = None,
    outcomes: Vector | None = None,
    treatments: Vector | None = None,
    *,
    outcome_residuals: Any = None,
    treatment_residuals: Any = None,
    variant: int | None = None,
    squared: bool = False,
    client: Any = None,
) -> float:
    """R-loss of CATE estimates, on Dask or in memory.

    ``sqrt(mean(((y - m) - tau (t - e))^2))`` as ``metalearners``' ``r_loss``, with the same
    positional arguments (``dask_meta.r_loss`` is this function); ``squared=True`` gives the
    mean itself. With a binary ``treatments`` every row is scored, ``t = w``. ``treatments``
    may hold several variants: rows of ``w`` in ``{0, variant}`` are then scored with
    ``t = 1{w = variant}`` and ``propensity_scores`` ``P(w = variant | x, w in {0, variant})``.
    Or pass the residuals ``outcome_residuals = y - m`` and ``treatment_residuals = t - e``
    (every row is then scored). Propensities may be 0 or 1: the loss does not divide by them.
    """
    variant = _check_variant(variant)
    residuals = outcome_residuals is not None or treatment_residuals is not None
    plain = [outcome_estimates, propensity_scores, outcomes, treatments]
    if residuals:
        if (
            outcome_residuals is None
            or treatment_residuals is None
            or any(v is not None for v in plain)
        ):
            raise ValueError(
                "pass either outcome_residuals and treatment_residuals, or outcome_estimates, "
                "propensity_scores, outcomes and treatments"
            )
        values = {
            _CATE: ("cate_estimates", _pick_cate(cate_estimates, variant)),
            _YRES: ("outcome_residuals", outcome_residuals),
            _WRES: ("treatment_residuals", treatment_residuals),
        }
    else:
        if any(v is None for v in plain):
            raise ValueError(
                "r_loss needs outcome_estimates, propensity_scores, outcomes and treatments "
                "(or outcome_residuals and treatment_residuals)"
            )
        values = {
            _CATE: ("cate_estimates", _pick_cate(cate_estimates, variant)),
            _M: ("outcome_estimates", outcome_estimates),
            _E: ("propensity_scores", propensity_scores),
            _Y: ("outcomes", outcomes),
            _W: ("treatments", treatments),
        }
    inputs = _inputs(values)
    runner = _Runner(inputs, client)
    summary, (n, total) = runner.reduce("r-loss", _loss_sums, _merge_sums, variant, "r")
    _validate(summary, inputs.names, variant, groups_required=False, propensity_divides=False)
    return _root(total / n, squared)


def dr_loss(
    cate: Vector,
    y: Vector | None = None,
    w: Vector | None = None,
    *,
    mu0: Any = None,
    mu1: Any = None,
    propensity: Any = None,
    pseudo_outcomes: Any = None,
    variant: int | None = None,
    squared: bool = False,
    client: Any = None,
) -> float:
    """DR-loss: ``sqrt(mean((phi - cate)^2))`` against the doubly robust pseudo-outcomes.

    ``phi = mu1 - mu0 + t (y - mu1) / e - (1 - t)(y - mu0) / (1 - e)`` on the rows of ``w`` in
    ``{0, variant}``, ``t = 1{w = variant}``, ``e`` = ``propensity`` (per row or one number);
    or pass ``pseudo_outcomes`` directly (every row is scored). ``squared=True``: the mean.
    """
    variant = _check_variant(variant)
    values = _dr_values("dr_loss", cate, y, w, mu0, mu1, propensity, pseudo_outcomes, variant)
    inputs = _inputs(values)
    runner = _Runner(inputs, client)
    summary, (n, total) = runner.reduce("dr-loss", _loss_sums, _merge_sums, variant, "dr")
    _validate(summary, inputs.names, variant)
    return _root(total / n, squared)
