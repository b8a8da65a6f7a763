"""R-learner (Nie and Wager 2017): residual-on-residual regression with weights."""

from __future__ import annotations

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
from dask_meta.backends import supports_sample_weight
from dask_meta.evaluation import R_LOSS, Evaluated, PartitionPlan, predict_rows
from dask_meta.learners._common import (
    EPSILON,
    clip_to_epsilon,
    positive_class,
    treatment_cate_partition,
)
from dask_meta.learners.base import MetaLearner
from dask_meta.learners.fit_run import FitRun
from dask_meta.learners.tables import Derivation, ModelEntry, ModelSpecification, derived_columns
from dask_meta.metrics.losses import r_loss as r_loss  # dask_meta.r_loss: one implementation

SAMPLE_WEIGHT = "sample_weight"


def r_pseudo_outcome(
    part: pd.DataFrame,
    predictions: dict,
    variant: int,
    is_classification: bool,
    epsilon: float,
) -> tuple[np.ndarray, np.ndarray]:
    """pseudo = (y - m) / clip(1{w=k} - e_bin), weight = (1{w=k} - e_bin)^2 on rows w in {0, k},
    from the shared in-sample predictions of the propensity and outcome models."""
    target = np.full(len(part), np.nan)
    weight = np.full(len(part), np.nan)
    w = part[W_COL].to_numpy()
    rows = np.flatnonzero((w == 0) | (w == variant))
    if len(rows) == 0:
        return target, weight
    e = predictions[(PROPENSITY_MODEL, 0)][rows]
    m = positive_class(predictions[(OUTCOME_MODEL, 0)][rows], is_classification)
    e_bin = e[:, variant] / (e[:, 0] + e[:, variant])
    y_res = part[Y_COL].to_numpy(dtype=float)[rows] - m
    w_res = (w[rows] == variant).astype(float) - e_bin
    target[rows] = y_res / clip_to_epsilon(w_res, epsilon)
    weight[rows] = np.square(w_res)
    return target, weight


def r_cao_partition(X: pd.DataFrame, folds: pd.DataFrame | None, bundle: Any) -> np.ndarray:
    """Y0 = m - sum_k e_k tau_k (per output channel), Yk = Y0 + tau_k."""
    cate_bundle, propensity, p_design, outcome, o_design, outcome_method, oos = bundle
    tau = treatment_cate_partition(X, folds, cate_bundle)
    e = propensity.block_predict(p_design.matrix(X), folds, "predict_proba", oos)
    m = outcome.block_predict(o_design.matrix(X), folds, outcome_method, oos)
    control = m - np.einsum("nk,nkc->nc", e[:, 1:], tau)
    return np.concatenate([control[:, None, :], control[:, None, :] + tau], axis=1)


def r_evaluation_rows(frame: pd.DataFrame, folds: pd.DataFrame | None, bundle: Any) -> list:
    """Outcome and propensity models; treatment model k on rows w in {0, k} against the
    residual pseudo-outcome with the squared treatment residual as weight; the R-loss."""
    propensity, p_design, outcome, o_design, outcome_method, treatments, t_design, oos = bundle[:8]
    cate_bundle, is_classification, epsilon = bundle[8:]
    y = frame[Y_COL].to_numpy(dtype=float)
    w = frame[W_COL].to_numpy()
    every = np.ones(len(frame), dtype=bool)
    m_all = predict_rows(outcome, o_design, frame, folds, outcome_method, oos, every)
    e = predict_rows(propensity, p_design, frame, folds, "predict_proba", oos, every)
    rows = [(m_all, y, every, None), (e, w.astype(float), every, None)]
    m = positive_class(m_all, is_classification)
    tau = treatment_cate_partition(frame, folds, cate_bundle)
    channel = 1 if is_classification else 0
    losses = []
    for k, model in enumerate(treatments, start=1):
        mask = (w == 0) | (w == k)
        e_bin = e[:, k] / (e[:, 0] + e[:, k])
        w_res = (w == k).astype(float) - e_bin
        pseudo = (y - m) / clip_to_epsilon(w_res, epsilon)
        tau_hat = predict_rows(model, t_design, frame, folds, "predict", oos, mask)
        rows.append((tau_hat, pseudo, mask, np.square(w_res)))
        # r_loss_k_vs_0 = sqrt(mean(((y - m) - tau (w - e))^2)): the "prediction" tau (w - e)
        losses.append((tau[:, k - 1, channel] * w_res, y - m, mask, None))
    return rows + losses


