"""``evaluate()``: metalearners' per-model scores, computed over partitions on the cluster.

metalearners scores every base model on the rows it was (or would be) trained on, with
sklearn scorers. Here each partition yields, per evaluated model, its predictions, targets,
row mask and weights; the scores come from them in one of two ways:

* **sums** (exact): the default scorers (``neg_root_mean_squared_error``, ``neg_log_loss``)
  and the common sklearn names in :data:`SUMMED` are functions of sums of per-row terms
  (squared errors, log probabilities of the true class, ...). Each partition sends these sums
  (a few floats) and the client combines them: the same value as sklearn on all rows, up to
  floating-point summation order.
* **gathered** (exact): any other scorer, sklearn name or callable
  ``scorer(estimator, X, y, **kwargs)``, runs in one task on a worker over all rows of that
  model, with an estimator that returns the cross-fitted predictions (metalearners'
  ``_PredictContext``). Like a local fit, those rows must fit in one worker's memory; they
  never come to the client.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import get_scorer

from dask_meta import runtime
from dask_meta.data import Frame, check_columns, partitions
from dask_meta.training import FitContext, check_partition

NEG_RMSE = "neg_root_mean_squared_error"
NEG_LOG_LOSS = "neg_log_loss"
#: metalearners' R-loss entry (not an sklearn scorer): sqrt(mean(((y - m) - tau (w - e))^2))
R_LOSS = "__r_loss__"


def default_metric(predict_method: str) -> str:
    return NEG_LOG_LOSS if predict_method == "predict_proba" else NEG_RMSE


# --- scorers from sums ------------------------------------------------------------------------


def _squared(y: np.ndarray, p: np.ndarray, sw: np.ndarray) -> list[float]:
    return [float(np.sum(sw * (y - p) ** 2)), float(np.sum(sw))]


def _absolute(y: np.ndarray, p: np.ndarray, sw: np.ndarray) -> list[float]:
    return [float(np.sum(sw * np.abs(y - p))), float(np.sum(sw))]


def _r2_terms(y: np.ndarray, p: np.ndarray, sw: np.ndarray) -> list[float]:
    return [
        float(np.sum(sw * (y - p) ** 2)),
        float(np.sum(sw * y)),
        float(np.sum(sw * y * y)),
        float(np.sum(sw)),
    ]


def _r2(s: np.ndarray) -> float:
    sse, sy, syy, n = s
    sst = syy - sy * sy / n
    return float(1.0 - sse / sst) if sst > 0 else (1.0 if sse == 0 else 0.0)


@dataclass(frozen=True)
class Summed:
    """A scorer that is a function of sums of per-row terms."""

    method: str  # "predict" or "predict_proba"
    terms: Callable[..., list[float]]
    finish: Callable[[np.ndarray], float]


#: sklearn scorer names computed exactly from per-partition sums
SUMMED: dict[str, Summed] = {
    NEG_RMSE: Summed("predict", _squared, lambda s: -math.sqrt(s[0] / s[1])),
    "neg_mean_squared_error": Summed("predict", _squared, lambda s: -s[0] / s[1]),
    "neg_mean_absolute_error": Summed("predict", _absolute, lambda s: -s[0] / s[1]),
    "r2": Summed("predict", _r2_terms, _r2),
    R_LOSS: Summed("predict", _squared, lambda s: math.sqrt(s[0] / s[1])),
    # classification terms are computed by _class_terms (they need the model's classes)
    NEG_LOG_LOSS: Summed("predict_proba", lambda *a: [], lambda s: -s[0] / s[1]),
    "neg_brier_score": Summed("predict_proba", lambda *a: [], lambda s: -s[0] / s[1]),
    "accuracy": Summed("predict_proba", lambda *a: [], lambda s: s[0] / s[1]),
}


def _class_terms(
    name: str, y: np.ndarray, proba: np.ndarray, classes: np.ndarray, sw: np.ndarray
) -> list[float]:
    """Sums for the classification scorers, plus per-class counts (to check y has them all)."""
    if proba.shape[1] == 2:
        # sklearn scorers take the positive-class column and rebuild [1 - p, p]
        p1 = proba[:, 1]
        proba = np.column_stack([1.0 - p1, p1])
    index = np.searchsorted(classes, y)
    index = np.clip(index, 0, len(classes) - 1)
    unknown = classes[index] != y
    counts = [float(np.sum(y == c)) for c in classes]
    if name == NEG_LOG_LOSS:
        eps = np.finfo(proba.dtype).eps
        p_true = np.clip(proba, eps, 1 - eps)[np.arange(len(y)), index]
        value = float(np.sum(sw * -np.log(p_true)))
    elif name == "neg_brier_score":  # binary only, as in sklearn
        positive = (y == classes[-1]).astype(float)
        value = float(np.sum(sw * (positive - proba[:, -1]) ** 2))
    else:  # accuracy: the class with the highest probability, as predict does
        value = float(np.sum(sw * (classes[np.argmax(proba, axis=1)] == y)))
    return [value, float(np.sum(sw)), float(np.sum(unknown)), *counts]


# --- what is evaluated --------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluated:
    """One evaluated model: its key prefix, predict method, classes and scorers."""

    prefix: str  # e.g. "variant_outcome_model_1_", "treatment_model_1_vs_0_"
    method: str
    classes: np.ndarray | None
    scorers: tuple[Any, ...]
    #: the R-loss entry: its key is fixed (``r_loss_{k}_vs_0``), not prefix + scorer
    key: str | None = None


def response_method(scorer: Any) -> str | None:
    """The method sklearn's scorer calls on the estimator (None: unknown, a callable)."""
    if not isinstance(scorer, str):
        return None
    if scorer == "accuracy":
        return "predict"
    if scorer in SUMMED:
        return SUMMED[scorer].method
    method = getattr(get_scorer(scorer), "_response_method", "predict")
    return method if isinstance(method, str) else method[0]


