"""Uplift and policy metrics of CATE estimates, computed where the data live.

Every function takes the predicted CATE of one treatment variant against control, the
outcome ``y`` and the treatment ``w`` (``0`` = control, ``variant`` = the variant scored;
rows of other variants are ignored), as numpy/pandas or as Dask Series/Arrays (all of one
kind). In-memory input is computed in this process; Dask input runs on the cluster
(``client``, resolved like the learners': explicit, else the default client, else the
embedded LocalCluster) and only per-partition or per-bin statistics come back.

Conventions follow scikit-uplift 0.5.1 (``sklift.metrics``): argument order
``(y, cate, w)``, curves ``(x, values)`` with ``x`` the number of rows targeted, the
normalisation of ``qini_auc_score`` / ``uplift_auc_score`` and the table of
``uplift_by_percentile``. In exact mode the numbers equal scikit-uplift's (tested to 1e-10).

``method``: ``"exact"``, ``"binned"`` or ``"auto"`` (exact for in-memory input and for Dask
input of at most :data:`EXACT_MAX_ROWS` used rows, else binned). How ties are ranked, how
the exact mode works on Dask input and the proof of the binned mode's error bound are in
"How the metrics are computed" in ``docs/evaluation.md``.

Is the heterogeneity real? :func:`blp_test` (the best linear predictor test of
Chernozhukov, Demirer, Duflo and Fernández-Val), :func:`gates` (group average effects by
CATE quantile group, which is also the calibration table) and :func:`calibration_score`
(EconML's calibration R^2 of that table) test the CATE against doubly robust scores; they
take the arguments of :func:`dr_loss`. See "Is the heterogeneity real? BLP, GATES and
calibration" in ``docs/evaluation.md``.

The submodules: :mod:`~dask_meta.metrics.curves` (curves, AUC scores, perfect curves),
:mod:`~dask_meta.metrics.percentiles`, :mod:`~dask_meta.metrics.policy`,
:mod:`~dask_meta.metrics.losses`, :mod:`~dask_meta.metrics.heterogeneity`,
:mod:`~dask_meta.metrics.gates` and :mod:`~dask_meta.metrics.histogram` hold the public
functions; :mod:`~dask_meta.metrics.exact_curves` and
:mod:`~dask_meta.metrics.binned_curves` the two modes, :mod:`~dask_meta.metrics.inputs`,
:mod:`~dask_meta.metrics.validation`, :mod:`~dask_meta.metrics.mode`,
:mod:`~dask_meta.metrics.scores`, :mod:`~dask_meta.metrics.moments` and
:mod:`~dask_meta.metrics.runner` what they share.
"""

from dask_meta.metrics.curves import (
    perfect_qini_curve,
    perfect_uplift_curve,
    qini_auc_score,
    qini_curve,
    uplift_auc_score,
    uplift_curve,
)
from dask_meta.metrics.gates import calibration_score, gates
from dask_meta.metrics.heterogeneity import BLPTest, blp_test
from dask_meta.metrics.histogram import cate_histogram
from dask_meta.metrics.losses import dr_loss, r_loss
from dask_meta.metrics.mode import DEFAULT_BINS, EXACT_MAX_ROWS
from dask_meta.metrics.mode import METHODS as METHODS  # the values of ``method``
from dask_meta.metrics.mode import Method as Method  # their type (dask_meta.plots uses it)
from dask_meta.metrics.percentiles import uplift_by_percentile
from dask_meta.metrics.policy import policy_value

__all__ = [
    "DEFAULT_BINS",
    "EXACT_MAX_ROWS",
    "BLPTest",
    "blp_test",
    "calibration_score",
    "cate_histogram",
    "dr_loss",
    "gates",
    "perfect_qini_curve",
    "perfect_uplift_curve",
    "policy_value",
    "qini_auc_score",
    "qini_curve",
    "r_loss",
    "uplift_auc_score",
    "uplift_by_percentile",
    "uplift_curve",
]
