"""The peers' side of ``accuracy.py``: EconML, CausalML and metalearners, each in its own venv.

EconML, CausalML and causallib run in ``.venv-peers`` and metalearners 0.13.0 in
``.venv-parity`` (their pins conflict with dask-meta's current scikit-learn), so
``accuracy.py`` starts this script as a subprocess. Two commands:

``export``
    Writes one replication of a public benchmark data set, loaded offline from what the PyPI
    packages ship, to parquet: ``x0..x{d-1}``, ``w``, ``y``, the true ``cate`` and
    ``is_test`` (the held-out split, drawn with the replication's seed).

    * ``ihdp_A`` / ``ihdp_B``: Hill (2011)'s response surfaces A (constant effect) and B
      (heterogeneous), from ``econml.data.dgps`` (747 children, 25 covariates plus the
      intercept EconML adds, dropped here); the seed draws the surface's coefficients and
      noise, and the split.
    * ``acic16_1`` ... ``acic16_10``: the ten ACIC 2016 simulation settings that causallib
      ships (``causallib.datasets.load_acic16``: 4,802 rows, 58 covariates, categorical
      ones one-hot encoded); the true CATE is ``mu1 - mu0``; the seed draws the split.

``fit``
    Reads a JSON list of jobs (data file, package, learner, base model, seed), fits each on
    the training rows, predicts the CATE of the training rows (in-sample) and of the
    held-out rows, and prints one JSON object per job: sqrt(PEHE) in-sample and held-out,
    the absolute error of the in-sample ATE, and the fit time.

The base models are defined here, once, and ``accuracy.py`` imports them for dask-meta's side
so that every package fits the same ones.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from _metalearners_runner import stdout_to_stderr  # the same fd juggling, one copy

#: LightGBM for every model kind; deterministic so that a rerun prints the same numbers
LGBM_PARAMS = {
    "n_estimators": 100,
    "verbose": -1,
    "deterministic": True,
    "force_col_wise": True,
    # one thread: the data sets are small (hundreds to thousands of rows), where more threads
    # only add overhead, and a busy machine then slows every fit by 10-100x
    "n_jobs": 1,
}
#: linear base models: least squares for outcomes and effects, logistic for propensities
LOGISTIC_PARAMS = {"max_iter": 5000}
#: causalml takes propensity scores from the caller; they are clipped to this range
PROPENSITY_CLIP = 1e-3


def base_models(base: str) -> tuple[type, dict, type, dict]:
    """``(regressor, its params, classifier, its params)`` of the base model family."""
    if base == "lgbm":
        from lightgbm import LGBMClassifier, LGBMRegressor

        return LGBMRegressor, dict(LGBM_PARAMS), LGBMClassifier, dict(LGBM_PARAMS)
    if base == "lgbm100":  # the performance benchmarks' setting (LightGBM's defaults)
        from lightgbm import LGBMClassifier, LGBMRegressor

        params = {"n_estimators": 100, "verbose": -1}
        return LGBMRegressor, dict(params), LGBMClassifier, dict(params)
    if base == "linear":
        from sklearn.linear_model import LinearRegression, LogisticRegression

        return LinearRegression, {}, LogisticRegression, dict(LOGISTIC_PARAMS)
    raise ValueError(f"unknown base model family {base!r}: expected lgbm, lgbm100 or linear")


def model_kwargs(
    learner: str, regressor: type, params: dict, classifier: type, classifier_params: dict
) -> dict[str, Any]:
    """metalearners-style model arguments: the regressor for the outcome models and, for X, R
    and DR, for the treatment models, and the classifier for the propensity model."""
    kwargs: dict[str, Any] = {"nuisance_model_factory": regressor, "nuisance_model_params": params}
    if learner in ("X", "R", "DR"):
        kwargs |= {
            "treatment_model_factory": regressor,
            "treatment_model_params": params,
            "propensity_model_factory": classifier,
            "propensity_model_params": classifier_params,
        }
    return kwargs


def log(message: str) -> None:
    print(f"[peers] {message}", file=sys.stderr, flush=True)


# --- export -------------------------------------------------------------------------------


def _split(n: int, seed: int, test_size: float) -> np.ndarray:
    rng = np.random.default_rng([seed, 9])
    is_test = np.zeros(n, dtype=bool)
    is_test[rng.permutation(n)[: round(test_size * n)]] = True
    return is_test


def load(dataset: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``X, w, y, cate`` of one replication of a shipped data set."""
    if dataset in ("ihdp_A", "ihdp_B"):
        from econml.data import dgps

        surface = dgps.ihdp_surface_A if dataset == "ihdp_A" else dgps.ihdp_surface_B
        y, w, X, cate = surface(random_state=seed)
        X = np.asarray(X, dtype=float)[:, 1:]  # EconML prepends a column of ones
        return X, np.asarray(w, dtype=int), np.asarray(y, dtype=float), np.asarray(cate, float)
    if dataset.startswith("acic16_"):
        from causallib.datasets import load_acic16

        bunch = load_acic16(instance=int(dataset.split("_")[1]))
        X = bunch.X.to_numpy(dtype=float)
        cate = (bunch.po["1"] - bunch.po["0"]).to_numpy(dtype=float)
        return X, bunch.a.to_numpy(dtype=int), bunch.y.to_numpy(dtype=float), cate
    raise ValueError(f"unknown data set {dataset!r}")


