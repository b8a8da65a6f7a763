"""Saving and loading fitted learners (dask_meta.persistence): bitwise round trips, checksums,
trust, pickle only when trusted, version warnings, in-sample prediction after loading."""

from __future__ import annotations

import json
import os

import dask.dataframe as dd
import lightgbm
import numpy as np
import pandas as pd
import pytest
from conftest import make_linear_data
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression

import dask_meta
from dask_meta import DRLearner, RLearner, SLearner, TLearner, XLearner
from dask_meta.persistence import (
    MANIFEST,
    ChecksumError,
    UntrustedError,
    VersionWarning,
    manifest_checksum,
)

LGBM = {"n_estimators": 10, "verbose": -1, "min_child_samples": 10}


class TaggedRegressor(RegressorMixin, BaseEstimator):
    """A linear regression of a class outside dask-meta's allow-list (skops stores it)."""

    def fit(self, X, y):
        self.model_ = LinearRegression().fit(X, y)
        return self

    def predict(self, X):
        return np.asarray(self.model_.predict(X))


class ComplexRegressor(TaggedRegressor):
    """Keeps a complex number after fit: skops cannot store it, pickle can."""

    def fit(self, X, y):
        super().fit(X, y)
        self.phase_ = complex(1.0, 0.0)
        return self


def _type_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _learner(name, n_variants=3):
    common = {"n_folds": 2, "random_state": 0}
    if name == "S":
        return SLearner(False, n_variants, nuisance_model_factory=LGBMRegressor,
                        nuisance_model_params=LGBM, **common)  # fmt: skip
    if name == "T":
        return TLearner(False, n_variants, nuisance_model_factory=LGBMRegressor,
                        nuisance_model_params=LGBM, **common)  # fmt: skip
    models = {
        "nuisance_model_factory": LGBMRegressor,
        "nuisance_model_params": LGBM,
        "propensity_model_factory": LGBMClassifier,
        "propensity_model_params": LGBM,
        "treatment_model_factory": LGBMRegressor,
        "treatment_model_params": LGBM,
    }
    cls = {"X": XLearner, "R": RLearner, "DR": DRLearner}[name]
    return cls(False, n_variants, **models, **common)


@pytest.fixture(scope="module")
def data():
    """Training data (2 partitions) and new rows (3 partitions), as Dask DataFrames."""
    X, y, w, _ = make_linear_data(n=1_200, d=4, n_variants=3, seed=3)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(y=y, w=w)
    train = dd.from_pandas(frame, npartitions=2, sort=False)
    X_new, *_ = make_linear_data(n=600, d=4, n_variants=3, seed=4)
    new = dd.from_pandas(pd.DataFrame(X_new, columns=["a", "b", "c", "d"]), npartitions=3)
    return train, new


FEATURES = ["a", "b", "c", "d"]


def _fit(learner, train):
    return learner.fit(train[FEATURES], train["y"], train["w"])


@pytest.mark.parametrize("name", ["S", "T", "X", "R", "DR"])
def test_round_trip_predicts_bitwise(name, data, default_client, tmp_path):
    train, new = data
    learner = _fit(_learner(name), train)
    path = learner.save(tmp_path / "model")
    loaded = dask_meta.load(path)

    assert type(loaded) is type(learner)
    for X, is_oos in ((new[FEATURES], True), (train[FEATURES], False)):
        expected = learner.predict(X, is_oos=is_oos).compute()
        got = loaded.predict(X, is_oos=is_oos).compute()
        assert got.shape == (len(X), 2, 1)
        assert np.array_equal(got, expected)  # bit for bit
    # in-memory input gives numpy, also identical
    X_np = new[FEATURES].compute().to_numpy()
    X_pd = pd.DataFrame(X_np, columns=FEATURES)
    assert np.array_equal(loaded.predict(X_pd, is_oos=True), learner.predict(X_pd, is_oos=True))
    pd.testing.assert_frame_equal(loaded.fit_report_, learner.fit_report_)
    assert loaded.fit_report_.attrs == learner.fit_report_.attrs

    manifest = json.loads((tmp_path / "model" / MANIFEST).read_text())
    assert manifest["learner"]["class"].endswith(f":{type(learner).__name__}")
    assert manifest["fold_strategy"]["strategy"] == "partition"
    assert manifest["versions"]["lightgbm"] == lightgbm.__version__
    assert set(manifest["versions"]) >= {"python", "dask-meta", "lightgbm", "scikit-learn"}
    n_models = sum(1 for f in manifest["files"] if f.startswith("models/"))
    assert n_models == len(learner.fit_report_)  # one file per fitted base model
    assert all(f.endswith(".skops") for f in manifest["files"] if f.startswith("models/"))


