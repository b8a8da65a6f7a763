"""Generated experiments (dask_meta/datasets.py): laziness, determinism, the stated model
(treatment shares, effects, classification, categoricals), parquet round trips and the
argument checks. Small data, computed on the session cluster."""

from __future__ import annotations

import time

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from dask_meta.datasets import cate_names, feature_names, make_experiment, propensity_names


def _compute(client, frame) -> pd.DataFrame:
    return client.compute(frame).result()


def _parts(client, frame) -> list[pd.DataFrame]:
    return client.gather(client.compute(list(frame.to_delayed())))


def _difference_in_means(data: pd.DataFrame, k: int) -> tuple[float, float]:
    """Mean of y in variant k minus variant 0, and its standard error."""
    yk, y0 = data.loc[data["w"] == k, "y"], data.loc[data["w"] == 0, "y"]
    diff = yk.mean() - y0.mean()
    se = np.sqrt(yk.var() / len(yk) + y0.var() / len(y0))
    return float(diff), float(se)


# --- laziness and determinism -------------------------------------------------------------


def test_hundred_million_rows_cost_nothing_until_computed(client):
    start = time.perf_counter()
    ddf = make_experiment(100_000_000)
    assert time.perf_counter() - start < 0.5
    assert ddf.npartitions == 400
    assert list(ddf.columns) == [
        *[f"x{i}" for i in range(20)],
        "w",
        "y",
        "cate_1",
        "cate_2",
        "propensity_0",
        "propensity_1",
        "propensity_2",
    ]
    assert _compute(client, ddf.partitions[399].shape[0]) == 250_000


def test_same_seed_same_data_and_partitions_independent_of_n_rows(client):
    kwargs = {"n_features": 3, "rows_per_partition": 100, "n_categoricals": 2}
    a = _compute(client, make_experiment(250, seed=5, **kwargs))
    b = _compute(client, make_experiment(250, seed=5, **kwargs))
    pd.testing.assert_frame_equal(a, b)
    # partition 1 of a longer experiment is the same rows
    longer = _compute(client, make_experiment(10_000, seed=5, **kwargs).partitions[1])
    pd.testing.assert_frame_equal(longer, a.iloc[100:200])
    # partitions differ from each other, seeds from each other
    first, second = a.iloc[:100].reset_index(drop=True), a.iloc[100:200].reset_index(drop=True)
    assert not np.array_equal(first["x0"], second["x0"])
    other = _compute(client, make_experiment(250, seed=6, **kwargs))
    assert not np.array_equal(a["x0"], other["x0"])
    assert [len(p) for p in _parts(client, make_experiment(250, seed=5, **kwargs))] == [
        100,
        100,
        50,
    ]


def test_new_options_leave_the_numerical_streams_untouched(client):
    """Categoricals and a binary outcome draw from their own streams: on a randomised
    experiment the numerical covariates and the treatment stay the same."""
    kwargs = {"n_features": 4, "observational": False, "rows_per_partition": 500, "seed": 2}
    base = _compute(client, make_experiment(1_000, **kwargs))
    with_cats = _compute(client, make_experiment(1_000, n_categoricals=3, **kwargs))
    binary = _compute(client, make_experiment(1_000, is_classification=True, **kwargs))
    columns = [f"x{i}" for i in range(4)] + ["w"]
    pd.testing.assert_frame_equal(with_cats[columns], base[columns])
    pd.testing.assert_frame_equal(
        binary[columns + propensity_names(base)], base[columns + propensity_names(base)]
    )


# --- the model ------------------------------------------------------------------------------


