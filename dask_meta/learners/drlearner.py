"""DR-learner (Kennedy 2020): regression of the AIPW pseudo-outcome on X."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd

from dask_meta import runtime
from dask_meta._constants import (
    OVERALL,
    PROPENSITY_MODEL,
    TREATMENT_MODEL,
    VARIANT_OUTCOME_MODEL,
    W_COL,
    Y_COL,
)
from dask_meta._typing import Vector
from dask_meta.data import training_frame
from dask_meta.evaluation import PartitionPlan, predict_rows
from dask_meta.learners._common import (
    EPSILON,
    clip_to_epsilon,
    positive_class,
    treatment_cate_partition,
)
from dask_meta.learners.base import MetaLearner
from dask_meta.learners.fit_run import FitRun
from dask_meta.learners.tables import Derivation, ModelEntry, ModelSpecification, derived_columns
from dask_meta.learners.tlearner import ConditionalAverageOutcomes, outcome_evaluation_rows


def aipw_pseudo_outcomes(
    frame: pd.DataFrame,
    folds: pd.DataFrame | None,
    propensity: Any,
    outcomes: list[Any],
    designs: tuple[Any, Any],
    variants: list[int],
    outcome_method: str,
    oos_method: str,
    is_classification: bool,
    adaptive_clipping: bool,
    epsilon: float = EPSILON,
) -> np.ndarray:
    """phi_k = (y - mu_k)/e_k 1{w=k} + mu_k - (y - mu_0)/e_0 1{w=0} - mu_0, ``(n, len(variants))``.

    mu follows the in-sample mixing rule (own rows cross-fitted, other rows out-of-sample);
    propensities below ``epsilon`` count as ``epsilon`` in the denominators, and with
    ``adaptive_clipping`` rows whose smallest propensity is below epsilon get mu_k - mu_0.
    """
    p_design, o_design = designs
    e = propensity.block_predict(p_design.matrix(frame), folds, "predict_proba", oos_method)
    matrix = o_design.matrix(frame)
    mu = {
        k: positive_class(
            outcomes[k].block_predict(matrix, folds, outcome_method, oos_method),
            is_classification,
        )
        for k in (0, *variants)
    }
    y, w = frame[Y_COL].to_numpy(dtype=float), frame[W_COL].to_numpy()
    return aipw_terms(y, w, e, mu, variants, adaptive_clipping, epsilon)


def aipw_terms(
    y: np.ndarray,
    w: np.ndarray,
    e: np.ndarray,
    mu: dict[int, np.ndarray],
    variants: list[int],
    adaptive_clipping: bool,
    epsilon: float,
) -> np.ndarray:
    """The AIPW pseudo-outcomes ``(n, len(variants))`` from propensities ``e`` ``(n, K)`` and
    expected outcomes ``mu[k]`` ``(n,)`` (see :func:`aipw_pseudo_outcomes`)."""
    mu0 = mu[0]
    control_term = (y - mu0) / clip_to_epsilon(e[:, 0], epsilon) * (w == 0) + mu0
    out = np.empty((len(y), len(variants)))
    for j, k in enumerate(variants):
        muk = mu[k]
        phi = (y - muk) / clip_to_epsilon(e[:, k], epsilon) * (w == k) + muk - control_term
        if adaptive_clipping:
            phi = np.where(e.min(axis=1) < epsilon, muk - mu0, phi)
        out[:, j] = phi
    return out


def dr_pseudo_outcome(
    part: pd.DataFrame,
    predictions: dict,
    variant: int,
    is_classification: bool,
    adaptive_clipping: bool,
    min_propensity: float,
) -> np.ndarray:
    """The AIPW pseudo-outcome of one variant on a training partition, from the shared
    in-sample predictions of the propensity model and the outcome models of 0 and ``variant``
    (metalearners' mixing rule: cross-fitted on the model's own rows, overall elsewhere)."""
    mu = {
        k: positive_class(predictions[(VARIANT_OUTCOME_MODEL, k)], is_classification)
        for k in (0, variant)
    }
    y, w = part[Y_COL].to_numpy(dtype=float), part[W_COL].to_numpy()
    e = predictions[(PROPENSITY_MODEL, 0)]
    return aipw_terms(y, w, e, mu, [variant], adaptive_clipping, min_propensity)[:, 0]


def _ate_sums(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """One partition's sums of the AIPW terms and their squares, and its rows."""
    return phi.sum(axis=0), (phi**2).sum(axis=0), int(np.isfinite(phi[:, 0]).sum())


def _ate_partition(frame: pd.DataFrame, folds: pd.DataFrame | None, bundle: Any) -> np.ndarray:
    propensity, outcomes, designs, n_variants, outcome_method, is_clf, adaptive, floor = bundle
    return aipw_pseudo_outcomes(
        frame,
        folds,
        propensity,
        outcomes,
        designs,
        list(range(1, n_variants)),
        outcome_method,
        OVERALL,
        is_clf,
        adaptive,
        floor,
    )