def export(args: argparse.Namespace) -> None:
    """Write the replications of a JSON list of ``{"dataset", "seed", "out"}`` to parquet."""
    import pandas as pd

    with open(args.jobs) as f:
        jobs = json.load(f)
    for job in jobs:
        X, w, y, cate = load(job["dataset"], job["seed"])
        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
        frame["w"] = w
        frame["y"] = y
        frame["cate"] = cate
        frame["is_test"] = _split(len(frame), job["seed"], args.test_size)
        frame.to_parquet(job["out"], index=False)
        log(f"{job['dataset']} seed {job['seed']}: {len(frame)} rows x {X.shape[1]} covariates")


# --- fit ----------------------------------------------------------------------------------


def propensities(
    classifier: type, params: dict, X: np.ndarray, w: np.ndarray, X_test: np.ndarray, seed: int
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """CausalML's propensity inputs from the shared propensity model, per treatment group.

    For group ``g``: P(w = g | w in {0, g}, x), as CausalML estimates it itself; out of fold
    (5 folds) for the training rows of the pair, from the model fitted on the pair for the
    training rows of other groups and for the held-out rows.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    clip = (PROPENSITY_CLIP, 1 - PROPENSITY_CLIP)
    train, test = {}, {}
    for group in sorted(set(np.unique(w)) - {0}):
        pair = np.isin(w, (0, group))
        label = (w[pair] == group).astype(int)
        folds = StratifiedKFold(5, shuffle=True, random_state=seed)
        model = classifier(**params).fit(X[pair], label)
        p = model.predict_proba(X)[:, 1]
        p[pair] = cross_val_predict(
            classifier(**params), X[pair], label, cv=folds, method="predict_proba"
        )[:, 1]
        train[int(group)] = np.clip(p, *clip)
        test[int(group)] = (
            np.clip(model.predict_proba(X_test)[:, 1], *clip) if len(X_test) else np.zeros(0)
        )
    return train, test


def _accepts(method: Any, name: str) -> bool:
    return name in inspect.signature(method).parameters


def _columns(effects: list[np.ndarray]) -> np.ndarray:
    return np.stack([np.ravel(e) for e in effects], axis=1)


def econml_estimator(learner: str, base: str, seed: int, folds: int | None, w: np.ndarray):
    """EconML's unfitted ``learner`` with the base models of ``base`` (``w``: the treatment,
    whose number of variants decides whether the R-learner is available)."""
    reg, reg_params, clf, clf_params = base_models(base)
    cv = {} if folds is None else {"cv": folds}
    if learner == "S":
        from econml.metalearners import SLearner

        est = SLearner(overall_model=reg(**reg_params))
    elif learner == "T":
        from econml.metalearners import TLearner

        est = TLearner(models=reg(**reg_params))
    elif learner == "X":
        from econml.metalearners import XLearner

        est = XLearner(
            models=reg(**reg_params),
            propensity_model=clf(**clf_params),
            cate_models=reg(**reg_params),
        )
    elif learner == "R":  # EconML's R-learner with a free final model
        from econml.dml import NonParamDML

        if len(np.unique(w)) > 2:
            raise NotAvailable("EconML's NonParamDML takes one binary treatment")
        est = NonParamDML(
            model_y=reg(**reg_params),
            model_t=clf(**clf_params),
            model_final=reg(**reg_params),
            discrete_treatment=True,
            random_state=seed,
            **cv,
        )
    elif learner == "DR":
        from econml.dr import DRLearner

        est = DRLearner(
            model_propensity=clf(**clf_params),
            model_regression=reg(**reg_params),
            model_final=reg(**reg_params),
            random_state=seed,
            **cv,
        )
    else:
        raise ValueError(learner)
    return est


class Fitted(NamedTuple):
    """One package's fit: its wall time, its CATE of the training rows (in-sample) and of the
    held-out rows, and the wall time of the in-sample prediction."""

    fit_s: float
    hat_train: np.ndarray
    hat_test: np.ndarray
    predict_s: float


def fit_econml(learner: str, base: str, seed: int, folds: int | None, X, w, y, X_test):
    est = econml_estimator(learner, base, seed, folds, w)
    start = time.perf_counter()
    est.fit(y, w, X=X)
    fit_s = time.perf_counter() - start
    groups = sorted(set(np.unique(w)) - {0})

    def effects(rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.zeros((0, len(groups)))
        return _columns([est.effect(rows, T0=0, T1=g) for g in groups])

    start = time.perf_counter()
    in_sample = effects(X)
    predict_s = time.perf_counter() - start
    return Fitted(fit_s, in_sample, effects(X_test), predict_s)


def causalml_estimator(learner: str, base: str, seed: int, folds: int | None):
    """CausalML's unfitted ``learner`` with the regressor of ``base``."""
    from causalml.inference import meta

    reg, reg_params, _, _ = base_models(base)
    cls = {
        "S": meta.BaseSRegressor,
        "T": meta.BaseTRegressor,
        "X": meta.BaseXRegressor,
        "R": meta.BaseRRegressor,
        "DR": meta.BaseDRRegressor,
    }[learner]
    kwargs: dict[str, Any] = {"learner": reg(**reg_params)}
    if learner == "R":
        if "random_state" in inspect.signature(cls).parameters:
            kwargs["random_state"] = seed
        if folds is not None:
            kwargs["n_fold"] = folds
    est = cls(**kwargs)
    if hasattr(est, "cv_n_jobs"):
        # cross_val_predict in one process. Its default, -1, runs a LightGBM with all cores in
        # a process per core, which oversubscribes the cores (R at 20k rows: 213.9 s). The
        # regressor's constructor does not take the argument; BaseRLearner reads the attribute.
        est.cv_n_jobs = 1
    return est


