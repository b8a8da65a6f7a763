"""S-learner (Kuenzel et al. 2019): one outcome model on the covariates plus the treatment.

``mu(x, k) = E[Y | X = x, W = k]`` is one model with the treatment as a feature; the CATE of
variant k is ``mu(x, k) - mu(x, 0)``.

Unlike metalearners 0.13 (whose categorical encoding turns the treatment into NaN for
categorical-aware models such as LightGBM, so its CATE is identically 0), the treatment
column is a proper ``category`` with categories ``0..n_variants-1``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client

from dask_meta._constants import BASE_MODEL, NUISANCE, OVERALL, W_COL, Y_COL
from dask_meta._typing import Matrix, Vector
from dask_meta.backends import Design, is_categorical_aware
from dask_meta.crossfit import CrossFitEstimator, ModelPrediction
from dask_meta.evaluation import PartitionPlan, predict_rows
from dask_meta.learners.base import MetaLearner, n_outputs_of
from dask_meta.learners.fit_run import FitRun
from dask_meta.learners.tables import ModelEntry, ModelSpecification
from dask_meta.prediction import Prediction

TREATMENT_COLUMN = "treatment"


def append_treatment(
    X: pd.DataFrame, w: np.ndarray, as_numpy: bool, n_variants: int, categorical: bool
) -> Any:
    """X plus the treatment: K-1 one-hot int8 columns, or one categorical column."""
    w = np.asarray(w, dtype=np.int64)
    if not categorical:
        dummies = np.eye(n_variants, dtype=np.int8)[w][:, 1:]
        if as_numpy:
            return np.concatenate([X.to_numpy(), dummies], axis=1)
        out = X.copy()
        out.columns = [str(c) for c in X.columns]
        for k in range(1, n_variants):
            out[f"{TREATMENT_COLUMN}_{k}"] = dummies[:, k - 1]
        return out
    out = X.copy()
    out.columns = [str(i) for i in range(X.shape[1])] if as_numpy else [str(c) for c in X.columns]
    out[TREATMENT_COLUMN] = pd.Categorical(w, categories=list(range(n_variants)))
    return out


@dataclass(frozen=True)
class CounterfactualOutcomes:
    """The base model ``mu(x, k)`` and how it predicts, for the treatment set to each variant."""

    model: CrossFitEstimator
    design: Design
    method: str
    oos_method: str
    n_variants: int


def s_cao_partition(
    X: pd.DataFrame, folds: pd.DataFrame | None, bundle: CounterfactualOutcomes
) -> np.ndarray:
    """``mu(X, k)`` for every variant k, ``(n, K, n_outputs)``, of one partition (in-sample:
    the fold model that did not see the row, for every counterfactual variant)."""
    n = len(X)
    return np.stack(
        [
            bundle.model.block_predict(
                bundle.design.matrix(X, np.full(n, k)), folds, bundle.method, bundle.oos_method
            )
            for k in range(bundle.n_variants)
        ],
        axis=1,
    )


def s_cate_partition(
    X: pd.DataFrame, folds: pd.DataFrame | None, bundle: CounterfactualOutcomes
) -> np.ndarray:
    """CATE ``mu(X, k) - mu(X, 0)`` of every variant k >= 1: ``(n, K-1, n_outputs)``."""
    mu = s_cao_partition(X, folds, bundle)
    return mu[:, 1:] - mu[:, [0]]


@dataclass(frozen=True)
class OneVariantOutcome:
    """The base model and how it predicts, for the treatment set to ``variant`` on every row."""

    model: CrossFitEstimator
    design: Design
    method: str
    oos_method: str
    variant: int


def s_nuisance_partition(
    X: pd.DataFrame, folds: pd.DataFrame | None, bundle: OneVariantOutcome
) -> np.ndarray:
    """``mu(X, variant)`` of one partition: ``(n, n_outputs)``."""
    matrix = bundle.design.matrix(X, np.full(len(X), bundle.variant))
    return bundle.model.block_predict(matrix, folds, bundle.method, bundle.oos_method)


def s_evaluation_rows(
    frame: pd.DataFrame, folds: pd.DataFrame | None, bundle: ModelPrediction
) -> list:
    """The base model on X with the observed treatment appended, against y."""
    w = frame[W_COL].to_numpy()
    every = np.ones(len(frame), dtype=bool)
    prediction = predict_rows(
        bundle.model, bundle.design, frame, folds, bundle.method, bundle.oos_method, every, w=w
    )
    return [(prediction, frame[Y_COL].to_numpy(dtype=float), every, None)]


class SLearner(MetaLearner):
    """S-learner (Kuenzel et al. 2019): one model of the outcome given X and the treatment."""

    _models_per_variant = False  # its one model is scored on rows of any variants

    @classmethod
    def nuisance_model_specifications(cls) -> dict[str, ModelSpecification]:
        return {
            BASE_MODEL: ModelSpecification(
                cardinality=MetaLearner._get_one,
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

    def __init__(
        self,
        is_classification: bool,
        n_variants: int,
        nuisance_model_factory: Any = None,
        treatment_model_factory: Any = None,
        propensity_model_factory: type | None = None,
        nuisance_model_params: dict | None = None,
        treatment_model_params: dict | None = None,
        propensity_model_params: dict | None = None,
        fitted_nuisance_models: dict[str, list[CrossFitEstimator]] | None = None,
        fitted_propensity_model: CrossFitEstimator | None = None,
        feature_set: Any = None,
        n_folds: int | dict[str, int] = 10,
        random_state: int | None = None,
        *,
        fold_strategy: str = "partition",
        fold_key: str | None = None,
        client: Client | None = None,
        persist: bool | str = "auto",
        plan: Any = None,
        enable_overall: bool | dict[str, bool] = True,
    ):
        # as in metalearners, the base model sees every column: feature_set is ignored (its
        # resolved form {kind: None}, which init_args gives, says nothing)
        if feature_set is not None and not (
            isinstance(feature_set, dict) and all(v is None for v in feature_set.values())
        ):
            warnings.warn(
                "Base-model specific feature_sets were provided to S-Learner. These will be "
                "ignored and all available features will be used instead.",
                stacklevel=2,
            )
        super().__init__(
            is_classification,
            n_variants,
            nuisance_model_factory=nuisance_model_factory,
            treatment_model_factory=treatment_model_factory,
            propensity_model_factory=propensity_model_factory,
            nuisance_model_params=nuisance_model_params,
            treatment_model_params=treatment_model_params,
            propensity_model_params=propensity_model_params,
            fitted_nuisance_models=fitted_nuisance_models,
            fitted_propensity_model=fitted_propensity_model,
            feature_set=None,
            n_folds=n_folds,
            random_state=random_state,
            fold_strategy=fold_strategy,
            fold_key=fold_key,
            client=client,
            persist=persist,
            plan=plan,
            enable_overall=enable_overall,
        )
        self._categorical: bool | None = None

    def _nuisance_entries(self, synchronize: bool) -> list[ModelEntry]:
        return [ModelEntry(BASE_MODEL, 0, None, Y_COL)]

    def _uses_categorical(self) -> bool:
        factory = self.nuisance_model_factory[BASE_MODEL]
        return is_categorical_aware(factory(**self.nuisance_model_params[BASE_MODEL]))

    def _design(self, kind: str, columns: Any = None) -> Design:
        base = super()._design(kind, columns)
        if columns is not None:
            cols = columns
        else:
            assert self._fit_context is not None
            cols = self._fit_context.columns
        names = [str(c) for c in cols.names]
        if TREATMENT_COLUMN in names or any(n.startswith(f"{TREATMENT_COLUMN}_") for n in names):
            raise ValueError(
                f"X has a column named {TREATMENT_COLUMN!r} (or 'treatment_<k>'); the S-learner "
                "adds the treatment under that name, so rename it"
            )
        categorical = self._uses_categorical() if self._categorical is None else self._categorical
        return Design(
            base.columns,
            base.as_numpy,
            transform=append_treatment,
            transform_args=(self.n_variants, categorical),
        )

    def _after_fit(self, run: FitRun, stages: tuple[str, ...]) -> None:
        if NUISANCE in stages:
            self._categorical = self._uses_categorical()

    def _counterfactual_outcomes(
        self, is_oos: bool, oos_method: str
    ) -> tuple[CounterfactualOutcomes, int]:
        """The base model's counterfactual predictions and its number of outputs."""
        method = self._outcome_predict_method()
        # in-sample, every row is in the base model's split: oos_method is not used
        if is_oos and oos_method == "median" and method == "predict_proba":
            raise ValueError(
                "Cannot create median of class probabilities. Please use a different oos_method."
            )
        outcomes = CounterfactualOutcomes(
            model=self._nuisance_models[BASE_MODEL][0],
            design=self._design(BASE_MODEL),
            method=method,
            oos_method=oos_method,
            n_variants=self.n_variants,
        )
        return outcomes, n_outputs_of(self, BASE_MODEL)

    def _evaluation_plan(
        self, is_oos: bool, oos_method: str, scoring: dict[str, list[Any]]
    ) -> PartitionPlan:
        item = self._evaluated(BASE_MODEL, scoring, oos=(is_oos, oos_method))
        base = ModelPrediction(
            model=self._nuisance_models[BASE_MODEL][0],
            design=self._design(BASE_MODEL),
            method=item.method,
            oos_method=oos_method,
        )
        return PartitionPlan(s_evaluation_rows, base, (item,), self._feature_names())

    def predict_conditional_average_outcomes(
        self, X: Matrix, is_oos: bool, oos_method: str = OVERALL
    ) -> Any:
        """E[Y(k) | X] for every variant: ``(n, n_variants, n_outputs)``."""
        self._check_predict(is_oos, oos_method)
        outcomes, n_out = self._counterfactual_outcomes(is_oos, oos_method)
        tail = (self.n_variants, n_out)
        return self._map(X, is_oos, s_cao_partition, outcomes, tail, "slearner-cao")

    def _cate(self, is_oos: bool, oos_method: str) -> Prediction:
        self._check_predict(is_oos, oos_method)
        outcomes, n_out = self._counterfactual_outcomes(is_oos, oos_method)
        tail = (self.n_variants - 1, n_out)
        return Prediction(s_cate_partition, outcomes, tail, "slearner-cate")

    # metalearners: no ONNX export for the S-learner, whose one model reads the treatment as
    # a feature encoded for that model (one-hot columns or a categorical)
    _NO_ONNX = (
        "The SLearner does not implement this method: ONNX export is for the T-, X-, R- and "
        "DR-learner (docs/saving-loading.md, Export to ONNX)."
    )

    def _necessary_onnx_models(self) -> dict[str, list[Any]]:
        raise ValueError(self._NO_ONNX)

    def _build_onnx(self, models: Any, output_name: str = "tau") -> Any:
        raise ValueError(self._NO_ONNX)

    def predict_nuisance(
        self,
        X: Matrix,
        model_kind: str,
        model_ord: int,
        is_oos: bool,
        oos_method: str = OVERALL,
        *,
        w: Vector | None = None,
    ) -> Any:
        """Predict the base model for X with treatment ``w`` (an int for all rows, or per row).

        metalearners expects X with the treatment already appended; dask-meta appends it
        itself, so pass the treatment as ``w``.
        """
        if w is None:
            raise ValueError(
                "SLearner.predict_nuisance needs the treatment: pass w=<variant> (an int for "
                "every row) or a per-row vector"
            )
        if not isinstance(w, int | np.integer):
            raise TypeError("w must be an int variant for SLearner.predict_nuisance")
        if not 0 <= int(w) < self.n_variants:
            raise ValueError(f"w={w} is outside 0..{self.n_variants - 1}")
        self._check_predict(is_oos, oos_method)
        model = self._nuisance_models[BASE_MODEL][0]
        method = self._outcome_predict_method()
        oos = model.check_predict_args(is_oos, method, oos_method)
        n_out = n_outputs_of(self, BASE_MODEL)
        outcome = OneVariantOutcome(
            model=model,
            design=self._design(BASE_MODEL),
            method=method,
            oos_method=oos,
            variant=int(w),
        )
        return self._map(
            X,
            is_oos,
            s_nuisance_partition,
            outcome,
            (n_out,) if n_out > 1 else (),
            "slearner-nuisance",
        )