def test_randomised_treatment_shares_and_effects(client):
    k = 3
    ddf = make_experiment(200_000, 5, k, observational=False, seed=1)
    data = _compute(client, ddf[["w", "y", *cate_names(ddf), *propensity_names(ddf)]])
    shares = data["w"].value_counts(normalize=True).sort_index()
    np.testing.assert_allclose(shares.to_numpy(), 1 / k, atol=0.01)
    np.testing.assert_allclose(data[propensity_names(ddf)].to_numpy(), 1 / k)
    for variant in range(1, k):
        diff, se = _difference_in_means(data, variant)
        truth = data[f"cate_{variant}"].mean()
        assert abs(diff - truth) < 3 * se, (variant, diff, truth, se)
        assert data[f"cate_{variant}"].std() > 0.5  # "linear": the effects vary


def test_observational_propensities(client):
    ddf = make_experiment(20_000, 4, 4, seed=3, n_categoricals=2, rows_per_partition=5_000)
    data = _compute(client, ddf)
    p = data[propensity_names(ddf)].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert (p > 0).all() and p.std(axis=0).min() > 0.01  # they depend on the covariates
    # the treatment follows them: mean propensity of each variant against its share
    shares = data["w"].value_counts(normalize=True).sort_index().to_numpy()
    np.testing.assert_allclose(shares, p.mean(axis=0), atol=0.015)


@pytest.mark.parametrize("effect", ["none", "constant"])
def test_constant_and_no_effect(client, effect):
    ddf = make_experiment(5_000, 3, 4, effect=effect, n_categoricals=2, rows_per_partition=1_000)
    cate = _compute(client, ddf[cate_names(ddf)])
    assert cate_names(ddf) == ["cate_1", "cate_2", "cate_3"]
    if effect == "none":
        assert (cate.to_numpy() == 0).all()
    else:
        assert (cate.nunique() == 1).all()
        assert (cate.iloc[0].abs() > 0).all()


@pytest.mark.parametrize(("proportion", "n_variants"), [(0.2, 2), (0.5, 3), (0.8, 3)])
def test_classification(client, proportion, n_variants):
    ddf = make_experiment(
        200_000,
        5,
        n_variants,
        observational=False,
        is_classification=True,
        positive_proportion=proportion,
        n_categoricals=1,
        seed=4,
    )
    assert ddf["y"].dtype == np.int64
    data = _compute(client, ddf[["w", "y", *cate_names(ddf)]])
    assert set(np.unique(data["y"])) == {0, 1}
    assert abs(data["y"].mean() - proportion) < 0.03
    cate = data[cate_names(ddf)].to_numpy()
    assert (cate >= -1).all() and (cate <= 1).all() and cate.std() > 0.01
    for variant in range(1, n_variants):
        diff, se = _difference_in_means(data, variant)
        truth = data[f"cate_{variant}"].mean()
        assert abs(diff - truth) < 3 * se, (variant, diff, truth, se)


def test_categoricals_have_the_full_categories_in_every_partition(client):
    ddf = make_experiment(
        200, 1, 2, n_categoricals=2, n_categories=[10, 3], rows_per_partition=5, seed=7
    )
    assert feature_names(ddf) == ["x0", "c0", "c1"]
    assert list(ddf.columns[:3]) == ["x0", "c0", "c1"]
    assert all(isinstance(ddf[c].dtype, pd.CategoricalDtype) for c in ("c0", "c1"))
    parts = _parts(client, ddf)
    assert len(parts) == 40
    for column, k in (("c0", 10), ("c1", 3)):
        expected = pd.CategoricalDtype(np.arange(k, dtype=np.int64))
        assert ddf[column].dtype == expected
        assert all(part[column].dtype == expected for part in parts)
        # 5 rows cannot show 10 categories: the categories are not those seen
        assert any(part[column].nunique() < k for part in parts)
    values = pd.concat(parts)["c0"].astype(np.int64)
    # Binomial(9, 0.5): centred on 4.5, every value in 0..9
    assert values.between(0, 9).all() and abs(values.mean() - 4.5) < 0.5


def test_categoricals_enter_outcome_effects_and_propensities(client):
    ddf = make_experiment(20_000, 1, 2, n_categoricals=1, n_categories=4, seed=8)
    data = _compute(client, ddf)
    by_category = data.groupby("c0", observed=True)[["y", "cate_1", "propensity_1"]].mean()
    assert len(by_category) == 4
    assert (by_category.max() - by_category.min() > 0.05).all(), by_category


