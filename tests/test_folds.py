"""Fold strategies (dask_meta/folds.py): balance, determinism, repartition-stability, parity."""

from __future__ import annotations

from collections import Counter

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold, StratifiedKFold

from dask_meta import TLearner
from dask_meta._constants import NOT_IN_SPLIT, W_COL, Y_COL
from dask_meta.folds import (
    SplitRequest,
    _assign_partition,
    _counts,
    _partition_fold_column,
    _partition_stats,
    _rotation,
    _stable_int,
    _strata,
    _strata_codes,
    _strata_rows,
    assign,
    copies_on_write,
    hash_specs_for,
    scan,
)

SIZES = (37, 163, 350, 11, 239)  # unequal partitions, one of them tiny
N_ROWS = sum(SIZES)


def _frame(w, y, sizes, extra: dict | None = None) -> dd.DataFrame:
    """A Dask frame of the training-frame layout (x0, y, w) with the given partition sizes."""
    n = len(w)
    assert sum(sizes) == n
    pdf = pd.DataFrame({"x0": np.arange(n, dtype=float), Y_COL: y, W_COL: w})
    for name, values in (extra or {}).items():
        pdf[name] = values
    bounds = np.cumsum([0, *sizes])
    divisions = [*bounds[:-1].tolist(), n - 1]
    frame = dd.from_pandas(pdf, npartitions=1, sort=True).repartition(divisions=divisions)
    assert frame.npartitions == len(sizes)
    return frame


def _data(n=N_ROWS, n_variants=3, seed=0, classification=False):
    rng = np.random.default_rng(seed)
    w = rng.integers(0, n_variants, n)
    y = rng.integers(0, 2, n) if classification else rng.normal(size=n)
    return w, y


def _folds(client, frame, requests, strategy, seed, classification=False, fold_key=None):
    specs = hash_specs_for(requests, seed) if strategy == "hash" else ()
    stats = scan(
        client,
        frame,
        classification,
        fold_key=fold_key,
        hash_specs=specs,
        keep_arrays=strategy == "sklearn",
    )
    asg = assign(
        strategy,
        frame,
        stats,
        requests,
        seed=seed,
        classification=classification,
        fold_key=fold_key,
    )
    return asg, client.compute(asg.frame).result()


def _assert_balanced(out: pd.DataFrame, column: str, strata: list[str], n_folds: int):
    counts = out.groupby(strata)[column].value_counts().unstack(fill_value=0)
    assert list(counts.columns) == list(range(n_folds))
    spread = counts.max(axis=1) - counts.min(axis=1)
    assert (spread <= 1).all(), counts


def _assert_fold_strata_match(asg, out, column, strata_cols):
    """The counts the planner relies on (train_rows, coverage) equal the real counts."""
    for (col, fold, stratum), count in asg.fold_strata.items():
        if col != column:
            continue
        mask = out[column].to_numpy() == fold
        for name, value in zip(strata_cols, stratum, strict=True):
            mask &= out[name].to_numpy() == value
        assert mask.sum() == count, (col, fold, stratum)
    in_split = int((out[column].to_numpy() != NOT_IN_SPLIT).sum())
    assert sum(c for (col, _, _), c in asg.fold_strata.items() if col == column) == in_split


def test_fold_columns_leave_the_partition_unchanged_and_share_its_features():
    """The training partition gets W as integers and its fold columns in a frame of its
    own: the input partition (a user's persisted data) is unchanged, and where pandas
    copies on write (pandas 3), the features are its arrays, not copies."""
    w, y = _data(n=500)
    part = pd.DataFrame({"x0": np.linspace(0, 1, 500), Y_COL: y, W_COL: w.astype(float)})
    before = part.copy()
    requests = {"a": SplitRequest(None, 3, None, "k"), "b": SplitRequest((0,), 1, None, "j")}
    specs = hash_specs_for(requests)
    out = _assign_partition(part, specs, [{}], False, None, "partition", None, None)
    pd.testing.assert_frame_equal(part, before)
    assert out[W_COL].dtype == np.int64
    assert [c for c, *_ in specs] == [c for c in out.columns if c not in part.columns]
    assert np.shares_memory(out["x0"].to_numpy(), part["x0"].to_numpy()) == copies_on_write()
    out.loc[0, "x0"] = -1.0
    assert part.loc[0, "x0"] == before.loc[0, "x0"]