def scorer_name(scorer: Any, index: int) -> str:
    return scorer if isinstance(scorer, str) else f"custom_scorer_{index}"


def check_items(items: Sequence[Evaluated]) -> None:
    """A probability scorer needs a classifier (sklearn would fail on the worker)."""
    for item in items:
        for scorer in item.scorers:
            summed = SUMMED.get(scorer) if isinstance(scorer, str) else None
            if summed is not None and summed.method == "predict_proba" and item.classes is None:
                raise ValueError(
                    f"scoring names {scorer!r} for {item.prefix.rstrip('_')}, a regressor: "
                    f"{scorer} needs predict_proba"
                )


def validate_scoring(scoring: Any, kinds: Sequence[str]) -> None:
    """metalearners' ``scoring``: {model kind: [sklearn scorer name or callable, ...]}."""
    if scoring is None:
        return
    if not isinstance(scoring, dict):
        raise TypeError(
            f"scoring must be a dict of model kind -> list of scorers, got {type(scoring).__name__}"
        )
    for kind, scorers in scoring.items():
        if not isinstance(scorers, list | tuple):
            raise TypeError(
                f"scoring[{kind!r}] must be a list of scorer names or callables, got {scorers!r}"
            )
        for scorer in scorers:
            if isinstance(scorer, str):
                if scorer in SUMMED:
                    continue
                try:
                    get_scorer(scorer)
                except ValueError as exc:
                    raise ValueError(
                        f"scoring[{kind!r}] names an unknown sklearn scorer {scorer!r}"
                    ) from exc
            elif not callable(scorer):
                raise TypeError(
                    f"scoring[{kind!r}] holds {scorer!r}, which is neither a scorer name nor a "
                    "callable scorer(estimator, X, y, **kwargs)"
                )


class _FixedPredictions(BaseEstimator):
    """The estimator a gathered scorer sees: it returns the cross-fitted predictions of the
    rows it is scored on (what metalearners' ``_PredictContext`` does)."""

    def __init__(
        self,
        prediction: np.ndarray | None = None,
        method: str = "predict",
        classes: np.ndarray | None = None,
    ):
        self.prediction = prediction
        self.method = method
        self.classes = classes

    def fit(self, X: Any, y: Any = None) -> _FixedPredictions:
        return self

    def _values(self, X: Any) -> np.ndarray:
        assert self.prediction is not None
        if len(X) != len(self.prediction):
            raise ValueError("a gathered scorer must score exactly the rows it was given")
        return self.prediction

    def predict(self, X: Any) -> np.ndarray:
        values = self._values(X)
        if self.method == "predict_proba":
            assert self.classes is not None
            return np.asarray(self.classes)[np.argmax(values, axis=1)]
        return values.reshape(len(values)) if values.ndim == 2 and values.shape[1] == 1 else values

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._values(X)


class _FixedRegressor(RegressorMixin, _FixedPredictions):
    pass


class _FixedClassifier(ClassifierMixin, _FixedPredictions):
    @property
    def classes_(self) -> np.ndarray:
        assert self.classes is not None
        return np.asarray(self.classes)


def fixed_predictions(
    prediction: np.ndarray, method: str, classes: np.ndarray | None
) -> _FixedPredictions:
    if classes is not None:
        return _FixedClassifier(prediction, method, classes)
    return _FixedRegressor(prediction, method, None)