def test_default_number_of_categories_is_drawn_from_2_to_10():
    ddf = make_experiment(10, 1, n_categoricals=30, seed=0)
    counts = [len(ddf[f"c{j}"].dtype.categories) for j in range(30)]
    assert min(counts) >= 2 and max(counts) <= 10 and len(set(counts)) > 3


def test_parquet_round_trip(client, tmp_path):
    ddf = make_experiment(3_000, 3, n_categoricals=2, rows_per_partition=1_000, seed=9)
    client.compute(ddf.to_parquet(tmp_path / "data", compute=False)).result()
    back = dd.read_parquet(tmp_path / "data")
    assert back.npartitions == ddf.npartitions == 3
    expected, actual = _compute(client, ddf), _compute(client, back)
    assert list(actual.columns) == list(expected.columns)
    for column in expected.columns:
        left, right = expected[column], actual[column]
        if isinstance(left.dtype, pd.CategoricalDtype):
            left, right = left.astype(np.int64), right.astype(np.int64)
        np.testing.assert_array_equal(right.to_numpy(), left.to_numpy(), err_msg=column)


# --- argument checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"n_rows": 0}, ValueError, "n_rows"),
        ({"n_rows": 10.0}, TypeError, "n_rows"),
        ({"n_rows": True}, TypeError, "n_rows"),
        ({"rows_per_partition": 0}, ValueError, "rows_per_partition"),
        ({"rows_per_partition": "5"}, TypeError, "rows_per_partition"),
        ({"n_variants": 1}, ValueError, "n_variants"),
        ({"n_variants": 2.0}, TypeError, "n_variants"),
        ({"n_features": -1}, ValueError, "n_features"),
        ({"n_features": 0}, ValueError, "n_features"),
        ({"n_features": 1.5}, TypeError, "n_features"),
        ({"effect": "quadratic"}, ValueError, "effect"),
        ({"effect": None}, ValueError, "effect"),
        ({"sigma_y": -0.1}, ValueError, "sigma_y"),
        ({"sigma_y": float("nan")}, ValueError, "sigma_y"),
        ({"sigma_y": "1"}, TypeError, "sigma_y"),
        ({"positive_proportion": 0.0}, ValueError, "positive_proportion"),
        ({"positive_proportion": 1.0}, ValueError, "positive_proportion"),
        ({"positive_proportion": None}, TypeError, "positive_proportion"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.0}, TypeError, "seed"),
        ({"observational": 1}, TypeError, "observational"),
        ({"is_classification": "yes"}, TypeError, "is_classification"),
        ({"n_categoricals": -1}, ValueError, "n_categoricals"),
        ({"n_categoricals": 1.0}, TypeError, "n_categoricals"),
        ({"n_categoricals": 2, "n_categories": 1}, ValueError, "n_categories"),
        ({"n_categoricals": 2, "n_categories": [3]}, ValueError, "n_categories"),
        ({"n_categoricals": 2, "n_categories": [3, 1]}, ValueError, r"n_categories\[1\]"),
        ({"n_categoricals": 2, "n_categories": [3, 2.5]}, TypeError, r"n_categories\[1\]"),
        ({"n_categoricals": 2, "n_categories": "3"}, TypeError, "n_categories"),
        ({"n_categories": 3}, ValueError, "n_categories"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, argument):
    args = {"n_rows": 100} | kwargs
    with pytest.raises(error, match=argument):
        make_experiment(**args)


def test_categoricals_alone_are_enough_covariates(client):
    ddf = make_experiment(100, 0, n_categoricals=2, rows_per_partition=50)
    assert feature_names(ddf) == ["c0", "c1"]
    data = _compute(client, ddf)
    assert len(data) == 100 and np.isfinite(data["y"]).all()