def fit_causalml(learner: str, base: str, seed: int, folds: int | None, X, w, y, X_test):
    _, _, clf, clf_params = base_models(base)
    est = causalml_estimator(learner, base, seed, folds)
    start = time.perf_counter()
    fit_kwargs: dict[str, Any] = {}
    p_train = p_test = None
    if learner in ("X", "R", "DR"):
        # the same propensity model as the other packages, instead of CausalML's default
        # elastic net; it is part of the fit's cost
        p_train, p_test = propensities(clf, clf_params, X, w, X_test, seed)
        fit_kwargs["p"] = p_train
    if learner == "DR" and _accepts(est.fit, "seed"):
        fit_kwargs["seed"] = seed
    est.fit(X, w, y, **fit_kwargs)
    fit_s = time.perf_counter() - start

    def predict(rows: np.ndarray, p: dict | None) -> np.ndarray:
        if not len(rows):
            return np.zeros((0, len(np.unique(w)) - 1))
        predict_kwargs: dict[str, Any] = {}
        if p is not None and _accepts(est.predict, "p"):
            predict_kwargs["p"] = p
        if _accepts(est.predict, "verbose"):
            predict_kwargs["verbose"] = False
        out = np.asarray(est.predict(rows, **predict_kwargs))
        return out.reshape(len(rows), -1)

    start = time.perf_counter()
    in_sample = predict(X, p_train)
    predict_s = time.perf_counter() - start
    return Fitted(fit_s, in_sample, predict(X_test, p_test), predict_s)


def fit_metalearners(learner: str, base: str, seed: int, folds: int | None, X, w, y, X_test):
    import metalearners

    extra = model_kwargs(learner, *base_models(base))
    if folds is not None:
        extra["n_folds"] = folds
    est = getattr(metalearners, f"{learner}Learner")(
        is_classification=False,
        n_variants=len(np.unique(w)),
        random_state=seed,
        **extra,
    )
    start = time.perf_counter()
    est.fit(X, y, w)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    in_sample = est.predict(X, is_oos=False)[:, :, 0]
    predict_s = time.perf_counter() - start
    held_out = est.predict(X_test, is_oos=True)[:, :, 0] if len(X_test) else in_sample[:0]
    return Fitted(fit_s, in_sample, held_out, predict_s)


