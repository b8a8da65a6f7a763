"""write_predictions (dask_meta/io.py): the files hold exactly ``learner.predict``, in X's
row order, one file per partition of X, written from the workers."""

from __future__ import annotations

import os

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import make_linear_data
from dask.sizeof import sizeof
from distributed import Client
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import TLearner, XLearner, write_predictions
from dask_meta.datasets import feature_names, make_experiment


def _write_parquet(client, frame: dd.DataFrame, path) -> dd.DataFrame:
    """Write a (small) generated experiment with a row id to parquet and read it back."""
    pdf = client.compute(frame).result().reset_index(drop=True)
    pdf["row_id"] = np.arange(len(pdf), dtype=np.int64)
    with_id = dd.from_pandas(pdf, npartitions=frame.npartitions, sort=False)
    client.compute(with_id.to_parquet(path, write_index=False, compute=False)).result()
    return dd.read_parquet(path)


def _files(path) -> list[str]:
    return sorted(f for f in os.listdir(path) if f.endswith(".parquet"))


@pytest.fixture(scope="module")
def regression(client, tmp_path_factory):
    """A T-learner fitted on 3 parquet files of a 3-variant experiment."""
    path = tmp_path_factory.mktemp("regression") / "data"
    ddf = _write_parquet(
        client, make_experiment(3_000, 4, 3, rows_per_partition=1_000, seed=11), path
    )
    features = feature_names(ddf)
    learner = TLearner(False, 3, LinearRegression, n_folds=2, random_state=0, client=client)
    learner.fit(ddf[features], ddf["y"], ddf["w"])
    return learner, ddf


@pytest.fixture(scope="module")
def classification(client, tmp_path_factory):
    """An X-learner of a binary outcome and a binary treatment, on 2 parquet files."""
    path = tmp_path_factory.mktemp("classification") / "data"
    frame = make_experiment(2_000, 4, 2, is_classification=True, rows_per_partition=1_000, seed=12)
    ddf = _write_parquet(client, frame, path)
    features = feature_names(ddf)
    learner = XLearner(
        True,
        2,
        LogisticRegression,
        treatment_model_factory=LinearRegression,
        propensity_model_factory=LogisticRegression,
        n_folds=2,
        random_state=0,
        client=client,
    )
    learner.fit(ddf[features], ddf["y"], ddf["w"])
    return learner, ddf


@pytest.mark.parametrize("is_oos", [False, True])
@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_files_hold_the_prediction_in_row_order(request, client, tmp_path, kind, is_oos):
    learner, ddf = request.getfixturevalue(kind)
    features = feature_names(ddf)
    out = tmp_path / "cate"
    assert write_predictions(learner, ddf, out, is_oos=is_oos, keep="row_id") == str(out)
    expected = client.compute(learner.predict(ddf[features], is_oos=is_oos)).result()
    n, n_effects, n_outputs = expected.shape
    if kind == "regression":
        columns = ["cate_1", "cate_2"]
        assert (n_effects, n_outputs) == (2, 1)
    else:
        columns = ["cate_1_0", "cate_1_1"]
        assert (n_effects, n_outputs) == (1, 2)
    assert len(_files(out)) == ddf.npartitions
    back = pd.read_parquet(out)
    assert list(back.columns) == ["row_id", *columns]
    np.testing.assert_array_equal(back["row_id"].to_numpy(), np.arange(n))
    np.testing.assert_array_equal(back[columns].to_numpy(), expected.reshape(n, -1))


def test_oos_method_and_many_partitions(client, regression, tmp_path):
    """12 partitions: file names sort in X's order, so pandas reads the rows in order."""
    learner, _ = regression
    X = make_experiment(1_200, 4, 3, rows_per_partition=100, seed=13)
    features = feature_names(X)
    out = tmp_path / "cate"
    write_predictions(learner, X, out, is_oos=True, oos_method="mean", keep=["w", "y"])
    assert len(_files(out)) == 12
    back = pd.read_parquet(out)
    expected = client.compute(learner.predict(X[features], is_oos=True, oos_method="mean"))
    truth = client.compute(X[["w", "y"]]).result()
    np.testing.assert_array_equal(back[["w", "y"]].to_numpy(), truth.to_numpy())
    np.testing.assert_array_equal(back[["cate_1", "cate_2"]].to_numpy(), expected.result()[:, :, 0])
    overall = client.compute(learner.predict(X[features], is_oos=True)).result()
    assert not np.array_equal(back[["cate_1", "cate_2"]].to_numpy(), overall[:, :, 0])


def test_pandas_input(client, regression, tmp_path):
    learner, ddf = regression
    X = client.compute(ddf[feature_names(ddf)]).result()
    out = tmp_path / "cate"
    write_predictions(learner, X, out, is_oos=True, name="tau")
    back = pd.read_parquet(out)
    assert list(back.columns) == ["tau_1", "tau_2"]
    np.testing.assert_array_equal(
        back.to_numpy(), learner.predict(X, is_oos=True).reshape(len(X), -1)
    )


