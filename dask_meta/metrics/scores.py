"""The doubly robust scores of the DR-loss, the BLP test and the GATES, in one place.

``phi = mu1 - mu0 + t (y - mu1) / e - (1 - t)(y - mu0) / (1 - e)`` on the rows of ``w`` in
``{0, variant}`` with ``t = 1{w = variant}``, or the ``pseudo_outcomes`` given (every row).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dask_meta.metrics.inputs import _CATE, _E, _MU0, _MU1, _PSEUDO, _W, _Y, _pick_cate
from dask_meta.metrics.validation import _used_rows


def _dr_values(
    caller: str,
    cate: Any,
    y: Any,
    w: Any,
    mu0: Any,
    mu1: Any,
    propensity: Any,
    pseudo_outcomes: Any,
    variant: int | None,
) -> dict[str, tuple[str, Any]]:
    """``{role: (argument name, value)}`` of a DR-score metric, for :func:`_inputs`."""
    if pseudo_outcomes is not None:
        if any(v is not None for v in (y, w, mu0, mu1, propensity)):
            raise ValueError("pass either pseudo_outcomes, or y, w, mu0, mu1 and propensity")
        return {
            _CATE: ("cate", _pick_cate(cate, variant)),
            _PSEUDO: ("pseudo_outcomes", pseudo_outcomes),
        }
    given = (("y", y), ("w", w), ("mu0", mu0), ("mu1", mu1), ("propensity", propensity))
    missing = [name for name, v in given if v is None]
    if missing:
        raise ValueError(f"{caller} needs {missing} (or pseudo_outcomes)")
    return {
        _CATE: ("cate", _pick_cate(cate, variant)),
        _Y: ("y", y),
        _W: ("w", w),
        _MU0: ("mu0", mu0),
        _MU1: ("mu1", mu1),
        _E: ("propensity", propensity),
    }


def _dr_rows(part: pd.DataFrame, variant: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(CATE, DR score) of the scored rows of a partition."""
    used, t = _used_rows(part, variant)

    def col(role: str) -> np.ndarray:
        return part[role].to_numpy(dtype=float)[used]

    cate = col(_CATE)
    if _PSEUDO in part:
        return cate, col(_PSEUDO)
    y, mu0, mu1, e = col(_Y), col(_MU0), col(_MU1), col(_E)
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = mu1 - mu0 + t * (y - mu1) / e - (1 - t) * (y - mu0) / (1 - e)
    return cate, phi
