"""metalearners' public ``utils``: ``metalearner_factory``, ``simplify_output`` and
``FixedBinaryPropensity``, under the same names."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from dask_meta.learners import DRLearner, MetaLearner, RLearner, SLearner, TLearner, XLearner

_LEARNERS_BY_PREFIX: dict[str, type[MetaLearner]] = {
    "S": SLearner,
    "T": TLearner,
    "X": XLearner,
    "R": RLearner,
    "DR": DRLearner,
}


def metalearner_factory(metalearner_prefix: str) -> type[MetaLearner]:
    """The learner class of a prefix: ``"S"``, ``"T"``, ``"X"``, ``"R"`` or ``"DR"``."""
    learner = _LEARNERS_BY_PREFIX.get(metalearner_prefix)  # type: ignore[call-overload]
    if learner is None:
        raise ValueError(
            f"No MetaLearner implementation found for prefix {metalearner_prefix}; "
            f"expected one of {list(_LEARNERS_BY_PREFIX)}."
        )
    return learner


def simplify_output(tensor: Any) -> Any:
    """metalearners' ``simplify_output``: squeeze a CATE/CAO tensor to the usual shapes.

    ``(n,1,1)`` -> ``(n,)``; ``(n,1,2)`` -> ``(n,)`` (positive class); ``(n,1,c)`` ->
    ``(n,c)``; ``(n,v,1)`` -> ``(n,v)``; ``(n,v,2)`` -> ``(n,v)`` (positive class); other
    shapes unchanged. Works on numpy and (lazily) on Dask arrays.
    """
    if tensor.ndim != 3:
        raise ValueError("Output needs to be 3-dimensional.")
    _, n_variants, n_outputs = tensor.shape
    if n_variants == 1 and n_outputs == 1:
        return tensor[:, 0, 0]
    if n_variants == 1 and n_outputs == 2:
        return tensor[:, 0, 1]
    if n_variants == 1:
        return tensor[:, 0, :]
    if n_outputs == 1:
        return tensor[:, :, 0]
    if n_outputs == 2:
        return tensor[:, :, 1]
    return tensor


class FixedBinaryPropensity(ClassifierMixin, BaseEstimator):
    """A propensity model that knows the propensity: ``propensity_score`` for every row.

    For randomised experiments with two variants, as a ``propensity_model_factory``
    (``propensity_model_params={"propensity_score": 0.3}``): ``predict_proba`` gives
    ``[1 - p, p]`` whatever the covariates.
    """

    def __init__(self, propensity_score: float) -> None:
        if not 0 <= propensity_score <= 1:
            raise ValueError(
                f"Expected a propensity score between 0 and 1 but got {propensity_score}."
            )
        self.propensity_score = propensity_score

    def fit(self, X: Any, y: Any) -> FixedBinaryPropensity:
        self.classes_ = np.unique(np.asarray(y))
        if (n_classes := len(self.classes_)) > 2:
            raise ValueError(
                f"FixedBinaryPropensity only supports binary outcomes but {n_classes} were "
                "provided."
            )
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.argmax(self.predict_proba(X), axis=1)

    def predict_proba(self, X: Any) -> np.ndarray:
        p = float(self.propensity_score)
        return np.tile(np.array([1.0 - p, p]), (X.shape[0], 1))


__all__ = ["FixedBinaryPropensity", "metalearner_factory", "simplify_output"]
