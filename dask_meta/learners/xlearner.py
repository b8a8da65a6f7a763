"""X-learner (Kuenzel et al. 2019): imputed effects, weighted by the propensity."""

from __future__ import annotations

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
from dask_meta.evaluation import PartitionPlan, predict_rows
from dask_meta.learners._common import effect_outputs, positive_class
from dask_meta.learners.base import MetaLearner
from dask_meta.learners.fit_run import FitRun
from dask_meta.learners.tables import Derivation, ModelEntry, ModelSpecification, derived_columns
from dask_meta.learners.tlearner import (
    ConditionalAverageOutcomes,
    cao_partition,
    outcome_evaluation_rows,
)


def imputed_effect(
    part: pd.DataFrame,
    models: dict,
    outcome_kind_ord: tuple[str, int],
    rows_variant: int,
    sign: int,
    design: Any,
    method: str,
    is_classification: bool,
) -> np.ndarray:
    """D1 = y - mu_0(X) on rows w == k, or D0 = mu_k(X) - y on rows w == 0 (NaN elsewhere).

    mu comes from the other variant's outcome model; those rows are out-of-sample for it, so
    its overall model predicts them (metalearners' in-sample mixing rule).
    """
    out = np.full(len(part), np.nan)
    rows = np.flatnonzero(part[W_COL].to_numpy() == rows_variant)
    if len(rows) == 0:
        return out
    sub = part.iloc[rows]
    mu = models[outcome_kind_ord].block_predict(design.matrix(sub), sub, method, OVERALL)
    mu = positive_class(mu, is_classification)
    y = sub[Y_COL].to_numpy(dtype=float)
    out[rows] = (y - mu) if sign > 0 else (mu - y)
    return out


def x_cate_partition(X: pd.DataFrame, folds: pd.DataFrame | None, bundle: Any) -> np.ndarray:
    """tau_k = g_k * tau_control_k + (1 - g_k) * tau_treated_k, g_k = e_k / (e_0 + e_k)."""
    propensity, p_design, p_oos, effects, oos_method, is_classification = bundle
    e = propensity.block_predict(p_design.matrix(X), folds, "predict_proba", p_oos)
    taus = []
    for k, (treated, t_design, control, c_design) in enumerate(effects, start=1):
        tau_t = treated.block_predict(t_design.matrix(X), folds, "predict", oos_method)[:, 0]
        tau_c = control.block_predict(c_design.matrix(X), folds, "predict", oos_method)[:, 0]
        g = e[:, k] / (e[:, 0] + e[:, k])
        taus.append(effect_outputs(g * tau_c + (1 - g) * tau_t, is_classification))
    return np.stack(taus, axis=1)


def x_evaluation_rows(frame: pd.DataFrame, folds: pd.DataFrame | None, bundle: Any) -> list:
    """Outcome and propensity models, then the effect models against the imputed effects
    y - mu_0 (rows w == k) and mu_k - y (rows w == 0) from the conditional average outcomes."""
    outcome_bundle, propensity, p_design, p_oos, effects, oos, is_classification = bundle
    rows = outcome_evaluation_rows(frame, folds, outcome_bundle)
    y = frame[Y_COL].to_numpy(dtype=float)
    w = frame[W_COL].to_numpy()
    every = np.ones(len(frame), dtype=bool)
    e = predict_rows(propensity, p_design, frame, folds, "predict_proba", p_oos, every)
    rows.append((e, w.astype(float), every, None))
    cao = cao_partition(frame, folds, (*outcome_bundle, False))
    channel = 1 if is_classification else 0
    treated_rows, control_rows = [], []
    for k, (treated, t_design, control, c_design) in enumerate(effects, start=1):
        tau_t = predict_rows(treated, t_design, frame, folds, "predict", oos, w == k)
        treated_rows.append((tau_t, y - cao[:, 0, channel], w == k, None))
        tau_c = predict_rows(control, c_design, frame, folds, "predict", oos, w == 0)
        control_rows.append((tau_c, cao[:, k, channel] - y, w == 0, None))
    return rows + treated_rows + control_rows


