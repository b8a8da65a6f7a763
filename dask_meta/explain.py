"""Feature importances and SHAP values of CATE models (metalearners' ``Explainer``), on Dask.

An :class:`Explainer` holds one fitted model per non-control variant whose prediction is that
variant's CATE. It comes either from a learner's own treatment models (R and DR) or from
surrogate models fitted on ``(X, cate_estimates)``. Out of core, the surrogates are fitted
through the planner on the Dask data: X and the (lazy) CATE estimates are read once, and
the surrogates of all variants train side by side; ``cate_model_factory`` may be a
collection model (``lightgbm.dask.DaskLGBMRegressor``...) as anywhere in dask-meta.

SHAP values are computed where the data are: for in-memory X they come back as numpy arrays
(as in metalearners); for a Dask X they are a lazy Dask array per variant, computed
partition by partition on the workers. Explaining a sample is the usual practice; size it
with ``X.sample(frac=...)`` or ``X.partitions[:k]`` and pass that.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd

from dask_meta import runtime
from dask_meta._typing import Matrix
from dask_meta.crossfit import CrossFitEstimator, fit_estimators
from dask_meta.data import Columns, check_columns, combine, is_dask


class Explainer:
    """Explains CATE models: one fitted model per non-control variant (a plain estimator).

    ``cate_models[k]`` predicts the CATE of variant ``k + 1`` against the control;
    ``columns`` (if known) are the columns they were fitted on, which ``shap_values``
    checks X against.
    """

    def __init__(self, cate_models: list[Any], columns: Columns | None = None):
        self.n_variants = len(cate_models) + 1
        self.cate_models = cate_models
        self.columns = columns

    @classmethod
    def from_estimates(
        cls,
        X: Matrix,
        cate_estimates: Any,
        cate_model_factory: Any,
        cate_model_params: dict | None = None,
        *,
        client: Any = None,
        random_state: int | None = None,
    ) -> Explainer:
        """Fit ``cate_model_factory(**cate_model_params)`` on ``(X, cate_estimates[:, k])``.

        ``cate_estimates`` is a learner's raw output ``(n, n_variants - 1, n_outputs)``,
        numpy or Dask; for binary classification the positive class's CATE is explained.
        The surrogates are fitted through the planner on ``client`` (default: the current
        one), each on all rows.
        """
        tensor = _check_estimates(X, cate_estimates)
        params = dict(cate_model_params or {})
        n_effects = int(tensor.shape[1])
        cfes = [
            CrossFitEstimator(
                n_folds=1,
                estimator_factory=cate_model_factory,
                estimator_params=params,
                random_state=random_state,
                client=client,
            )
            for _ in range(n_effects)
        ]
        if cfes[0].is_classifier:
            raise ValueError(
                "cate_model_factory must be a regressor: the CATE estimates are continuous, "
                f"got the classifier {getattr(cate_model_factory, '__name__', cate_model_factory)}"
            )
        fit_estimators(
            cfes,
            X,
            [tensor[:, k] for k in range(n_effects)],
            kind="cate_model",
            target_names=[f"cate_estimates[:, {k}]" for k in range(n_effects)],
        )
        context = cfes[0]._context
        return cls(
            [cfe._overall_estimator for cfe in cfes],
            None if context is None else context.columns,
        )

    def feature_importances(
        self,
        normalize: bool = False,
        feature_names: Collection[str] | None = None,
        sort_values: bool = False,
    ) -> list[pd.Series]:
        """The models' ``feature_importances_``, one Series per non-control variant.

        ``feature_names`` default to ``"Feature {i}"`` (as in metalearners); ``normalize``
        divides by the sum; ``sort_values`` sorts in descending order.
        """
        importances = []
        for k, model in enumerate(self.cate_models):
            if not hasattr(model, "feature_importances_"):
                raise ValueError(
                    f"Model used for treatment variant {k + 1} has no attribute "
                    "feature_importances_. You need to use a model which computes them, "
                    "e.g. LGBMRegressor."
                )
            values = np.asarray(model.feature_importances_)
            if normalize:
                values = values / np.sum(values)
            names = (
                list(feature_names)
                if feature_names is not None
                else [f"Feature {i}" for i in range(len(values))]
            )
            if len(names) != len(values):
                raise ValueError(
                    f"feature_names has {len(names)} names but the model of variant {k + 1} "
                    f"has {len(values)} features"
                )
            series = pd.Series(values, index=names)
            if sort_values:
                series = series.sort_values(ascending=False)
            importances.append(series)
        return importances

    def shap_values(
        self,
        X: Matrix,
        shap_explainer_factory: Any,
        shap_explainer_params: dict | None = None,
    ) -> list[Any]:
        """SHAP values of each variant's CATE model on X, one array ``(n, n_features)`` each.

        ``shap_explainer_factory(model=..., **shap_explainer_params)`` builds the explainer
        (e.g. ``shap.TreeExplainer``). In-memory X gives numpy arrays; a Dask X gives lazy
        Dask arrays computed per partition on the workers (the models travel once).
        """
        params = dict(shap_explainer_params or {})
        if self.columns is not None:
            check_columns(combine(X, {}).columns, self.columns)
        if not is_dask(X):
            return [
                shap_explainer_factory(model=model, **params).shap_values(X)
                for model in self.cate_models
            ]
        frame: Any = X
        if hasattr(frame, "to_frame") and frame.ndim == 1:
            frame = frame.to_frame()
        if isinstance(frame, da.Array):
            frame = frame.to_dask_dataframe()
        n_features = frame.shape[1]
        result = []
        for v, model in enumerate(self.cate_models):
            token = runtime.new_token()
            model_ref = dask.delayed(model, name=runtime.task_key("cate-model", v, token))
            parts = [
                da.from_delayed(
                    dask.delayed(_shap_partition, pure=True)(
                        p,
                        model_ref,
                        shap_explainer_factory,
                        params,
                        X_is_array(X),
                        dask_key_name=runtime.task_key("shap", v, i, token),
                    ),
                    shape=(np.nan, n_features),
                    dtype=float,
                )
                for i, p in enumerate(frame.to_delayed())
            ]
            result.append(da.concatenate(parts, axis=0))
        return result


def X_is_array(X: Any) -> bool:
    return isinstance(X, da.Array)


def _shap_partition(
    part: pd.DataFrame, model: Any, factory: Any, params: dict, as_numpy: bool
) -> np.ndarray:
    data = part.to_numpy() if as_numpy else part
    values = factory(model=model, **params).shap_values(data)
    return np.asarray(values, dtype=float).reshape(len(part), -1)


def _check_estimates(X: Any, cate_estimates: Any) -> Any:
    """metalearners' checks of ``from_estimates`` and its 2-D simplification, lazily for Dask."""
    shape = getattr(cate_estimates, "shape", None)
    if shape is None:
        raise TypeError(
            "cate_estimates must be an array (n, n_variants - 1, n_outputs) as returned by "
            f"predict, got {type(cate_estimates).__name__}"
        )
    if len(shape) != 3:
        raise ValueError(
            "cate_estimates must be the raw 3-dimensional output of predict, "
            f"(n, n_variants - 1, n_outputs); got shape {tuple(shape)}"
        )
    if shape[2] == 1:
        tensor = cate_estimates[:, :, 0]
    elif shape[2] == 2:
        tensor = cate_estimates[:, :, 1]
    else:
        raise ValueError(
            "cate_estimates has more than two outputs: the Explainer supports regression "
            "and binary classification CATEs, not multi-class ones"
        )
    if not is_dask(cate_estimates):
        tensor = np.asarray(tensor)
        n_x = _length(X)
        if n_x is not None and (n_x != len(tensor) or n_x == 0):
            raise ValueError(
                "X and cate_estimates should contain the same number of observations "
                "and not be empty."
            )
        if not np.isfinite(tensor).all():
            raise ValueError("cate_estimates can not contain any NaN or inf.")
    return tensor


def _length(X: Any) -> int | None:
    if is_dask(X):
        return None
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)


def check_explainer_arguments(X: Any, cate_estimates: Any, cate_model_factory: Any) -> bool:
    """True when the three are all given, False when all are None; a mix raises."""
    given = [v is not None for v in (X, cate_estimates, cate_model_factory)]
    if all(given):
        return True
    if not any(given):
        return False
    raise ValueError(
        "Either all of [X, cate_estimates, cate_model_factory] are None or all of them must "
        "be defined."
    )


def overall_models(cfes: Sequence[CrossFitEstimator]) -> list[Any]:
    if not all(cfe.enable_overall for cfe in cfes):
        raise ValueError(
            "the explainer uses the treatment models' overall models, but the learner was "
            "built with enable_overall False for treatment_model; pass X, cate_estimates and "
            "cate_model_factory to fit a CATE model instead"
        )
    return [cfe._overall_estimator for cfe in cfes]
