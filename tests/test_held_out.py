"""In-sample prediction from the predictions the fold fits kept.

A fold model's fit predicts the rows it held out while they are at hand, and the fit keeps
those predictions in the fold frame it holds on the cluster. An in-sample CATE reads them
instead of predicting those rows again: the same numbers as predicting them.
"""

from __future__ import annotations

import pickle

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from conftest import make_linear_data
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import DRLearner, RLearner, SLearner, TLearner, XLearner, data

LGBM = {"n_estimators": 5, "verbose": -1, "min_child_samples": 5}


def _frame(n: int = 900, npartitions: int = 3, classification: bool = False):
    X, y, w, _ = make_linear_data(n=n, d=4, n_variants=3, seed=4, classification=classification)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(4)]).assign(y=y, w=w)
    ddf = dd.from_pandas(frame, npartitions=npartitions)
    return ddf[[f"x{i}" for i in range(4)]], ddf["y"], ddf["w"]


def _learners(client, classification: bool = False):
    outcome = (LGBMClassifier if classification else LGBMRegressor, LGBM)
    common = {"n_folds": 3, "random_state": 2, "client": client}
    return {
        "T": TLearner(
            classification,
            3,
            outcome[0],
            nuisance_model_params=outcome[1],
            **common,
        ),
        "X": XLearner(
            classification,
            3,
            outcome[0],
            LGBMRegressor,
            LogisticRegression,
            nuisance_model_params=outcome[1],
            treatment_model_params=LGBM,
            **common,
        ),
        "R": RLearner(
            False,
            3,
            LinearRegression,
            LinearRegression,
            LogisticRegression,
            **common,
        ),
        "DR": DRLearner(
            classification,
            3,
            outcome[0],
            LGBMRegressor,
            LogisticRegression,
            nuisance_model_params=outcome[1],
            treatment_model_params=LGBM,
            **common,
        ),
    }


def _held_columns(learner) -> list[str]:
    return [c for c in learner._fit_context.held[1].columns if str(c).startswith("held-out-")]


def _in_sample(learner, X, client) -> np.ndarray:
    """The in-sample CATE, computed by ``client`` (the fit's: it reads the held fold frame)."""
    with client.as_current():
        return np.asarray(learner.predict(X, is_oos=False).compute())


def _predicted_anew(learner, X, client) -> np.ndarray:
    """The in-sample CATE with every row predicted by its fold model: a pickled learner
    has no fold frame on a cluster, so it predicts from the models."""
    copy = pickle.loads(pickle.dumps(learner))
    assert copy._fit_context.held is None
    return _in_sample(copy, X, client)


@pytest.mark.parametrize(
    ("name", "classification"),
    # the R-learner takes no classification outcome
    [
        ("T", False),
        ("T", True),
        ("X", False),
        ("X", True),
        ("R", False),
        ("DR", False),
        ("DR", True),
    ],
)
def test_in_sample_cate_from_kept_predictions_equals_predicting_anew(client, name, classification):
    X, y, w = _frame(classification=classification)
    learner = _learners(client, classification)[name].fit(X, y, w)
    kept = _held_columns(learner)
    methods = learner._in_sample_methods()
    # one column per output of every cross-fit estimator whose in-sample predictions the
    # CATE reads: the fit kept them
    expected = 0
    for kind, method in methods.items():
        for cfe in learner._nuisance_models.get(kind, learner._treatment_models.get(kind, [])):
            assert cfe._held_out is not None and cfe._held_out[0] == method
            expected += len(cfe._held_out[1])
    assert expected > 0 and len(kept) == expected
    from_kept = _in_sample(learner, X, client)
    np.testing.assert_array_equal(from_kept, _predicted_anew(learner, X, client))


def test_in_sample_cate_reads_the_kept_predictions(client):
    """The T-learner's in-sample CATE k is mu_k - mu_0, each outcome model in sample on its
    own variant's rows (read from the kept predictions) and the overall model elsewhere:
    shifted kept values shift CATE k by +1000 on variant k's rows, by -1000 on variant 0's,
    and not at all on the other variant's."""
    X, y, w = _frame()
    learner = _learners(client)["T"].fit(X, y, w)
    before = _in_sample(learner, X, client)
    address, frame = learner._fit_context.held
    shifted = frame.assign(**{c: frame[c] + 1000.0 for c in _held_columns(learner)})
    learner._fit_context.held = (address, shifted)
    change = _in_sample(learner, X, client) - before
    w_all = w.compute().to_numpy()
    for k in (1, 2):
        np.testing.assert_allclose(change[w_all == k, k - 1, 0], 1000.0)
        np.testing.assert_allclose(change[w_all == 0, k - 1, 0], -1000.0)
        np.testing.assert_array_equal(change[w_all == 3 - k, k - 1, 0], 0.0)


def test_kept_predictions_of_training_pieces(client, monkeypatch):
    """Training partitions cut into pieces: each fit keeps its predictions per piece, and
    they join into their partition's rows in order."""
    monkeypatch.setattr(data, "MIN_PIECE_ROWS", 50)
    X, y, w = _frame(n=1200, npartitions=1)
    learner = _learners(client)["DR"].fit(X, y, w)
    assert _held_columns(learner)
    from_kept = _in_sample(learner, X, client)
    np.testing.assert_array_equal(from_kept, _predicted_anew(learner, X, client))


def test_no_predictions_kept_where_the_cate_does_not_read_them(client):
    """The S-learner predicts every row under every treatment, and data read from its
    source by every pass has no fold frame held: nothing kept, the same CATE."""
    X, y, w = _frame()
    s = SLearner(False, 3, LGBMRegressor, nuisance_model_params=LGBM, n_folds=3, client=client)
    s.fit(X, y, w)
    assert not _held_columns(s)
    lazy = DRLearner(
        False,
        3,
        LGBMRegressor,
        LGBMRegressor,
        LogisticRegression,
        nuisance_model_params=LGBM,
        treatment_model_params=LGBM,
        n_folds=3,
        random_state=2,
        client=client,
        persist=False,
    ).fit(X, y, w)
    assert lazy._fit_context.held is None
    assert all(m._held_out is None for m in lazy._treatment_models["treatment_model"])
    kept = _learners(client)["DR"].fit(X, y, w)
    np.testing.assert_array_equal(_in_sample(lazy, X, client), _in_sample(kept, X, client))