def dr_evaluation_rows(frame: pd.DataFrame, folds: pd.DataFrame | None, bundle: Any) -> list:
    """Outcome and propensity models, then treatment model k on all rows against the AIPW
    pseudo-outcome of variant k (nuisances at the same is_oos / oos_method)."""
    outcome_bundle, propensity, designs, treatments, t_design, oos, is_clf, *clipping = bundle
    rows = outcome_evaluation_rows(frame, folds, outcome_bundle)
    w = frame[W_COL].to_numpy()
    every = np.ones(len(frame), dtype=bool)
    rows.append(
        (
            predict_rows(propensity, designs[0], frame, folds, "predict_proba", oos, every),
            w.astype(float),
            every,
            None,
        )
    )
    cfes, _, outcome_method, _ = outcome_bundle
    variants = list(range(1, len(cfes)))
    phi = aipw_pseudo_outcomes(
        frame, folds, propensity, cfes, designs, variants, outcome_method, oos, is_clf, *clipping
    )
    for j, model in enumerate(treatments):
        tau = predict_rows(model, t_design, frame, folds, "predict", oos, every)
        rows.append((tau, phi[:, j], every, None))
    return rows


def check_min_propensity(value: Any) -> float:
    """``min_propensity`` as a float in (0, 0.5), or a ValueError / TypeError naming it."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"min_propensity must be a number in (0, 0.5), got {value!r}")
    if not 0 < float(value) < 0.5:
        raise ValueError(f"min_propensity must be in (0, 0.5), got {value!r}")
    return float(value)


class DRLearner(ConditionalAverageOutcomes, MetaLearner):
    """DR-learner: outcome models per variant, a propensity model, AIPW pseudo-outcomes.

    Beyond metalearners' arguments, ``min_propensity`` (default 1e-9, metalearners' fixed
    epsilon) is the floor of the propensities that divide the residuals, and the threshold of
    ``adaptive_clipping``. A floor such as 0.01 trims the pseudo-outcomes of units with extreme
    propensities, where poor overlap otherwise makes them explode.
    """

    _synchronizes = True
    _fit_needs_overall = frozenset({VARIANT_OUTCOME_MODEL})

    def __init__(
        self,
        *args: Any,
        adaptive_clipping: bool = False,
        min_propensity: float = EPSILON,
        **kwargs: Any,
    ):
        if not isinstance(adaptive_clipping, bool | np.bool_):
            raise TypeError(f"adaptive_clipping must be a bool, got {adaptive_clipping!r}")
        self.adaptive_clipping = bool(adaptive_clipping)
        self.min_propensity = check_min_propensity(min_propensity)
        super().__init__(*args, **kwargs)

    @classmethod
    def nuisance_model_specifications(cls) -> dict[str, ModelSpecification]:
        return {
            VARIANT_OUTCOME_MODEL: ModelSpecification(
                MetaLearner._get_n_variants, MetaLearner._outcome_predict_method
            ),
            PROPENSITY_MODEL: ModelSpecification(
                MetaLearner._get_one, MetaLearner._predict_proba_method
            ),
        }

    @classmethod
    def treatment_model_specifications(cls) -> dict[str, ModelSpecification]:
        return {
            TREATMENT_MODEL: ModelSpecification(
                MetaLearner._get_n_variants_minus_one, MetaLearner._predict_method
            )
        }

    @classmethod
    def _supports_multi_treatment(cls) -> bool:
        return True

    @classmethod
    def _supports_multi_class(cls) -> bool:
        return False

    @property
    def init_args(self) -> dict[str, Any]:
        return super().init_args | {
            "adaptive_clipping": self.adaptive_clipping,
            "min_propensity": self.min_propensity,
        }

    def _nuisance_entries(self, synchronize: bool) -> list[ModelEntry]:
        # outcome models keep their own CV; the propensity model shares the all-rows split
        # with the treatment models when synchronised
        return [
            ModelEntry(VARIANT_OUTCOME_MODEL, k, (k,), Y_COL) for k in range(self.n_variants)
        ] + [ModelEntry(PROPENSITY_MODEL, 0, None, W_COL, "all" if synchronize else "own")]

    def _treatment_entries(self, synchronize: bool) -> list[ModelEntry]:
        entries = []
        for k in range(1, self.n_variants):
            entry = ModelEntry(TREATMENT_MODEL, k - 1, None, "")
            entries.append(
                ModelEntry(
                    TREATMENT_MODEL,
                    k - 1,
                    None,
                    derived_columns(entry)[0],
                    "all" if synchronize else "own",
                )
            )
        return entries

    def _derivation(self, run: FitRun, entry: ModelEntry) -> Derivation:
        k = entry.ordinal + 1
        columns = run.data.columns
        designs = (
            self._design(PROPENSITY_MODEL, columns),
            self._design(VARIANT_OUTCOME_MODEL, columns),
        )
        outcome = (designs[1], self._outcome_predict_method())
        return Derivation(
            dr_pseudo_outcome,
            ((PROPENSITY_MODEL, 0), (VARIANT_OUTCOME_MODEL, 0), (VARIANT_OUTCOME_MODEL, k)),
            (k, self.is_classification, self.adaptive_clipping, self.min_propensity),
            predicts=((designs[0], "predict_proba"), outcome, outcome),
        )

    def _evaluation_plan(
        self, is_oos: bool, oos_method: str, scoring: dict[str, list[Any]]
    ) -> PartitionPlan:
        oos = (is_oos, oos_method)
        outcome_bundle, items = self._outcome_evaluation(is_oos, oos_method, scoring)
        propensity = self._evaluated(PROPENSITY_MODEL, scoring, oos=oos)
        treatments = [
            self._evaluated(TREATMENT_MODEL, scoring, k - 1, f"{k}_vs_0_", oos=oos)
            for k in range(1, self.n_variants)
        ]
        bundle = (
            outcome_bundle,
            self._nuisance_models[PROPENSITY_MODEL][0],
            (self._design(PROPENSITY_MODEL), self._design(VARIANT_OUTCOME_MODEL)),
            self._treatment_models[TREATMENT_MODEL],
            self._design(TREATMENT_MODEL),
            oos_method,
            self.is_classification,
            self.adaptive_clipping,
            self.min_propensity,
        )
        return PartitionPlan(
            dr_evaluation_rows, bundle, (*items, propensity, *treatments), self._feature_names()
        )

    def predict(self, X: Any, is_oos: bool, oos_method: str = OVERALL) -> Any:
        """The CATE ``(n, n_variants - 1, n_outputs)``; ``[-tau, tau]`` for classification."""
        self._check_predict(is_oos, oos_method)
        self._require_treatment_fitted()
        models = self._treatment_models[TREATMENT_MODEL]
        for m in models:
            m.check_predict_args(True, "predict", oos_method)
        bundle = (models, self._design(TREATMENT_MODEL), oos_method, self.is_classification)
        n_out = 2 if self.is_classification else 1
        return self._map(
            X,
            is_oos,
            treatment_cate_partition,
            bundle,
            (self.n_variants - 1, n_out),
            "drlearner-cate",
        )

    def average_treatment_effect(
        self, X: Any, y: Vector, w: Vector, is_oos: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """AIPW estimate of the ATE of every variant against 0 and its standard error.

        Needs only the nuisance models (``fit_all_nuisance``). Computed by reductions over
        partitions: only ``(n_variants - 1)``-sized sums reach the client.
        """
        if self._fit_context is None or not all(
            m.is_fitted for models in self._nuisance_models.values() for m in models
        ):
            raise ValueError(
                "The nuisance models need to be fitted before computing the treatment effect; "
                "call fit_all_nuisance (or fit) first."
            )
        if not isinstance(is_oos, bool | np.bool_):
            raise TypeError(f"is_oos must be a bool, got {is_oos!r}")
        frame = training_frame(X, y, w)
        names = self._fit_context.columns.names
        if (
            frame.columns.names != names
            or frame.columns.as_numpy != self._fit_context.columns.as_numpy
        ):
            raise ValueError("X must have the columns the learner was fitted on")
        bundle = (
            self._nuisance_models[PROPENSITY_MODEL][0],
            self._nuisance_models[VARIANT_OUTCOME_MODEL],
            (self._design(PROPENSITY_MODEL), self._design(VARIANT_OUTCOME_MODEL)),
            self.n_variants,
            self._outcome_predict_method(),
            self.is_classification,
            self.adaptive_clipping,
            self.min_propensity,
        )
        phi = self._map(
            frame, is_oos, _ate_partition, bundle, (self.n_variants - 1,), "drlearner-ate"
        )
        if isinstance(phi, np.ndarray):
            return phi.mean(axis=0), phi.std(axis=0) / np.sqrt(len(phi))
        blocks = list(phi.to_delayed().ravel())
        sums = runtime.gather_tasks(
            self._predict_client(), runtime.keyed_tasks(_ate_sums, blocks, "drlearner-ate-sums")
        )
        total = sum(s[0] for s in sums)
        squares = sum(s[1] for s in sums)
        count = sum(s[2] for s in sums)
        mean = total / count
        variance = np.maximum(squares / count - mean**2, 0.0)
        return mean, np.sqrt(variance) / np.sqrt(count)
