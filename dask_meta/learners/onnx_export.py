"""Export of a fitted learner's CATE to ONNX: metalearners' experimental ``_build_onnx``.

``_necessary_onnx_models()`` hands out the overall base models (each fitted on all of its
rows) that the CATE needs, by model kind. The user converts each of them to ONNX on one
shared input (skl2onnx, onnxmltools); ``_build_onnx(models)`` checks the converted models,
inlines them on that input with spox and combines their outputs by the learner's formula
(``_onnx_cate``, declared in the learner's module) into one graph whose output is the CATE,
``(n, n_variants - 1, n_outputs)``: what ``predict(X, is_oos=True)`` gives with the default
``oos_method="overall"``.

onnx and spox are optional (the ``onnx`` extra); they are imported only here, when a graph
is built.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: the outputs of a converted classifier that hold its class probabilities (skl2onnx and
#: onnxmltools name them so; converters need ``zipmap=False`` to give a matrix)
PROBABILITY_OUTPUTS = ("probabilities", "output_probability")

EXPERIMENTAL = "_build_onnx is an experimental feature. Use it at your own risk!"


def require_onnx() -> None:
    """onnx and spox (the ``onnx`` extra), or an ImportError that says how to install them."""
    missing = []
    for name in ("onnx", "spox"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f"ONNX export needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: "
            "pip install dask-meta[onnx]"
        )


def _op() -> Any:
    """The ONNX operators (opset 21, as metalearners builds its graphs)."""
    return importlib.import_module("spox.opset.ai.onnx.v21")


def _ints(*values: int) -> Any:
    return _op().const(np.array(values, dtype=np.int64))


class Value:
    """A tensor of the graph being built, with the element-wise arithmetic the learners'
    formulas use (broadcasting, as numpy); a number becomes a constant of the tensor's dtype."""

    def __init__(self, var: Any) -> None:
        self.var = var

    def _operand(self, other: Value | float) -> Any:
        if isinstance(other, Value):
            return other.var
        return _op().const(np.array(other, dtype=self.var.unwrap_tensor().dtype))

    def __add__(self, other: Value | float) -> Value:
        return Value(_op().add(self.var, self._operand(other)))

    def __radd__(self, other: float) -> Value:
        return Value(_op().add(self._operand(other), self.var))

    def __sub__(self, other: Value | float) -> Value:
        return Value(_op().sub(self.var, self._operand(other)))

    def __rsub__(self, other: float) -> Value:
        return Value(_op().sub(self._operand(other), self.var))

    def __mul__(self, other: Value | float) -> Value:
        return Value(_op().mul(self.var, self._operand(other)))

    def __rmul__(self, other: float) -> Value:
        return Value(_op().mul(self._operand(other), self.var))

    def __truediv__(self, other: Value | float) -> Value:
        return Value(_op().div(self.var, self._operand(other)))

    def __neg__(self) -> Value:
        return Value(_op().neg(self.var))

    def column(self, k: int) -> Value:
        """Column ``k`` of an ``(n, m)`` matrix, as ``(n, 1)``."""
        return Value(_op().slice(self.var, starts=_ints(k), ends=_ints(k + 1), axes=_ints(1)))


def _input_argument(tensor: Any) -> Any:
    """A spox argument with the element type and shape of an ONNX graph input."""
    import onnx
    from spox import Tensor, argument

    tensor_type = tensor.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    return argument(Tensor(dtype, shape))


def _output_name(model: Any, method: str) -> str:
    if method == "predict_proba":
        return next(o.name for o in model.graph.output if o.name in PROBABILITY_OUTPUTS)
    return model.graph.output[0].name


class OnnxGraph:
    """The converted base models, inlined on their shared input: what a learner's
    ``_onnx_cate`` formula reads."""

    def __init__(
        self, models: Mapping[str, Sequence[Any]], methods: dict[str, str], is_classification: bool
    ) -> None:
        first = next(iter(models.values()))[0]
        self.inputs = {tensor.name: _input_argument(tensor) for tensor in first.graph.input}
        self._models = models
        self._methods = methods
        self.is_classification = is_classification

    def outputs(self, kind: str) -> list[Value]:
        """Every model of ``kind`` on the input, in order: its prediction ``(n, 1)``, or for a
        kind predicted with ``predict_proba`` its class probabilities ``(n, n_classes)``."""
        from spox import inline

        values = []
        for model in self._models[kind]:
            var = inline(model)(**self.inputs)[_output_name(model, self._methods[kind])]
            shape = var.unwrap_tensor().shape
            if shape is not None and len(shape) == 1:  # a regressor that predicts (n,)
                var = _op().unsqueeze(var, axes=_ints(1))
            values.append(Value(var))
        return values

    def effect(self, tau: Value) -> Value:
        """A treatment model's effect ``(n, 1)`` as the CATE's outputs of one variant: for a
        binary classification outcome ``[-tau, tau]``, the effect on each class (as predict)."""
        if not self.is_classification:
            return tau
        return Value(_op().concat([(-tau).var, tau.var], axis=1))


def stack_variants(effects: Sequence[Value]) -> Any:
    """The effects of the variants k >= 1, each ``(n, n_outputs)``, as one tensor
    ``(n, n_variants - 1, n_outputs)``."""
    op = _op()
    return op.concat([op.unsqueeze(tau.var, axes=_ints(1)) for tau in effects], axis=1)


def check_all_features(feature_set: dict[str, Any]) -> None:
    """The graph has one input that every base model reads whole."""
    if any(features is not None for features in feature_set.values()):
        raise ValueError(
            "ONNX conversion can only be used if all base models have `None` as feature set "
            "(and therefore use all the features); this learner has feature_set "
            f"{ {k: v for k, v in feature_set.items() if v is not None} }"
        )


