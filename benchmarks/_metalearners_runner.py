"""metalearners' side of ``tlearner_vs_metalearners.py``; runs in ``.venv-parity``.

metalearners 0.13.0 needs scikit-learn < 1.8, so it lives in its own virtualenv and this
script is started by the benchmark as a subprocess. It reads the benchmark's parquet into
pandas, fits metalearners' ``TLearner`` with LightGBM under each parallelism configuration,
and prints one JSON document on stdout (progress goes to stderr):

    .venv-parity/bin/python benchmarks/_metalearners_runner.py --parquet DIR [--quick]

Only ``fit`` is timed; the in-sample CATE is scored against the true ``cate_k`` columns.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import platform
import re
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from importlib.metadata import version

LEVELS = (None, -1)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def log(message: str) -> None:
    print(f"[metalearners] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send fd 1 to stderr while working, so only the JSON document reaches stdout.

    LightGBM's C++ side and joblib's workers write to the file descriptor, not to
    ``sys.stdout``, so redirecting the Python object alone would not do.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def configurations(cores: int, quick: bool) -> list[dict]:
    """LightGBM threads x cross-fitting jobs x base-learner jobs; the default one first."""
    default = {"lgbm_n_jobs": cores, "n_jobs_cross_fitting": None, "n_jobs_base_learners": None}
    if quick:
        return [default]
    grid = [
        {"lgbm_n_jobs": t, "n_jobs_cross_fitting": cf, "n_jobs_base_learners": bl}
        for t in dict.fromkeys((1, cores))
        for cf in LEVELS
        for bl in LEVELS
    ]
    return [default] + [c for c in grid if c != default]


def label(config: dict) -> str:
    return (
        f"lgbm n_jobs={config['lgbm_n_jobs']}, "
        f"cross_fitting={config['n_jobs_cross_fitting']}, "
        f"base_learners={config['n_jobs_base_learners']}"
    )


def warm_up_loky() -> None:
    """Start joblib's process pool and import the libraries in it before any timing.

    dask-meta's side is timed on a running cluster whose worker has imported LightGBM, so
    metalearners is timed with a running pool too: pool start-up is a one-off cost of the
    process, not of ``fit``.
    """
    from joblib import Parallel, delayed

    Parallel(n_jobs=-1)(
        delayed(importlib.import_module)(name)
        for name in ("lightgbm", "metalearners.cross_fit_estimator") * available_cores()
    )


class Capped(BaseException):
    """A configuration ran past ``--cap-seconds``: it cannot be the fastest.

    A ``BaseException``, like ``KeyboardInterrupt``: scikit-learn's ``cross_validate``, which
    metalearners fits its folds with, turns an ``Exception`` into a failed fit and goes on.
    """


@contextlib.contextmanager
def time_cap(seconds: float | None) -> Iterator[None]:
    """Raise :class:`Capped` in the main thread after ``seconds`` (no cap for ``None``).

    LightGBM's scikit-learn API boosts in a Python loop and joblib waits for its processes in
    Python, so the alarm's handler runs within a boosting round of the deadline; joblib then
    stops its pool (it is restarted and warmed up before the next configuration).
    """
    if seconds is None:
        yield
        return

    def expire(signum, frame):
        raise Capped

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(args: argparse.Namespace) -> dict:
    import lightgbm
    import metalearners
    import numpy as np
    import pandas as pd

    # metalearners 0.13.0 calls is_classifier/is_regressor on classes in every constructor,
    # which scikit-learn 1.7 deprecates: noise for a benchmark
    warnings.filterwarnings("ignore", message="passing a class to", category=FutureWarning)
    cores = args.cores or available_cores()
    start = time.perf_counter()
    df = pd.read_parquet(args.parquet)
    load_s = time.perf_counter() - start
    features = [c for c in df.columns if re.fullmatch(r"x\d+", c)]
    cates = sorted(
        (c for c in df.columns if re.fullmatch(r"cate_\d+", c)), key=lambda c: int(c[5:])
    )
    n_variants = len(cates) + 1
    X, y, w = df[features], df["y"], df["w"]
    truth = df[cates].to_numpy()
    log(f"read {len(df):,} rows x {len(features)} features in {load_s:.1f} s")
    warm_up_loky()

    results = []
    for number, config in enumerate(configurations(cores, args.quick)):
        if args.configs is not None and number not in args.configs:
            continue
        # the default configuration (first) is always timed to the end; the others are
        # stopped at the cap, since past it they are slower than what they are compared with
        cap = args.cap_seconds if number > 0 and args.cap_seconds > 0 else None
        # scikit-learn 1.7.2 builds that warning's message with a stray print() call
        with contextlib.redirect_stdout(io.StringIO()):
            params = {"n_estimators": args.trees, "verbose": -1, "n_jobs": config["lgbm_n_jobs"]}
            extra = {}
            if args.learner in ("X", "R", "DR"):
                extra = {
                    "treatment_model_factory": lightgbm.LGBMRegressor,
                    "treatment_model_params": params,
                    "propensity_model_factory": lightgbm.LGBMClassifier,
                    "propensity_model_params": params,
                }
            learner = getattr(metalearners, f"{args.learner}Learner")(
                is_classification=False,
                n_variants=n_variants,
                nuisance_model_factory=lightgbm.LGBMRegressor,
                nuisance_model_params=params,
                n_folds=args.folds,
                random_state=args.seed,
                **extra,
            )
        log(f"{label(config)}: fitting" + (f" (cap {cap:.1f} s)" if cap else ""))
        start = time.perf_counter()
        try:
            with time_cap(cap):
                learner.fit(
                    X,
                    y,
                    w,
                    n_jobs_cross_fitting=config["n_jobs_cross_fitting"],
                    n_jobs_base_learners=config["n_jobs_base_learners"],
                )
        except Capped:
            stopped_s = time.perf_counter() - start
            results.append({**config, "label": label(config), "fit_s": None, "capped_s": cap})
            log(f"{label(config)}: stopped after {stopped_s:.1f} s (cap {cap:.1f} s)")
            warm_up_loky()  # joblib stopped its pool: start it again outside the timing
            continue
        fit_s = time.perf_counter() - start
        cate = learner.predict(X, is_oos=False)[:, :, 0]
        rmse = np.sqrt(np.mean((cate - truth) ** 2, axis=0))
        results.append({**config, "label": label(config), "fit_s": fit_s, "rmse": rmse.tolist()})
        log(f"{label(config)}: fit {fit_s:.2f} s, RMSE {np.round(rmse, 4).tolist()}")

    finished = [i for i, r in enumerate(results) if r["fit_s"] is not None]
    best = min(finished, key=lambda i: results[i]["fit_s"]) if finished else None
    return {
        "configs": results,
        "best": best,
        "rows": len(df),
        "features": len(features),
        "n_variants": n_variants,
        "cores": cores,
        "cap_seconds": args.cap_seconds or None,
        "load_s": load_s,
        "python": platform.python_version(),
        "versions": {
            name: version(name)
            for name in ("metalearners", "scikit-learn", "lightgbm", "pandas", "numpy", "joblib")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parquet", required=True, help="directory written by the benchmark")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cores", type=int, default=0, help="'all cores' (default: machine's)")
    parser.add_argument("--quick", action="store_true", help="only the default configuration")
    parser.add_argument("--learner", default="T", choices=("S", "T", "X", "R", "DR"))
    parser.add_argument(
        "--cap-seconds",
        type=float,
        default=0.0,
        help="stop every configuration but the default one after this many seconds (0: none)",
    )
    parser.add_argument(
        "--configs",
        type=int,
        nargs="+",
        default=None,
        help="run only these configurations (their numbers in the grid, the default one 0); "
        "with --cap-seconds, every one but 0 is capped",
    )
    args = parser.parse_args()
    with stdout_to_stderr():
        result = run(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
