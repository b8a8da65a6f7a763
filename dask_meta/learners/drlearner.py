"""DR-learner (Kennedy 2020): regression of the AIPW pseudo-outcome on X.

Treatment model k regresses ``phi_k = (y - mu_k)/e_k 1{w=k} + mu_k - (y - mu_0)/e_0 1{w=0} - mu_0``
on x, with ``mu_k`` the outcome model of variant k and ``e_k`` the propensity of k.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dask_meta import runtime
from dask_meta._constants import (
    MEAN,
    OVERALL,
    PROPENSITY_MODEL,
    TREATMENT_MODEL,
    VARIANT_OUTCOME_MODEL,
    W_COL,
    Y_COL,
)
from dask_meta._typing import Matrix, Vector
from dask_meta.crossfit import ModelPrediction, model_partition
from dask_meta.evaluation import PartitionPlan, predict_rows
from dask_meta.learners._common import (
    EPSILON,
    LinearCate,
    TreatmentModels,
    clip_to_epsilon,
    positive_class,
    prediction_rows,
    treatment_cate_partition,
    treatment_linear_cate,
)
from dask_meta.learners.base import MetaLearner
from dask_meta.learners.cross_fitting import AllRowsCrossFitting
from dask_meta.learners.fit_run import FitRun
from dask_meta.learners.onnx_export import OnnxExport, OnnxGraph, Value
from dask_meta.learners.tables import Derivation, ModelEntry, ModelSpecification, derived_entry
from dask_meta.learners.tlearner import (
    ConditionalAverageOutcomes,
    OutcomeModels,
    outcome_evaluation_rows,
)
from dask_meta.prediction import Prediction


@dataclass(frozen=True)
class AipwNuisances:
    """The nuisance models of the AIPW pseudo-outcomes, and how the propensities are floored."""

    outcomes: OutcomeModels
    propensity: ModelPrediction
    is_classification: bool
    adaptive_clipping: bool
    min_propensity: float


def aipw_pseudo_outcomes(
    frame: pd.DataFrame, folds: pd.DataFrame | None, bundle: AipwNuisances
) -> np.ndarray:
    """phi_k = (y - mu_k)/e_k 1{w=k} + mu_k - (y - mu_0)/e_0 1{w=0} - mu_0 for every variant
    k >= 1 on one partition (with y and w): ``(n, K-1)``.

    mu follows the in-sample mixing rule (own rows cross-fitted, other rows out-of-sample);
    propensities below ``min_propensity`` count as ``min_propensity`` in the denominators, and
    with ``adaptive_clipping`` rows whose smallest propensity is below it get mu_k - mu_0.
    """
    e = model_partition(frame, folds, bundle.propensity)
    outcomes = bundle.outcomes
    matrix = outcomes.design.matrix(frame)
    mu = {
        k: positive_class(
            model.block_predict(matrix, folds, outcomes.method, outcomes.oos_method),
            bundle.is_classification,
        )
        for k, model in enumerate(outcomes.models)
    }
    y, w = frame[Y_COL].to_numpy(dtype=float), frame[W_COL].to_numpy()
    variants = list(range(1, len(outcomes.models)))
    return aipw_terms(y, w, e, mu, variants, bundle.adaptive_clipping, bundle.min_propensity)


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


@dataclass(frozen=True)
class DRTarget:
    """How treatment model k's target comes from the nuisance predictions."""

    variant: int
    is_classification: bool
    adaptive_clipping: bool
    min_propensity: float


def dr_pseudo_outcome(part: pd.DataFrame, predictions: dict, spec: DRTarget) -> np.ndarray:
    """The AIPW pseudo-outcome of one variant on a training partition, from the shared
    in-sample predictions of the propensity model and the outcome models of 0 and ``variant``
    (metalearners' mixing rule: cross-fitted on the model's own rows, overall elsewhere)."""
    mu = {
        k: positive_class(predictions[(VARIANT_OUTCOME_MODEL, k)], spec.is_classification)
        for k in (0, spec.variant)
    }
    y, w = part[Y_COL].to_numpy(dtype=float), part[W_COL].to_numpy()
    e = predictions[(PROPENSITY_MODEL, 0)]
    phi = aipw_terms(y, w, e, mu, [spec.variant], spec.adaptive_clipping, spec.min_propensity)
    return phi[:, 0]