# --- "partition" -----------------------------------------------------------------------------


@pytest.mark.parametrize("n_folds", [2, 3, 5])
def test_partition_folds_exactly_balanced_per_variant(client, n_folds):
    w, y = _data()
    frame = _frame(w, y, SIZES)
    requests = {("m", 0): SplitRequest(None, n_folds, None, "sync")}
    asg, out = _folds(client, frame, requests, "partition", seed=11)
    (column,) = asg.fold_columns
    assert asg.refs[("m", 0)].fold_col == column
    # row order and treatment are kept
    np.testing.assert_array_equal(out["x0"].to_numpy(), np.arange(len(w)))
    np.testing.assert_array_equal(out[W_COL].to_numpy(), w)
    assert out[column].between(0, n_folds - 1).all()
    _assert_balanced(out, column, [W_COL], n_folds)
    _assert_fold_strata_match(asg, out, column, [W_COL])
    # balance is global, not per partition: the 11-row partition alone cannot be balanced
    # for 5 folds x 3 variants, yet the totals are
    assert sum(SIZES) == len(out)


def test_partition_folds_balanced_per_variant_and_class(client):
    w, y = _data(classification=True, seed=3)
    frame = _frame(w, y, SIZES)
    requests = {("m", 0): SplitRequest(None, 4, Y_COL, "sync")}
    asg, out = _folds(client, frame, requests, "partition", seed=5, classification=True)
    (column,) = asg.fold_columns
    _assert_balanced(out, column, [W_COL, Y_COL], 4)
    _assert_fold_strata_match(asg, out, column, [W_COL, Y_COL])


def test_partition_folds_deterministic_per_seed_and_layout(client):
    w, y = _data(seed=1)
    requests = {("m", 0): SplitRequest(None, 3, None, "sync")}
    col = hash_specs_for(requests, 42)[0][0]
    _, a = _folds(client, _frame(w, y, SIZES), requests, "partition", seed=42)
    _, b = _folds(client, _frame(w, y, SIZES), requests, "partition", seed=42)
    _, c = _folds(client, _frame(w, y, SIZES), requests, "partition", seed=43)
    np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy())
    # another seed moves a large share of the rows (chance agreement is ~1/3)
    assert (a[col].to_numpy() != c[col].to_numpy()).mean() > 0.4


