"""``evaluate()`` parity with metalearners 0.13.0: the same keys and values within 1e-8.

All five learners on metalearners' synthetic setups (binary and multi-variant, regression and
classification), in-sample and out-of-sample with every ``oos_method``; default scoring and
a scoring dict mixing summed sklearn names with a callable (which dask-meta scores in one
task on a worker). Where metalearners raises, dask-meta raises.
"""

from __future__ import annotations

import warnings
from typing import Any

import dask.dataframe as dd
import numpy as np
import pytest
from sklearn.metrics import make_scorer, mean_absolute_error
from test_parity_st import SETUPS
from test_parity_xrdr import OOS, arguments, experiment, reference

import dask_meta

pytestmark = pytest.mark.parity

ATOL = 1e-8
LEARNERS = ("SLearner", "TLearner", "XLearner", "RLearner", "DRLearner")
CASES = [(False, "overall")] + [(True, m) for m in OOS]


def _mae(y, p, sample_weight=None):
    return mean_absolute_error(y, p, sample_weight=sample_weight)


def extra_scoring(name: str, is_classification: bool) -> dict[str, list[Any]]:
    """Summed sklearn names and a gathered callable, for every model kind of the learner."""
    regression: list[Any] = ["r2", "neg_mean_absolute_error", make_scorer(_mae)]
    classification: list[Any] = ["neg_log_loss", "accuracy"]
    outcome = {
        "SLearner": "base_model",
        "RLearner": "outcome_model",
    }.get(name, "variant_outcome_model")
    scoring = {outcome: classification if is_classification else regression}
    treatment = {
        "XLearner": ["treatment_effect_model", "control_effect_model"],
        "RLearner": ["treatment_model"],
        "DRLearner": ["treatment_model"],
    }.get(name, [])
    for kind in treatment:
        scoring[kind] = regression
    if treatment:
        scoring["propensity_model"] = classification
    return scoring


def evaluations(learner: Any, exp: Any, X: Any, scoring: dict | None) -> dict:
    out: dict[tuple, tuple[str, Any]] = {}
    for is_oos, oos_method in CASES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = learner.evaluate(
                    X, exp.y_train, exp.w_train, is_oos, oos_method=oos_method, scoring=scoring
                )
            out[(is_oos, oos_method)] = ("value", value)
        except (ValueError, TypeError) as exc:
            out[(is_oos, oos_method)] = ("error", exc)
    return out


def assert_same(ours: dict, theirs: dict) -> None:
    compared = 0
    for case, (kind, value) in theirs.items():
        our_kind, our_value = ours[case]
        assert our_kind == kind, (
            f"{case}: metalearners gives {kind} ({value}), dask-meta {our_value}"
        )
        if kind == "value":
            assert our_value.keys() == value.keys(), case
            for key in value:
                np.testing.assert_allclose(
                    our_value[key], value[key], atol=ATOL, rtol=0, err_msg=f"{case} {key}"
                )
                compared += 1
    assert compared >= 2


@pytest.mark.parametrize("custom", [False, True], ids=["default-scoring", "custom-scoring"])
@pytest.mark.parametrize("setup", tuple(SETUPS))
@pytest.mark.parametrize("name", LEARNERS)
def test_evaluate_parity(name, setup, custom, memo, client):
    exp = experiment(memo, setup)
    theirs, _ = reference(memo, name, setup)
    scoring = extra_scoring(name, exp.is_classification) if custom else None
    ours_key = ("dask-meta", name, setup)
    if ours_key not in memo:
        learner = getattr(dask_meta, name)(
            **arguments(name, exp), fold_strategy="sklearn", client=client
        )
        memo[ours_key] = learner.fit(exp.X_train, exp.y_train, exp.w_train)
    ours = memo[ours_key]
    assert_same(
        evaluations(ours, exp, exp.X_train, scoring), evaluations(theirs, exp, exp.X_train, scoring)
    )


@pytest.mark.parametrize("name", ("TLearner", "RLearner"))
def test_evaluate_parity_from_dask_input(name, memo, client):
    """The same values from a Dask DataFrame of several partitions."""
    setup = "continuous_y_multi_w_linear"
    exp = experiment(memo, setup)
    theirs, _ = reference(memo, name, setup)
    train = dd.from_pandas(exp.train_frame(), npartitions=4)
    ours = getattr(dask_meta, name)(**arguments(name, exp), fold_strategy="sklearn", client=client)
    ours.fit(train[exp.features], train["y"], train["w"])
    expected = theirs.evaluate(exp.X_train, exp.y_train, exp.w_train, is_oos=False)
    got = ours.evaluate(train[exp.features], train["y"], train["w"], is_oos=False)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, atol=ATOL, rtol=0, err_msg=key)
