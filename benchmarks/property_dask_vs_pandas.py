"""Property-based comparison: Dask input against the same data in pandas, on random inputs.

    ./dev.sh bench property_dask_vs_pandas                    # 2,000 examples (about an hour)
    .venv/bin/python benchmarks/property_dask_vs_pandas.py --examples 50   # a quick look

Hypothesis draws an experiment and a way to hold it, then fits the same learner twice on a
LocalCluster of 1 worker x 2 threads: once on the pandas frame, once on a Dask frame (or
Dask array) of the same rows. The property: **equal CATE** (in sample and out of sample,
to 1e-6) **or the same error on both** (type and message). What it draws:

* rows (12 to 400) and 1 to 5 features, each column float64, float32, int64, bool, nullable
  ``Int64``/``Float64`` (with missing values in some examples), or ``category`` (numbers or
  text as categories); 2 or 3 variants; a regression or a binary classification;
* the learner (S, T, X, R, DR) with linear base models (``LinearRegression``,
  ``LogisticRegression``), 2 or 3 folds, ``fold_strategy="sklearn"`` (folds from the global
  row numbers, the same however the rows are partitioned, so the two fits must agree);
* the Dask layout: one partition, a few, hundreds of tiny ones (up to one row each), some
  empty, known or unknown divisions; a Dask DataFrame, or a Dask Array when every feature
  is a float.

Each example ends in one outcome: ``equal`` (both fitted, same CATE), ``same error`` (the
error's type and first line, tallied by the message's start), or a ``mismatch`` (one
fitted and the other raised, different errors, or different CATE), which the run prints
in full. Results: ``benchmarks/results/property_dask_vs_pandas.json`` (the tally, the
mismatches and the run's settings), appended to ``property_dask_vs_pandas.runs.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import re
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _cluster import local_client  # noqa: E402

RESULTS = HERE / "results" / "property_dask_vs_pandas.json"
RUNS = HERE / "results" / "property_dask_vs_pandas.runs.json"
DTYPES = ("float64", "float32", "int64", "bool", "Int64", "Float64", "category-int", "category-str")
LEARNERS = ("S", "T", "X", "R", "DR")
LAYOUTS = ("one", "few", "tiny", "with-empty", "unknown-divisions", "array")
TOLERANCE = 1e-6


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="hypothesis examples")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis' random seed")
    parser.add_argument("--results", type=Path, default=RESULTS)
    return parser.parse_args(argv)


# --- one example ---------------------------------------------------------------------------


def make_frame(draw: Any, st: Any) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """A random experiment: features of random dtypes, w, y; and how it was drawn."""
    n = draw(st.integers(12, 400), label="rows")
    n_features = draw(st.integers(1, 5), label="features")
    n_variants = draw(st.integers(2, 3), label="variants")
    classification = draw(st.booleans(), label="classification")
    seed = draw(st.integers(0, 2**31 - 1), label="seed")
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    dtypes = [draw(st.sampled_from(DTYPES), label=f"dtype {i}") for i in range(n_features)]
    with_missing = draw(st.integers(0, 9), label="missing values") == 0
    base = rng.normal(size=n)
    for i, dtype in enumerate(dtypes):
        values = base + rng.normal(size=n)
        name = f"x{i}"
        if dtype in ("float64", "float32"):
            columns[name] = values.astype(dtype)
        elif dtype == "int64":
            columns[name] = np.round(values * 3).astype("int64")
        elif dtype == "bool":
            columns[name] = values > 0
        elif dtype in ("Int64", "Float64"):
            series = pd.Series(np.round(values * 3) if dtype == "Int64" else values).astype(dtype)
            if with_missing:
                series[rng.random(n) < 0.05] = pd.NA
            columns[name] = series
        elif dtype == "category-int":
            columns[name] = pd.Categorical(np.digitize(values, [-1, 0, 1]))
        else:
            columns[name] = pd.Categorical(np.array(["a", "b", "c"])[np.digitize(values, [-1, 1])])
    df = pd.DataFrame(columns)
    w = np.arange(n) % n_variants  # every variant present, enough rows for the folds
    rng.shuffle(w)
    y = base + w * (base > 0) + rng.normal(size=n)
    if classification:
        y = (y > np.median(y)).astype(int)
    df["w"] = w
    df["y"] = y
    features = list(columns)
    info = {
        "rows": n,
        "dtypes": dtypes,
        "variants": n_variants,
        "classification": classification,
        "missing": with_missing,
    }
    return df, features, info


def dask_layout(
    draw: Any, st: Any, df: pd.DataFrame, features: list[str], floats_only: bool
) -> tuple[Any, Any, Any, str]:
    """X, y and w of ``df`` as Dask collections, in a random layout."""
    import dask
    import dask.array as da
    import dask.dataframe as dd

    layouts = [layout for layout in LAYOUTS if layout != "array" or floats_only]
    layout = draw(st.sampled_from(layouts), label="layout")
    n = len(df)
    if layout == "one":
        ddf = dd.from_pandas(df, npartitions=1)
    elif layout == "few":
        ddf = dd.from_pandas(df, npartitions=draw(st.integers(2, 8), label="partitions"))
    elif layout == "tiny":
        ddf = dd.from_pandas(df, chunksize=draw(st.integers(1, 3), label="rows per partition"))
    else:
        cuts = sorted(draw(st.lists(st.integers(0, n), min_size=1, max_size=12), label="cuts"))
        if layout == "with-empty":
            cuts = [*cuts, cuts[0]]  # at least one empty partition
        bounds = [0, *sorted(cuts), n]
        pieces = [df.iloc[a:b] for a, b in itertools.pairwise(bounds)]
        if layout == "array":
            x = da.concatenate(
                [da.from_array(p[features].to_numpy(dtype=float)) for p in pieces], axis=0
            )
            y = da.concatenate([da.from_array(p["y"].to_numpy()) for p in pieces])
            w = da.concatenate([da.from_array(p["w"].to_numpy()) for p in pieces])
            return x, y, w, layout
        ddf = dd.from_delayed([dask.delayed(p) for p in pieces], meta=df.iloc[:0])
        if layout == "with-empty":
            ddf = dd.from_pandas(df, npartitions=1) if ddf.npartitions < 2 else ddf
    return ddf[features], ddf["y"], ddf["w"], layout


def learner_of(draw: Any, st: Any, info: dict[str, Any], client: Any) -> tuple[Any, str]:
    """A function making a fresh learner (the same for both inputs), and its name."""
    from sklearn.linear_model import LinearRegression, LogisticRegression

    import dask_meta

    name = draw(st.sampled_from(LEARNERS), label="learner")
    if info["classification"] and name == "R":
        name = "DR"  # the R-learner is for regression outcomes only
    outcome = LogisticRegression if info["classification"] else LinearRegression
    kwargs: dict[str, Any] = {
        "n_folds": draw(st.integers(2, 3), label="folds"),
        "fold_strategy": "sklearn",
        "random_state": 0,
        "client": client,
    }
    if name in ("X", "R", "DR"):
        kwargs |= {
            "treatment_model_factory": LinearRegression,
            "propensity_model_factory": LogisticRegression,
        }
    learner_class = getattr(dask_meta, f"{name}Learner")

    def make() -> Any:
        return learner_class(info["classification"], info["variants"], outcome, **kwargs)

    return make, name


def attempt(learner: Any, X: Any, y: Any, w: Any) -> tuple[str, Any]:
    """("ok", (in-sample CATE, held-out CATE)) or ("error", (type, first line))."""
    try:
        fitted = learner.fit(X, y, w)
        in_sample = np.asarray(fitted.predict(X, is_oos=False))
        held_out = np.asarray(fitted.predict(X, is_oos=True))
        return "ok", (in_sample, held_out)
    except Exception as exc:  # every error is compared between the two inputs
        first = str(exc).splitlines()[0] if str(exc) else ""
        return "error", (type(exc).__name__, first, traceback.format_exc(limit=3))


def message_kind(message: str) -> str:
    """An error message without its numbers and quoted values: what "the same error" means
    (sklearn names the first bad value it meets, which depends on the row order)."""
    return re.sub(r"\d+(\.\d+)?", "N", re.sub(r"'[^']*'", "'...'", message))[:90]


# --- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis import strategies as st

    tally: Counter[str] = Counter()
    by_learner: Counter[str] = Counter()
    by_layout: Counter[str] = Counter()
    mismatches: list[dict[str, Any]] = []
    #: the first example of each error both inputs raised, with its traceback
    error_examples: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()

    def summary() -> dict[str, Any]:
        return {
            "examples": sum(tally.values()),
            "seconds": round(time.perf_counter() - started, 1),
            "outcomes": dict(tally.most_common()),
            "learners": dict(by_learner),
            "layouts": dict(by_layout),
            "mismatches": mismatches,
            "error_examples": error_examples,
        }

    with local_client(1, 2) as client:

        @seed(args.seed)
        @settings(
            max_examples=args.examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.data())
        def example(data: Any) -> None:
            df, features, info = make_frame(data.draw, st)
            floats_only = all(d in ("float64", "float32") for d in info["dtypes"])
            Xd, yd, wd, layout = dask_layout(data.draw, st, df, features, floats_only)
            make, name = learner_of(data.draw, st, info, client)
            X = df[features].to_numpy(dtype=float) if layout == "array" else df[features]
            pandas_result = attempt(make(), X, df["y"], df["w"])
            dask_result = attempt(make(), Xd, yd, wd)
            by_learner[name] += 1
            by_layout[layout] += 1
            outcome = compare(pandas_result, dask_result)
            tally[outcome] += 1
            if outcome.startswith("same error") and outcome not in error_examples:
                error_examples[outcome] = {
                    "learner": name,
                    "layout": layout,
                    **info,
                    "pandas": describe(pandas_result),
                }
            if outcome.startswith("mismatch"):
                mismatches.append(
                    {
                        "outcome": outcome,
                        "learner": name,
                        "layout": layout,
                        **info,
                        "pandas": describe(pandas_result),
                        "dask": describe(dask_result),
                    }
                )
                print(f"MISMATCH {mismatches[-1]}", file=sys.stderr, flush=True)
            done = sum(tally.values())
            if done % 100 == 0:
                checkpoint = args.results.with_suffix(".partial.json")
                checkpoint.write_text(json.dumps(summary(), indent=1, default=str) + "\n")
                print(
                    f"[property] {done} examples, {time.perf_counter() - started:.0f} s: "
                    f"{dict(tally.most_common(6))}",
                    file=sys.stderr,
                    flush=True,
                )

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            example()
    return summary()


def compare(pandas_result: tuple[str, Any], dask_result: tuple[str, Any]) -> str:
    (p_status, p_value), (d_status, d_value) = pandas_result, dask_result
    if p_status == d_status == "ok":
        for p, d in zip(p_value, d_value, strict=True):
            if p.shape != d.shape or not np.allclose(p, d, rtol=TOLERANCE, atol=TOLERANCE):
                return "mismatch: different CATE"
        return "equal"
    if p_status == d_status == "error":
        if (p_value[0], message_kind(p_value[1])) == (d_value[0], message_kind(d_value[1])):
            return f"same error: {p_value[0]}: {message_kind(p_value[1])}"
        return "mismatch: different errors"
    return "mismatch: one fitted, one raised"


def describe(result: tuple[str, Any]) -> Any:
    status, value = result
    if status == "ok":
        return {"cate_mean": [float(np.mean(v)) for v in value]}
    return {"error": f"{value[0]}: {value[1]}", "traceback": value[2]}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    record = {
        "benchmark": "property_dask_vs_pandas",
        "date": date.today().isoformat(),
        "commit": commit,
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "command": "./dev.sh bench property_dask_vs_pandas " + " ".join(sys.argv[1:]),
        "args": {k: str(v) for k, v in vars(args).items()},
        **result,
    }
    args.results.write_text(json.dumps(record, indent=1, default=str) + "\n")
    runs = json.loads(RUNS.read_text()) if RUNS.exists() else []
    runs.append({k: v for k, v in record.items() if k not in ("mismatches", "error_examples")})
    runs[-1]["mismatches"] = len(result["mismatches"])
    RUNS.write_text(json.dumps(runs, indent=1) + "\n")
    print(f"\n{result['examples']} examples in {result['seconds']} s\n")
    print("| outcome | examples |\n|---|---|")
    for outcome, count in result["outcomes"].items():
        print(f"| {outcome} | {count} |")
    print(f"\nby learner: {result['learners']}\nby layout: {result['layouts']}")


if __name__ == "__main__":
    main()