def test_partition_unsynchronized_kinds_get_their_own_fold_columns(client):
    w, y = _data(seed=2)
    frame = _frame(w, y, SIZES)
    # synchronised: every kind shares one fold column
    synced = {
        ("propensity_model", 0): SplitRequest(None, 3, None, "sync"),
        ("variant_outcome_model", 0): SplitRequest((0,), 3, None, "sync"),
        ("variant_outcome_model", 1): SplitRequest((1,), 3, None, "sync"),
    }
    asg, _ = _folds(client, frame, synced, "partition", seed=9)
    assert len(asg.fold_columns) == 1
    assert len({ref.fold_col for ref in asg.refs.values()}) == 1
    # synchronize_cross_fitting=False: one seed key per model kind -> one column per kind
    unsynced = {
        ("propensity_model", 0): SplitRequest(None, 3, None, "propensity_model"),
        ("variant_outcome_model", 0): SplitRequest((0,), 3, None, "variant_outcome_model"),
        ("variant_outcome_model", 1): SplitRequest((1,), 3, None, "variant_outcome_model"),
    }
    asg, out = _folds(client, frame, unsynced, "partition", seed=9)
    assert len(asg.fold_columns) == 2
    prop = asg.refs[("propensity_model", 0)].fold_col
    outcome = asg.refs[("variant_outcome_model", 0)].fold_col
    assert asg.refs[("variant_outcome_model", 1)].fold_col == outcome
    assert prop != outcome
    assert (out[prop].to_numpy() != out[outcome].to_numpy()).mean() > 0.4
    for column in (prop, outcome):
        _assert_balanced(out, column, [W_COL], 3)
    # SplitRef.fold_ids masks the rows outside the estimator's variants
    ids = asg.refs[("variant_outcome_model", 1)].fold_ids(out)
    np.testing.assert_array_equal(ids[w != 1], NOT_IN_SPLIT)
    np.testing.assert_array_equal(ids[w == 1], out[outcome].to_numpy()[w == 1])


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    sizes=st.lists(st.integers(1, 60), min_size=1, max_size=8),
    n_folds=st.integers(2, 5),
    n_variants=st.integers(2, 4),
    seed=st.integers(0, 2**31 - 1),
    classification=st.booleans(),
)
def test_partition_balance_property(sizes, n_folds, n_variants, seed, classification):
    """Any layout of partitions: fold sizes per stratum differ by at most one, and the
    planner's fold_strata equal the real counts. Runs the per-partition task functions with
    the synchronous scheduler (no cluster)."""
    n = sum(sizes)
    w, y = _data(n=n, n_variants=n_variants, seed=seed % 1000, classification=classification)
    frame = _frame(w, y, sizes)
    stats = [
        _partition_stats(p, classification, (), None, False)
        for p in dask.compute(*frame.to_delayed(), scheduler="sync")
    ]
    requests = {("m", 0): SplitRequest(None, n_folds, None, "sync")}
    asg = assign("partition", frame, stats, requests, seed=seed, classification=classification)
    out = asg.frame.compute(scheduler="sync")
    (column,) = asg.fold_columns
    strata = [W_COL, Y_COL] if classification else [W_COL]
    counts = Counter(zip(*(out[c].tolist() for c in strata), out[column].tolist(), strict=True))
    for stratum in set(zip(*(out[c].tolist() for c in strata), strict=True)):
        per_fold = [counts[(*stratum, k)] for k in range(n_folds)]
        assert max(per_fold) - min(per_fold) <= 1, (stratum, per_fold)
    _assert_fold_strata_match(asg, out, column, strata)


def test_learner_partition_folds_balanced_on_dask_frame(default_client):
    """Through a learner's fit: the fold frame it keeps is balanced per variant."""
    # default_client: works around the planner's as_completed() needing a default client
    # (see test_planner.py::test_fit_with_explicit_non_default_client)
    client = default_client
    w, y = _data(seed=4)
    rng = np.random.default_rng(4)
    frame = _frame(w, y, SIZES, extra={"x1": rng.normal(size=len(w))})
    ddf = frame.rename(columns={Y_COL: "y", W_COL: "w"})
    learner = TLearner(False, 3, LinearRegression, n_folds=4, random_state=0, client=client).fit(
        ddf[["x0", "x1"]], ddf["y"], ddf["w"]
    )
    folds = client.compute(learner._fit_context.fold_frame).result()
    lengths = [len(p) for p in dask.compute(*frame.to_delayed(), scheduler="sync")]
    assert learner._fit_context.lengths == tuple(lengths)
    np.testing.assert_array_equal(folds[W_COL].to_numpy(), w)
    for k, cfe in enumerate(learner._nuisance_models["variant_outcome_model"]):
        ids = cfe._split.fold_ids(folds)
        assert (ids[w != k] == NOT_IN_SPLIT).all()
        sizes = np.bincount(ids[w == k], minlength=4)
        assert sizes.max() - sizes.min() <= 1, (k, sizes)


# --- "hash" ----------------------------------------------------------------------------------


def test_hash_folds_survive_repartitioning(client):
    n = 900
    w, y = _data(n=n, seed=6)
    ids = np.random.default_rng(6).permutation(n) * 7 + 1000  # arbitrary row ids
    three = _frame(w, y, (300, 250, 350), extra={"row_id": ids})
    seven = three.repartition(npartitions=7)
    assert seven.npartitions == 7
    requests = {("m", 0): SplitRequest(None, 4, None, "sync")}
    a_asg, a = _folds(client, three, requests, "hash", seed=3, fold_key="row_id")
    b_asg, b = _folds(client, seven, requests, "hash", seed=3, fold_key="row_id")
    col = a_asg.fold_columns[0]
    fold_a = pd.Series(a[col].to_numpy(), index=a["row_id"].to_numpy()).sort_index()
    fold_b = pd.Series(b[col].to_numpy(), index=b["row_id"].to_numpy()).sort_index()
    pd.testing.assert_series_equal(fold_a, fold_b)
    assert set(fold_a.unique()) == {0, 1, 2, 3}
    # roughly balanced (a hash, not exact): each fold within 25% of n/4
    assert (np.abs(np.bincount(fold_a.to_numpy()) - n / 4) < n / 16).all()
    # the planner's counts come from the first pass and equal the real ones
    _assert_fold_strata_match(a_asg, a, col, [W_COL])
    _assert_fold_strata_match(b_asg, b, col, [W_COL])


