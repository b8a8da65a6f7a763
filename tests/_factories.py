"""Base-model factories that are not estimator classes, in an importable module (so that
they pickle by reference to the workers of the LocalCluster fixture)."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression


class DuckRegressor:
    """A regressor without scikit-learn's base classes or tags: ``fit`` and ``predict``."""

    def __init__(self, alpha: float = 0.0):
        self.alpha = alpha

    def fit(self, X, y, sample_weight=None):
        self.model_ = LinearRegression().fit(np.asarray(X), y, sample_weight=sample_weight)
        return self

    def predict(self, X):
        return self.model_.predict(np.asarray(X)) + self.alpha


class DuckClassifier:
    """A classifier without scikit-learn's base classes or tags: ``fit``, ``predict_proba``."""

    def __init__(self, C: float = 1.0):
        self.C = C

    def fit(self, X, y, sample_weight=None):
        self.model_ = LogisticRegression(C=self.C).fit(np.asarray(X), y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X):
        return self.model_.predict(np.asarray(X))

    def predict_proba(self, X):
        return self.model_.predict_proba(np.asarray(X))


def make_linear_regression(**params):
    """A factory function: builds a LinearRegression."""
    return LinearRegression(**params)


class RegressorBuilder:
    """A callable object as a factory (no ``__name__``)."""

    def __call__(self, **params):
        return LinearRegression(**params)


class UntypedClassifier(DuckClassifier):
    """A classifier that names a type of its own and records no ``classes_``."""

    _estimator_type = "Neutral"

    def fit(self, X, y, sample_weight=None):
        self.model_ = LogisticRegression(C=self.C).fit(np.asarray(X), y)
        return self
