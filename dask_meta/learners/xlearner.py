"""X-learner (Kuenzel et al. 2019): imputed effects, weighted by the propensity.

Effect models ``tau_1k`` (on D1 = y - mu_0, rows w == k) and ``tau_0k`` (on D0 = mu_k - y,
rows w == 0) combine as ``tau_k = g_k tau_0k + (1 - g_k) tau_1k`` with ``g_k = e_k / (e_0 + e_k)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dask_meta._constants import (
    CONTROL_EFFECT_MODEL,
    MEDIAN,
    OVERALL,
    PROPENSITY_MODEL,
    TREATMENT_EFFECT_MODEL,
    VARIANT_OUTCOME_MODEL,
    W_COL,
    Y_COL,
)
from dask_meta.backends import Design
from dask_meta.crossfit import CrossFitEstimator, ModelPrediction, model_partition
from dask_meta.evaluation import PartitionPlan, predict_rows
from dask_meta.learners._common import effect_outputs, positive_class, prediction_rows
from dask_meta.learners.base import MetaLearner
from dask_meta.learners.cross_fitting import AllRowsCrossFitting
from dask_meta.learners.fit_run import FitRun
from dask_meta.learners.onnx_export import OnnxExport, OnnxGraph, Value
from dask_meta.learners.tables import Derivation, ModelEntry, ModelSpecification, derived_entry
from dask_meta.learners.tlearner import (
    ConditionalAverageOutcomes,
    OutcomeModels,
    cao_partition,
    outcome_evaluation_rows,
)
from dask_meta.prediction import Prediction


@dataclass(frozen=True)
class ImputedEffect:
    """How an effect model's target is imputed from the other variant's outcome model."""

    #: the outcome model that predicts the missing potential outcome
    outcome: tuple[str, int]
    #: the rows of this variant get the imputed effect
    rows_variant: int
    #: D1 = y - mu_0 (the treated variant's rows) rather than D0 = mu_k - y (variant 0's rows)
    treated: bool
    design: Design
    method: str
    is_classification: bool


def imputed_effect(part: pd.DataFrame, models: dict, spec: ImputedEffect) -> np.ndarray:
    """D1 = y - mu_0(X) on rows w == k, or D0 = mu_k(X) - y on rows w == 0 (NaN elsewhere).

    mu comes from the other variant's outcome model; those rows are out-of-sample for it, so
    its overall model predicts them (metalearners' in-sample mixing rule).
    """
    out = np.full(len(part), np.nan)
    rows = np.flatnonzero(part[W_COL].to_numpy() == spec.rows_variant)
    if len(rows) == 0:
        return out
    sub = part.iloc[rows]
    mu = models[spec.outcome].block_predict(spec.design.matrix(sub), sub, spec.method, OVERALL)
    mu = positive_class(mu, spec.is_classification)
    y = sub[Y_COL].to_numpy(dtype=float)
    out[rows] = (y - mu) if spec.treated else (mu - y)
    return out


@dataclass(frozen=True)
class EffectModels:
    """The effect models of every variant k >= 1: ``tau_1k`` fitted on the rows w == k
    against D1, ``tau_0k`` on the rows w == 0 against D0."""

    treated: tuple[CrossFitEstimator, ...]
    control: tuple[CrossFitEstimator, ...]
    treated_design: Design
    control_design: Design
    oos_method: str


@dataclass(frozen=True)
class XCate:
    """What :func:`x_cate_partition` needs: the effect models and the propensity model."""

    propensity: ModelPrediction
    effects: EffectModels
    is_classification: bool


def x_cate_partition(X: pd.DataFrame, folds: pd.DataFrame | None, bundle: XCate) -> np.ndarray:
    """tau_k = g_k * tau_0k + (1 - g_k) * tau_1k, g_k = e_k / (e_0 + e_k)."""
    effects = bundle.effects
    e = model_partition(X, folds, bundle.propensity)
    treated_matrix = effects.treated_design.matrix(X)
    control_matrix = effects.control_design.matrix(X)
    taus = []
    pairs = zip(effects.treated, effects.control, strict=True)
    for k, (treated, control) in enumerate(pairs, start=1):
        tau_1 = treated.block_predict(treated_matrix, folds, "predict", effects.oos_method)[:, 0]
        tau_0 = control.block_predict(control_matrix, folds, "predict", effects.oos_method)[:, 0]
        g = e[:, k] / (e[:, 0] + e[:, k])
        taus.append(effect_outputs(g * tau_0 + (1 - g) * tau_1, bundle.is_classification))
    return np.stack(taus, axis=1)


@dataclass(frozen=True)
class XEvaluation:
    """What :func:`x_evaluation_rows` needs: every model of the X-learner."""

    outcomes: OutcomeModels
    propensity: ModelPrediction
    effects: EffectModels
    is_classification: bool


def x_evaluation_rows(frame: pd.DataFrame, folds: pd.DataFrame | None, bundle: XEvaluation) -> list:
    """Outcome and propensity models, then the effect models against the imputed effects
    y - mu_0 (rows w == k) and mu_k - y (rows w == 0) from the conditional average outcomes."""
    rows = outcome_evaluation_rows(frame, folds, bundle.outcomes)
    y = frame[Y_COL].to_numpy(dtype=float)
    w = frame[W_COL].to_numpy()
    every = np.ones(len(frame), dtype=bool)
    e = prediction_rows(bundle.propensity, frame, folds, every)
    rows.append((e, w.astype(float), every, None))
    mu = cao_partition(frame, folds, bundle.outcomes)
    channel = 1 if bundle.is_classification else 0
    effects = bundle.effects
    treated_rows, control_rows = [], []
    pairs = zip(effects.treated, effects.control, strict=True)
    for k, (treated, control) in enumerate(pairs, start=1):
        tau_1 = predict_rows(
            treated, effects.treated_design, frame, folds, "predict", effects.oos_method, w == k
        )
        treated_rows.append((tau_1, y - mu[:, 0, channel], w == k, None))
        tau_0 = predict_rows(
            control, effects.control_design, frame, folds, "predict", effects.oos_method, w == 0
        )
        control_rows.append((tau_0, mu[:, k, channel] - y, w == 0, None))
    return rows + treated_rows + control_rows


class XLearner(OnnxExport, ConditionalAverageOutcomes, AllRowsCrossFitting, MetaLearner):
    """X-learner: outcome models per variant, imputed effects, effect models, propensity.

    ``cross_fit_all_rows`` (:class:`~dask_meta.learners.cross_fitting.AllRowsCrossFitting`)
    imputes the effects with the outcome models' fold models on every row instead of their
    overall models on the other variants' rows.
    """

    _synchronizes = True

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
            CONTROL_EFFECT_MODEL: ModelSpecification(
                MetaLearner._get_n_variants_minus_one, MetaLearner._predict_method
            ),
            TREATMENT_EFFECT_MODEL: ModelSpecification(
                MetaLearner._get_n_variants_minus_one, MetaLearner._predict_method
            ),
        }

    @classmethod
    def _supports_multi_treatment(cls) -> bool:
        return True

    @classmethod
    def _supports_multi_class(cls) -> bool:
        return False

    def _nuisance_entries(self, synchronize: bool) -> list[ModelEntry]:
        # synchronised: one KFold per variant's rows, shared by that variant's outcome model
        # and the effect model trained on the same rows; the propensity model keeps its own
        return [
            ModelEntry(
                VARIANT_OUTCOME_MODEL,
                k,
                (k,),
                Y_COL,
                f"variant{k}" if synchronize else "own",
                cross_predicts=self.cross_fit_all_rows,
            )
            for k in range(self.n_variants)
        ] + [ModelEntry(PROPENSITY_MODEL, 0, None, W_COL)]

    def _treatment_entries(self, synchronize: bool) -> list[ModelEntry]:
        # synchronised: each effect model shares the split of the outcome model of its rows
        return [
            derived_entry(kind, k - 1, (variant,), f"variant{variant}" if synchronize else "own")
            for k in range(1, self.n_variants)
            for kind, variant in ((TREATMENT_EFFECT_MODEL, k), (CONTROL_EFFECT_MODEL, 0))
        ]

    def _derivation(self, run: FitRun, entry: ModelEntry) -> Derivation:
        k = entry.ordinal + 1
        treated = entry.kind == TREATMENT_EFFECT_MODEL
        # D1 (rows w == k) needs mu_0, D0 (rows w == 0) needs mu_k
        outcome = (VARIANT_OUTCOME_MODEL, 0 if treated else k)
        spec = ImputedEffect(
            outcome=outcome,
            rows_variant=k if treated else 0,
            treated=treated,
            design=self._design(VARIANT_OUTCOME_MODEL, run.data.columns),
            method=self._outcome_predict_method(),
            is_classification=self.is_classification,
        )
        return Derivation(imputed_effect, (outcome,), (spec,))

    def _propensity(self, oos_method: str) -> ModelPrediction:
        return ModelPrediction(
            model=self._nuisance_models[PROPENSITY_MODEL][0],
            design=self._design(PROPENSITY_MODEL),
            method="predict_proba",
            oos_method=oos_method,
        )

    def _effect_models(self, oos_method: str) -> EffectModels:
        return EffectModels(
            treated=tuple(self._treatment_models[TREATMENT_EFFECT_MODEL]),
            control=tuple(self._treatment_models[CONTROL_EFFECT_MODEL]),
            treated_design=self._design(TREATMENT_EFFECT_MODEL),
            control_design=self._design(CONTROL_EFFECT_MODEL),
            oos_method=oos_method,
        )

    def _evaluation_plan(
        self, is_oos: bool, oos_method: str, scoring: dict[str, list[Any]]
    ) -> PartitionPlan:
        oos = (is_oos, oos_method)
        outcomes, items = self._outcome_evaluation(is_oos, oos_method, scoring)
        propensity = self._evaluated(PROPENSITY_MODEL, scoring, oos=oos)
        treated = [
            self._evaluated(TREATMENT_EFFECT_MODEL, scoring, k - 1, f"{k}_vs_0_", oos=oos)
            for k in range(1, self.n_variants)
        ]
        control = [
            self._evaluated(CONTROL_EFFECT_MODEL, scoring, k - 1, f"{k}_vs_0_", oos=oos)
            for k in range(1, self.n_variants)
        ]
        evaluation = XEvaluation(
            outcomes=outcomes,
            propensity=self._propensity(oos_method),
            effects=self._effect_models(oos_method),
            is_classification=self.is_classification,
        )
        return PartitionPlan(
            x_evaluation_rows,
            evaluation,
            (*items, propensity, *treated, *control),
            self._feature_names(),
        )

    def _cate(self, is_oos: bool, oos_method: str) -> Prediction:
        self._check_predict(is_oos, oos_method)
        self._require_treatment_fitted()
        # metalearners: no median of probabilities, so the propensity falls back to overall
        propensity = self._propensity(OVERALL if oos_method == MEDIAN else oos_method)
        effects = self._effect_models(oos_method)
        for treated, control in zip(effects.treated, effects.control, strict=True):
            treated.check_predict_args(True, "predict", oos_method)
            control.check_predict_args(True, "predict", oos_method)
        cate = XCate(
            propensity=propensity, effects=effects, is_classification=self.is_classification
        )
        n_out = 2 if self.is_classification else 1
        return Prediction(x_cate_partition, cate, (self.n_variants - 1, n_out), "xlearner-cate")

    _onnx_kinds = (PROPENSITY_MODEL, CONTROL_EFFECT_MODEL, TREATMENT_EFFECT_MODEL)

    def _onnx_cate(self, graph: OnnxGraph) -> list[Value]:
        """ONNX: tau_k = g_k tau_0k + (1 - g_k) tau_1k with g_k = e_k / (e_0 + e_k)."""
        (e,) = graph.outputs(PROPENSITY_MODEL)
        tau_0 = graph.outputs(CONTROL_EFFECT_MODEL)
        tau_1 = graph.outputs(TREATMENT_EFFECT_MODEL)
        cate = []
        for k in range(1, self.n_variants):
            g = e.column(k) / (e.column(0) + e.column(k))
            cate.append(graph.effect(g * tau_0[k - 1] + (1 - g) * tau_1[k - 1]))
        return cate