def check_onnx_models(
    models: Any, methods: dict[str, str], cardinalities: dict[str, int], learner: str
) -> None:
    """metalearners' checks of the converted models: exactly the needed kinds, as many models
    as the learner has of each, all on the same input, one output for a ``predict`` kind and
    a probabilities output for a ``predict_proba`` kind."""
    import onnx

    if not isinstance(models, Mapping):
        raise TypeError(
            f"models must be a dict of model kind to a list of ONNX models, got {models!r}"
        )
    if set(models) != set(methods):
        raise ValueError(
            f"models has the model kinds {sorted(models)}; the {learner}'s ONNX graph needs "
            f"exactly {sorted(methods)} (the keys of _necessary_onnx_models())"
        )
    inputs = None
    for kind, method in methods.items():
        converted = models[kind]
        if not isinstance(converted, Sequence) or len(converted) != cardinalities[kind]:
            got = len(converted) if isinstance(converted, Sequence) else type(converted).__name__
            raise ValueError(
                f"{kind} cardinality does not match the expected cardinality: models[{kind!r}] "
                f"has {got} models, the {learner} has {cardinalities[kind]}"
            )
        for index, model in enumerate(converted):
            if not isinstance(model, onnx.ModelProto):
                raise TypeError(
                    f"models[{kind!r}][{index}] is a {type(model).__name__}, not an ONNX "
                    "ModelProto: convert the base models of _necessary_onnx_models() first "
                    "(skl2onnx's convert_sklearn, onnxmltools' convert_lightgbm)"
                )
            if inputs is None:
                inputs = model.graph.input
            elif model.graph.input != inputs:
                raise ValueError(
                    "Some ONNX model has a different input, check that all models have the "
                    f"same input format: models[{kind!r}][{index}] differs from the first"
                )
            names = [output.name for output in model.graph.output]
            if method == "predict" and len(names) != 1:
                raise ValueError(
                    f"ONNX {kind} with index {index} has {len(names)} outputs {names} and "
                    "should have only one."
                )
            if method == "predict_proba" and not set(names) & set(PROBABILITY_OUTPUTS):
                raise ValueError(
                    f"ONNX {kind} model with index {index} needs to have an output with name "
                    f"in {list(PROBABILITY_OUTPUTS)}, it has {names}; convert classifiers "
                    "with zipmap=False (skl2onnx: options={'zipmap': False})"
                )


class OnnxExport:
    """``_necessary_onnx_models`` and ``_build_onnx`` (metalearners' experimental ONNX
    export) for a learner that declares the model kinds its CATE reads (``_onnx_kinds``) and
    the formula that combines them (``_onnx_cate``)."""

    #: the model kinds whose overall models the CATE graph reads
    _onnx_kinds: tuple[str, ...] = ()

    def _onnx_cate(self, graph: OnnxGraph) -> list[Value]:
        """The CATE of every variant k >= 1 against variant 0, each ``(n, n_outputs)``."""
        raise NotImplementedError

    def _necessary_onnx_models(self: Any) -> dict[str, list[Any]]:
        """The overall base models (each fitted on all of its rows) that the ONNX graph of
        the CATE needs, by model kind, on the client: convert each of them to ONNX, all on
        the same input, and pass them in the same structure to ``_build_onnx``.

        A learner built with ``enable_overall`` False for one of these kinds has no overall
        models to export: a ValueError says to build it with ``enable_overall`` True for that
        kind and fit again."""
        necessary = {}
        for kind in self._onnx_kinds:
            cfes = [self._cfe(kind, k) for k in range(self._cardinality(kind))]
            if not self.enable_overall[kind] or not all(cfe.enable_overall for cfe in cfes):
                raise ValueError(
                    f"ONNX export uses the overall models of {kind}, but this "
                    f"{type(self).__name__} was built with enable_overall False for {kind}; "
                    f"build it with enable_overall True for {kind} (the default) and fit again"
                )
            if not all(cfe.is_fitted and cfe._overall_estimator is not None for cfe in cfes):
                raise ValueError(
                    f"This {type(self).__name__}'s {kind} is not fitted; call fit before "
                    "exporting it to ONNX."
                )
            necessary[kind] = [cfe._overall_estimator for cfe in cfes]
        return necessary

    def _build_onnx(
        self: Any, models: Mapping[str, Sequence[Any]], output_name: str = "tau"
    ) -> Any:
        """The CATE as one ONNX model (an ``onnx.ModelProto``).

        Warning:
            An experimental feature, as in metalearners (it warns so): not subject to
            deprecation cycles.

        ``models`` holds the base models of ``_necessary_onnx_models()`` converted to ONNX
        (classifiers with ``zipmap=False``), by kind and in the same order, all with the same
        input. The combined model has that input (a 2D ``"X"`` if the models were converted
        so) and one output, ``output_name``, of shape ``(n, n_variants - 1, n_outputs)``.
        """
        warnings.warn(EXPERIMENTAL, UserWarning, stacklevel=2)
        require_onnx()
        from onnx.checker import check_model
        from spox import build

        if not isinstance(output_name, str) or not output_name:
            raise TypeError(f"output_name must be a non-empty str, got {output_name!r}")
        check_all_features(self.feature_set)
        specs = self.nuisance_model_specifications() | self.treatment_model_specifications()
        methods = {kind: specs[kind].predict_method(self) for kind in self._onnx_kinds}
        cardinalities = {kind: self._cardinality(kind) for kind in self._onnx_kinds}
        check_onnx_models(models, methods, cardinalities, type(self).__name__)
        graph = OnnxGraph(models, methods, self.is_classification)
        cate = stack_variants(self._onnx_cate(graph))
        model = build(graph.inputs, {output_name: cate})
        check_model(model, full_check=True)
        return model
