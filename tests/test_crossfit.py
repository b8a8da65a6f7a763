"""CrossFitEstimator (dask_meta/crossfit.py) on its own: fold models plus the overall model,
in-sample and out-of-sample prediction, on pandas and Dask input."""

from __future__ import annotations

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from _models import unaligned_frame
from lightgbm import LGBMRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold

from dask_meta import CrossFitEstimator

FEATURES = ["a", "b", "c"]
N_FOLDS = 4
SEED = 13
PARTITION_SIZES = (70, 130, 100)  # unequal partitions of the Dask input


def _data(n=300, seed=0, classification=False):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=FEATURES)
    y = X["a"] - 2 * X["b"] + 0.5 * X["c"] + rng.normal(0, 0.3, n)
    if classification:
        y = (y > 0).astype(int)
    return X, y.to_numpy()


def _dask(X: pd.DataFrame, y: np.ndarray) -> tuple[dd.DataFrame, dd.Series]:
    frame = X.assign(y=y)
    bounds = np.cumsum([0, *PARTITION_SIZES])
    divisions = [*bounds[:-1].tolist(), len(frame) - 1]
    ddf = dd.from_pandas(frame, npartitions=1, sort=True).repartition(divisions=divisions)
    assert ddf.npartitions == len(PARTITION_SIZES)
    return ddf[FEATURES], ddf["y"]


def _manual_fold_models(X, y, factory, classification=False):
    """The fold models metalearners would fit: sklearn (Stratified)KFold on all rows."""
    splitter = (
        StratifiedKFold(N_FOLDS, shuffle=True, random_state=SEED)
        if classification
        else KFold(N_FOLDS, shuffle=True, random_state=SEED)
    )
    split = list(splitter.split(X, y))
    models = [factory().fit(X.iloc[train], y[train]) for train, _ in split]
    return split, models


@pytest.fixture(scope="module")
def regression(client):
    X, y = _data()
    with client.as_current():  # see test_planner.py::test_fit_with_explicit_non_default_client
        cfe = CrossFitEstimator(
            N_FOLDS, LinearRegression, {}, True, SEED, fold_strategy="sklearn", client=client
        ).fit(X, y)
    return X, y, cfe


def test_fit_on_pandas_fits_fold_and_overall_models(regression):
    X, _, cfe = regression
    assert cfe.is_fitted
    assert len(cfe._estimators) == N_FOLDS
    assert isinstance(cfe._overall_estimator, LinearRegression)
    report = cfe.fit_report_
    assert len(report) == N_FOLDS + 1
    rows = dict(zip(report["fold"], report["rows"], strict=True))
    assert rows["overall"] == len(X)
    for k, (_, test) in enumerate(KFold(N_FOLDS, shuffle=True, random_state=SEED).split(X)):
        assert rows[k] == len(X) - len(test)


def test_in_sample_predict_uses_the_model_that_did_not_see_the_row(regression, client):
    X, y, cfe = regression
    with client.as_current():
        pred = cfe.predict(X, is_oos=False)
    assert isinstance(pred, np.ndarray)
    assert pred.shape == (len(X),)
    split, models = _manual_fold_models(X, y, LinearRegression)
    for k, ((_, test), model) in enumerate(zip(split, models, strict=True)):
        np.testing.assert_allclose(
            pred[test], model.predict(X.iloc[test]), rtol=1e-10, err_msg=f"fold {k}"
        )
        # the fitted fold model is the manual one
        np.testing.assert_allclose(cfe._estimators[k].coef_, model.coef_, rtol=1e-10)


def test_oos_predict_overall_mean_median(regression, client):
    X, y, cfe = regression
    X_new, _ = _data(n=40, seed=1)
    _, models = _manual_fold_models(X, y, LinearRegression)
    fold_predictions = np.stack([m.predict(X_new) for m in models], axis=1)
    with client.as_current():
        overall = cfe.predict(X_new, is_oos=True, oos_method="overall")
        mean = cfe.predict(X_new, is_oos=True, oos_method="mean")
        median = cfe.predict(X_new, is_oos=True, oos_method="median")
    expected_overall = LinearRegression().fit(X, y).predict(X_new)
    np.testing.assert_allclose(overall, expected_overall, rtol=1e-10)
    np.testing.assert_allclose(mean, fold_predictions.mean(axis=1), rtol=1e-10)
    np.testing.assert_allclose(median, np.median(fold_predictions, axis=1), rtol=1e-10)
    # the three really differ (else the test would not tell them apart)
    assert not np.allclose(mean, overall, rtol=1e-6)
    assert not np.allclose(median, mean, rtol=1e-6)
    with pytest.raises(ValueError, match="oos_method"):
        cfe.predict(X_new, is_oos=True, oos_method="max")


