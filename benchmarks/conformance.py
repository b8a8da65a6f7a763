"""Conformance: metalearners 0.13.0's own test suite, on metalearners and on dask-meta.

Downloads metalearners' sdist (it ships ``tests/``) into a cache directory and runs its
learner tests twice: on metalearners itself, and switched to dask-meta by the pytest plugin
``conformance_plugin.py`` (metalearners' public classes and functions that dask-meta
provides are replaced by dask-meta's before the test modules are imported; its data
generators and private helpers stay metalearners'; one LocalCluster of 2 workers x 1 thread
is the default client). No test code of metalearners is kept in this repository.

A test that passes on metalearners and fails on dask-meta must be listed in
``conformance_expected.toml`` with its reason: a row of the "What is different" table of
``docs/migrating.md`` (its first cell, quoted) or ``metalearners-private helper: <name>``.
The run fails (exit 1) on a failure not listed and on a listed entry that no longer fails
(stale).

    ./dev.sh conformance [--part ci] [--reuse-baseline] [--tests tests/test_tlearner.py ...]

It prints a table per test file (pass/fail on metalearners and on dask-meta), the failures
grouped by message, and writes ``benchmarks/results/conformance.json``; ``--record`` also
appends the run to ``conformance.runs.json``. The metalearners half's outcome is cached
(``--reuse-baseline`` reuses it for the same selection and package versions).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
import time
import tomllib
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "conformance.json"
RUNS = HERE / "results" / "conformance.runs.json"
CACHE = HERE / "results" / "conformance-cache"
EXPECTED = HERE / "conformance_expected.toml"
MIGRATING = ROOT / "docs" / "migrating.md"
VERSION = "0.13.0"
PRIVATE = "metalearners-private helper: "

# the files whose tests use the learners; the rest of metalearners' tests (its private
# utilities, data generation, outcome functions) do not touch a switched name
# (quick ones first: an interrupted run has their outcomes)
FILES = (
    "tests/test_utils.py",
    "tests/test_slearner.py",
    "tests/test_grid_search.py",
    "tests/test_cross_fit_estimator.py",
    "tests/test_tlearner.py",
    "tests/test_xlearner.py",
    "tests/test_rlearner.py",
    "tests/test_drlearner.py",
    "tests/test_learner.py",
    "tests/test_metalearner.py",
)
# --part ci: a representative part that fits CI's time (docs/benchmarks.md): every file but
# the two whose tests fit learners on 100,000 rows (test_learner.py and most of
# test_metalearner.py), and test_metalearner.py's tests of construction, arguments and input
# checks
_QUICK_METALEARNER = (
    "test_metalearner_init",
    "test_metalearner_model_names",
    "test_combine_propensity_and_nuisance_specs",
    "test_n_folds",
    "test_feature_set",
    "test_model_reusage_init",
    "test_parse_fit_params",
    "test_fit_params",
    "test_fit_params_rlearner_error",
    "test_validate_n_folds_synchronize",
    "test_validate_outcome_one_class",
    "test_validate_outcome_different_classes",
    "test_init_args",
)
CI_PART = (
    *(f for f in FILES if f not in ("tests/test_learner.py", "tests/test_metalearner.py")),
    *(f"tests/test_metalearner.py::{name}" for name in _QUICK_METALEARNER),
)

PASS = {"passed", "xfailed"}
FAIL = {"failed", "error", "not run"}
VERSIONED = (
    "metalearners",
    "scikit-learn",
    "lightgbm",
    "xgboost",
    "numpy",
    "pandas",
    "polars",
    "narwhals",
    "shap",
    "onnx",
    "onnxruntime",
    "onnxmltools",
    "skl2onnx",
    "dask",
    "distributed",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "ci"], default="all")
    parser.add_argument(
        "--tests", nargs="+", help="test files or ids of metalearners' suite (tests/...)"
    )
    parser.add_argument("-k", dest="keyword", help="pytest -k expression")
    parser.add_argument(
        "--reuse-baseline",
        action="store_true",
        help="reuse the cached metalearners half of the same selection and versions",
    )
    parser.add_argument(
        "--half",
        choices=["both", "metalearners", "dask_meta", "compare"],
        default="both",
        help="metalearners: run and cache that half only; dask_meta: run that half against "
        "the cached metalearners half; compare: run nothing, compare the cached halves",
    )
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--record", action="store_true", help="append to conformance.runs.json")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per test")
    return parser.parse_args(argv)


def fetch_sdist(cache: Path) -> Path:
    """metalearners' sdist, extracted, as a git repository (its conftest finds its data with
    ``git rev-parse --show-toplevel``)."""
    source = cache / f"metalearners-{VERSION}"
    if not ((source / "tests").is_dir() and (source / ".git").is_dir()):
        cache.mkdir(parents=True, exist_ok=True)
        archive = cache / f"metalearners-{VERSION}.tar.gz"
        if not archive.exists():
            download = [sys.executable, "-m", "pip", "download", f"metalearners=={VERSION}"]
            download += ["--no-binary", ":all:", "--no-deps", "-q", "-d", str(cache)]
            subprocess.run(download, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(cache, filter="data")
        subprocess.run(["git", "init", "-q", str(source)], check=True)
    write_import_root(cache, source)
    return source


def write_import_root(cache: Path, source: Path) -> None:
    """A regular package ``tests`` whose path is the sdist's ``tests/``: the workers import
    the classes that the test modules define from it. A directory without ``__init__.py``
    would lose to any installed regular ``tests`` package (onnxmltools 1.12 installs one)."""
    package = cache / "import-root" / "tests"
    if package.is_symlink():
        package.unlink()
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(f"__path__ = [{str(source / 'tests')!r}]\n")


def selection(args: argparse.Namespace) -> list[str]:
    if args.tests:
        return list(args.tests)
    return list(CI_PART if args.part == "ci" else FILES)


def versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def run_half(
    source: Path, tests: list[str], args: argparse.Namespace, switch: bool, out: Path
) -> float:
    """Runs metalearners' tests (switched to dask-meta or not); returns the wall seconds."""
    name = "dask_meta" if switch else "metalearners"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env["CONFORMANCE_RESULTS"] = str(out)
    env["CONFORMANCE_SWITCH"] = "1" if switch else "0"
    env["CONFORMANCE_IMPORT_ROOT"] = str(args.cache / "import-root")
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONUNBUFFERED"] = "1"  # the log follows the run
    # -P: the sdist's source directory (the working directory) does not shadow the installed
    # metalearners
    command = [sys.executable, "-P", "-m", "pytest", *tests, "-p", "conformance_plugin"]
    command += ["-p", "no:cacheprovider", "-o", "addopts=", "--import-mode=importlib"]
    command += ["-q", "--timeout", str(args.timeout), "-W", "ignore::DeprecationWarning"]
    command += ["--continue-on-collection-errors"]
    if args.keyword:
        command += ["-k", args.keyword]
    log = args.cache / f"{name}.log"
    print(f"{name}: running {len(tests)} test paths, log {log}", flush=True)
    start = time.perf_counter()
    with log.open("w") as stream:
        code = subprocess.run(command, cwd=source, env=env, stdout=stream, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    tail = log.read_text().strip().splitlines()[-1:] or [""]
    print(f"{name}: {seconds:.0f} s; {tail[0]}", flush=True)
    if code.returncode not in (0, 1) or not out.exists():
        raise SystemExit(f"{name}: pytest exited with {code.returncode}; see {log}")
    return seconds


def baseline(source: Path, tests: list[str], args: argparse.Namespace) -> tuple[dict, float, bool]:
    """The metalearners half's outcome: cached for the same selection and versions."""
    key = json.dumps([tests, args.keyword, versions()], sort_keys=True)
    cached = args.cache / f"baseline-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if (args.reuse_baseline or args.half in ("dask_meta", "compare")) and cached.exists():
        document = json.loads(cached.read_text())
        seconds = document.get("wall_s", float("nan"))
        print(f"metalearners: reusing {cached} ({seconds:.0f} s when run)")
        return document, seconds, True
    if args.half in ("dask_meta", "compare"):
        raise SystemExit(f"no cached metalearners half for this selection: {cached}")
    seconds = run_half(source, tests, args, switch=False, out=cached)
    document = json.loads(cached.read_text())
    document["wall_s"] = seconds
    cached.write_text(json.dumps(document, indent=1) + "\n")
    return document, seconds, False


def outcome_class(outcome: str) -> str:
    if outcome in PASS:
        return "pass"
    if outcome in FAIL:
        return "fail"
    return "skip"


def table_reasons() -> list[str]:
    """The first cells of the "What is different" table of docs/migrating.md (every
    documented difference; README's table shows the main ones)."""
    text = MIGRATING.read_text()
    section = text.split("## What is different", 1)[1].split("\n## ", 1)[0]
    cells = []
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---") and not line.startswith("| |"):
            cells.append(line.split("|")[1].strip())
    return cells


def load_expected(path: Path) -> dict[str, str]:
    """Test id or pattern (``*`` matches anything) -> reason, each reason checked."""
    if not path.exists():
        return {}
    entries = tomllib.loads(path.read_text()).get("expected", {})
    rows = table_reasons()
    for pattern, reason in entries.items():
        named = reason.startswith(PRIVATE) or any(f'"{row}"' in reason for row in rows)
        if not named:
            raise SystemExit(
                f"{path.name}: the reason of {pattern!r} names neither a row of the "
                f'"What is different" table of docs/migrating.md (its first cell, quoted) '
                f'nor "{PRIVATE}<name>"'
            )
    return entries


def matcher(pattern: str) -> re.Pattern:
    return re.compile("".join(".*" if c == "*" else re.escape(c) for c in pattern) + r"\Z")


def compare(ml: dict, dm: dict, expected: dict[str, str]) -> dict:
    """Per file counts, the regressions (pass on metalearners, fail on dask-meta) with their
    expected reason, and the stale entries."""
    ml_tests, dm_tests = ml["tests"], dm["tests"]
    if not dm.get("complete", True):  # an interrupted dask-meta half: the tests it ran
        ml_tests = {t: r for t, r in ml_tests.items() if t in dm_tests}
    for test_id in ml_tests:  # not collected on dask-meta: a module that failed to import
        if test_id not in dm_tests:
            module = test_id.split("::")[0]
            message = dm_tests.get(module, {}).get("message", "not collected")
            dm_tests[test_id] = {"outcome": "not run", "message": message, "seconds": 0.0}
    patterns = {p: matcher(p) for p in expected}
    rows: dict[str, Counter] = defaultdict(Counter)
    regressions = []
    for test_id, result in ml_tests.items():
        if "::" not in test_id:
            continue
        file = test_id.split("::")[0]
        ml_class = outcome_class(result["outcome"])
        dm_class = outcome_class(dm_tests[test_id]["outcome"])
        rows[file][f"ml_{ml_class}"] += 1
        rows[file][f"dm_{dm_class}"] += 1
        if ml_class == "pass" and dm_class == "fail":
            reason = next((expected[p] for p, m in patterns.items() if m.match(test_id)), None)
            rows[file]["expected" if reason else "unexpected"] += 1
            regressions.append(
                {"id": test_id, "message": dm_tests[test_id]["message"], "reason": reason}
            )
        elif ml_class == "fail" and dm_class == "fail":
            rows[file]["both_fail"] += 1
    dm_failing = [t for t, r in dm_tests.items() if outcome_class(r["outcome"]) == "fail"]
    stale = []
    for pattern, regex in patterns.items():
        run = [t for t in ml_tests if regex.match(t)]
        if run and not any(regex.match(t) for t in dm_failing):
            stale.append(pattern)
    return {
        "rows": {f: dict(c) for f, c in sorted(rows.items())},
        "regressions": regressions,
        "stale": stale,
    }


def message_key(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "(no message)"
    first = re.sub(r"0x[0-9a-f]+", "0x..", first)
    first = re.sub(r"\d+(\.\d+)?", "N", first)
    return first[:160]


def print_report(comparison: dict, ml_wall: float, dm_wall: float) -> None:
    columns = ("ml_pass", "ml_fail", "dm_pass", "dm_fail", "expected", "unexpected")
    header = "| file | metalearners pass/fail | dask-meta pass/fail | expected | unexpected |"
    print("\n" + header + "\n|---|---|---|---|---|")
    total: Counter = Counter()
    for file, row in comparison["rows"].items():
        total.update(row)
        c = {k: row.get(k, 0) for k in columns}
        print(
            f"| {file.removeprefix('tests/')} | {c['ml_pass']}/{c['ml_fail']} | "
            f"{c['dm_pass']}/{c['dm_fail']} | {c['expected']} | {c['unexpected']} |"
        )
    c = {k: total.get(k, 0) for k in columns}
    print(
        f"| total | {c['ml_pass']}/{c['ml_fail']} | {c['dm_pass']}/{c['dm_fail']} | "
        f"{c['expected']} | {c['unexpected']} |"
    )
    skipped = total.get("ml_skip", 0), total.get("dm_skip", 0)
    print(
        f"skipped: {skipped[0]} on metalearners, {skipped[1]} on dask-meta; failing on both: "
        f"{total.get('both_fail', 0)}; wall time: metalearners {ml_wall:.0f} s, "
        f"dask-meta {dm_wall:.0f} s"
    )
    unexpected = [r for r in comparison["regressions"] if r["reason"] is None]
    groups: dict[str, list[str]] = defaultdict(list)
    for r in unexpected:
        groups[message_key(r["message"])].append(r["id"])
    if groups:
        print(f"\nunexpected failures ({len(unexpected)}), by message:")
        for key, ids in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            print(f"{len(ids):5d}  {key}\n       e.g. {ids[0]}")
    for pattern in comparison["stale"]:
        print(f"stale entry in {EXPECTED.name} (no longer fails): {pattern}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.cache = args.cache.resolve()
    expected = load_expected(EXPECTED)
    source = fetch_sdist(args.cache)
    tests = selection(args)
    dm_out = args.cache / "dask_meta.json"
    if args.half == "dask_meta":  # the baseline may still be running beside it
        dm_wall = run_half(source, tests, args, switch=True, out=dm_out)
    ml, ml_wall, reused = baseline(source, tests, args)
    if args.half == "metalearners":
        return 0
    if args.half == "both":
        dm_wall = run_half(source, tests, args, switch=True, out=dm_out)
    dm = json.loads(dm_out.read_text())
    if args.half == "compare":
        dm_wall = dm["wall_s"]
    comparison = compare(ml, dm, expected)
    print_report(comparison, ml_wall, dm_wall)
    for name, half in (("metalearners", ml), ("dask-meta", dm)):
        if not half.get("complete", True):
            print(f"the {name} half was interrupted: {len(half['tests'])} tests ran")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    record = {
        "benchmark": "conformance",
        "date": date.today().isoformat(),
        "commit": commit,
        "machine": {
            "cores": len(os.sched_getaffinity(0)),
            "platform": platform.platform(),
            "load_average": os.getloadavg(),
            "cluster": "LocalCluster, 2 workers x 1 thread",
        },
        "command": "./dev.sh conformance " + " ".join(sys.argv[1:]),
        "versions": versions(),
        "selection": tests,
        "wall_s": {"metalearners": round(ml_wall), "dask_meta": round(dm_wall)},
        "baseline_reused": reused,
        "complete": {
            "metalearners": ml.get("complete", True),
            "dask_meta": dm.get("complete", True),
        },
        "rows": comparison["rows"],
        "switched": dm["switched"],
        "not_provided": dm["not_provided"],
        "stale": comparison["stale"],
    }
    document = {
        **record,
        "regressions": comparison["regressions"],
        "tests": {
            t: {
                "metalearners": r["outcome"],
                "dask_meta": dm["tests"].get(t, {}).get("outcome"),
                "message": dm["tests"].get(t, {}).get("message", ""),
            }
            for t, r in ml["tests"].items()
        },
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(document, indent=1) + "\n")
    print(f"\nresults: {args.results}")
    if args.record:
        runs = json.loads(RUNS.read_text()) if RUNS.exists() else []
        runs.append(record)
        RUNS.write_text(json.dumps(runs, indent=1) + "\n")
    unexpected = sum(1 for r in comparison["regressions"] if r["reason"] is None)
    return 1 if unexpected or comparison["stale"] else 0


if __name__ == "__main__":
    sys.exit(main())
