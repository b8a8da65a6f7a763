"""pytest plugin of the conformance run (benchmarks/conformance.py): metalearners' own tests,
optionally switched to dask-meta, with every test's outcome written to a JSON file.

Loaded with ``-p conformance_plugin`` (``benchmarks/`` on ``PYTHONPATH``), it reads the
environment:

* ``CONFORMANCE_RESULTS``: where to write ``{test id: {outcome, message, seconds}}``;
* ``CONFORMANCE_SWITCH=1``: each public class or function that metalearners defines in a
  module (``metalearners.tlearner.TLearner``, ``metalearners.utils.simplify_output``, ...)
  and that dask-meta provides under the same name is dask-meta's when the test modules
  import it (from that module or from the package ``metalearners``); the rest (data
  generators, private helpers, constants) stays metalearners'. metalearners' own modules are
  not changed: its remaining code, and pickle, still see its own classes. One LocalCluster
  (2 workers x 1 thread) serves the whole run as the default client, which dask-meta's
  learners use with ``client=None``;
* ``CONFORMANCE_IMPORT_ROOT``: a directory whose ``tests`` package the workers import the
  classes that metalearners' test modules define (first on ``sys.path``).
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import json
import os
import random
import sys
import time
import types
from pathlib import Path
from typing import Any

# metalearners module -> where dask-meta may provide its names (first match wins); the
# package dask_meta itself is tried last for every module
MODULES: dict[str, tuple[str, ...]] = {
    "metalearners.metalearner": ("dask_meta.metalearner", "dask_meta.learners.base"),
    "metalearners.slearner": ("dask_meta.slearner", "dask_meta.learners.slearner"),
    "metalearners.tlearner": ("dask_meta.tlearner", "dask_meta.learners.tlearner"),
    "metalearners.xlearner": ("dask_meta.xlearner", "dask_meta.learners.xlearner"),
    "metalearners.rlearner": ("dask_meta.rlearner", "dask_meta.learners.rlearner"),
    "metalearners.drlearner": ("dask_meta.drlearner", "dask_meta.learners.drlearner"),
    "metalearners.cross_fit_estimator": ("dask_meta.cross_fit_estimator", "dask_meta.crossfit"),
    "metalearners.explainer": ("dask_meta.explainer", "dask_meta.explain"),
    "metalearners.grid_search": ("dask_meta.grid_search",),
    "metalearners.utils": ("dask_meta.utils",),
}

SWITCHED: dict[str, str] = {}  # "metalearners.x.Name" -> "dask_meta.y.Name"
NOT_PROVIDED: list[str] = []  # metalearners' public names dask-meta lacks

_state: dict[str, Any] = {"results": {}, "cluster": None, "client": None, "start": time.time()}


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _dask_meta_object(candidates: tuple[str, ...], name: str) -> tuple[str, Any] | None:
    for module_name in (*candidates, "dask_meta"):
        module = _import(module_name)
        value = getattr(module, name, None) if module is not None else None
        if value is not None and getattr(value, "__module__", "").startswith("dask_meta"):
            return module_name, value
    return None


class _SwitchedModule(types.ModuleType):
    """What metalearners' test modules import for a metalearners module: the module, with
    the names dask-meta provides replaced."""

    def __init__(self, module: types.ModuleType, replacements: dict[str, Any]):
        super().__init__(module.__name__)
        self._conformance_module = module
        self._conformance_replacements = replacements

    def __getattr__(self, name: str) -> Any:
        replacements = self.__dict__["_conformance_replacements"]
        if name in replacements:
            return replacements[name]
        return getattr(self.__dict__["_conformance_module"], name)


_SWITCHED_MODULES: dict[str, _SwitchedModule] = {}


def _importing_test_code(globals_: Any) -> bool:
    name = (globals_ or {}).get("__name__", "") or ""
    return name == "tests" or name.startswith(("tests.", "conftest", "test_"))


def _switching_import(name, globals=None, locals=None, fromlist=(), level=0):
    module = _builtin_import(name, globals, locals, fromlist, level)
    if level != 0 or not name.startswith("metalearners") or not _importing_test_code(globals):
        return module
    if fromlist:  # from metalearners.x import Name: the module named
        return _SWITCHED_MODULES.get(name, module)
    return _SWITCHED_MODULES.get("metalearners", module)  # import metalearners[.x]


_builtin_import = builtins.__import__


def switch_to_dask_meta() -> None:
    """Point the names that metalearners' test code imports from metalearners at dask-meta's.

    Only the test modules (and their conftest) see the switch, through their imports:
    metalearners' own modules are left as they are, so that its remaining code, and pickle's
    look-ups by module and name, still find metalearners' classes.
    """
    import metalearners

    package: dict[str, Any] = {}
    for module_name, candidates in MODULES.items():
        module = importlib.import_module(module_name)
        replacements: dict[str, Any] = {}
        for name, value in list(vars(module).items()):
            defined_here = getattr(value, "__module__", None) == module_name
            if name.startswith("_") or not defined_here:
                continue
            if not (inspect.isclass(value) or inspect.isfunction(value)):
                continue
            found = _dask_meta_object(candidates, name)
            if found is None:
                NOT_PROVIDED.append(f"{module_name}.{name}")
                continue
            source, replacement = found
            replacements[name] = replacement
            if getattr(metalearners, name, None) is value:
                package[name] = replacement
            SWITCHED[f"{module_name}.{name}"] = f"{source}.{name}"
        _SWITCHED_MODULES[module_name] = _SwitchedModule(module, replacements)
    _SWITCHED_MODULES["metalearners"] = _SwitchedModule(metalearners, package)
    builtins.__import__ = _switching_import


def _start_client() -> None:
    from distributed import Client

    from dask_meta.cluster import start_local_cluster

    cluster = start_local_cluster(2, 1, quiet_workers=True)
    _state["cluster"] = cluster
    _state["client"] = Client(cluster)  # the default client: learners with client=None


# before the test modules (and metalearners' conftest) are imported: -p plugins are imported
# first
_IMPORT_ROOT = os.environ.get("CONFORMANCE_IMPORT_ROOT")
if _IMPORT_ROOT and _IMPORT_ROOT not in sys.path:
    # first: some packages (onnxmltools 1.12) install a top-level ``tests`` package
    sys.path.insert(0, _IMPORT_ROOT)
if os.environ.get("CONFORMANCE_SWITCH") == "1":
    switch_to_dask_meta()


def pytest_collectstart(collector: Any) -> None:
    # test_xlearner.py draws its parameters with random.sample when it is imported: the same
    # seed before each module makes both halves draw the same tests
    if type(collector).__name__ == "Module":
        random.seed(f"conformance:{collector.nodeid}")


def pytest_configure(config: Any) -> None:
    if os.environ.get("CONFORMANCE_SWITCH") == "1":
        _start_client()


def pytest_report_header(config: Any) -> list[str]:
    if os.environ.get("CONFORMANCE_SWITCH") != "1":
        return ["conformance: metalearners itself"]
    return [
        f"conformance: switched to dask-meta: {', '.join(sorted(SWITCHED))}",
        f"conformance: not provided by dask-meta: {', '.join(NOT_PROVIDED) or 'none'}",
    ]


def _message(report: Any) -> str:
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
        return str(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    return str(longrepr).strip().splitlines()[-1] if str(longrepr).strip() else ""


def pytest_runtest_logreport(report: Any) -> None:
    results = _state["results"]
    entry = results.setdefault(report.nodeid, {"outcome": "passed", "message": "", "seconds": 0.0})
    entry["seconds"] = round(entry["seconds"] + report.duration, 3)
    if hasattr(report, "wasxfail"):
        entry["outcome"] = "xfailed" if report.skipped else "xpassed"
    elif report.failed:
        if entry["outcome"] not in ("failed", "error"):
            entry["outcome"] = "failed" if report.when == "call" else "error"
            entry["message"] = _message(report)[:2000]
    elif report.skipped:
        entry["outcome"] = "skipped"
        entry["message"] = _message(report)[:500]


def _write(complete: bool) -> None:
    path = os.environ.get("CONFORMANCE_RESULTS")
    if not path:
        return
    document = {
        "switched": SWITCHED,
        "not_provided": NOT_PROVIDED,
        "wall_s": round(time.time() - _state["start"], 1),
        "complete": complete,
        "tests": _state["results"],
    }
    Path(path).write_text(json.dumps(document, indent=1) + "\n")
    _state["written"] = time.time()


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    # an interrupted run keeps what it has done: the outcomes are written every 30 seconds
    if time.time() - _state.get("written", _state["start"]) > 30:
        _write(complete=False)


def pytest_collectreport(report: Any) -> None:
    if report.failed:  # a test module that could not be imported
        message = str(report.longrepr).strip().splitlines()
        _state["results"][report.nodeid] = {
            "outcome": "error",
            "message": (message[-1] if message else "")[:2000],
            "seconds": 0.0,
        }


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    _write(complete=True)


def pytest_unconfigure(config: Any) -> None:
    client, cluster = _state["client"], _state["cluster"]
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()