@pytest.mark.parametrize("id_dtype", ["int64", "str"])
def test_hash_folds_depend_on_seed_and_seed_key(client, id_dtype):
    """Another random_state, or another model kind when cross-fitting is not synchronised,
    must give other hash folds, whatever the dtype of the row-id column."""
    n = 600
    w, y = _data(n=n, seed=6)
    ids = (np.arange(n) * 7 + 1000).astype(id_dtype)
    frame = _frame(w, y, (300, 300), extra={"row_id": ids})
    requests = {("m", 0): SplitRequest(None, 4, None, "sync")}
    a_asg, a = _folds(client, frame, requests, "hash", seed=3, fold_key="row_id")
    b_asg, b = _folds(client, frame, requests, "hash", seed=4, fold_key="row_id")
    fold_a = a[a_asg.fold_columns[0]].to_numpy()
    assert (b[b_asg.fold_columns[0]].to_numpy() != fold_a).mean() > 0.5, "seed is ignored"
    unsynced = {
        ("propensity_model", 0): SplitRequest(None, 4, None, "propensity_model"),
        ("outcome_model", 0): SplitRequest(None, 4, None, "outcome_model"),
    }
    c_asg, c = _folds(client, frame, unsynced, "hash", seed=3, fold_key="row_id")
    p_col = c_asg.refs[("propensity_model", 0)].fold_col
    o_col = c_asg.refs[("outcome_model", 0)].fold_col
    assert p_col != o_col
    assert (c[p_col].to_numpy() != c[o_col].to_numpy()).mean() > 0.5, "seed_key is ignored"


def test_hash_learner_same_cate_after_repartition(default_client):
    """Folds keyed by a row id: refitting on a repartitioned frame gives the same in-sample
    CATE (same folds, same training rows in the same order)."""
    client = default_client
    n = 900
    rng = np.random.default_rng(8)
    pdf = pd.DataFrame(
        {
            "row_id": np.arange(n),
            "x1": rng.normal(size=n),
            "w": rng.integers(0, 2, n),
        }
    )
    pdf["y"] = pdf["x1"] + pdf["w"] * (1 + pdf["x1"]) + rng.normal(0, 0.1, n)
    three = dd.from_pandas(pdf, npartitions=3)
    seven = three.repartition(npartitions=7)
    cates = []
    for ddf in (three, seven):
        learner = TLearner(
            False,
            2,
            LinearRegression,
            n_folds=3,
            random_state=1,
            fold_strategy="hash",
            fold_key="row_id",
            client=client,
        ).fit(ddf[["row_id", "x1"]], ddf["y"], ddf["w"])
        cate = learner.predict(ddf[["row_id", "x1"]], is_oos=False)
        cates.append(client.compute(cate).result())
    np.testing.assert_allclose(cates[0], cates[1], rtol=1e-10, atol=1e-12)


# --- "sklearn" -------------------------------------------------------------------------------


def _expected_sklearn(w, y, variants, n_folds, stratify, seed):
    expected = np.full(len(w), NOT_IN_SPLIT)
    rows = np.arange(len(w)) if variants is None else np.flatnonzero(np.isin(w, variants))
    if stratify is None:
        splits = KFold(n_folds, shuffle=True, random_state=seed).split(rows)
    else:
        target = (w if stratify == W_COL else y)[rows]
        splits = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(rows, target)
    for k, (_, test) in enumerate(splits):
        expected[rows[test]] = k
    return expected