def _ate_sums(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """One partition's sums of the AIPW terms and their squares, and its rows."""
    return phi.sum(axis=0), (phi**2).sum(axis=0), int(np.isfinite(phi[:, 0]).sum())


@dataclass(frozen=True)
class DREvaluation:
    """What :func:`dr_evaluation_rows` needs: every model of the DR-learner."""

    nuisances: AipwNuisances
    effects: TreatmentModels


def dr_evaluation_rows(
    frame: pd.DataFrame, folds: pd.DataFrame | None, bundle: DREvaluation
) -> list:
    """Outcome and propensity models, then treatment model k on all rows against the AIPW
    pseudo-outcome of variant k (nuisances at the same is_oos / oos_method)."""
    nuisances, effects = bundle.nuisances, bundle.effects
    rows = outcome_evaluation_rows(frame, folds, nuisances.outcomes)
    w = frame[W_COL].to_numpy()
    every = np.ones(len(frame), dtype=bool)
    e = prediction_rows(nuisances.propensity, frame, folds, every)
    rows.append((e, w.astype(float), every, None))
    phi = aipw_pseudo_outcomes(frame, folds, nuisances)
    for j, model in enumerate(effects.models):
        tau = predict_rows(
            model, effects.design, frame, folds, "predict", effects.oos_method, every
        )
        rows.append((tau, phi[:, j], every, None))
    return rows


def check_min_propensity(value: Any) -> float:
    """``min_propensity`` as a float in (0, 0.5), or a ValueError / TypeError naming it."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"min_propensity must be a number in (0, 0.5), got {value!r}")
    if not 0 < float(value) < 0.5:
        raise ValueError(f"min_propensity must be in (0, 0.5), got {value!r}")
    return float(value)


class DRLearner(OnnxExport, ConditionalAverageOutcomes, AllRowsCrossFitting, MetaLearner):
    """DR-learner: outcome models per variant, a propensity model, AIPW pseudo-outcomes.

    Beyond metalearners' arguments, ``min_propensity`` (default 1e-9, metalearners' fixed
    epsilon) is the floor of the propensities that divide the residuals, and the threshold of
    ``adaptive_clipping``. A floor such as 0.01 trims the pseudo-outcomes of units with extreme
    propensities, where poor overlap otherwise makes them explode. ``cross_fit_all_rows``
    (:class:`~dask_meta.learners.cross_fitting.AllRowsCrossFitting`) cross-fits the outcome
    models on every row, as EconML does, instead of predicting the other variants' rows with
    their overall models.
    """

    _synchronizes = True

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
            ModelEntry(
                VARIANT_OUTCOME_MODEL, k, (k,), Y_COL, cross_predicts=self.cross_fit_all_rows
            )
            for k in range(self.n_variants)
        ] + [ModelEntry(PROPENSITY_MODEL, 0, None, W_COL, "all" if synchronize else "own")]

    def _treatment_entries(self, synchronize: bool) -> list[ModelEntry]:
        split = "all" if synchronize else "own"
        return [
            derived_entry(TREATMENT_MODEL, k - 1, None, split) for k in range(1, self.n_variants)
        ]

    def _derivation(self, run: FitRun, entry: ModelEntry) -> Derivation:
        columns = run.data.columns
        spec = DRTarget(
            variant=entry.ordinal + 1,
            is_classification=self.is_classification,
            adaptive_clipping=self.adaptive_clipping,
            min_propensity=self.min_propensity,
        )
        outcome = (self._design(VARIANT_OUTCOME_MODEL, columns), self._outcome_predict_method())
        return Derivation(
            dr_pseudo_outcome,
            (
                (PROPENSITY_MODEL, 0),
                (VARIANT_OUTCOME_MODEL, 0),
                (VARIANT_OUTCOME_MODEL, spec.variant),
            ),
            (spec,),
            predicts=((self._design(PROPENSITY_MODEL, columns), "predict_proba"), outcome, outcome),
        )

    def _aipw_nuisances(self, outcomes: OutcomeModels, oos_method: str) -> AipwNuisances:
        propensity = ModelPrediction(
            model=self._nuisance_models[PROPENSITY_MODEL][0],
            design=self._design(PROPENSITY_MODEL),
            method="predict_proba",
            oos_method=oos_method,
        )
        return AipwNuisances(
            outcomes=outcomes,
            propensity=propensity,
            is_classification=self.is_classification,
            adaptive_clipping=self.adaptive_clipping,
            min_propensity=self.min_propensity,
        )

    def _effect_models(self, oos_method: str) -> TreatmentModels:
        return TreatmentModels(
            models=tuple(self._treatment_models[TREATMENT_MODEL]),
            design=self._design(TREATMENT_MODEL),
            oos_method=oos_method,
            is_classification=self.is_classification,
        )

    def _evaluation_plan(
        self, is_oos: bool, oos_method: str, scoring: dict[str, list[Any]]
    ) -> PartitionPlan:
        oos = (is_oos, oos_method)
        outcomes, items = self._outcome_evaluation(is_oos, oos_method, scoring)
        propensity = self._evaluated(PROPENSITY_MODEL, scoring, oos=oos)
        treatments = [
            self._evaluated(TREATMENT_MODEL, scoring, k - 1, f"{k}_vs_0_", oos=oos)
            for k in range(1, self.n_variants)
        ]
        evaluation = DREvaluation(
            nuisances=self._aipw_nuisances(outcomes, oos_method),
            effects=self._effect_models(oos_method),
        )
        return PartitionPlan(
            dr_evaluation_rows, evaluation, (*items, propensity, *treatments), self._feature_names()
        )

    _linear_cate_kinds = (TREATMENT_MODEL,)

    def _linear_cate(self, oos_method: str) -> LinearCate | None:
        return treatment_linear_cate(self._effect_models(oos_method))

    def _cate(self, is_oos: bool, oos_method: str) -> Prediction:
        self._check_predict(is_oos, oos_method)
        self._require_treatment_fitted()
        effects = self._effect_models(oos_method)
        for m in effects.models:
            m.check_predict_args(True, "predict", oos_method)
        n_out = 2 if self.is_classification else 1
        return Prediction(
            treatment_cate_partition, effects, (self.n_variants - 1, n_out), "drlearner-cate"
        )

    _onnx_kinds = (TREATMENT_MODEL,)

    def _onnx_cate(self, graph: OnnxGraph) -> list[Value]:
        """ONNX: tau_k(x), treatment model k's prediction."""
        return [graph.effect(tau_k) for tau_k in graph.outputs(TREATMENT_MODEL)]

    def average_treatment_effect(
        self, X: Matrix, y: Vector, w: Vector, is_oos: bool
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
        # the estimate of variant k averages over its rows
        frame = self._labelled_frame(X, y, w, self._predict_client(), every_variant=True)
        # the rows outside a model's split are predicted by its overall model (or, without
        # one, by the mean of its fold models)
        models = self._nuisance_models[VARIANT_OUTCOME_MODEL]
        outcomes = OutcomeModels(
            models=tuple(models),
            design=self._design(VARIANT_OUTCOME_MODEL),
            method=self._outcome_predict_method(),
            oos_method=OVERALL if models[0].enable_overall else MEAN,
        )
        propensity = self._nuisance_models[PROPENSITY_MODEL][0]
        nuisances = self._aipw_nuisances(outcomes, OVERALL if propensity.enable_overall else MEAN)
        phi = self._map(
            frame, is_oos, aipw_pseudo_outcomes, nuisances, (self.n_variants - 1,), "drlearner-ate"
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
