"""A learner's checks of its training data, run before any base model is fitted.

metalearners' treatment and outcome checks, computed from the first pass's per-partition
statistics (:func:`dask_meta.folds.scan`) instead of the data; then the folds' coverage of
every variant and class, and that reused models were fitted on the same data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import pandas as pd

from dask_meta._constants import W_COL, Y_COL
from dask_meta.crossfit import strata_of_fold
from dask_meta.data import Frame
from dask_meta.folds import Assignment, PartitionStats, SplitRequest
from dask_meta.learners.tables import ModelEntry
from dask_meta.training import FitContext, sorted_values


def check_input_dtypes(data: Frame, is_classification: bool) -> None:
    """w must be integer-valued, a regression's y numeric."""
    meta = data.frame._meta
    w_dtype = meta[W_COL].dtype
    if not (
        pd.api.types.is_integer_dtype(w_dtype)
        or pd.api.types.is_bool_dtype(w_dtype)
        or pd.api.types.is_float_dtype(w_dtype)
    ):
        raise TypeError(
            f"w has dtype {w_dtype}; the treatment must be integers 0..n_variants-1 "
            "(bool or integer-valued floats are accepted)"
        )
    y_dtype = meta[Y_COL].dtype
    numeric = pd.api.types.is_numeric_dtype(y_dtype) or pd.api.types.is_bool_dtype(y_dtype)
    if not numeric and not is_classification:
        raise TypeError(f"y has dtype {y_dtype}; a regression outcome must be numeric")


def _stats_classes(stats: Sequence[PartitionStats]) -> dict[int, set]:
    per_variant: dict[int, set] = {}
    for s in stats:
        for stratum in s.strata:
            per_variant.setdefault(int(stratum[0]), set()).add(stratum[1])
    return per_variant


def check_data(learner: Any, stats: Sequence[PartitionStats]) -> None:
    """Treatment and outcome checks of metalearners, from the first pass's statistics."""
    if not sum(s.n for s in stats):
        raise ValueError(
            f"X, y and w have no rows (all {len(stats)} partitions are empty); fit needs "
            "training data"
        )
    check_values(learner, stats, every_variant=True)
    if learner.is_classification:
        _check_classes(learner, stats)


def check_values(learner: Any, stats: Sequence[PartitionStats], every_variant: bool) -> None:
    """w's and y's values: no missing or infinite ones, w in 0..n_variants-1 (and, for a
    fit, ``every_variant`` present)."""
    n_variants = learner.n_variants
    w_nan = sum(s.w_nan for s in stats)
    if w_nan:
        raise ValueError(f"w has {w_nan} missing values (NaN); every row needs a treatment")
    w_frac = sum(s.w_non_integer for s in stats)
    if w_frac:
        raise ValueError(
            f"w has {w_frac} non-integer values; treatment variants must be encoded as "
            f"0..{n_variants - 1}"
        )
    w_inf = sum(s.w_inf for s in stats)
    if w_inf:
        raise ValueError(
            f"w has {w_inf} infinite values; treatment variants must be encoded as "
            f"0..{n_variants - 1}"
        )
    y_nan = sum(s.y_nan for s in stats)
    if y_nan:
        raise ValueError(f"y has {y_nan} missing values (NaN); every row needs an outcome")
    y_inf = sum(s.y_inf for s in stats)
    if y_inf:
        raise ValueError(f"y has {y_inf} infinite values")
    found = set()
    for s in stats:
        found |= {int(st[0]) for st in s.strata}
    expected = set(range(n_variants))
    missing = sorted(expected - found) if every_variant else []
    extra = sorted(found - expected)
    if missing or extra:
        detail = []
        if missing:
            detail.append(f"variants {missing} are missing")
        if extra:
            detail.append(f"values {extra} are outside 0..{n_variants - 1}")
        present = " with every variant present" if every_variant else ""
        # metalearners' first words, then which values are wrong
        if every_variant and len(found) != n_variants:
            lead = (
                "Number of variants present in the treatment are different than the number "
                "specified at instantiation"
            )
        else:
            lead = f"Treatment variant should be encoded with values 0..{n_variants - 1}"
            lead += " and all variants should be present" if every_variant else ""
        raise ValueError(
            f"{lead}: w has values {sorted_values(found)}; expected 0..n_variants-1 = "
            f"{sorted(expected)}{present} ({'; '.join(detail)})"
        )


