"""R-learner (Nie and Wager 2017): residual-on-residual regression with weights.

On the rows w in {0, k}, treatment model k regresses ``(y - m(x)) / (1{w=k} - e_k(x))`` on x
with weight ``(1{w=k} - e_k(x))^2``, which minimises the R-loss
``sum(((y - m) - tau_k (1{w=k} - e_k))^2)``; ``m`` is the outcome model and
``e_k = e(k | x) / (e(0 | x) + e(k | x))`` the propensity of k against 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dask_meta._constants import (
    MEDIAN,
    OUTCOME_MODEL,
    OVERALL,
    PROPENSITY_MODEL,
    TREATMENT,
    TREATMENT_MODEL,
    W_COL,
    Y_COL,
)
from dask_meta._typing import Matrix
from dask_meta.backends import supports_sample_weight
from dask_meta.crossfit import ModelPrediction, model_partition
from dask_meta.evaluation import R_LOSS, Evaluated, PartitionPlan, predict_rows
from dask_meta.factories import factory_name
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
from dask_meta.learners.fit_run import FitRun
from dask_meta.learners.onnx_export import OnnxExport, OnnxGraph, Value
from dask_meta.learners.tables import Derivation, ModelEntry, ModelSpecification, derived_entry
from dask_meta.metrics.losses import r_loss as r_loss  # dask_meta.r_loss: one implementation
from dask_meta.prediction import Prediction

SAMPLE_WEIGHT = "sample_weight"


def treatment_residual(w: np.ndarray, e: np.ndarray, variant: int) -> np.ndarray:
    """1{w=k} - e_k / (e_0 + e_k): the treatment's residual, k against variant 0."""
    e_binary = e[:, variant] / (e[:, 0] + e[:, variant])
    return (w == variant).astype(float) - e_binary


def r_pseudo_outcome(
    y_residual: np.ndarray, w_residual: np.ndarray, epsilon: float
) -> tuple[np.ndarray, np.ndarray]:
    """The R-learner's target and weight: ``(y - m) / clip(w - e)`` and ``(w - e)^2``."""
    return y_residual / clip_to_epsilon(w_residual, epsilon), np.square(w_residual)


@dataclass(frozen=True)
class RTarget:
    """How treatment model k's target and weight come from the nuisance predictions."""

    variant: int
    is_classification: bool
    epsilon: float


def r_weighted_target(
    part: pd.DataFrame, predictions: dict, spec: RTarget
) -> tuple[np.ndarray, np.ndarray]:
    """The pseudo-outcome and weight of :func:`r_pseudo_outcome` on the rows w in {0, k} of a
    training partition (NaN elsewhere), from the shared in-sample predictions of the
    propensity and outcome models."""
    target = np.full(len(part), np.nan)
    weight = np.full(len(part), np.nan)
    w = part[W_COL].to_numpy()
    rows = np.flatnonzero((w == 0) | (w == spec.variant))
    if len(rows) == 0:
        return target, weight
    e = predictions[(PROPENSITY_MODEL, 0)][rows]
    m = positive_class(predictions[(OUTCOME_MODEL, 0)][rows], spec.is_classification)
    y_residual = part[Y_COL].to_numpy(dtype=float)[rows] - m
    w_residual = treatment_residual(w[rows], e, spec.variant)
    target[rows], weight[rows] = r_pseudo_outcome(y_residual, w_residual, spec.epsilon)
    return target, weight


@dataclass(frozen=True)
class RConditionalOutcomes:
    """What :func:`r_cao_partition` needs: the treatment, propensity and outcome models."""

    effects: TreatmentModels
    propensity: ModelPrediction
    outcome: ModelPrediction


def r_cao_partition(
    X: pd.DataFrame, folds: pd.DataFrame | None, bundle: RConditionalOutcomes
) -> np.ndarray:
    """Y0 = m - sum_k e_k tau_k (per output channel), Yk = Y0 + tau_k."""
    tau = treatment_cate_partition(X, folds, bundle.effects)
    e = model_partition(X, folds, bundle.propensity)
    m = model_partition(X, folds, bundle.outcome)
    control = m - np.einsum("nk,nkc->nc", e[:, 1:], tau)
    return np.concatenate([control[:, None, :], control[:, None, :] + tau], axis=1)