# --- per partition (runs on a worker) ----------------------------------------------------------


@dataclass(frozen=True)
class PartitionPlan:
    """Everything the partition task needs: the learner's row function and the items."""

    rows: Callable[..., list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]]
    bundle: Any
    items: tuple[Evaluated, ...]
    features: tuple[Any, ...]


def evaluation_partition(
    frame: pd.DataFrame,
    folds: pd.DataFrame | None,
    plan: PartitionPlan,
    check: tuple[int, tuple[int, ...], tuple[int, ...], tuple[Any, ...]] | None,
) -> tuple[list[list[float]], list[Any]]:
    """Sums for the summed scorers and the rows for the gathered ones, per item."""
    if check is not None:
        check_partition(frame, *check)
    frame = frame.reset_index(drop=True)
    folds = folds.reset_index(drop=True) if folds is not None else None
    per_item = plan.rows(frame, folds, plan.bundle)
    sums: list[list[float]] = []
    gathered: list[Any] = []
    for item, (prediction, target, mask, weight) in zip(plan.items, per_item, strict=True):
        rows = np.flatnonzero(mask)
        p = prediction[rows]
        y = target[rows]
        sw = weight[rows] if weight is not None else np.ones(len(rows))
        item_sums: list[float] = []
        needs_rows = False
        for scorer in item.scorers:
            if isinstance(scorer, str) and scorer in SUMMED:
                if item.classes is not None and SUMMED[scorer].method == "predict_proba":
                    item_sums.extend(_class_terms(scorer, y, p, item.classes, sw))
                elif item.classes is not None:
                    # a classifier scored on its predicted labels, as sklearn's predict does
                    labels = item.classes[np.argmax(p, axis=1)].astype(float)
                    item_sums.extend(SUMMED[scorer].terms(y, labels, sw))
                else:
                    item_sums.extend(SUMMED[scorer].terms(y, p.reshape(len(p)), sw))
            else:
                needs_rows = True
        sums.append(item_sums)
        if needs_rows:
            X = frame.iloc[rows][list(plan.features)] if plan.features else None
            gathered.append((X, y, p, weight[rows] if weight is not None else None))
        else:
            gathered.append(None)
    return sums, gathered


def _sums(result: tuple[list[list[float]], list[Any]]) -> list[list[float]]:
    """The sums of one partition's result, without the rows kept for gathered scorers."""
    return result[0]


