"""``blp_test``: the best linear predictor test of heterogeneity, in one pass of sums.

See "Is the heterogeneity real? BLP, GATES and calibration" in ``docs/evaluation.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import pandas as pd

from dask_meta._typing import Vector
from dask_meta.metrics.inputs import _CATE, _check_variant, _inputs
from dask_meta.metrics.moments import _group_moments, _merge_moments, _Moments
from dask_meta.metrics.runner import _Runner
from dask_meta.metrics.scores import _dr_rows, _dr_values
from dask_meta.metrics.validation import _merge_summaries, _summarise, _Summary, _validate

CovType = Literal["nonrobust", "HC0", "HC1"]
COV_TYPES = ("nonrobust", "HC0", "HC1")


def _two_sided(stat: float, use_t: bool, df: int) -> float:
    if math.isnan(stat):
        return math.nan
    if use_t:
        from scipy import stats

        return float(2 * stats.t.sf(abs(stat), df))
    return math.erfc(abs(stat) / math.sqrt(2))


def _critical(alpha: float, use_t: bool, df: int) -> float:
    if use_t:
        from scipy import stats

        return float(stats.t.ppf(1 - alpha / 2, df))
    return NormalDist().inv_cdf(1 - alpha / 2)


@dataclass(frozen=True)
class BLPTest:
    """The best linear predictor of the DR scores ``phi`` given the centred CATE.

    OLS of ``phi`` on ``[1, cate - mean(cate)]``: ``ate`` (beta1, the mean of ``phi``: the
    AIPW average effect) and ``het`` (beta2, the heterogeneity loading: 1 when the CATE is
    the best linear predictor of the effect, 0 when it carries no information about it),
    their standard errors (``cov_type``), t statistics and two-sided p-values (normal, or
    Student t with ``n - 2`` degrees of freedom when ``use_t``). ``ate_het_cov`` is their
    covariance (0 for ``"nonrobust"``: the regressor is centred).
    """

    ate: float
    ate_se: float
    ate_tstat: float
    ate_pvalue: float
    het: float
    het_se: float
    het_tstat: float
    het_pvalue: float
    ate_het_cov: float
    n: int
    cov_type: str
    use_t: bool

    def as_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """Rows ``ate`` and ``het``; columns ``coef``, ``se``, ``tstat``, ``pvalue`` and the
        ``1 - alpha`` interval ``lower``, ``upper`` (with the same distribution as the
        p-values)."""
        alpha = _check_alpha(alpha)
        z = _critical(alpha, self.use_t, self.n - 2)
        coef = np.array([self.ate, self.het])
        se = np.array([self.ate_se, self.het_se])
        return pd.DataFrame(
            {
                "coef": coef,
                "se": se,
                "tstat": [self.ate_tstat, self.het_tstat],
                "pvalue": [self.ate_pvalue, self.het_pvalue],
                "lower": coef - z * se,
                "upper": coef + z * se,
            },
            index=pd.Index(["ate", "het"], name="term"),
        )


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.floating):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1) (1 - alpha is the coverage), got {alpha!r}")
    return float(alpha)


def _blp_sums(part: pd.DataFrame, variant: int | None) -> tuple[_Summary, _Moments]:
    summary = _summarise(part, variant)
    cate, phi = _dr_rows(part, variant)
    return summary, _group_moments(cate, phi, np.zeros(len(cate), dtype=np.int64), 1, 4)


def _merge_blp(*parts: tuple[_Summary, _Moments]) -> tuple[_Summary, _Moments]:
    return _merge_summaries(*(s for s, _ in parts)), _merge_moments(*(m for _, m in parts))


def _blp(moments: _Moments, cov_type: str, use_t: bool) -> BLPTest:
    """The OLS solution and its covariance from the central moments of (cate, phi).

    With ``x = cate - mean``, ``Y = phi - mean`` and ``e = Y - het x`` (the residual), every
    sum the estimator needs is a combination of the central sums ``S[p, q]``:
    ``sum e^2 = S02 - 2 het S11 + het^2 S20``, ``sum e^2 x = S12 - 2 het S21 + het^2 S30``
    and ``sum e^2 x^2 = S22 - 2 het S31 + het^2 S40``.
    """
    n = float(moments.n[0])
    s = moments.sums[0]
    sxx = s[2, 0]
    het = s[1, 1] / sxx
    e2 = max(s[0, 2] - 2 * het * s[1, 1] + het**2 * sxx, 0.0)
    if cov_type == "nonrobust":
        sigma2 = e2 / (n - 2)
        var_ate, var_het, cov = sigma2 / n, sigma2 / sxx, 0.0
    else:
        e2x = s[1, 2] - 2 * het * s[2, 1] + het**2 * s[3, 0]
        e2x2 = max(s[2, 2] - 2 * het * s[3, 1] + het**2 * s[4, 0], 0.0)
        scale = n / (n - 2) if cov_type == "HC1" else 1.0
        var_ate = scale * e2 / n**2
        var_het = scale * e2x2 / sxx**2
        cov = scale * e2x / (n * sxx)
    ate = float(moments.mean[0, 1])
    ate_se, het_se = math.sqrt(var_ate), math.sqrt(var_het)
    with np.errstate(divide="ignore", invalid="ignore"):
        ate_t = float(np.divide(ate, ate_se))
        het_t = float(np.divide(het, het_se))
    df = int(n) - 2
    return BLPTest(
        ate=ate,
        ate_se=ate_se,
        ate_tstat=ate_t,
        ate_pvalue=_two_sided(ate_t, use_t, df),
        het=float(het),
        het_se=het_se,
        het_tstat=het_t,
        het_pvalue=_two_sided(het_t, use_t, df),
        ate_het_cov=float(cov),
        n=int(n),
        cov_type=cov_type,
        use_t=use_t,
    )


def blp_test(
    cate: Vector,
    y: Vector | None = None,
    w: Vector | None = None,
    *,
    mu0: Any = None,
    mu1: Any = None,
    propensity: Any = None,
    pseudo_outcomes: Any = None,
    variant: int | None = None,
    cov_type: CovType = "HC0",
    use_t: bool = False,
    client: Any = None,
) -> BLPTest:
    """Best linear predictor (BLP) test of heterogeneity (Chernozhukov, Demirer, Duflo and
    Fernández-Val): OLS of the DR scores on ``[1, cate - mean(cate)]``.

    ``phi = mu1 - mu0 + t (y - mu1) / e - (1 - t)(y - mu0) / (1 - e)`` on the rows of ``w``
    in ``{0, variant}``, ``t = 1{w = variant}``, as :func:`dr_loss` computes it; or pass
    ``pseudo_outcomes`` (every row is scored). The CATE must not have been fitted on the
    rows it is tested on (held-out rows or cross-fitting; see the docs).

    ``het`` (beta2) is the heterogeneity loading: ``het_pvalue`` tests "the CATE carries no
    information about the effect" (beta2 = 0), and beta2 near 1 means well-scaled
    estimates. ``cov_type``: ``"nonrobust"``, ``"HC0"`` (default, DoubleML's
    ``DoubleMLBLP``) or ``"HC1"``, statsmodels' definitions. p-values are two-sided and
    normal (DoubleML's; statsmodels' default for robust covariances); ``use_t=True`` uses
    Student t with ``n - 2`` degrees of freedom, statsmodels' default for ``"nonrobust"``
    (EconML's ``DRTester.evaluate_blp`` with one treatment). For large ``n`` they agree.

    One pass of per-partition central moments up to degree 4 of ``(cate, phi)``; only
    those (and the validation statistics) reach the client.
    """
    variant = _check_variant(variant)
    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {list(COV_TYPES)}, got {cov_type!r}")
    if not isinstance(use_t, bool | np.bool_):
        raise ValueError(f"use_t must be a bool, got {use_t!r}")
    values = _dr_values("blp_test", cate, y, w, mu0, mu1, propensity, pseudo_outcomes, variant)
    inputs = _inputs(values)
    runner = _Runner(inputs, client)
    summary, moments = runner.reduce("blp", _blp_sums, _merge_blp, variant)
    _validate(summary, inputs.names, variant)
    n = int(moments.n[0])
    if n < 3:
        raise ValueError(f"the BLP regression needs at least 3 scored rows, got {n}")
    if not summary.cate_min < summary.cate_max:
        raise ValueError(
            f"{inputs.names[_CATE]} is constant on the {n} scored rows; the heterogeneity "
            "loading is not identified (a constant CATE predicts no heterogeneity)"
        )
    return _blp(moments, str(cov_type), bool(use_t))