@dataclass(frozen=True)
class REvaluation:
    """What :func:`r_evaluation_rows` needs: every model of the R-learner."""

    propensity: ModelPrediction
    outcome: ModelPrediction
    effects: TreatmentModels
    is_classification: bool
    epsilon: float


def r_evaluation_rows(frame: pd.DataFrame, folds: pd.DataFrame | None, bundle: REvaluation) -> list:
    """Outcome and propensity models; treatment model k on rows w in {0, k} against the
    residual pseudo-outcome with the squared treatment residual as weight; the R-loss."""
    y = frame[Y_COL].to_numpy(dtype=float)
    w = frame[W_COL].to_numpy()
    every = np.ones(len(frame), dtype=bool)
    m_all = prediction_rows(bundle.outcome, frame, folds, every)
    e = prediction_rows(bundle.propensity, frame, folds, every)
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = [
        (m_all, y, every, None),
        (e, w.astype(float), every, None),
    ]
    y_residual = y - positive_class(m_all, bundle.is_classification)
    tau = treatment_cate_partition(frame, folds, bundle.effects)
    channel = 1 if bundle.is_classification else 0
    effects = bundle.effects
    losses = []
    for k, model in enumerate(effects.models, start=1):
        mask = (w == 0) | (w == k)
        w_residual = treatment_residual(w, e, k)
        pseudo, weight = r_pseudo_outcome(y_residual, w_residual, bundle.epsilon)
        tau_hat = predict_rows(
            model, effects.design, frame, folds, "predict", effects.oos_method, mask
        )
        rows.append((tau_hat, pseudo, mask, weight))
        # r_loss_k_vs_0 = sqrt(mean(((y - m) - tau (w - e))^2)): the "prediction" tau (w - e)
        losses.append((tau[:, k - 1, channel] * w_residual, y_residual, mask, None))
    return rows + losses