def _check_classes(learner: Any, stats: Sequence[PartitionStats]) -> None:
    """A classification's outcome classes: two or more, the same in every variant."""
    per_variant = _stats_classes(stats)
    classes = set().union(*per_variant.values())
    if len(classes) > 2 and not learner._supports_multi_class():
        raise ValueError(
            f"{type(learner).__name__} does not support multiclass classification. Yet we "
            f"found {len(classes)} classes."
        )
    if len(classes) < 2:
        raise ValueError(
            f"There is only one class present in the classification outcome: {classes}; "
            "a classification needs at least two"
        )
    classes_0 = per_variant.get(0, set())
    for variant in sorted(per_variant):
        if per_variant[variant] != classes_0:
            raise ValueError(
                f"Variants 0 and {variant} have seen different sets of classification "
                f"outcomes ({sorted_values(classes_0)} vs "
                f"{sorted_values(per_variant[variant])}). Please check your data."
            )


def target_classes(entry: ModelEntry, strata: Counter) -> set:
    """The classes of a model's target among the strata with rows (variants for w)."""
    present = [s for s, c in strata.items() if c]
    if entry.target == W_COL:
        return {s[0] for s in present}
    return {s[1] for s in present if len(s) > 1}


def check_fold_coverage(
    learner: Any,
    entries: dict[str, list[ModelEntry]],
    assignment: Assignment,
    requests: dict[Hashable, SplitRequest],
) -> None:
    """Before any fit: every fold's training rows hold each variant and class they need."""
    for stage_entries in entries.values():
        for e in stage_entries:
            cfe = learner._cfe(e.kind, e.ordinal)
            split = assignment.refs[(e.kind, e.ordinal)]
            whole = strata_of_fold(split, assignment.fold_strata, None)
            need_variants = {s[0] for s in whole}
            need_classes = target_classes(e, whole) if cfe.is_classifier else None
            folds = range(cfe.n_folds) if cfe.n_folds > 1 else []
            name = f"{e.kind} {e.ordinal}" if learner._cardinality(e.kind) > 1 else e.kind
            n_split = sum(whole.values())
            if folds and n_split < cfe.n_folds:
                rows_of = f" (variants {list(split.variants)})" if split.variants else ""
                raise ValueError(
                    f"{name} is cross-fitted on {n_split} rows{rows_of}, fewer than its "
                    f"n_folds={cfe.n_folds}: every fold needs rows to leave out; use fewer "
                    "folds (metalearners raises here too)"
                )
            for k in folds:
                strata = strata_of_fold(split, assignment.fold_strata, k)
                have_variants = {s[0] for s in strata if strata[s]}
                if not strata or sum(strata.values()) == 0:
                    raise ValueError(
                        f"fold {k} of {name} has no training rows; use fewer folds (n_folds)"
                    )
                if sum(strata.values()) == n_split:
                    raise ValueError(
                        f"fold {k} of {name} leaves out none of its {n_split} rows; use fewer "
                        "folds (n_folds)"
                    )
                if have_variants != need_variants:
                    raise ValueError(
                        f"the training rows of fold {k} of {name} lack treatment variants "
                        f"{sorted(need_variants - have_variants)}; use fewer folds or check "
                        "the data"
                    )
                if need_classes is not None:
                    have = target_classes(e, strata)
                    if have != need_classes:
                        raise ValueError(
                            f"the training rows of fold {k} of {name} lack the classes "
                            f"{sorted_values(need_classes - have)} of its target; use fewer "
                            "folds, the 'partition' fold strategy (stratified), or "
                            "synchronize_cross_fitting=False"
                        )


def check_reused_data(
    learner: Any, context: FitContext, entries: dict[str, list[ModelEntry]]
) -> None:
    """Reused models (prefitted, or of an earlier fit_all_nuisance) need the same data."""
    fitted_now = {(e.kind, e.ordinal) for es in entries.values() for e in es}
    for kind, models in learner._nuisance_models.items():
        for ordinal, cfe in enumerate(models):
            if (kind, ordinal) in fitted_now or not cfe.is_fitted:
                continue
            previous = cfe._context
            if previous is None:
                continue
            if previous.lengths != context.lengths or previous.fingerprints != context.fingerprints:
                what = (
                    "fitted_nuisance_models / fitted_propensity_model"
                    if kind in learner._prefitted_nuisance_models
                    else "fit_all_nuisance"
                )
                raise ValueError(
                    f"the {kind} model comes from {what} on other data (partitions, "
                    "lengths or values differ); fit_all_treatment and reused models need "
                    "exactly the X, y and w they were fitted on"
                )
