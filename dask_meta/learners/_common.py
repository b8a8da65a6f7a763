"""Small pieces shared by the learners: effects of treatment models, linear CATEs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dask_meta._constants import TREATMENT_MODEL
from dask_meta.backends import Design
from dask_meta.crossfit import CrossFitEstimator, ModelPrediction
from dask_meta.evaluation import predict_rows

EPSILON = 1e-9


def clip_to_epsilon(values: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    """metalearners' floor: values with ``|v| < epsilon`` become ``sign(v) * epsilon`` (0 -> +)."""
    bound = np.where(values < 0, -1, 1) * epsilon
    return np.where(np.abs(values) < epsilon, bound, values)


def positive_class(outcome: np.ndarray, is_classification: bool) -> np.ndarray:
    """The expected outcome of ``(n, n_outputs)`` predictions: P(Y=1) or the regression value."""
    return outcome[:, 1] if is_classification else outcome[:, 0]


def effect_outputs(tau: np.ndarray, is_classification: bool) -> np.ndarray:
    """``(n,)`` effects as ``(n, n_outputs)``: ``[-tau, tau]`` for binary classification."""
    return np.stack([-tau, tau], axis=1) if is_classification else tau[:, None]


def prediction_rows(
    prediction: ModelPrediction,
    frame: pd.DataFrame,
    folds: pd.DataFrame | None,
    mask: np.ndarray,
) -> np.ndarray:
    """One model's predictions on the rows ``mask`` of an evaluation partition (NaN elsewhere)."""
    return predict_rows(
        prediction.model,
        prediction.design,
        frame,
        folds,
        prediction.method,
        prediction.oos_method,
        mask,
    )


@dataclass(frozen=True)
class TreatmentModels:
    """The treatment models tau_k (k = 1..K-1, each against variant 0) of the R- and DR-learner."""

    models: tuple[CrossFitEstimator, ...]
    design: Design
    oos_method: str
    is_classification: bool


def treatment_cate_partition(
    X: pd.DataFrame, folds: pd.DataFrame | None, bundle: TreatmentModels
) -> np.ndarray:
    """CATE ``(n, K-1, n_outputs)`` of one partition: tau_k(X) for every k."""
    matrix = bundle.design.matrix(X)
    return np.stack(
        [
            effect_outputs(
                model.block_predict(matrix, folds, "predict", bundle.oos_method)[:, 0],
                bundle.is_classification,
            )
            for model in bundle.models
        ],
        axis=1,
    )


@dataclass(frozen=True)
class LinearCate:
    """A CATE that is a sum of single models' predictions: the T-learner's ``mu_k - mu_0``,
    the R- and DR-learner's ``tau_k``. Entry ``(k, o)`` of a row's CATE is the sum of
    ``coef`` x the ``predict`` output of model ``m`` over the terms ``(k, o, m, coef)``.

    A bootstrap's in-sample ATE sums each model's predictions apart, so a model that summed
    its own training rows as it was fitted (:mod:`dask_meta.backends.scores`) is predicted
    on the other rows only. ``needs``: each model's (kind, ordinal)."""

    needs: tuple[tuple[str, int], ...]
    models: tuple[CrossFitEstimator, ...]
    design: Design
    oos_method: str
    terms: tuple[tuple[int, int, int, float], ...]


def treatment_linear_cate(models: TreatmentModels) -> LinearCate:
    """The R- and DR-learner's CATE ``tau_k`` (``[-tau_k, tau_k]`` for classification)."""
    signs = ((0, -1.0), (1, 1.0)) if models.is_classification else ((0, 1.0),)
    terms = [(k, o, k, sign) for k in range(len(models.models)) for o, sign in signs]
    return LinearCate(
        needs=tuple((TREATMENT_MODEL, k) for k in range(len(models.models))),
        models=models.models,
        design=models.design,
        oos_method=models.oos_method,
        terms=tuple(terms),
    )