class RLearner(OnnxExport, MetaLearner):
    """R-learner: propensity and outcome models, one weighted treatment model per variant."""

    _synchronizes = True

    @classmethod
    def nuisance_model_specifications(cls) -> dict[str, ModelSpecification]:
        return {
            PROPENSITY_MODEL: ModelSpecification(
                MetaLearner._get_one, MetaLearner._predict_proba_method
            ),
            OUTCOME_MODEL: ModelSpecification(
                MetaLearner._get_one, MetaLearner._outcome_predict_method
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

    def _validate_models(self) -> None:
        factory = self.treatment_model_factory[TREATMENT_MODEL]
        params = self.treatment_model_params[TREATMENT_MODEL]
        if not supports_sample_weight(factory, params):
            raise ValueError(
                f"{TREATMENT_MODEL}'s fit method does not support 'sample_weight' argument: "
                f"{factory_name(factory)}.fit has no sample_weight, but the R-learner weights its "
                "treatment models"
            )
        super()._validate_models()

    def _validate_fit_params(self, qualified: dict[str, dict[str, dict]]) -> None:
        if SAMPLE_WEIGHT in qualified[TREATMENT][TREATMENT_MODEL]:
            raise ValueError(
                f"The parameter {SAMPLE_WEIGHT} of the R-learner's treatment model is set by the "
                "R-learner itself (the squared treatment residuals), but fit_params passes it; "
                "pass it only to nuisance models (qualified form: {'nuisance': {kind: {...}}})"
            )

    def _nuisance_entries(self, synchronize: bool) -> list[ModelEntry]:
        split = "all" if synchronize else "own"
        return [
            ModelEntry(PROPENSITY_MODEL, 0, None, W_COL, split),
            ModelEntry(OUTCOME_MODEL, 0, None, Y_COL, split),
        ]

    def _treatment_entries(self, synchronize: bool) -> list[ModelEntry]:
        # metalearners never synchronises the treatment models: own KFold over w in {0, k}
        return [derived_entry(TREATMENT_MODEL, k - 1, (0, k)) for k in range(1, self.n_variants)]

    def _derivation(self, run: FitRun, entry: ModelEntry) -> Derivation:
        columns = run.data.columns
        spec = RTarget(
            variant=entry.ordinal + 1, is_classification=self.is_classification, epsilon=EPSILON
        )
        return Derivation(
            r_weighted_target,
            ((PROPENSITY_MODEL, 0), (OUTCOME_MODEL, 0)),
            (spec,),
            weight=True,
            predicts=(
                (self._design(PROPENSITY_MODEL, columns), "predict_proba"),
                (self._design(OUTCOME_MODEL, columns), self._outcome_predict_method()),
            ),
        )

    def _cate_models(self, oos_method: str) -> TreatmentModels:
        self._require_treatment_fitted()
        models = self._treatment_models[TREATMENT_MODEL]
        for m in models:
            m.check_predict_args(True, "predict", oos_method)
        return TreatmentModels(
            models=tuple(models),
            design=self._design(TREATMENT_MODEL),
            oos_method=oos_method,
            is_classification=self.is_classification,
        )

    def _nuisance_prediction(self, kind: str, method: str, oos_method: str) -> ModelPrediction:
        return ModelPrediction(
            model=self._nuisance_models[kind][0],
            design=self._design(kind),
            method=method,
            oos_method=oos_method,
        )

    def _evaluation_plan(
        self, is_oos: bool, oos_method: str, scoring: dict[str, list[Any]]
    ) -> PartitionPlan:
        oos = (is_oos, oos_method)
        items = [
            self._evaluated(OUTCOME_MODEL, scoring, oos=oos),
            self._evaluated(PROPENSITY_MODEL, scoring, oos=oos),
            *(
                self._evaluated(TREATMENT_MODEL, scoring, k - 1, f"{k}_vs_0_", oos=oos)
                for k in range(1, self.n_variants)
            ),
            *(
                Evaluated("", "predict", None, (R_LOSS,), key=f"r_loss_{k}_vs_0")
                for k in range(1, self.n_variants)
            ),
        ]
        evaluation = REvaluation(
            propensity=self._nuisance_prediction(PROPENSITY_MODEL, "predict_proba", oos_method),
            outcome=self._nuisance_prediction(
                OUTCOME_MODEL, self._outcome_predict_method(), oos_method
            ),
            effects=self._cate_models(oos_method),
            is_classification=self.is_classification,
            epsilon=EPSILON,
        )
        return PartitionPlan(r_evaluation_rows, evaluation, tuple(items), self._feature_names())

    _linear_cate_kinds = (TREATMENT_MODEL,)

    def _linear_cate(self, oos_method: str) -> LinearCate | None:
        return treatment_linear_cate(self._cate_models(oos_method))

    def _cate(self, is_oos: bool, oos_method: str) -> Prediction:
        self._check_predict(is_oos, oos_method)
        n_out = 2 if self.is_classification else 1
        return Prediction(
            treatment_cate_partition,
            self._cate_models(oos_method),
            (self.n_variants - 1, n_out),
            "rlearner-cate",
        )

    _onnx_kinds = (TREATMENT_MODEL,)

    def _onnx_cate(self, graph: OnnxGraph) -> list[Value]:
        """ONNX: tau_k(x), treatment model k's prediction."""
        return [graph.effect(tau_k) for tau_k in graph.outputs(TREATMENT_MODEL)]

    def predict_conditional_average_outcomes(
        self, X: Matrix, is_oos: bool, oos_method: str = OVERALL
    ) -> Any:
        """Y0 = m - sum_k e_k tau_k and Yk = Y0 + tau_k: ``(n, n_variants, n_outputs)``."""
        self._check_predict(is_oos, oos_method)
        if is_oos and oos_method == MEDIAN:
            raise ValueError(
                "Cannot create median of class probabilities, which the R-learner's conditional "
                "average outcomes need (propensity); use oos_method='overall' or 'mean'."
            )
        outcomes = RConditionalOutcomes(
            effects=self._cate_models(oos_method),
            propensity=self._nuisance_prediction(PROPENSITY_MODEL, "predict_proba", oos_method),
            outcome=self._nuisance_prediction(
                OUTCOME_MODEL, self._outcome_predict_method(), oos_method
            ),
        )
        n_out = 2 if self.is_classification else 1
        return self._map(
            X, is_oos, r_cao_partition, outcomes, (self.n_variants, n_out), "rlearner-cao"
        )