def test_loaded_learner_evaluates_and_refits_treatment_like_the_original(
    data, default_client, tmp_path
):
    train, _ = data
    learner = _fit(_learner("DR"), train)
    loaded = dask_meta.load(learner.save(tmp_path / "model"))
    X, y, w = train[FEATURES], train["y"], train["w"]
    assert loaded.evaluate(X, y, w, is_oos=False) == learner.evaluate(X, y, w, is_oos=False)
    # the loaded nuisance models are reused on the same data: same folds, same treatment models
    learner.fit_all_treatment(X, y, w)
    loaded.fit_all_treatment(X, y, w)
    assert np.array_equal(
        loaded.predict(X, is_oos=False).compute(), learner.predict(X, is_oos=False).compute()
    )


def test_in_sample_after_load_still_checks_the_data(data, default_client, tmp_path):
    train, new = data
    loaded = dask_meta.load(_fit(_learner("T"), train).save(tmp_path / "model"))
    other = train[FEATURES].map_partitions(lambda p: p * 1.5)
    with pytest.raises(ValueError, match="fingerprint mismatch"):
        loaded.predict(other, is_oos=False).compute()
    with pytest.raises(ValueError, match="partitions"):
        loaded.predict(new[FEATURES], is_oos=False)


def test_saved_without_folds_predicts_out_of_sample_only(data, default_client, tmp_path):
    train, new = data
    learner = _fit(_learner("X"), train)
    loaded = dask_meta.load(learner.save(tmp_path / "model", folds=False))
    assert not (tmp_path / "model" / "folds").exists()
    assert np.array_equal(
        loaded.predict(new[FEATURES], is_oos=True).compute(),
        learner.predict(new[FEATURES], is_oos=True).compute(),
    )
    with pytest.raises(ValueError, match=r"saved without the fold assignment.*is_oos=True"):
        loaded.predict(train[FEATURES], is_oos=False)


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_files_are_refused(data, default_client, tmp_path):
    train, _ = data
    learner = _fit(_learner("T"), train)
    root = tmp_path / "model"
    learner.save(root)
    manifest_text = (root / MANIFEST).read_text()

    model_file = sorted((root / "models").iterdir())[0]
    original = model_file.read_bytes()
    _flip_byte(model_file)
    with pytest.raises(ChecksumError, match=rf"models/{model_file.name} changed"):
        dask_meta.load(root)
    model_file.write_bytes(original)

    fold_file = sorted((root / "folds" / "0").iterdir())[0]
    fold_bytes = fold_file.read_bytes()
    _flip_byte(fold_file)
    with pytest.raises(ChecksumError, match=r"folds/0/part.000000.parquet changed"):
        dask_meta.load(root)
    fold_file.write_bytes(fold_bytes)

    # an edit of the manifest itself (here: the learner's configuration)
    edited = manifest_text.replace('"n_variants": 3', '"n_variants": 4')
    assert edited != manifest_text
    (root / MANIFEST).write_text(edited)
    with pytest.raises(ChecksumError, match=r"manifest.json of .* changed after saving"):
        dask_meta.load(root)
    (root / MANIFEST).write_text(manifest_text)

    os.remove(model_file)
    with pytest.raises(ChecksumError, match="is missing"):
        dask_meta.load(root)
    model_file.write_bytes(original)
    assert dask_meta.load(root).n_variants == 3


def test_fold_file_changed_after_loading_fails_on_the_worker(data, default_client, tmp_path):
    train, _ = data
    learner = _fit(_learner("T"), train)
    root = tmp_path / "model"
    loaded = dask_meta.load(learner.save(root))
    fold_file = sorted((root / "folds" / "0").iterdir())[1]
    _flip_byte(fold_file)
    with pytest.raises(ChecksumError, match="changed after the learner was saved"):
        loaded.predict(train[FEATURES], is_oos=False).compute()


def test_other_package_versions_warn(data, default_client, tmp_path):
    train, new = data
    learner = _fit(_learner("T"), train)
    root = tmp_path / "model"
    learner.save(root)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["versions"]["lightgbm"] = "0.0.1"
    manifest["versions"]["skops"] = "0.0.2"
    manifest["checksum"] = manifest_checksum(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest))
    with pytest.warns(VersionWarning, match=r"lightgbm 0\.0\.1 \(now [\d.]+\), skops 0\.0\.2"):
        loaded = dask_meta.load(root)
    assert np.array_equal(
        loaded.predict(new[FEATURES], is_oos=True).compute(),
        learner.predict(new[FEATURES], is_oos=True).compute(),
    )


