"""T-learner (Kuenzel et al. 2019): one outcome model per treatment variant.

``mu_k(x) = E[Y | X = x, W = k]`` is fitted on the rows of variant k; the CATE of variant k
is ``mu_k(x) - mu_0(x)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dask_meta._constants import OVERALL, VARIANT_OUTCOME_MODEL, W_COL, Y_COL
from dask_meta._typing import Matrix
from dask_meta.backends import Design
from dask_meta.crossfit import CrossFitEstimator
from dask_meta.evaluation import Evaluated, PartitionPlan, predict_rows
from dask_meta.learners._common import LinearCate
from dask_meta.learners.base import MetaLearner, check_oos_for, n_outputs_of
from dask_meta.learners.onnx_export import OnnxExport, OnnxGraph, Value
from dask_meta.learners.tables import ModelEntry, ModelSpecification
from dask_meta.prediction import Prediction


@dataclass(frozen=True)
class OutcomeModels:
    """The outcome model ``mu_k`` of every variant k (T-, X- and DR-learner)."""

    models: tuple[CrossFitEstimator, ...]
    design: Design
    method: str
    oos_method: str


def cao_partition(X: pd.DataFrame, folds: pd.DataFrame | None, bundle: OutcomeModels) -> np.ndarray:
    """Conditional average outcomes ``mu_k(X)`` of one partition: ``(n, K, n_outputs)``.

    In-sample, variant k's model predicts its own training rows with the fold model that did
    not see them and every other row out-of-sample with ``oos_method`` (metalearners' rule).
    """
    matrix = bundle.design.matrix(X)
    return np.stack(
        [
            model.block_predict(matrix, folds, bundle.method, bundle.oos_method)
            for model in bundle.models
        ],
        axis=1,
    )


def t_cate_partition(
    X: pd.DataFrame, folds: pd.DataFrame | None, bundle: OutcomeModels
) -> np.ndarray:
    """CATE ``mu_k(X) - mu_0(X)`` of every variant k >= 1: ``(n, K-1, n_outputs)``."""
    mu = cao_partition(X, folds, bundle)
    return mu[:, 1:] - mu[:, [0]]


def outcome_evaluation_rows(
    frame: pd.DataFrame, folds: pd.DataFrame | None, bundle: OutcomeModels
) -> list:
    """Variant k's outcome model on the rows w == k against y (T, X and DR)."""
    y = frame[Y_COL].to_numpy(dtype=float)
    w = frame[W_COL].to_numpy()
    return [
        (
            predict_rows(
                model, bundle.design, frame, folds, bundle.method, bundle.oos_method, w == k
            ),
            y,
            w == k,
            None,
        )
        for k, model in enumerate(bundle.models)
    ]


class ConditionalAverageOutcomes:
    """``E[Y(k) | X] = mu_k(X)`` from the variant outcome models (T-, X- and DR-learner)."""

    def _outcome_models(self: Any, oos_method: str, is_oos: bool = True) -> OutcomeModels:
        method = self._outcome_predict_method()
        models = self._nuisance_models[VARIANT_OUTCOME_MODEL]
        for model in models:
            check_oos_for(model, method, oos_method, is_oos)
        return OutcomeModels(
            models=tuple(models),
            design=self._design(VARIANT_OUTCOME_MODEL),
            method=method,
            oos_method=oos_method,
        )

    def _outcome_evaluation(
        self: Any, is_oos: bool, oos_method: str, scoring: dict[str, list[Any]]
    ) -> tuple[OutcomeModels, tuple[Evaluated, ...]]:
        """The outcome models for :func:`outcome_evaluation_rows` and what is scored of them."""
        outcomes = self._outcome_models(oos_method, is_oos)
        items = tuple(
            self._evaluated(VARIANT_OUTCOME_MODEL, scoring, k, f"{k}_", oos=(is_oos, oos_method))
            for k in range(self.n_variants)
        )
        return outcomes, items

    def predict_conditional_average_outcomes(
        self: Any, X: Matrix, is_oos: bool, oos_method: str = OVERALL
    ) -> Any:
        """E[Y(k) | X] for every variant: ``(n, n_variants, n_outputs)``."""
        self._check_predict(is_oos, oos_method)
        outcomes = self._outcome_models(oos_method, is_oos)
        tail = (self.n_variants, n_outputs_of(self, VARIANT_OUTCOME_MODEL))
        return self._map(X, is_oos, cao_partition, outcomes, tail, "cao")


class TLearner(OnnxExport, ConditionalAverageOutcomes, MetaLearner):
    """T-learner (Kuenzel et al. 2019): ``n_variants`` outcome models, one per variant."""

    @classmethod
    def nuisance_model_specifications(cls) -> dict[str, ModelSpecification]:
        return {
            VARIANT_OUTCOME_MODEL: ModelSpecification(
                cardinality=MetaLearner._get_n_variants,
                predict_method=MetaLearner._outcome_predict_method,
            )
        }

    @classmethod
    def treatment_model_specifications(cls) -> dict[str, ModelSpecification]:
        return {}

    @classmethod
    def _supports_multi_treatment(cls) -> bool:
        return True

    @classmethod
    def _supports_multi_class(cls) -> bool:
        return True

    def _nuisance_entries(self, synchronize: bool) -> list[ModelEntry]:
        # metalearners: every variant model uses its own (Stratified)KFold over its rows
        return [ModelEntry(VARIANT_OUTCOME_MODEL, k, (k,), Y_COL) for k in range(self.n_variants)]

    def _cate(self, is_oos: bool, oos_method: str) -> Prediction:
        self._check_predict(is_oos, oos_method)
        outcomes = self._outcome_models(oos_method)
        tail = (self.n_variants - 1, n_outputs_of(self, VARIANT_OUTCOME_MODEL))
        return Prediction(t_cate_partition, outcomes, tail, "tlearner-cate")

    _linear_cate_kinds = (VARIANT_OUTCOME_MODEL,)

    def _linear_cate(self, oos_method: str) -> LinearCate | None:
        """``mu_k - mu_0`` of regression outcomes (classification: of probabilities, two
        outputs a model, not summed apart)."""
        if self.is_classification:
            return None
        outcomes = self._outcome_models(oos_method)
        return LinearCate(
            needs=tuple((VARIANT_OUTCOME_MODEL, k) for k in range(self.n_variants)),
            models=outcomes.models,
            design=outcomes.design,
            oos_method=oos_method,
            terms=tuple(
                (k - 1, 0, m, sign)
                for k in range(1, self.n_variants)
                for m, sign in ((k, 1.0), (0, -1.0))
            ),
        )

    _onnx_kinds = (VARIANT_OUTCOME_MODEL,)

    def _onnx_cate(self, graph: OnnxGraph) -> list[Value]:
        """ONNX: tau_k = mu_k - mu_0 (of every class's probability for classification)."""
        mu = graph.outputs(VARIANT_OUTCOME_MODEL)
        return [mu_k - mu[0] for mu_k in mu[1:]]

    def _evaluation_plan(
        self, is_oos: bool, oos_method: str, scoring: dict[str, list[Any]]
    ) -> PartitionPlan:
        outcomes, items = self._outcome_evaluation(is_oos, oos_method, scoring)
        return PartitionPlan(outcome_evaluation_rows, outcomes, items, self._feature_names())
