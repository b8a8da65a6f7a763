"""The small tables a learner declares: its models, their rows, targets and splits.

metalearners' learners differ only in such tables; dask-meta's add how a treatment model's
target comes from the fitted nuisance models (:class:`Derivation`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dask_meta._constants import PARAM_PREFIX


@dataclass(frozen=True)
class ModelSpecification:
    """How many models of a kind a learner has and how they are used (metalearners' table).

    Both are functions of the learner (a :class:`dask_meta.learners.base.MetaLearner`).
    """

    cardinality: Callable[[Any], int]
    predict_method: Callable[[Any], str]


@dataclass(frozen=True)
class ModelEntry:
    """One cross-fit estimator to fit: its rows, its target and its split."""

    kind: str
    ordinal: int
    variants: tuple[int, ...] | None
    target: str
    #: "own": metalearners' default CV for this model (stratified for classifiers);
    #: otherwise the name of a synchronised split shared with other models
    split: str = "own"
    #: a model of some variants' rows that predicts every row in-sample from its folds
    #: (:class:`dask_meta.folds.SplitRequest`'s ``cross_predicts``)
    cross_predicts: bool = False


@dataclass(frozen=True)
class Derivation:
    """How a treatment model's target (and weight) come from nuisance predictions.

    ``fn(part, models, *args)`` runs per partition on the cluster, with the fitted nuisance
    models ``needs`` (``{(kind, ordinal): CrossFitEstimator}``) and the training partition
    (which holds y, w and the fold columns for in-sample predictions); it returns the target
    (NaN outside the model's rows) or a (target, weight) pair.
    """

    fn: Callable[..., Any]
    needs: tuple[tuple[str, int], ...]
    args: tuple[Any, ...] = ()
    weight: bool = False
    #: when set, one ``(design, method)`` per need: ``fn(part, predictions, *args)`` gets
    #: ``{need: (n, n_outputs) array}`` instead of the models, the need's predictions for every
    #: row of the partition (in-sample where the row is in its split, its overall model
    #: elsewhere). They are computed once per need and partition, as soon as that need is
    #: fitted, and shared by every treatment model that uses them.
    predicts: tuple[tuple[Any, str], ...] | None = None


def derived_columns(entry: ModelEntry) -> tuple[str, str]:
    """The training-frame columns of a treatment model's derived target and weight."""
    return _derived_columns(entry.kind, entry.ordinal)


def _derived_columns(kind: str, ordinal: int) -> tuple[str, str]:
    stem = f"{PARAM_PREFIX}{kind}_{ordinal}"
    return f"{stem}_target__", f"{stem}_weight__"


def derived_entry(
    kind: str, ordinal: int, variants: tuple[int, ...] | None, split: str = "own"
) -> ModelEntry:
    """A treatment model whose target is its own derived column (see :class:`Derivation`)."""
    target, _ = _derived_columns(kind, ordinal)
    return ModelEntry(kind, ordinal, variants, target, split)
