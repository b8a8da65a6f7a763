"""T-learner: one outcome model per treatment variant; CATE_k = mu_k - mu_0."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dask_meta._constants import OVERALL, VARIANT_OUTCOME_MODEL, W_COL, Y_COL
from dask_meta.evaluation import Evaluated, PartitionPlan, predict_rows
from dask_meta.learners.base import MetaLearner, check_oos_for, n_outputs_of
from dask_meta.learners.tables import ModelEntry, ModelSpecification


def cao_partition(X: pd.DataFrame, folds: pd.DataFrame | None, bundle: Any) -> np.ndarray:
    """Conditional average outcomes of one partition, ``(n, K, n_out)``, or the CATE.

    In-sample, variant k's model predicts its own training rows with the fold model that did
    not see them and every other row out-of-sample with ``oos_method`` (reference §3.1).
    """
    cfes, designs, method, oos_method, cate = bundle
    cao = np.stack(
        [
            cfe.block_predict(d.matrix(X), folds, method, oos_method)
            for cfe, d in zip(cfes, designs)
        ],
        axis=1,
    )
    return cao[:, 1:] - cao[:, [0]] if cate else cao


def outcome_evaluation_rows(frame: pd.DataFrame, folds: pd.DataFrame | None, bundle: Any) -> list:
    """Variant k's outcome model on the rows w == k against y (T, X and DR)."""
    cfes, designs, method, oos = bundle
    y = frame[Y_COL].to_numpy(dtype=float)
    w = frame[W_COL].to_numpy()
    return [
        (predict_rows(cfe, d, frame, folds, method, oos, w == k), y, w == k, None)
        for k, (cfe, d) in enumerate(zip(cfes, designs, strict=True))
    ]


class ConditionalAverageOutcomes:
    """E[Y(k) | X] from the variant outcome models (T, X and DR; reference §3.1)."""

    def _outcome_bundle(self: Any, oos_method: str, cate: bool) -> tuple[Any, tuple[int, ...]]:
        method = self._outcome_predict_method()
        cfes = self._nuisance_models[VARIANT_OUTCOME_MODEL]
        for cfe in cfes:
            check_oos_for(cfe, method, oos_method)
        designs = [self._design(VARIANT_OUTCOME_MODEL) for _ in cfes]
        n_out = n_outputs_of(self, VARIANT_OUTCOME_MODEL)
        k = self.n_variants - 1 if cate else self.n_variants
        return (cfes, designs, method, oos_method, cate), (k, n_out)

    def _outcome_evaluation(
        self: Any, is_oos: bool, oos_method: str, scoring: dict[str, list[Any]]
    ) -> tuple[tuple[Any, ...], tuple[Evaluated, ...]]:
        """The bundle of :func:`outcome_evaluation_rows` and the evaluated outcome models."""
        (cfes, designs, method, oos, _), _ = self._outcome_bundle(oos_method, cate=False)
        items = tuple(
            self._evaluated(VARIANT_OUTCOME_MODEL, scoring, k, f"{k}_", oos=(is_oos, oos_method))
            for k in range(self.n_variants)
        )
        return (cfes, designs, method, oos), items

    def predict_conditional_average_outcomes(
        self: Any, X: Any, is_oos: bool, oos_method: str = OVERALL
    ) -> Any:
        """E[Y(k) | X] for every variant: ``(n, n_variants, n_outputs)``."""
        self._check_predict(is_oos, oos_method)
        bundle, tail = self._outcome_bundle(oos_method, cate=False)
        return self._map(X, is_oos, cao_partition, bundle, tail, "cao")


class TLearner(ConditionalAverageOutcomes, MetaLearner):
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

    def predict(self, X: Any, is_oos: bool, oos_method: str = OVERALL) -> Any:
        """The CATE of every variant against variant 0: ``(n, n_variants - 1, n_outputs)``."""
        self._check_predict(is_oos, oos_method)
        bundle, tail = self._outcome_bundle(oos_method, cate=True)
        return self._map(X, is_oos, cao_partition, bundle, tail, "tlearner-cate")

    def _evaluation_plan(
        self, is_oos: bool, oos_method: str, scoring: dict[str, list[Any]]
    ) -> PartitionPlan:
        bundle, items = self._outcome_evaluation(is_oos, oos_method, scoring)
        return PartitionPlan(outcome_evaluation_rows, bundle, items, self._feature_names())
