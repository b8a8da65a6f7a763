"""Parity of the ONNX export (``_necessary_onnx_models``, ``_build_onnx``) with metalearners
0.13.0.

Both libraries fit the same learner on the same rows with the same folds
(``fold_strategy="sklearn"``) and base models (deterministic LightGBM, scikit-learn's linear
models); each one's necessary models are converted the same way (onnxmltools, skl2onnx) and
each builds its graph. The two graphs have the same input, output name, dtype and shape and
give the same CATE in onnxruntime (within 1e-6: the same float32 computation on models fitted
alike), which is metalearners' ``predict(X, True, "overall")`` (within float32 rounding,
rtol 1e-4, atol 1e-5). Where metalearners raises a ValueError, dask-meta does.
"""

from __future__ import annotations

import warnings
from typing import Any

import metalearners
import numpy as np
import onnx
import onnxruntime as rt
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType as LightGBMFloat
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType as SklearnFloat
from sklearn.linear_model import LinearRegression, LogisticRegression

import dask_meta

pytestmark = pytest.mark.parity

N_FEATURES = 5
LGBM = {
    "n_estimators": 10,
    "num_leaves": 8,
    "deterministic": True,
    "force_col_wise": True,
    "n_jobs": 1,
    "verbose": -1,
    "random_state": 1,
}
CASES = [("regression", 3), ("binary", 2)]


def make_data(n_variants: int, classification: bool) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(600, N_FEATURES)).astype(np.float32).astype(np.float64)
    w = rng.integers(0, n_variants, len(X))
    y = X[:, 0] + w * X[:, 1] + rng.normal(0, 0.5, len(X))
    if classification:
        y = (y > np.median(y)).astype(int)
    return X, y, w


def arguments(name: str, n_variants: int, classification: bool) -> dict[str, Any]:
    args: dict[str, Any] = {
        "is_classification": classification,
        "n_variants": n_variants,
        "nuisance_model_factory": LGBMClassifier if classification else LGBMRegressor,
        "nuisance_model_params": LGBM,
        "n_folds": 3,
        "random_state": 3,
    }
    if name != "TLearner":
        args["propensity_model_factory"] = LogisticRegression
        args["propensity_model_params"] = {"random_state": 3, "max_iter": 500}
        if name == "RLearner":
            args["treatment_model_factory"] = LinearRegression
        else:
            args["treatment_model_factory"] = LGBMRegressor
            args["treatment_model_params"] = LGBM
    return args


def to_onnx(model: Any) -> onnx.ModelProto:
    is_classifier = hasattr(model, "predict_proba")
    if isinstance(model, LGBMRegressor | LGBMClassifier):
        return convert_lightgbm(
            model, initial_types=[("X", LightGBMFloat([None, N_FEATURES]))], zipmap=False
        )
    return convert_sklearn(
        model,
        initial_types=[("X", SklearnFloat([None, N_FEATURES]))],
        options={"zipmap": False} if is_classifier else None,
    )


def converted(learner: Any) -> dict[str, list[onnx.ModelProto]]:
    return {
        kind: [to_onnx(model) for model in models]
        for kind, models in learner._necessary_onnx_models().items()
    }


def build(learner: Any, models: dict) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return learner._build_onnx(models)


def run(model: onnx.ModelProto, X: np.ndarray) -> np.ndarray:
    inference = rt.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (tau,) = inference.run(["tau"], {"X": X.astype(np.float32)})
    return tau


def signature(model: onnx.ModelProto) -> list:
    def tensors(values: Any) -> list:
        return [
            (
                v.name,
                v.type.tensor_type.elem_type,
                [d.dim_value for d in v.type.tensor_type.shape.dim],
            )
            for v in values
        ]

    return [tensors(model.graph.input), tensors(model.graph.output)]


_FITTED: dict[tuple, tuple[Any, Any]] = {}


def both(name: str, outcome: str, n_variants: int, client: Any) -> tuple[Any, Any, np.ndarray]:
    """metalearners' and dask-meta's learner, fitted on the same rows (once per module)."""
    classification = outcome == "binary"
    key = (name, classification, n_variants)
    X, y, w = make_data(n_variants, classification)
    if key not in _FITTED:
        args = arguments(name, n_variants, classification)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = getattr(metalearners, name)(**args).fit(X, y, w)
        ours = getattr(dask_meta, name)(**args, fold_strategy="sklearn", client=client)
        _FITTED[key] = (theirs, ours.fit(X, y, w))
    return (*_FITTED[key], X)


@pytest.mark.parametrize(("outcome", "n_variants"), CASES)
@pytest.mark.parametrize("name", ["TLearner", "XLearner", "RLearner", "DRLearner"])
def test_the_same_graph_and_cate(name, outcome, n_variants, client):
    theirs, ours, X = both(name, outcome, n_variants, client)
    their_models, our_models = theirs._necessary_onnx_models(), ours._necessary_onnx_models()
    assert our_models.keys() == their_models.keys()
    assert {k: len(v) for k, v in our_models.items()} == {
        k: len(v) for k, v in their_models.items()
    }
    their_graph, our_graph = build(theirs, converted(theirs)), build(ours, converted(ours))
    assert signature(our_graph) == signature(their_graph)
    their_tau, our_tau = run(their_graph, X), run(our_graph, X)
    assert our_tau.shape == (len(X), n_variants - 1, 2 if outcome == "binary" else 1)
    np.testing.assert_allclose(our_tau, their_tau, rtol=0, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = theirs.predict(X, True, "overall")
    np.testing.assert_allclose(our_tau, expected, rtol=1e-4, atol=1e-5)


def test_our_graph_runs_with_their_models_and_theirs_with_ours(client):
    """The same keys and structure: each library builds its graph from the other's models."""
    theirs, ours, X = both("XLearner", "regression", 3, client)
    mixed_ours, mixed_theirs = build(ours, converted(theirs)), build(theirs, converted(ours))
    np.testing.assert_allclose(run(mixed_ours, X), run(mixed_theirs, X), rtol=0, atol=1e-6)


def raises_value_error(call: Any) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    except ValueError:
        return True
    return False


def test_the_same_errors(client):
    theirs, ours, _ = both("XLearner", "regression", 3, client)
    models = converted(ours)
    bad = {
        "a kind missing": {k: v for k, v in models.items() if k != "propensity_model"},
        "a kind too many": {**models, "variant_outcome_model": models["propensity_model"]},
        "too few models": {**models, "control_effect_model": models["control_effect_model"][:1]},
        "no probabilities": {**models, "propensity_model": models["control_effect_model"][:1]},
        "two outputs": {**models, "treatment_effect_model": models["propensity_model"] * 2},
    }
    for case, given in bad.items():
        assert raises_value_error(lambda g=given: theirs._build_onnx(g)), case
        assert raises_value_error(lambda g=given: ours._build_onnx(g)), case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # metalearners' is_classifier(class)
        their_s = metalearners.SLearner(False, 2, LinearRegression, n_folds=2)
    our_s = dask_meta.SLearner(False, 2, LinearRegression, n_folds=2, client=client)
    for learner in (their_s, our_s):
        assert raises_value_error(learner._necessary_onnx_models)
        assert raises_value_error(lambda s=learner: s._build_onnx({}))