class NotAvailable(Exception):
    """The package has no such learner for this data (reported, not a failure)."""


FITTERS = {"econml": fit_econml, "causalml": fit_causalml, "metalearners": fit_metalearners}


def _rmse(hat: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((hat - truth) ** 2))) if len(truth) else float("nan")


def scores(
    cate_train: np.ndarray, hat_train: np.ndarray, cate_test: np.ndarray, hat_test: np.ndarray
) -> dict[str, Any]:
    """sqrt(PEHE) in-sample and held-out (over all variants; per variant in ``rmse_in``), and
    the in-sample ATE's absolute error (the mean over variants)."""
    cate_train, hat_train = np.atleast_2d(cate_train.T).T, np.atleast_2d(hat_train.T).T
    cate_test, hat_test = np.atleast_2d(cate_test.T).T, np.atleast_2d(hat_test.T).T
    return {
        "pehe_in": _rmse(hat_train, cate_train),
        "pehe_out": _rmse(hat_test, cate_test),
        "rmse_in": [_rmse(hat_train[:, k], cate_train[:, k]) for k in range(cate_train.shape[1])],
        "ate_error": float(np.mean(np.abs(hat_train.mean(axis=0) - cate_train.mean(axis=0)))),
    }


def cate_columns(columns: Any) -> list[str]:
    """``cate`` (one treatment) or ``cate_1..cate_{K-1}``, in variant order."""
    if "cate" in columns:
        return ["cate"]
    found = [c for c in columns if c.startswith("cate_") and c[5:].isdigit()]
    return sorted(found, key=lambda c: int(c[5:]))


def read(path: str) -> dict[str, np.ndarray]:
    import pandas as pd

    frame = pd.read_parquet(path)
    features = [c for c in frame.columns if c.startswith("x") and c[1:].isdigit()]
    test = (
        frame["is_test"].to_numpy(dtype=bool)
        if "is_test" in frame.columns
        else np.zeros(len(frame), dtype=bool)
    )
    X = frame[features].to_numpy(dtype=float)
    cate = frame[cate_columns(frame.columns)].to_numpy(dtype=float)
    return {
        "X": X[~test],
        "X_test": X[test],
        "w": frame["w"].to_numpy(dtype=int)[~test],
        "y": frame["y"].to_numpy(dtype=float)[~test],
        "cate": cate[~test],
        "cate_test": cate[test],
    }


def fit(args: argparse.Namespace) -> None:
    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    with open(args.jobs) as f:
        jobs = json.load(f)
    cache: dict[str, dict[str, np.ndarray]] = {}
    for job in jobs:
        if job["data"] not in cache:
            cache = {job["data"]: read(job["data"])}  # jobs come grouped by data file
            log(f"{job['package']}: {Path(job['data']).stem}")
        d = cache[job["data"]]
        try:
            with stdout_to_stderr():
                fitted = FITTERS[job["package"]](
                    job["learner"],
                    job["base"],
                    job["seed"],
                    job.get("folds"),
                    d["X"],
                    d["w"],
                    d["y"],
                    d["X_test"],
                )
        except NotAvailable as exc:
            print(json.dumps({**job, "not_available": str(exc)}), flush=True)
            continue
        result = {
            **job,
            "fit_s": fitted.fit_s,
            "predict_s": fitted.predict_s,
            **scores(d["cate"], fitted.hat_train, d["cate_test"], fitted.hat_test),
        }
        log(
            f"{job['package']} {job['learner']} {job['base']}: fit {fitted.fit_s:.2f} s, "
            f"in-sample predict {fitted.predict_s:.2f} s, "
            f"sqrt(PEHE) {result['pehe_in']:.4f}"
        )
        print(json.dumps(result), flush=True)


def versions() -> None:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("econml", "causalml", "causallib", "metalearners", "scikit-learn", "lightgbm"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    print(json.dumps(found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ex = commands.add_parser(
        "export", help="write replications of data sets to parquet (a JSON list of jobs)"
    )
    ex.add_argument("--jobs", required=True)
    ex.add_argument("--test-size", type=float, default=0.2)
    fi = commands.add_parser("fit", help="fit the jobs of a JSON file; one JSON line each")
    fi.add_argument("--jobs", required=True)
    commands.add_parser("versions", help="the packages' versions, as JSON")
    args = parser.parse_args()
    if args.command == "export":
        export(args)
    elif args.command == "fit":
        fit(args)
    else:
        versions()


if __name__ == "__main__":
    main()