def test_sklearn_folds_equal_kfold_on_row_subsets(client):
    w, y = _data(classification=True, seed=7)
    frame = _frame(w, y, SIZES)
    requests = {
        ("variant_outcome_model", 0): SplitRequest((0,), 3, None, "a"),
        ("variant_outcome_model", 1): SplitRequest((1,), 5, None, "a"),
        ("variant_outcome_model", 2): SplitRequest((2,), 4, Y_COL, "a"),
        ("propensity_model", 0): SplitRequest(None, 5, W_COL, "b"),
        ("treatment_model", 0): SplitRequest((0, 2), 2, None, "c"),
    }
    seed = 123
    asg, out = _folds(client, frame, requests, "sklearn", seed=seed, classification=True)
    assert len(asg.fold_columns) == len(requests)
    for owner, r in requests.items():
        column = asg.refs[owner].fold_col
        expected = _expected_sklearn(w, y, r.variants, r.n_folds, r.stratify, seed)
        np.testing.assert_array_equal(out[column].to_numpy(), expected, err_msg=str(owner))
        np.testing.assert_array_equal(asg.refs[owner].fold_ids(out), expected)
        _assert_fold_strata_match(asg, out, column, [W_COL, Y_COL])


def test_sklearn_learner_folds_equal_kfold(default_client):
    """A T-learner with fold_strategy='sklearn': variant k's folds are KFold over w == k."""
    client = default_client
    X, y, w, _ = _make(n=500)
    learner = TLearner(
        False,
        3,
        LinearRegression,
        n_folds=3,
        random_state=5,
        fold_strategy="sklearn",
        client=client,
    ).fit(X, y, w)
    folds = client.compute(learner._fit_context.fold_frame).result()
    for k, cfe in enumerate(learner._nuisance_models["variant_outcome_model"]):
        np.testing.assert_array_equal(
            cfe._split.fold_ids(folds), _expected_sklearn(w, y, (k,), 3, None, 5)
        )


def _make(n):
    from conftest import make_linear_data

    return make_linear_data(n=n, d=3, n_variants=3, seed=0)


def _fold_column_row_by_row(w, y, number, offsets, seed, seed_key, n_folds):
    """The partition strategy's definition, one Python object per row: each stratum's rows
    (in row order, strata by repr) get a permutation from the partition's generator,
    rotated by the stratum's offset."""
    strata = _strata(w, y)
    rng = np.random.default_rng([seed, _stable_int(seed_key), number])
    by_stratum = {}
    for i, s in enumerate(strata):
        by_stratum.setdefault(s, []).append(i)
    folds = np.empty(len(w), dtype=np.int16)
    for s in sorted(by_stratum, key=repr):
        rows = np.asarray(by_stratum[s])
        order = rng.permutation(len(rows))
        folds[rows] = (offsets.get(s, 0) + _rotation(seed, seed_key, s, n_folds) + order) % n_folds
    return folds


@pytest.mark.parametrize(
    ("w", "y"),
    [
        (np.random.default_rng(0).integers(0, 3, 5_000), None),
        (
            np.random.default_rng(1).integers(0, 4, 3_001),
            np.random.default_rng(2).integers(0, 2, 3_001),
        ),
        (np.array([0, 1, 1, 0, 0, 1]), np.array(["a", "b", "a", "c", "b", "a"])),
        (np.array([2, 2, 0, 0]), np.array([True, False, True, True])),
        (np.array([1]), None),
    ],
    ids=["regression", "classification", "string-classes", "bool-classes", "one-row"],
)
def test_partition_fold_column_matches_the_row_by_row_definition(w, y):
    """Also with one fold (every row in fold 0, no permutation drawn) and with the
    partition's strata worked out once for all its fold columns (_strata_rows)."""
    offsets = {(1,): 2, (1, 0): 1, (0, "a"): 3}
    strata = _strata_rows(w, y)
    for number, seed_key, n_folds in [(0, "sync", 5), (3, "propensity_model", 5), (1, "x", 1)]:
        expected = _fold_column_row_by_row(w, y, number, offsets, 7, seed_key, n_folds)
        got = _partition_fold_column(w, y, number, offsets, 7, seed_key, n_folds)
        np.testing.assert_array_equal(got, expected)
        shared = _partition_fold_column(w, y, number, offsets, 7, seed_key, n_folds, strata)
        np.testing.assert_array_equal(shared, expected)
    keys, codes = _strata_codes(w, y)
    assert _counts(keys, codes) == Counter(_strata(w, y))