def test_numpy_and_dask_array_input_in_sample(client, tmp_path):
    X, y, w, _ = make_linear_data(n=600, d=3, n_variants=2, seed=3)
    learner = TLearner(False, 2, LinearRegression, n_folds=2, random_state=0, client=client)
    learner.fit(X, y, w)
    write_predictions(learner, X, tmp_path / "numpy", is_oos=False)
    expected = learner.predict(X, is_oos=False)[:, :, 0]
    np.testing.assert_array_equal(pd.read_parquet(tmp_path / "numpy").to_numpy(), expected)

    chunked = da.from_array(X, chunks=(200, 3))
    fitted = TLearner(False, 2, LinearRegression, n_folds=2, random_state=0, client=client)
    fitted.fit(chunked, da.from_array(y, chunks=200), da.from_array(w, chunks=200))
    write_predictions(fitted, chunked, tmp_path / "dask", is_oos=False)
    assert len(_files(tmp_path / "dask")) == 3
    in_sample = client.compute(fitted.predict(chunked, is_oos=False)).result()[:, :, 0]
    np.testing.assert_array_equal(pd.read_parquet(tmp_path / "dask").to_numpy(), in_sample)


def test_only_the_write_status_comes_back(client, regression, tmp_path, monkeypatch):
    learner, _ = regression
    X = make_experiment(40_000, 4, 3, rows_per_partition=10_000, seed=14)
    sizes: list[int] = []
    original = Client._gather

    async def metered(self, futures, *args, **kwargs):
        result = await original(self, futures, *args, **kwargs)
        sizes.append(sizeof(result))
        return result

    monkeypatch.setattr(Client, "_gather", metered)
    out = tmp_path / "cate"
    write_predictions(learner, X, out, is_oos=True, keep="y")
    # the meter saw the write (its status, None), and nothing else came back
    assert sizes and sum(sizes) < 1_000, sizes
    monkeypatch.undo()
    assert len(pd.read_parquet(out)) == 40_000


def test_to_parquet_arguments_and_existing_directories(regression, tmp_path):
    learner, _ = regression
    X = make_experiment(1_200, 4, 3, rows_per_partition=100, seed=15)
    out = tmp_path / "cate"
    write_predictions(learner, X, out, is_oos=True, compression="zstd")
    first = pq.ParquetFile(out / _files(out)[0]).metadata.row_group(0).column(0)
    assert first.compression == "ZSTD"
    # an existing output is refused before any work, and overwrite=True replaces it whole:
    # no rows of the older, longer output stay readable beside the new ones
    fewer = make_experiment(300, 4, 3, rows_per_partition=100, seed=15)
    with pytest.raises(FileExistsError, match="exists and is not empty; pass overwrite=True"):
        write_predictions(learner, fewer, out, is_oos=True)
    assert len(_files(out)) == 12
    write_predictions(learner, fewer, out, is_oos=True, overwrite=True)
    assert len(_files(out)) == 3
    assert len(pd.read_parquet(out)) == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cate"]


@pytest.mark.parametrize("existing", [False, True])
def test_a_write_failing_part_way_leaves_the_target_as_it_was(regression, tmp_path, existing):
    """Partition 2 of X fails after others are written: no part files are left behind, and
    an existing output (being overwritten) is untouched."""
    from _models import fail_on_partition

    learner, _ = regression
    X = make_experiment(600, 4, 3, rows_per_partition=100, seed=15)
    out = tmp_path / "cate"
    if existing:
        write_predictions(learner, X.partitions[:2], out, is_oos=True)
        before = {p.name: p.read_bytes() for p in out.iterdir()}
    failing = X.map_partitions(fail_on_partition, meta=X._meta)
    with pytest.raises(RuntimeError, match="partition 2 could not be read"):
        write_predictions(learner, failing, out, is_oos=True, overwrite=existing)
    if existing:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cate"]
    else:
        assert list(tmp_path.iterdir()) == []


def test_errors(regression, tmp_path):
    learner, ddf = regression
    out = tmp_path / "cate"
    unfitted = TLearner(False, 3, LinearRegression)
    with pytest.raises(ValueError, match="not fitted"):
        write_predictions(unfitted, ddf, out, is_oos=True)
    with pytest.raises(TypeError, match="is_oos"):
        write_predictions(learner, ddf, out, is_oos="no")
    with pytest.raises(ValueError, match="oos_method"):
        write_predictions(learner, ddf, out, is_oos=True, oos_method="mode")
    with pytest.raises(ValueError, match=r"keep names columns \['nope'\]"):
        write_predictions(learner, ddf, out, is_oos=True, keep=["row_id", "nope"])
    with pytest.raises(ValueError, match=r"keep names columns \['cate_1'\].*prediction"):
        write_predictions(learner, ddf, out, is_oos=True, keep=["cate_1"])
    with pytest.raises(ValueError, match="more than once"):
        write_predictions(learner, ddf, out, is_oos=True, keep=["y", "y"])
    pdf = pd.DataFrame(np.zeros((5, 4)), columns=feature_names(ddf))
    with pytest.raises(TypeError, match=r"keep=.*Dask DataFrame"):
        write_predictions(learner, pdf, out, is_oos=True, keep="row_id")
    with pytest.raises(TypeError, match="compute"):
        write_predictions(learner, ddf, out, is_oos=True, compute=False)
    with pytest.raises(ValueError, match="name"):
        write_predictions(learner, ddf, out, is_oos=True, name="")
    with pytest.raises(ValueError, match="fitted on"):
        write_predictions(learner, ddf[["x0", "x1"]], out, is_oos=True)
    assert not out.exists()