def test_fit_on_dask_matches_pandas_and_stays_lazy(regression, client):
    X, y, cfe_pandas = regression
    Xd, yd = _dask(X, y)
    with client.as_current():
        cfe = CrossFitEstimator(
            N_FOLDS, LinearRegression, {}, True, SEED, fold_strategy="sklearn", client=client
        ).fit(Xd, yd)
        in_sample = cfe.predict(Xd, is_oos=False)
        assert isinstance(in_sample, da.Array)
        assert in_sample.chunks[0] == PARTITION_SIZES
        assert in_sample.shape == (len(X),)
        oos = cfe.predict(Xd, is_oos=True, oos_method="mean")
        assert isinstance(oos, da.Array)
        computed = client.compute([in_sample, oos], sync=True)
        expected = [
            cfe_pandas.predict(X, is_oos=False),
            cfe_pandas.predict(X, is_oos=True, oos_method="mean"),
        ]
    # "sklearn" folds are over global row positions: the Dask fit equals the pandas fit
    for got, want in zip(computed, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_dask_partition_strategy_in_sample_matches_manual_folds(client):
    """Default "partition" folds on Dask input: reconstruct the fold of every row from the
    kept fold frame and refit the fold models by hand."""
    X, y = _data(seed=4)
    Xd, yd = _dask(X, y)
    with client.as_current():
        cfe = CrossFitEstimator(3, LinearRegression, random_state=2, client=client).fit(Xd, yd)
        pred = client.compute(cfe.predict(Xd, is_oos=False)).result()
        folds = client.compute(cfe._context.fold_frame).result()
    ids = cfe._split.fold_ids(folds)
    assert set(np.unique(ids)) == {0, 1, 2}
    assert np.bincount(ids).max() - np.bincount(ids).min() <= 1
    for k in range(3):
        model = LinearRegression().fit(X[ids != k], y[ids != k])
        np.testing.assert_allclose(pred[ids == k], model.predict(X[ids == k]), rtol=1e-10)


def test_classifier_predict_proba(client):
    X, y = _data(classification=True, seed=2)
    X_new, _ = _data(n=30, seed=3)
    with client.as_current():
        cfe = CrossFitEstimator(
            N_FOLDS, LogisticRegression, {}, True, SEED, fold_strategy="sklearn", client=client
        ).fit(X, y)
        in_sample = cfe.predict_proba(X, is_oos=False)
        overall = cfe.predict_proba(X_new, is_oos=True, oos_method="overall")
        mean = cfe.predict_proba(X_new, is_oos=True, oos_method="mean")
        labels = cfe.predict(X_new, is_oos=True, oos_method="overall")
        with pytest.raises(ValueError, match="median of class probabilities"):
            cfe.predict_proba(X_new, is_oos=True, oos_method="median")
        with pytest.raises(ValueError, match="mean of classes"):
            cfe.predict(X_new, is_oos=True, oos_method="mean")
    np.testing.assert_array_equal(cfe.classes_, [0, 1])
    assert in_sample.shape == (len(X), 2)
    assert overall.shape == mean.shape == (30, 2)
    assert labels.shape == (30,)
    np.testing.assert_allclose(in_sample.sum(axis=1), 1)
    np.testing.assert_allclose(
        overall, LogisticRegression().fit(X, y).predict_proba(X_new), rtol=1e-6
    )
    split, models = _manual_fold_models(X, y, LogisticRegression, classification=True)
    np.testing.assert_allclose(
        mean, np.mean([m.predict_proba(X_new) for m in models], axis=0), rtol=1e-6
    )
    for (_, test), model in zip(split, models, strict=True):
        np.testing.assert_allclose(in_sample[test], model.predict_proba(X.iloc[test]), rtol=1e-6)


def test_in_sample_predict_needs_the_training_data(regression, client):
    X, _, cfe = regression
    with client.as_current():
        with pytest.raises(ValueError, match="is_oos=False needs exactly the training data"):
            cfe.predict(X.iloc[:-5], is_oos=False)
        # same length, other values: caught by the fingerprint
        with pytest.raises(ValueError, match="is_oos=False needs exactly the training data"):
            cfe.predict(X * 2, is_oos=False)


def test_single_fold_warns_and_uses_overall_model(client):
    X, y = _data(seed=5)
    with pytest.raises(ValueError, match="enable_overall"):
        CrossFitEstimator(1, LinearRegression, enable_overall=False)
    with client.as_current():
        cfe = CrossFitEstimator(1, LinearRegression, random_state=0, client=client).fit(X, y)
        with pytest.warns(UserWarning, match="Cross-fitting is deactivated"):
            pred = cfe.predict(X, is_oos=False)
        with pytest.raises(ValueError, match="n_folds=1"):
            cfe.predict(X, is_oos=True, oos_method="mean")
    assert cfe._estimators == []
    assert len(cfe.fit_report_) == 1
    np.testing.assert_allclose(pred, LinearRegression().fit(X, y).predict(X), rtol=1e-10)


def test_without_overall_model(client):
    X, y = _data(seed=6)
    with client.as_current():
        cfe = CrossFitEstimator(
            3, LinearRegression, enable_overall=False, random_state=0, client=client
        ).fit(X, y)
        with pytest.raises(ValueError, match="enable_overall"):
            cfe.predict(X, is_oos=True, oos_method="overall")
        mean = cfe.predict(X, is_oos=True, oos_method="mean")
    assert cfe._overall_estimator is None
    assert len(cfe.fit_report_) == 3
    assert "overall" not in set(cfe.fit_report_["fold"])
    np.testing.assert_allclose(
        mean, np.mean([m.predict(X) for m in cfe._estimators], axis=0), rtol=1e-12
    )


def test_not_fitted_raises(client):
    cfe = CrossFitEstimator(2, LinearRegression, client=client)
    with pytest.raises(ValueError, match="not fitted"):
        cfe.predict(pd.DataFrame(np.zeros((3, 3)), columns=FEATURES), is_oos=True)


def test_oos_prediction_independent_of_buffer_alignment(regression, client):
    """Partitions reach workers inside messages, so their float64 blocks can start at any
    byte offset; numpy computes ``X @ coef`` by another summation for unaligned arrays, so
    the prediction's last bits then depend on where the bytes happened to land. The same
    values must give the same prediction, bit for bit."""
    cfe = regression[2]
    X_new, _ = _data(n=64, seed=7)
    aligned = dd.from_pandas(X_new, npartitions=1)
    shifted = dd.from_map(
        unaligned_frame, [X_new.to_numpy()], columns=FEATURES, meta=X_new.iloc[:0]
    )
    with client.as_current():
        a, b = client.compute(
            [
                cfe.predict(aligned, is_oos=True, oos_method="overall"),
                cfe.predict(shifted, is_oos=True, oos_method="overall"),
            ],
            sync=True,
        )
    expected = cfe._overall_estimator.predict(X_new)
    # first the deterministic case (a block 3 bytes off), then the ordinary from_pandas
    # partition, whose offset on the worker depends on the message it arrived in
    for name, got in (("3 bytes off", b), ("from_pandas", a)):
        assert np.array_equal(got, expected), (
            f"{name}: max difference {np.abs(got - expected).max():.3g}"
        )


def test_fit_takes_metalearners_default_cv_none(regression, client):
    """``fit(X, y, cv=None)`` is metalearners' default call: the same fit as without it.
    Index lists with Dask input are refused, before any work, naming fold_strategy."""
    X, y, fitted = regression
    with client.as_current():
        cfe = CrossFitEstimator(
            N_FOLDS, LinearRegression, {}, True, SEED, fold_strategy="sklearn", client=client
        ).fit(X, y, cv=None)
        expected = fitted.predict(X, is_oos=False)
        np.testing.assert_array_equal(cfe.predict(X, is_oos=False), expected)
        split = list(KFold(N_FOLDS).split(X))
        with pytest.raises(ValueError, match=r"cv \(index lists per fold\).*fold_strategy"):
            CrossFitEstimator(N_FOLDS, LinearRegression, client=client).fit(
                dd.from_pandas(X, npartitions=2),
                dd.from_pandas(pd.Series(y), npartitions=2),
                cv=split,
            )


def test_equal_by_value_as_metalearners_dataclass(regression, client):
    """Two estimators built alike are equal (metalearners' is a dataclass); a fit makes them
    differ; ``init_args`` rebuild a learner whose estimators equal the original's."""
    from dask_meta import DRLearner, RLearner, SLearner, TLearner, XLearner

    X, y, _ = regression
    a = CrossFitEstimator(3, LinearRegression, random_state=1, client=client)
    b = CrossFitEstimator(3, LinearRegression, random_state=1, client=client)
    assert a == b and a != CrossFitEstimator(3, LinearRegression, random_state=2)
    a.fit(X, y)
    assert a != b
    assert a == a
    for learner in (SLearner, TLearner, XLearner, RLearner, DRLearner):
        ml = learner(True, 2, LogisticRegression, LinearRegression, LogisticRegression)
        rebuilt = learner(**ml.init_args)
        assert rebuilt.__dict__ == ml.__dict__


class _RowsSeen(LGBMRegressor):
    """LightGBM that records, per predict call, whether its X was a frame over one
    C-contiguous array, and the rows' first values."""

    def predict(self, X, **kwargs):
        values = X.to_numpy()
        self.seen_.append((values.flags.c_contiguous and X._mgr.is_single_block, values[:, 0]))
        return super().predict(X, **kwargs)


def test_predict_block_gathers_a_frame_into_rows_once_for_lightgbm():
    """For LightGBM, a block of one numeric dtype in several pandas blocks is gathered once
    into rows in fold order, and predicted on as frames over slices of them (C-contiguous,
    what LightGBM reads without copying): each fold's rows and the out-of-sample rows, with
    the values and the predictions the original frame gives; a frame of mixed dtypes or
    other kinds gets its folds' rows taken as they are, and other models get the frame's
    own layout (a linear model's sums could round differently)."""
    from dask_meta.backends import predict_block
    from dask_meta.backends.predict import fold_groups

    X, y = _data(n=120)
    X["d"] = np.linspace(0, 1, len(X))  # a block of its own: the frame has two
    assert not X._mgr.is_single_block
    fold_ids = np.tile([0, 1, 2, -1], 30)
    params = {"n_estimators": 5, "min_child_samples": 5, "verbose": -1}
    models = [_RowsSeen(**params, seed=k).fit(X.iloc[k::3], y[k::3]) for k in range(3)]
    overall = _RowsSeen(**params).fit(X, y)
    for m in [*models, overall]:
        m.seen_ = []
    out = predict_block(models, overall, X, fold_ids, "predict", "overall", 1)
    expected = np.empty(len(X))
    for k, m in enumerate([*models, overall]):
        rows = fold_ids == (k if k < 3 else -1)
        expected[rows] = LGBMRegressor.predict(m, X[rows])
        ((row_major_frame, firsts),) = m.seen_
        assert row_major_frame
        np.testing.assert_array_equal(firsts, X["a"].to_numpy()[rows])
    np.testing.assert_array_equal(out[:, 0], expected)
    assert len(np.unique(out)) > 4  # the models predict differently
    # every fold's rows, in block order, keep their dtypes and index
    ids = np.array([0, -1, 0, 1, 1, -1])
    for frame in (
        X.iloc[:6].assign(e=np.arange(6)),  # mixed dtypes: taken as they are
        pd.DataFrame({"c": pd.Categorical(list("abacab"))}, index=range(7, 13)),
        pd.DataFrame({"s": list("abacab")}, index=range(7, 13)),
        pd.DataFrame({"x": np.arange(6.0)}, index=range(7, 13)),
    ):
        groups = list(fold_groups(frame, ids, reads_rows=True))
        assert [fold for fold, _, _ in groups] == [0, 1, -1]
        for fold, rows, matrix in groups:
            np.testing.assert_array_equal(rows, np.flatnonzero(ids == fold))
            pd.testing.assert_frame_equal(matrix, frame.iloc[rows])
            assert matrix._mgr.is_single_block == ("e" not in frame)
    # one fold for all rows: the block itself, converted to rows only where it is not
    ((_, rows, same),) = fold_groups(X, np.full(len(X), -1), reads_rows=True)
    np.testing.assert_array_equal(rows, np.arange(len(X)))
    pd.testing.assert_frame_equal(same, X)
    assert same._mgr.is_single_block and same.to_numpy().flags.c_contiguous
    assert next(fold_groups(same, np.zeros(len(X), dtype=int), reads_rows=True))[2] is same
    assert list(fold_groups(X.iloc[:0], np.array([], dtype=int), reads_rows=True)) == []
    linear = [LinearRegression().fit(X, y) for _ in range(4)]
    frames = []
    for m in linear:
        m.predict = lambda X, m=m: frames.append(X) or LinearRegression.predict(m, X)
    predict_block(linear[:3], linear[3], X, fold_ids, "predict", "overall", 1)
    assert len(frames) == 4 and all(not f._mgr.is_single_block for f in frames)