class RLearner(MetaLearner):
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
                f"{factory.__name__}.fit has no sample_weight, but the R-learner weights its "
                "treatment models"
            )
        super()._validate_models()

    def _validate_fit_params(self, qualified: dict[str, dict[str, dict]]) -> None:
        if SAMPLE_WEIGHT in qualified[TREATMENT][TREATMENT_MODEL]:
            raise ValueError(
                f"fit_params passes {SAMPLE_WEIGHT} to the R-learner's treatment model, but the "
                "R-learner sets it itself (the squared treatment residuals); pass it only to "
                "nuisance models (qualified form: {'nuisance': {kind: {...}}})"
            )

    def _nuisance_entries(self, synchronize: bool) -> list[ModelEntry]:
        split = "all" if synchronize else "own"
        return [
            ModelEntry(PROPENSITY_MODEL, 0, None, W_COL, split),
            ModelEntry(OUTCOME_MODEL, 0, None, Y_COL, split),
        ]

    def _treatment_entries(self, synchronize: bool) -> list[ModelEntry]:
        # metalearners never synchronises the treatment models: own KFold over w in {0, k}
        entries = []
        for k in range(1, self.n_variants):
            entry = ModelEntry(TREATMENT_MODEL, k - 1, (0, k), "")
            entries.append(ModelEntry(TREATMENT_MODEL, k - 1, (0, k), derived_columns(entry)[0]))
        return entries

    def _derivation(self, run: FitRun, entry: ModelEntry) -> Derivation:
        columns = run.data.columns
        return Derivation(
            r_pseudo_outcome,
            ((PROPENSITY_MODEL, 0), (OUTCOME_MODEL, 0)),
            (entry.ordinal + 1, self.is_classification, EPSILON),
            weight=True,
            predicts=(
                (self._design(PROPENSITY_MODEL, columns), "predict_proba"),
                (self._design(OUTCOME_MODEL, columns), self._outcome_predict_method()),
            ),
        )

    def _cate_bundle(self, oos_method: str) -> Any:
        self._require_treatment_fitted()
        models = self._treatment_models[TREATMENT_MODEL]
        for m in models:
            m.check_predict_args(True, "predict", oos_method)
        return (models, self._design(TREATMENT_MODEL), oos_method, self.is_classification)

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
        bundle = (
            self._nuisance_models[PROPENSITY_MODEL][0],
            self._design(PROPENSITY_MODEL),
            self._nuisance_models[OUTCOME_MODEL][0],
            self._design(OUTCOME_MODEL),
            self._outcome_predict_method(),
            self._treatment_models[TREATMENT_MODEL],
            self._design(TREATMENT_MODEL),
            oos_method,
            self._cate_bundle(oos_method),
            self.is_classification,
            EPSILON,
        )
        return PartitionPlan(r_evaluation_rows, bundle, tuple(items), self._feature_names())

    def predict(self, X: Any, is_oos: bool, oos_method: str = OVERALL) -> Any:
        """The CATE ``(n, n_variants - 1, n_outputs)``; ``[-tau, tau]`` for classification."""
        self._check_predict(is_oos, oos_method)
        n_out = 2 if self.is_classification else 1
        return self._map(
            X,
            is_oos,
            treatment_cate_partition,
            self._cate_bundle(oos_method),
            (self.n_variants - 1, n_out),
            "rlearner-cate",
        )

    def predict_conditional_average_outcomes(
        self, X: Any, is_oos: bool, oos_method: str = OVERALL
    ) -> Any:
        """Y0 = m - sum_k e_k tau_k and Yk = Y0 + tau_k: ``(n, n_variants, n_outputs)``."""
        self._check_predict(is_oos, oos_method)
        if is_oos and oos_method == MEDIAN:
            raise ValueError(
                "Cannot create median of class probabilities, which the R-learner's conditional "
                "average outcomes need (propensity); use oos_method='overall' or 'mean'."
            )
        propensity = self._nuisance_models[PROPENSITY_MODEL][0]
        outcome = self._nuisance_models[OUTCOME_MODEL][0]
        bundle = (
            self._cate_bundle(oos_method),
            propensity,
            self._design(PROPENSITY_MODEL),
            outcome,
            self._design(OUTCOME_MODEL),
            self._outcome_predict_method(),
            oos_method,
        )
        n_out = 2 if self.is_classification else 1
        return self._map(
            X, is_oos, r_cao_partition, bundle, (self.n_variants, n_out), "rlearner-cao"
        )
