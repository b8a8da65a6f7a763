"""The peers' side of ``bootstrap_peers.py``: EconML's and CausalML's bootstrap intervals.

Runs in ``.venv-peers`` (``accuracy.py`` creates it), started by ``bootstrap_peers.py``
through ``accuracy.run_peer``; the estimators and base models are ``_peers_runner``'s, so
every package fits the same ones. Two commands:

``fit --jobs FILE``
    Reads a JSON list of jobs (``data``: the training parquet, ``test``: the held-out one,
    ``package``, ``learner``, ``folds``, ``seed``, ``bootstraps``, ``bootstrap_size``,
    ``alpha``, EconML's ``n_jobs``), fits each with its package's bootstrap and prints one
    JSON object per job (:func:`summary`).

    * EconML: ``est.fit(y, w, X=X, inference=BootstrapInference(n_bootstrap_samples=B,
      n_jobs=n_jobs))``, then per treatment variant ``k``
      ``effect_inference(X, T0=0, T1=k).population_summary(alpha).conf_int_mean()``, which is
      what ``ate_interval(X, T0=0, T1=k, alpha=alpha)`` returns (timed); held out:
      ``effect_interval(X_test, T0=0, T1=k, alpha=alpha)``.
    * CausalML: the propensities for the DR-learner (:func:`_peers_runner.propensities`),
      ``fit``, then ``fit_bootstrap_ensemble(X, w, y, p, n_bootstraps=B,
      bootstrap_size=...)``, then the ATE interval as ``estimate_ate(bootstrap_ci=True)``
      computes it (percentiles of the replicates' mean CATE over the training rows), from
      those replicates (timed); held out: the percentiles of the replicates' CATE, as
      ``predict(return_ci=True)`` and ``fit_predict(return_ci=True)`` compute them.

``versions``
    The packages' versions, as JSON (``_peers_runner``'s command).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

import _peers_runner as peers
import numpy as np
from _metalearners_runner import stdout_to_stderr

#: CausalML's default ``bootstrap_size`` (rows drawn per replicate)
CAUSALML_DEFAULT_SIZE = 10_000


def read(job: dict) -> dict[str, np.ndarray]:
    """The training and held-out rows of a job: covariates, treatment, outcome, truth."""
    import pandas as pd

    out = {}
    for name, path in (("train", job["data"]), ("test", job["test"])):
        frame = pd.read_parquet(path)
        features = [c for c in frame.columns if c.startswith("x") and c[1:].isdigit()]
        out[f"X_{name}"] = frame[features].to_numpy(dtype=float)
        out[f"cate_{name}"] = frame[peers.cate_columns(frame.columns)].to_numpy(dtype=float)
        if name == "train":
            out["w"] = frame["w"].to_numpy(dtype=int)
            out["y"] = frame["y"].to_numpy(dtype=float)
    return out


def _stack(per_variant: Any) -> np.ndarray:
    """``(n, variants)`` from one ``(n,)`` or ``(n, 1)`` array per treatment variant."""
    return np.stack([np.ravel(a) for a in per_variant], axis=-1)


def _groups(w: np.ndarray) -> list[int]:
    return sorted(set(np.unique(w).tolist()) - {0})


def fit_econml(job: dict, d: dict[str, np.ndarray]) -> dict[str, Any]:
    from econml.inference import BootstrapInference

    X, w, y, alpha = d["X_train"], d["w"], d["y"], job["alpha"]
    groups = _groups(w)
    est = peers.econml_estimator(job["learner"], "lgbm100", job["seed"], job["folds"], w)
    # BootstrapEstimator draws its rows from numpy's global random state
    np.random.seed(job["seed"])  # noqa: NPY002
    inference = BootstrapInference(n_bootstrap_samples=job["bootstraps"], n_jobs=job["n_jobs"])
    start = time.perf_counter()
    est.fit(y, w, X=X, inference=inference)
    fit_s = time.perf_counter() - start
    # ate_interval(X) is effect_inference(X).population_summary(alpha).conf_int_mean(); called
    # in two steps so that the same replicate effects also give the replicate ATEs below
    effects = [est.effect_inference(X, T0=0, T1=g) for g in groups]
    lower, upper = zip(*(e.population_summary(alpha=alpha).conf_int_mean() for e in effects))
    total_s = time.perf_counter() - start
    # the replicates' ATEs: their mean effect over X (pred_dist holds 2 * point - replicate
    # under the default pivot type: the same spread)
    ate_replicates = _stack(
        [np.reshape(e.pred_dist, (len(e.pred_dist), -1)).mean(axis=1) for e in effects]
    )

    start = time.perf_counter()
    test_lower, test_upper = zip(
        *(est.effect_interval(d["X_test"], T0=0, T1=g, alpha=alpha) for g in groups)
    )
    cate_interval_s = time.perf_counter() - start
    point = _stack([e.point_estimate for e in effects])
    return {
        "fit_s": fit_s,
        "total_s": total_s,
        "cate_interval_s": cate_interval_s,
        "point": point,
        "point_test": _stack([est.effect(d["X_test"], T0=0, T1=g) for g in groups]),
        "ate": point.mean(axis=0),
        "ate_lower": np.ravel(lower),
        "ate_upper": np.ravel(upper),
        "ate_replicates": ate_replicates,
        "lower": _stack(test_lower),
        "upper": _stack(test_upper),
        # BootstrapInference's default bootstrap_type; conf_int_mean is a normal interval
        "interval": "CATE pivot; ATE normal with the conservative stderr_mean",
    }


def fit_causalml(job: dict, d: dict[str, np.ndarray]) -> dict[str, Any]:
    X, w, y, alpha = d["X_train"], d["w"], d["y"], job["alpha"]
    _, _, clf, clf_params = peers.base_models("lgbm100")
    est = peers.causalml_estimator(job["learner"], "lgbm100", job["seed"], job["folds"])
    percentiles = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    start = time.perf_counter()
    p = None
    if job["learner"] in ("X", "R", "DR"):
        # the same propensity model as the other packages (its cost counted); every replicate
        # reuses these scores at its drawn rows: CausalML does not refit propensities
        p, _ = peers.propensities(clf, clf_params, X, w, X[:0], job["seed"])
    fit_kwargs: dict[str, Any] = {"p": p}
    if job["learner"] == "DR":
        fit_kwargs["seed"] = job["seed"]
    est.fit(X, w, y, **fit_kwargs)
    est.fit_bootstrap_ensemble(
        X,
        w,
        y,
        p=p,
        n_bootstraps=job["bootstraps"],
        bootstrap_size=job["bootstrap_size"],
        random_state=job["seed"],
    )
    fit_s = time.perf_counter() - start
    point = np.asarray(est.predict(X)).reshape(len(X), -1)
    ate_replicates = np.stack(
        [np.asarray(m.predict(X)).reshape(len(X), -1).mean(axis=0) for m in est.bootstrap_models_]
    )
    ate_lower, ate_upper = np.percentile(ate_replicates, percentiles, axis=0)
    total_s = time.perf_counter() - start

    start = time.perf_counter()
    X_test = d["X_test"]
    replicates = np.stack(
        [np.asarray(m.predict(X_test)).reshape(len(X_test), -1) for m in est.bootstrap_models_],
        axis=-1,
    )
    lower, upper = np.percentile(replicates, percentiles, axis=-1)
    cate_interval_s = time.perf_counter() - start
    return {
        "fit_s": fit_s,
        "total_s": total_s,
        "cate_interval_s": cate_interval_s,
        "point": point,
        "point_test": np.asarray(est.predict(X_test)).reshape(len(X_test), -1),
        "ate": point.mean(axis=0),
        "ate_lower": ate_lower,
        "ate_upper": ate_upper,
        "ate_replicates": ate_replicates,
        "lower": lower,
        "upper": upper,
        "interval": "CATE and ATE percentile",
    }


FITTERS = {"econml": fit_econml, "causalml": fit_causalml}


def _rmse(hat: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((hat - truth) ** 2)))


def summary(job: dict, out: dict[str, Any], cate_test: np.ndarray) -> dict[str, Any]:
    """The job's record from a fit's ``out``, which holds the in-sample scores ``pehe_in`` and
    ``true_ate`` (the training rows' mean true effect): times, the ATE (point, interval, the
    replicates' spread and percentile interval, whether the interval holds ``true_ate``),
    the held-out CATE intervals' mean width and coverage of ``cate_test``, and the point
    CATE's sqrt(PEHE) in-sample and held out. Arrays are per treatment variant."""
    true_ate = np.asarray(out["true_ate"])
    reps = np.asarray(out["ate_replicates"])
    lo, hi = np.quantile(reps, [job["alpha"] / 2, 1 - job["alpha"] / 2], axis=0)
    lower, upper = np.asarray(out["ate_lower"]), np.asarray(out["ate_upper"])
    return {
        **{k: v for k, v in job.items() if k not in ("data", "test")},
        "fit_s": out["fit_s"],
        "total_s": out["total_s"],
        "cate_interval_s": out["cate_interval_s"],
        "interval": out["interval"],
        "ate": np.ravel(out["ate"]).tolist(),
        "ate_interval": np.stack([lower, upper], axis=-1).tolist(),
        "ate_width": float(np.mean(upper - lower)),
        "ate_width_replicates": float(np.mean(hi - lo)),
        "ate_stderr": np.std(reps, axis=0, ddof=1).tolist(),
        "true_ate": true_ate.tolist(),
        "ate_covered": bool(np.all((lower <= true_ate) & (true_ate <= upper))),
        "cate_width": float(np.mean(out["upper"] - out["lower"])),
        "cate_coverage": float(np.mean((out["lower"] <= cate_test) & (cate_test <= out["upper"]))),
        "pehe_in": out["pehe_in"],
        "pehe_out": _rmse(out["point_test"], cate_test),
    }


def fit(args: argparse.Namespace) -> None:
    from sklearn.exceptions import ConvergenceWarning

    for category in (ConvergenceWarning, FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    with open(args.jobs) as f:
        jobs = json.load(f)
    cache: dict[str, dict[str, np.ndarray]] = {}
    for job in jobs:
        if job["data"] not in cache:
            cache = {job["data"]: read(job)}  # jobs come grouped by data file
        d = cache[job["data"]]
        with stdout_to_stderr():
            out = FITTERS[job["package"].split(",")[0]](job, d)
        out["pehe_in"] = _rmse(out.pop("point"), d["cate_train"])
        out["true_ate"] = d["cate_train"].mean(axis=0)
        record = summary(job, out, d["cate_test"])
        peers.log(
            f"{job['package']} {job['learner']}: fit {out['fit_s']:.1f} s, with the ATE "
            f"interval {out['total_s']:.1f} s, ATE width {record['ate_width']:.4f}, "
            f"CATE width {record['cate_width']:.4f}"
        )
        print(json.dumps(record), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fi = commands.add_parser("fit", help="fit the jobs of a JSON file; one JSON line each")
    fi.add_argument("--jobs", required=True)
    commands.add_parser("versions", help="the packages' versions, as JSON")
    args = parser.parse_args()
    if args.command == "fit":
        fit(args)
    else:
        peers.versions()


if __name__ == "__main__":
    main()