def _add(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    return [[x + y for x, y in zip(sa, sb, strict=True)] for sa, sb in zip(a, b, strict=True)]


def _score_gathered(
    item: Evaluated, scorer: Any, *parts: tuple[Any, np.ndarray, np.ndarray, Any]
) -> float:
    """Run a scorer over all rows of one evaluated model (on a worker)."""
    X = pd.concat([p[0] for p in parts], ignore_index=True) if parts[0][0] is not None else None
    y = np.concatenate([p[1] for p in parts])
    prediction = np.concatenate([p[2] for p in parts])
    if X is None:
        X = np.ones((len(y), 1))
    weights = [p[3] for p in parts]
    fn = get_scorer(scorer) if isinstance(scorer, str) else scorer
    estimator = fixed_predictions(prediction, item.method, item.classes)
    if weights[0] is not None:
        return float(fn(estimator, X, y, sample_weight=np.concatenate(weights)))
    return float(fn(estimator, X, y))


# --- the driver (client side) ---------------------------------------------------------------


def evaluate_data(
    client: Any,
    data: Frame,
    is_oos: bool,
    context: FitContext,
    plan: PartitionPlan,
) -> dict[str, float]:
    """``evaluate()`` of X, y, w (``data``, as :func:`dask_meta.data.training_frame` builds
    it): checked against the fit (columns; for ``is_oos=False`` its partitions), then
    scored over partitions (:func:`evaluate_partitions`)."""
    check_columns(data.columns, context.columns)
    frame_parts = partitions(data.frame)
    fold_parts = None
    if not is_oos:
        if len(frame_parts) != len(context.lengths):
            raise ValueError(
                f"is_oos=False needs exactly the training data, but X has "
                f"{len(frame_parts)} partitions where the training data had "
                f"{len(context.lengths)}; use is_oos=True for other data"
            )
        fold_parts = partitions(context.folds_for(client))
    return evaluate_partitions(client, frame_parts, fold_parts, context, plan)


def evaluate_partitions(
    client: Any,
    frame_parts: Sequence[Any],
    fold_parts: Sequence[Any] | None,
    context: FitContext,
    plan: PartitionPlan,
) -> dict[str, float]:
    """Score every item over all partitions; only sums and scores reach the client.

    Task keys read ``dask_meta-evaluate-<step>-...`` with one token per call.
    """
    token = runtime.new_token()
    tasks = []
    for i, part in enumerate(frame_parts):
        folds = fold_parts[i] if fold_parts is not None else None
        check = (
            (i, context.lengths, context.fingerprints, context.columns.names)
            if fold_parts is not None
            else None
        )
        tasks.append(
            dask.delayed(evaluation_partition, pure=False)(
                part,
                folds,
                plan,
                check,
                dask_key_name=runtime.task_key("evaluate-partition", i, token),
            )
        )
    # the tree adds sums only: rows kept for gathered scorers go to those scorers alone
    total = [
        dask.delayed(_sums, pure=False)(
            t, dask_key_name=runtime.task_key("evaluate-sums", i, token)
        )
        for i, t in enumerate(tasks)
    ]
    depth = 0
    while len(total) > 1:
        total = [
            dask.delayed(_add, pure=False)(
                total[i],
                total[i + 1],
                dask_key_name=runtime.task_key("evaluate-add", depth, i, token),
            )
            if i + 1 < len(total)
            else total[i]
            for i in range(0, len(total), 2)
        ]
        depth += 1
    gathered_scores: dict[tuple[int, int], Any] = {}
    for j, item in enumerate(plan.items):
        for s, scorer in enumerate(item.scorers):
            if isinstance(scorer, str) and scorer in SUMMED:
                continue
            parts = [
                dask.delayed(_pick, pure=False)(
                    t, j, dask_key_name=runtime.task_key("evaluate-pick", j, s, i, token)
                )
                for i, t in enumerate(tasks)
            ]
            gathered_scores[(j, s)] = dask.delayed(_score_gathered, pure=False)(
                item,
                scorer,
                *parts,
                dask_key_name=runtime.task_key("evaluate-score-gathered", j, s, token),
            )
    order = list(gathered_scores)
    computed = runtime.gather_tasks(client, [total[0], *(gathered_scores[k] for k in order)])
    sums = computed[0]
    scores = dict(zip(order, computed[1:], strict=True))
    result: dict[str, float] = {}
    for j, item in enumerate(plan.items):
        offset = 0
        for s, scorer in enumerate(item.scorers):
            key = item.key if item.key is not None else f"{item.prefix}{scorer_name(scorer, s)}"
            if isinstance(scorer, str) and scorer in SUMMED:
                if item.classes is not None and SUMMED[scorer].method == "predict_proba":
                    n = 3 + len(item.classes)
                    block = np.asarray(sums[j][offset : offset + n])
                    _check_classes(key, block, item.classes)
                else:
                    n = len(SUMMED[scorer].terms(np.zeros(1), np.zeros(1), np.ones(1)))
                    block = np.asarray(sums[j][offset : offset + n])
                offset += n
                result[key] = float(SUMMED[scorer].finish(block))
            else:
                result[key] = float(scores[(j, s)])
    return result


def predict_rows(
    cfe: Any,
    design: Any,
    frame: pd.DataFrame,
    folds: pd.DataFrame | None,
    method: str,
    oos: str,
    mask: np.ndarray,
    w: np.ndarray | None = None,
) -> np.ndarray:
    """A cross-fit model's predictions on the rows ``mask`` (NaN elsewhere), ``(n, outputs)``:
    in-sample rows (fold id >= 0 in ``folds``) by the fold model that did not see them."""
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        return np.full((len(frame), 1), np.nan)
    sub = frame.iloc[rows]
    matrix = design.matrix(sub, w[rows]) if w is not None else design.matrix(sub)
    sub_folds = folds.iloc[rows] if folds is not None else None
    prediction = cfe.block_predict(matrix, sub_folds, method, oos)
    out = np.full((len(frame), prediction.shape[1]), np.nan)
    out[rows] = prediction
    return out


def _pick(partition_result: Any, j: int) -> Any:
    return partition_result[1][j]


def _check_classes(key: str, block: np.ndarray, classes: np.ndarray) -> None:
    if block[2] > 0:
        raise ValueError(
            f"{key}: y has values that are not classes of the model ({classes.tolist()})"
        )
    present = [c for c, n in zip(classes.tolist(), block[3:], strict=True) if n > 0]
    if len(present) != len(classes):
        raise ValueError(
            f"{key}: the evaluated rows hold only the classes {present} of the model's "
            f"{classes.tolist()}; sklearn's log loss needs every class in y"
        )