def test_types_outside_the_allow_list_need_trust(data, default_client, tmp_path):
    train, new = data
    learner = TLearner(False, 3, nuisance_model_factory=TaggedRegressor, n_folds=2, random_state=0)
    _fit(learner, train)
    root = learner.save(tmp_path / "model")
    name = _type_name(TaggedRegressor)
    # the estimator class named in the manifest, and the models' type in the skops files
    with pytest.raises(UntrustedError, match=rf"class {name}, outside the packages"):
        dask_meta.load(root)
    with pytest.raises(UntrustedError, match=rf"pass load\(\.\.\., trusted=\['{name}'\]\)"):
        dask_meta.load(root)
    loaded = dask_meta.load(root, trusted=[name])
    assert np.array_equal(
        loaded.predict(new[FEATURES], is_oos=True).compute(),
        learner.predict(new[FEATURES], is_oos=True).compute(),
    )
    assert dask_meta.load(root, trusted=True).n_variants == 3

    # a manifest rewritten to name a trusted class (checksum fixed) does not get the models'
    # own type past skops' check
    manifest_path = tmp_path / "model" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    text = json.dumps(manifest).replace(
        f"{TaggedRegressor.__module__}:TaggedRegressor", "sklearn.linear_model:LinearRegression"
    )
    manifest = json.loads(text)
    manifest["checksum"] = manifest_checksum(manifest)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(UntrustedError, match=rf"holds types .* not trust by default: \['{name}'\]"):
        dask_meta.load(root)


def test_pickle_only_when_trusted(data, default_client, tmp_path):
    train, new = data
    learner = TLearner(False, 3, nuisance_model_factory=ComplexRegressor, n_folds=2, random_state=0)
    _fit(learner, train)
    root = tmp_path / "model"
    with pytest.raises(TypeError, match=r"cannot be stored with skops.*trusted=True"):
        learner.save(root)
    assert not root.exists()  # nothing written

    learner.save(root, trusted=True)
    manifest = json.loads((root / MANIFEST).read_text())
    formats = {e["format"] for f, e in manifest["files"].items() if f.startswith("models/")}
    assert formats == {"pickle"}
    name = _type_name(ComplexRegressor)
    with pytest.raises(UntrustedError, match=rf"class {name}, outside"):
        dask_meta.load(root)
    # trusting the type is not enough for pickle: only trusted=True loads pickled files
    with pytest.raises(UntrustedError, match=r"saved with pickle.*load\(\.\.\., trusted=True\)"):
        dask_meta.load(root, trusted=[name])
    loaded = dask_meta.load(root, trusted=True)
    assert np.array_equal(
        loaded.predict(new[FEATURES], is_oos=True).compute(),
        learner.predict(new[FEATURES], is_oos=True).compute(),
    )


def test_a_failed_save_leaves_the_older_save_as_it_was(data, default_client, tmp_path, monkeypatch):
    """save writes into a hidden sibling: a failure part way (after the models are written,
    while the fold files are) leaves the directory it would replace intact and no sibling
    behind. (Before, the old save was modified in place, then removed.)"""
    from dask_meta import persistence

    train, _ = data
    learner = _fit(_learner("T"), train)
    root = tmp_path / "model"
    learner.save(root)
    before = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    def fail(*args, **kwargs):
        raise RuntimeError("the fold files could not be written")

    monkeypatch.setattr(persistence, "_save_folds", fail)
    with pytest.raises(RuntimeError, match="could not be written"):
        learner.save(root, overwrite=True)
    after = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    X = train[FEATURES]
    loaded = dask_meta.load(root)
    assert np.array_equal(
        loaded.predict(X, is_oos=False).compute(), learner.predict(X, is_oos=False).compute()
    )


def test_save_refuses_unfitted_learners_and_existing_directories(data, default_client, tmp_path):
    train, _ = data
    with pytest.raises(ValueError, match="not fitted yet"):
        _learner("T").save(tmp_path / "unfitted")
    learner = _fit(_learner("T"), train)
    root = tmp_path / "model"
    learner.save(root)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        learner.save(root)
    (root / "stale.txt").write_text("left from before")
    learner.save(root, overwrite=True)
    assert not (root / "stale.txt").exists()
    # a loaded learner saved over its own directory (its fold files are read while saving)
    loaded = dask_meta.load(root)
    loaded.save(root, overwrite=True)
    again = dask_meta.load(root)
    X = train[FEATURES]
    expected = learner.predict(X, is_oos=False).compute()
    assert np.array_equal(again.predict(X, is_oos=False).compute(), expected)
    with pytest.raises(FileNotFoundError, match=r"no manifest\.json"):
        dask_meta.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dask_meta.load(tmp_path / "nothing")
