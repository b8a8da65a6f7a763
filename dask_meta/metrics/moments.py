"""Central co-moments of two variables per group, merged exactly across partitions.

A partition computes, per group, its row count, the means of ``x`` and ``y`` and the central
sums ``S[p, q] = sum (x - mean x)^p (y - mean y)^q`` for ``p + q <= order``, with its own
means (two passes over rows that are in memory). Merging moves every part's sums to the
pooled means by the binomial expansion

    sum (x - m)^p (y - l)^q
      = sum_{a <= p, b <= q} C(p, a) C(q, b) (mean x - m)^(p - a) (mean y - l)^(q - b) S[a, b],

which is exact algebra: no sum of raw powers is formed, so a large common offset of ``x`` or
``y`` (an outcome around 1e3, say) cancels inside each partition and never meets a rounding
error of its square. This is the multivariate form of Chan, Golub and LeVeque's pairwise
variance update.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np


@dataclass(frozen=True)
class _Moments:
    """Per group ``g``: rows ``n[g]``, means ``mean[g] = (mean x, mean y)`` and central sums
    ``sums[g, p, q]`` (entries with ``p + q > order`` are 0)."""

    n: np.ndarray  # (G,)
    mean: np.ndarray  # (G, 2)
    sums: np.ndarray  # (G, order + 1, order + 1)

    @property
    def order(self) -> int:
        return int(self.sums.shape[1]) - 1


def _group_moments(
    x: np.ndarray, y: np.ndarray, group: np.ndarray, n_groups: int, order: int
) -> _Moments:
    """The moments of the rows ``(x, y)`` in groups ``0..n_groups-1``."""
    n = np.bincount(group, minlength=n_groups).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.stack(
            [
                np.bincount(group, weights=x, minlength=n_groups) / n,
                np.bincount(group, weights=y, minlength=n_groups) / n,
            ],
            axis=1,
        )
    mean[n == 0] = 0.0
    dx, dy = x - mean[group, 0], y - mean[group, 1]
    sums = np.zeros((n_groups, order + 1, order + 1))
    px = np.ones_like(dx)
    for p in range(order + 1):
        pxy = px.copy()
        for q in range(order + 1 - p):
            sums[:, p, q] = np.bincount(group, weights=pxy, minlength=n_groups)
            pxy = pxy * dy
        px = px * dx
    sums[:, 1, 0] = sums[:, 0, 1] = 0.0  # central: zero up to rounding, exactly zero here
    return _Moments(n, mean, sums)


def _shift(sums: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Central sums about the means moved by ``d`` (G, 2): sums about ``mean - d``."""
    order = sums.shape[1] - 1
    out = np.zeros_like(sums)
    dx, dy = d[:, 0], d[:, 1]
    for p in range(order + 1):
        for q in range(order + 1 - p):
            total = np.zeros(len(sums))
            for a in range(p + 1):
                for b in range(q + 1):
                    coef = comb(p, a) * comb(q, b)
                    total = total + coef * dx ** (p - a) * dy ** (q - b) * sums[:, a, b]
            out[:, p, q] = total
    return out


def _merge_moments(*parts: _Moments) -> _Moments:
    n = np.sum([m.n for m in parts], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.sum([m.n[:, None] * m.mean for m in parts], axis=0) / n[:, None]
    mean[n == 0] = 0.0
    # a group absent from a part has all its sums 0 (S[0, 0] is the count): it adds nothing
    sums = np.sum([_shift(m.sums, m.mean - mean) for m in parts], axis=0)
    return _Moments(n, mean, sums)