class XLearner(ConditionalAverageOutcomes, MetaLearner):
    """X-learner: outcome models per variant, imputed effects, effect models, propensity."""

    _synchronizes = True
    _fit_needs_overall = frozenset({VARIANT_OUTCOME_MODEL})

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
                VARIANT_OUTCOME_MODEL, k, (k,), Y_COL, f"variant{k}" if synchronize else "own"
            )
            for k in range(self.n_variants)
        ] + [ModelEntry(PROPENSITY_MODEL, 0, None, W_COL)]

    def _treatment_entries(self, synchronize: bool) -> list[ModelEntry]:
        entries = []
        for k in range(1, self.n_variants):
            for kind, variant in ((TREATMENT_EFFECT_MODEL, k), (CONTROL_EFFECT_MODEL, 0)):
                entry = ModelEntry(
                    kind, k - 1, (variant,), "", f"variant{variant}" if synchronize else "own"
                )
                entries.append(
                    ModelEntry(kind, k - 1, (variant,), derived_columns(entry)[0], entry.split)
                )
        return entries

    def _derivation(self, run: FitRun, entry: ModelEntry) -> Derivation:
        k = entry.ordinal + 1
        treated = entry.kind == TREATMENT_EFFECT_MODEL
        outcome = (VARIANT_OUTCOME_MODEL, 0 if treated else k)
        return Derivation(
            imputed_effect,
            (outcome,),
            (
                outcome,
                k if treated else 0,
                1 if treated else -1,
                self._design(VARIANT_OUTCOME_MODEL, run.data.columns),
                self._outcome_predict_method(),
                self.is_classification,
            ),
        )

    def _evaluation_plan(
        self, is_oos: bool, oos_method: str, scoring: dict[str, list[Any]]
    ) -> PartitionPlan:
        oos = (is_oos, oos_method)
        outcome_bundle, items = self._outcome_evaluation(is_oos, oos_method, scoring)
        propensity = self._evaluated(PROPENSITY_MODEL, scoring, oos=oos)
        treated = [
            self._evaluated(TREATMENT_EFFECT_MODEL, scoring, k - 1, f"{k}_vs_0_", oos=oos)
            for k in range(1, self.n_variants)
        ]
        control = [
            self._evaluated(CONTROL_EFFECT_MODEL, scoring, k - 1, f"{k}_vs_0_", oos=oos)
            for k in range(1, self.n_variants)
        ]
        bundle = (
            outcome_bundle,
            self._nuisance_models[PROPENSITY_MODEL][0],
            self._design(PROPENSITY_MODEL),
            oos_method,
            self._effects(),
            oos_method,
            self.is_classification,
        )
        return PartitionPlan(
            x_evaluation_rows,
            bundle,
            (*items, propensity, *treated, *control),
            self._feature_names(),
        )

    def _effects(self) -> list[tuple[Any, Any, Any, Any]]:
        return [
            (
                self._treatment_models[TREATMENT_EFFECT_MODEL][k - 1],
                self._design(TREATMENT_EFFECT_MODEL),
                self._treatment_models[CONTROL_EFFECT_MODEL][k - 1],
                self._design(CONTROL_EFFECT_MODEL),
            )
            for k in range(1, self.n_variants)
        ]

    def predict(self, X: Any, is_oos: bool, oos_method: str = OVERALL) -> Any:
        """The CATE ``(n, n_variants - 1, n_outputs)``; ``[-tau, tau]`` for classification."""
        self._check_predict(is_oos, oos_method)
        self._require_treatment_fitted()
        propensity = self._nuisance_models[PROPENSITY_MODEL][0]
        # metalearners: no median of probabilities, so the propensity falls back to overall
        p_oos = OVERALL if oos_method == MEDIAN else oos_method
        effects = self._effects()
        for treated, _, control, _ in effects:
            treated.check_predict_args(True, "predict", oos_method)
            control.check_predict_args(True, "predict", oos_method)
        bundle = (
            propensity,
            self._design(PROPENSITY_MODEL),
            p_oos,
            effects,
            oos_method,
            self.is_classification,
        )
        n_out = 2 if self.is_classification else 1
        return self._map(
            X, is_oos, x_cate_partition, bundle, (self.n_variants - 1, n_out), "xlearner-cate"
        )
