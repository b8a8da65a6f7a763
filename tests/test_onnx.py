"""ONNX export of the CATE (``_necessary_onnx_models``, ``_build_onnx``), metalearners' API.

Real base models converted by the real converters (LightGBM by onnxmltools, scikit-learn's
linear models by skl2onnx), the combined graph run in onnxruntime on the rows ``predict``
sees. ONNX runs in float32: the features are drawn float32-exact (a tree's split then goes
the same way in both), and the graph's CATE must equal ``predict(X, is_oos=True)`` within
rtol 1e-4 and atol 1e-5, float32 rounding of predictions of order 1 (metalearners' own tests
allow atol 5e-2, rtol 1e-2). Small data on the shared LocalCluster (2 workers x 1 thread).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np
import onnx
import onnxruntime as rt
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType as LightGBMFloat
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType
from skl2onnx.common.data_types import FloatTensorType as SklearnFloat
from sklearn.linear_model import LinearRegression, LogisticRegression

import dask_meta
from dask_meta import DRLearner, RLearner, SLearner, TLearner, XLearner

RTOL, ATOL = 1e-4, 1e-5
N_FEATURES = 5
LGBM = {"n_estimators": 8, "num_leaves": 7, "min_child_samples": 10, "verbose": -1}


def make_data(n_variants: int, classification: bool, n_classes: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, N_FEATURES)).astype(np.float32).astype(np.float64)
    w = rng.integers(0, n_variants, len(X))
    y = X[:, 0] + w * X[:, 1] + rng.normal(0, 0.5, len(X))
    if classification:
        y = np.digitize(y, np.quantile(y, np.linspace(0, 1, n_classes + 1)[1:-1]))
    return X, y, w


def to_onnx(model: Any, n_features: int = N_FEATURES) -> onnx.ModelProto:
    """One fitted base model as ONNX on the input ``"X"`` (float32), classifiers without the
    zipmap so that their probabilities are a matrix."""
    is_classifier = hasattr(model, "predict_proba")
    if isinstance(model, LGBMRegressor | LGBMClassifier):
        return convert_lightgbm(
            model,
            initial_types=[("X", LightGBMFloat([None, n_features]))],
            zipmap=False,
        )
    return convert_sklearn(
        model,
        initial_types=[("X", SklearnFloat([None, n_features]))],
        options={"zipmap": False} if is_classifier else None,
    )


def learner(name: str, n_variants: int, classification: bool, client: Any, **kwargs: Any) -> Any:
    """A learner whose exported models mix LightGBM and scikit-learn linear models."""
    common = {
        "nuisance_model_factory": LGBMClassifier if classification else LGBMRegressor,
        "nuisance_model_params": LGBM,
        "n_folds": 2,
        "random_state": 0,
        "client": client,
        **kwargs,
    }
    if name == "T":
        return TLearner(classification, n_variants, **common)
    propensity = {"propensity_model_factory": LogisticRegression}
    if name == "X":
        return XLearner(
            classification,
            n_variants,
            treatment_model_factory=LGBMRegressor,
            treatment_model_params=LGBM,
            **propensity,
            **common,
        )
    if name == "R":
        return RLearner(
            classification,
            n_variants,
            treatment_model_factory=LinearRegression,
            **propensity,
            **common,
        )
    return DRLearner(
        classification,
        n_variants,
        treatment_model_factory=LGBMRegressor,
        treatment_model_params=LGBM,
        **propensity,
        **common,
    )


_FITTED: dict[tuple, Any] = {}


def fitted(name: str, n_variants: int, classification: bool, client: Any) -> tuple[Any, Any]:
    """The fitted learner and its training X (fitted once per test module)."""
    key = (name, n_variants, classification)
    if key not in _FITTED:
        X, y, w = make_data(n_variants, classification)
        _FITTED[key] = (learner(name, n_variants, classification, client).fit(X, y, w), X)
    return _FITTED[key]


def export(ml: Any, **kwargs: Any) -> onnx.ModelProto:
    converted = {
        kind: [to_onnx(model) for model in models]
        for kind, models in ml._necessary_onnx_models().items()
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return ml._build_onnx(converted, **kwargs)


def run(model: onnx.ModelProto, X: np.ndarray, output: str = "tau") -> np.ndarray:
    inference = rt.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (result,) = inference.run([output], {"X": X.astype(np.float32)})
    return result


NECESSARY = {
    "T": ["variant_outcome_model"],
    "X": ["control_effect_model", "propensity_model", "treatment_effect_model"],
    "R": ["treatment_model"],
    "DR": ["treatment_model"],
}


@pytest.mark.parametrize("classification", [False, True], ids=["regression", "binary"])
@pytest.mark.parametrize("n_variants", [2, 3])
@pytest.mark.parametrize("name", ["T", "X", "R", "DR"])
def test_the_graph_predicts_the_out_of_sample_cate(client, name, n_variants, classification):
    ml, X = fitted(name, n_variants, classification, client)
    necessary = ml._necessary_onnx_models()
    assert sorted(necessary) == NECESSARY[name]
    for kind, models in necessary.items():
        cfes = ml._nuisance_models.get(kind) or ml._treatment_models[kind]
        assert models == [cfe._overall_estimator for cfe in cfes]
        assert all(m.n_features_in_ == N_FEATURES for m in models)
    graph = export(ml)
    n_outputs = 2 if classification else 1
    (output,) = graph.graph.output
    assert output.name == "tau"
    assert output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_value for d in output.type.tensor_type.shape.dim][1:] == [
        n_variants - 1,
        n_outputs,
    ]
    tau = run(graph, X)
    assert tau.shape == (len(X), n_variants - 1, n_outputs)
    expected = ml.predict(X, is_oos=True)
    np.testing.assert_allclose(tau, expected, rtol=RTOL, atol=ATOL)
    assert np.ptp(expected) > 0.05  # effects that vary by row, not a constant graph


def test_a_multiclass_t_learner_gives_every_class(client):
    X, y, w = make_data(2, True, n_classes=3, seed=1)
    ml = learner("T", 2, True, client).fit(X, y, w)
    tau = run(export(ml, output_name="cate"), X, output="cate")
    assert tau.shape == (len(X), 1, 3)
    np.testing.assert_allclose(tau, ml.predict(X, is_oos=True), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(tau.sum(axis=2), 0, atol=ATOL)  # probabilities' differences


def test_models_converted_in_double_precision_give_a_double_graph(client):
    """Any float type the converted models share (metalearners' X-learner graph adds a float32
    constant, so it takes float32 models only): here float64 within 1e-10."""
    X, y, w = make_data(3, False)
    ml = XLearner(
        False,
        3,
        LinearRegression,
        LinearRegression,
        LogisticRegression,
        n_folds=2,
        client=client,
    ).fit(X, y, w)
    converted = {
        kind: [
            convert_sklearn(
                model,
                initial_types=[("X", DoubleTensorType([None, N_FEATURES]))],
                options={"zipmap": False} if kind == "propensity_model" else None,
            )
            for model in models
        ]
        for kind, models in ml._necessary_onnx_models().items()
    }
    graph = build(ml, converted)
    inference = rt.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    (tau,) = inference.run(["tau"], {"X": X})
    assert tau.dtype == np.float64
    np.testing.assert_allclose(tau, ml.predict(X, is_oos=True), rtol=0, atol=1e-10)


def test_a_loaded_learner_exports_the_same_graph(client, tmp_path):
    ml, X = fitted("DR", 3, True, client)
    ml.save(tmp_path / "model")
    loaded = dask_meta.load(tmp_path / "model")
    np.testing.assert_array_equal(run(export(loaded), X), run(export(ml), X))


def test_build_onnx_warns_that_it_is_experimental(client):
    ml, _ = fitted("R", 2, False, client)
    converted = {k: [to_onnx(m) for m in v] for k, v in ml._necessary_onnx_models().items()}
    with pytest.warns(UserWarning, match="_build_onnx is an experimental feature"):
        ml._build_onnx(converted)


def build(ml: Any, models: dict) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return ml._build_onnx(models)


@pytest.fixture(scope="module")
def x_models(client):
    ml, _ = fitted("X", 3, False, client)
    converted = {k: [to_onnx(m) for m in v] for k, v in ml._necessary_onnx_models().items()}
    return ml, converted


def test_a_missing_or_unknown_kind_is_an_error(x_models):
    ml, converted = x_models
    missing = {k: v for k, v in converted.items() if k != "propensity_model"}
    with pytest.raises(ValueError, match=r"needs exactly \['control_effect_model'"):
        build(ml, missing)
    with pytest.raises(ValueError, match="has the model kinds"):
        build(ml, {**converted, "variant_outcome_model": converted["propensity_model"]})


def test_a_wrong_number_of_models_is_an_error(x_models):
    ml, converted = x_models
    short = {**converted, "control_effect_model": converted["control_effect_model"][:1]}
    with pytest.raises(
        ValueError,
        match="control_effect_model cardinality does not match the expected cardinality",
    ):
        build(ml, short)


def test_models_not_converted_to_onnx_are_an_error(x_models):
    ml, converted = x_models
    raw = {**converted, "propensity_model": ml._necessary_onnx_models()["propensity_model"]}
    with pytest.raises(TypeError, match=r"not an ONNX ModelProto: convert the base models"):
        build(ml, raw)


def test_models_on_different_inputs_are_an_error(x_models):
    ml, converted = x_models
    model = ml._necessary_onnx_models()["propensity_model"][0]
    other = convert_sklearn(
        model,
        initial_types=[("features", SklearnFloat([None, N_FEATURES]))],
        options={"zipmap": False},
    )
    with pytest.raises(ValueError, match="Some ONNX model has a different input"):
        build(ml, {**converted, "propensity_model": [other]})


def test_outputs_that_do_not_fit_the_predict_method_are_errors(x_models):
    ml, converted = x_models
    # a regressor as the propensity model: no probabilities
    no_probabilities = {**converted, "propensity_model": converted["control_effect_model"][:1]}
    with pytest.raises(ValueError, match="needs to have an output with name in"):
        build(ml, no_probabilities)
    # a classifier (label and probabilities) as an effect model: two outputs
    two_outputs = {**converted, "control_effect_model": converted["propensity_model"] * 2}
    with pytest.raises(ValueError, match=r"has 2 outputs .* should have only one"):
        build(ml, two_outputs)


def test_only_the_overall_models_of_needed_kinds_must_be_enabled(client):
    X, y, w = make_data(2, False)
    lean = learner("R", 2, False, client, enable_overall={"outcome_model": False})
    lean.fit(X, y, w)
    np.testing.assert_allclose(
        run(export(lean), X), lean.predict(X, is_oos=True), rtol=RTOL, atol=ATOL
    )
    without = learner("X", 2, False, client, enable_overall={"propensity_model": False})
    with pytest.raises(ValueError, match="enable_overall False for propensity_model"):
        without._necessary_onnx_models()


def test_an_unfitted_learner_has_no_models_to_convert(client):
    with pytest.raises(ValueError, match="variant_outcome_model is not fitted"):
        learner("T", 2, False, client)._necessary_onnx_models()


def test_a_feature_set_is_an_error(client):
    X, y, w = make_data(2, False)
    features = {"variant_outcome_model": None, "propensity_model": None, "treatment_model": [0, 1]}
    ml = learner("DR", 2, False, client, feature_set=features).fit(X, y, w)
    converted = {
        k: [to_onnx(m, n_features=2) for m in v] for k, v in ml._necessary_onnx_models().items()
    }
    with pytest.raises(ValueError, match="all base models have `None` as feature set"):
        build(ml, converted)


def test_the_s_learner_does_not_export(client):
    ml = SLearner(False, 2, LinearRegression, n_folds=2, client=client)
    with pytest.raises(ValueError, match="The SLearner does not implement this method"):
        ml._necessary_onnx_models()
    with pytest.raises(ValueError, match="The SLearner does not implement this method"):
        ml._build_onnx({})


def test_without_spox_the_error_names_the_extra(client, monkeypatch):
    ml, _ = fitted("R", 2, False, client)
    converted = {k: [to_onnx(m) for m in v] for k, v in ml._necessary_onnx_models().items()}
    monkeypatch.setitem(sys.modules, "spox", None)  # what `import spox` meets when absent
    with pytest.raises(ImportError, match=r"needs spox, .*pip install dask-meta\[onnx\]"):
        build(ml, converted)
