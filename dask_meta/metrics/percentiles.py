"""``uplift_by_percentile``: scikit-uplift's table of uplift per percentile of the CATE."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from dask_meta._typing import Vector
from dask_meta.metrics.binned_curves import _binned, _sample_size
from dask_meta.metrics.exact_curves import _exact, _Want
from dask_meta.metrics.inputs import _CATE, _W, _Y, _check_variant, _inputs, _pick_cate
from dask_meta.metrics.mode import Method, _check_method, _exact_limit, _resolve_method
from dask_meta.metrics.runner import _first_pass, _Runner


def _percentile_labels(bins: int, string: bool) -> list[Any]:
    p = [round(k * 100 / bins) for k in range(1, bins + 1)]
    if not string:
        return p
    return [f"0-{p[0]}"] + [f"{p[i]}-{p[i + 1]}" for i in range(len(p) - 1)]


def _percentile_table(
    stats: np.ndarray, labels: list[Any], y_binary: bool, std: bool, total: bool
) -> pd.DataFrame:
    if total:
        stats = np.concatenate([stats, stats.sum(axis=1, keepdims=True)], axis=1)
        labels = [*labels, "total"]
    nt, nc, yt, yc, y2t, y2c = stats
    with np.errstate(divide="ignore", invalid="ignore"):
        rt, rc = yt / nt, yc / nc
        if y_binary:  # scikit-uplift's formula
            vt, vc = rt * ((1 - rt) / nt), rc * ((1 - rc) / nc)
        else:
            vt, vc = (y2t / nt - rt**2) / nt, (y2c / nc - rc**2) / nc
    table = pd.DataFrame(
        {
            "n_treatment": nt.astype(np.int32),
            "n_control": nc.astype(np.int32),
            "response_rate_treatment": rt,
            "response_rate_control": rc,
            "uplift": rt - rc,
        },
        index=pd.Index(labels, name="percentile"),
    )
    if std:
        table["std_treatment"] = np.sqrt(vt)
        table["std_control"] = np.sqrt(vc)
        table["std_uplift"] = np.sqrt(vt + vc)
    return table


def uplift_by_percentile(
    y: Vector,
    cate: Vector,
    w: Vector,
    *,
    strategy: Literal["overall", "by_group"] = "overall",
    bins: int = 10,
    std: bool = False,
    total: bool = False,
    string_percentiles: bool = True,
    variant: int | None = None,
    method: Method = "auto",
    client: Any = None,
) -> pd.DataFrame:
    """Uplift per percentile of the predicted CATE, as ``sklift.metrics.uplift_by_percentile``.

    Rows: the ``bins`` percentiles from the highest CATE down; columns ``n_treatment``,
    ``n_control``, ``response_rate_treatment``, ``response_rate_control`` (outcome means),
    ``uplift`` and, with ``std=True``, ``std_treatment``, ``std_control``, ``std_uplift``
    (standard errors of the means; scikit-uplift's ``r (1 - r) / n`` for binary ``y``).

    Exact mode equals scikit-uplift (``strategy`` ``"overall"``: equal chunks of the
    ranking; ``"by_group"``: equal chunks of each group's ranking), except the ``total``
    row's standard errors, which are those of the whole sample (scikit-uplift adds up the
    per-percentile ones). Binned mode (``"overall"`` only): the chunks are intervals of CATE
    between approximate quantiles, so ties stay together and the chunks are only about
    equally large (their counts are exact); the labels are the actual shares of rows.
    """
    variant = _check_variant(variant)
    how = _check_method(method)
    if strategy not in ("overall", "by_group"):
        raise ValueError(f"strategy must be 'overall' or 'by_group', got {strategy!r}")
    if how == "binned" and strategy != "overall":
        raise ValueError("method='binned' supports strategy='overall' only")
    for name, flag in (("std", std), ("total", total), ("string_percentiles", string_percentiles)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be a bool, got {flag!r}")
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive int (the number of percentiles), got {bins!r}")
    bins = int(bins)
    cate = _pick_cate(cate, variant)
    inputs = _inputs({_CATE: ("cate", cate), _Y: ("y", y), _W: ("w", w)})
    runner = _Runner(inputs, client)
    sample = 0 if how == "exact" else _sample_size(bins)
    summary, resolved = _first_pass(runner, variant, sample)
    assert resolved is not None
    if bins >= summary.n_used:
        raise ValueError(f"bins={bins} must be smaller than the {summary.n_used} rows scored")
    how = _resolve_method(how, inputs, summary.n_used)
    if how == "binned":
        if strategy != "overall":
            raise ValueError("method='binned' supports strategy='overall' only")
        binned = _binned(runner, summary, resolved, bins)
        s = binned.stats
        stats = np.stack([s["n_t"], s["n_c"], s["y_t"], s["y_c"], s["y2_t"], s["y2_c"]])
        shares = np.cumsum(s["n_t"] + s["n_c"]) / summary.n_used
        ends = [round(100 * v) for v in shares]
        labels: list[Any] = ends
        if string_percentiles:
            labels = [f"{a}-{b}" for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        return _percentile_table(stats, labels, summary.y_binary, std, total)
    _exact_limit(inputs, summary.n_used, "table")
    pieces = _exact(runner, resolved, _Want(percentile=(bins, strategy)))
    stats = np.sum([p.chunks for p in pieces], axis=0)
    labels = _percentile_labels(bins, string_percentiles)
    return _percentile_table(stats, labels, summary.y_binary, std, total)
