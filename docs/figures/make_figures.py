"""Draw the figures of the documentation into docs/figures/ (PNG, 100 dpi).

Run from the repository root:

    PYTHONPATH=. .venv/bin/python docs/figures/make_figures.py            # all figures
    PYTHONPATH=. .venv/bin/python docs/figures/make_figures.py benchmarks # only some groups

Two groups of figures:

- ``evaluation`` and ``parallelism``: real fits on a LocalCluster of 1 worker x 2 threads
  with data of :func:`dask_meta.datasets.make_experiment`, the set-ups of docs/evaluation.md
  and docs/parallelism.md (a few minutes on 2 cores; times differ from run to run);
- ``benchmarks``: the tables of docs/benchmarks.md from ``benchmarks/results/*.runs.json``.
  A chart of a table run as a whole (peers, scaling) reads the latest run that recorded all
  of its rows; a table whose rows are run separately (plan_sweep's scenarios, accuracy's
  cells) reads each row from the latest run that recorded it.

``FIGURES`` lists every file the script writes; tests/test_plots_docs.py checks that the
figures the docs show are these files and exist.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent.parent / "benchmarks" / "results"
DPI = 100
DASK_META, DASK_META_LIGHT = "tab:blue", "#8fbce6"

#: group -> the files it writes
FIGURES = {
    "evaluation": ("qini.png", "uplift.png", "cate_distribution.png"),
    "parallelism": ("fit_timeline.png",),
    "benchmarks": (
        "bench_peers.png",
        "bench_plan_sweep.png",
        "bench_scaling.png",
        "bench_accuracy.png",
    ),
}


def _save(fig: Any, name: str) -> None:
    path = HERE / name
    fig.savefig(path, dpi=DPI)
    print(f"wrote {path.relative_to(HERE.parent.parent)} ({path.stat().st_size // 1024} KiB)")


def _figure(width: float, height: float, columns: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, columns)
    return fig, axes


# --- real fits ---------------------------------------------------------------------------------


def _cluster() -> tuple[Any, Any]:
    from distributed import Client

    from dask_meta.cluster import start_local_cluster

    cluster = start_local_cluster(1, 2)
    return cluster, Client(cluster, set_as_default=False)


def _dr_learner(client: Any, n_variants: int, params: dict[str, Any]) -> Any:
    """The DR-learner the figures draw: LightGBM with ``params`` for every model, 3 folds."""
    from lightgbm import LGBMClassifier, LGBMRegressor

    from dask_meta import DRLearner

    return DRLearner(
        is_classification=False,
        n_variants=n_variants,
        nuisance_model_factory=LGBMRegressor,
        propensity_model_factory=LGBMClassifier,
        treatment_model_factory=LGBMRegressor,
        nuisance_model_params=params,
        propensity_model_params=params,
        treatment_model_params=params,
        n_folds=3,
        random_state=0,
        client=client,
    )


def evaluation() -> None:
    """The DR-learner of docs/evaluation.md: Qini and uplift curves, the CATE histogram."""
    from dask_meta import plots
    from dask_meta.datasets import feature_names, make_experiment

    cluster, client = _cluster()
    try:
        data = make_experiment(30_000, n_features=6, n_variants=2, rows_per_partition=5_000)
        features = feature_names(data)
        train, test = data.partitions[:4], data.partitions[4:]
        learner = _dr_learner(client, 2, {"n_estimators": 30, "verbose": -1})
        learner.fit(train[features], train["y"], train["w"])
        cate = learner.predict(test[features], is_oos=True)
        models = {"DR-learner": cate, "true CATE": test["cate_1"]}
        _save(plots.plot_qini(test["y"], models, test["w"], client=client), "qini.png")
        _save(plots.plot_uplift(test["y"], models, test["w"], client=client), "uplift.png")
        figure = plots.plot_cate_distribution(cate, bins=40, client=client)
        _save(figure, "cate_distribution.png")
    finally:
        client.close()
        cluster.close()


def parallelism() -> None:
    """A DR-learner under two settings of docs/parallelism.md, as fit timelines."""

    from dask_meta import plots
    from dask_meta.datasets import feature_names, make_experiment

    cluster, client = _cluster()
    try:
        data = make_experiment(20_000, n_features=10, n_variants=3, rows_per_partition=5_000)
        data = data.persist()
        X, y, w = data[feature_names(data)], data["y"], data["w"]
        settings = {
            "planner's choice": ({}, {}),
            "n_jobs_cross_fitting=1, n_jobs_base_learners=1, n_jobs=1": (
                {"n_jobs": 1},
                {"n_jobs_cross_fitting": 1, "n_jobs_base_learners": 1},
            ),
        }
        reports = {}
        for warm_up in (True, False):  # the first fit also imports LightGBM on the worker
            for name, (model_params, fit_args) in settings.items():
                params = {"n_estimators": 30, "verbose": -1, **model_params}
                learner = _dr_learner(client, 3, params)
                learner.fit(X, y, w, **fit_args)
                reports[name] = learner.fit_report_
                if warm_up:
                    break
        fig, axes = _figure(8.0, 4.8)
        fig.clear()
        axes = fig.subplots(2, 1)
        for ax, (name, report) in zip(axes, reports.items(), strict=True):
            span = report["end"].max() - report["start"].min()
            title = f"{name}: {len(report)} fits in {span:.1f} s"
            plots.plot_fit_timeline(report, ax=ax, title=title)
        _save(fig, "fit_timeline.png")
    finally:
        client.close()
        cluster.close()


# --- benchmark tables --------------------------------------------------------------------------


def _runs(name: str) -> list[dict[str, Any]]:
    data = json.loads((RESULTS / f"{name}.runs.json").read_text())
    return data["runs"] if isinstance(data, dict) else data


def _whole_run(name: str, key: str, keys: Iterable[Any], fields: Iterable[str]) -> dict:
    """The latest run of ``name`` whose rows hold every one of ``keys`` with ``fields``."""
    keys, fields = list(keys), list(fields)
    for run in reversed(_runs(name)):
        rows = {r[key]: r for r in run.get("rows") or [] if all(f in r for f in fields)}
        if all(k in rows for k in keys):
            return {"commit": run["commit"], "date": run["date"], "rows": [rows[k] for k in keys]}
    raise LookupError(f"no run of {name} records {keys} with {fields}")


def _latest_rows(
    name: str, key: Callable[[dict], Any], fields: Iterable[str]
) -> tuple[list[dict], list[str]]:
    """Each row of ``name`` (by ``key``) from the latest run that recorded it with
    ``fields``; and the commits they come from, oldest first."""
    fields = list(fields)
    rows: dict[Any, dict] = {}
    commits: list[str] = []
    for run in reversed(_runs(name)):
        for row in run.get("rows") or []:
            if all(row.get(f) is not None for f in fields) and key(row) not in rows:
                rows[key(row)] = row
                if run["commit"] not in commits:
                    commits.insert(0, run["commit"])
    return list(rows.values()), commits


def _bars(ax: Any, groups: list[str], series: dict[str, tuple[str, list[float | None]]]) -> None:
    """Grouped vertical bars (label -> colour, values) with their values on top (None: no
    bar)."""
    width = 0.8 / len(series)
    x = np.arange(len(groups))
    for j, (label, (color, values)) in enumerate(series.items()):
        offset = (j - (len(series) - 1) / 2) * width
        heights = [np.nan if v is None else v for v in values]
        bars = ax.bar(x + offset, heights, width=width, label=label, color=color)
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    ax.set_xticks(x, groups)


def bench_peers() -> None:
    learners = ["T", "X", "R", "DR"]
    fields = ["dask_meta_s", "metalearners_s", "econml_s", "causalml_s"]
    run = _whole_run("peers", "learner", learners, fields)
    rows = run["rows"]
    fig, (left, right) = _figure(9.0, 3.6, 2)
    _bars(
        left,
        learners,
        {
            "dask-meta": (DASK_META, [r["dask_meta_s"] for r in rows]),
            "metalearners": ("tab:orange", [r["metalearners_s"] for r in rows]),
        },
    )
    left.set_title("metalearners' work (cross-fitting, overall models)", fontsize=10)
    left.set_ylabel("fit time, s (lower is better)")
    _bars(
        right,
        learners,
        {
            "dask-meta, EconML's work": (DASK_META, [r["dask_meta_econml_work_s"] for r in rows]),
            "EconML": ("tab:green", [r["econml_s"] for r in rows]),
            "dask-meta, CausalML's work": (
                DASK_META_LIGHT,
                [r["dask_meta_causalml_work_s"] for r in rows],
            ),
            "CausalML": ("tab:red", [r["causalml_s"] for r in rows]),
        },
    )
    right.set_title("EconML's and CausalML's own work (no EconML R)", fontsize=10)
    for ax in (left, right):
        ax.legend(fontsize=7)
        ax.set_xlabel("learner")
        ax.margins(y=0.12)
    fig.suptitle(
        f"peers: 1M rows, 3 variants, LightGBM, 1 worker x 2 threads "
        f"(commit {run['commit']}, {run['date']})",
        fontsize=10,
    )
    _save(fig, "bench_peers.png")


def bench_plan_sweep() -> None:
    rows, commits = _latest_rows("plan_sweep", lambda r: r["scenario"], ["auto_s", "best_s"])
    rows.sort(key=lambda r: r["scenario"])
    fig, ax = _figure(9.0, 3.2)
    labels = [f"{r['scenario']}: {r['description']}" for r in rows]
    ratios = [r["auto_s"] / r["best_s"] for r in rows]
    y = np.arange(len(rows))[::-1]
    ax.barh(y, ratios, color=DASK_META, height=0.6)
    for yi, r, ratio in zip(y, rows, ratios, strict=True):
        ax.text(
            1.105,
            yi,
            f"{ratio:.2f}: auto {r['auto_s']:.1f} s ({r['auto_chose']}),\n"
            f"best {r['best_s']:.1f} s ({r['best_swept']})",
            va="center",
            fontsize=7,
        )
    ax.axvline(1.0, color="black", linewidth=1)
    ax.axvline(1.1, color="tab:red", linestyle="--", linewidth=1)
    ax.text(1.098, y[0] + 0.45, "target", color="tab:red", ha="right", fontsize=7)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0.9, 1.32)
    ax.set_xlabel('fit time of plan="auto" / the best swept configuration')
    fig.suptitle(
        f'plan_sweep: plan="auto" / the best of 8 swept configurations '
        f"(commits {', '.join(commits)}; 1 worker x 2 threads)",
        fontsize=10,
    )
    _save(fig, "bench_plan_sweep.png")


def bench_scaling() -> None:
    runs = [r for r in _runs("scaling") if r.get("rows")]
    run = runs[-1]
    fig, (left, right) = _figure(8.0, 3.3, 2)
    for backend, marker in (("lightgbm", "o"), ("stream", "s")):
        rows = [r for r in run["rows"] if r["backend"] == backend]
        n = [r["rows"] for r in rows]
        left.plot(n, [r["fit_s"] for r in rows], marker=marker, label=backend)
        right.plot(n, [r["peak_worker_rss_gib"] for r in rows], marker=marker, label=backend)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_ylabel("fit time, s")
    left.set_title("fit time (log-log)", fontsize=10)
    right.set_xscale("log")
    right.set_ylabel("peak worker RSS, GiB (4 GiB each)")
    on_disk = [r for r in run["rows"] if r["training_frame"] == "on disk"]
    for r in on_disk:
        right.annotate(
            "read from disk",
            (r["rows"], r["peak_worker_rss_gib"]),
            xytext=(-60, 10),
            textcoords="offset points",
            fontsize=7,
        )
    right.set_title("peak memory of a worker", fontsize=10)
    for ax in (left, right):
        ax.set_xlabel("training rows")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"scaling: DR-learner, 3 variants, 2 workers x 1 thread (commit {run['commit']})",
        fontsize=10,
    )
    _save(fig, "bench_scaling.png")


def bench_accuracy() -> None:
    fields = ["dataset", "dask_meta_out", "best_peer_out", "best_peer_out_se"]
    rows, commits = _latest_rows(
        "accuracy", lambda r: (r.get("dataset"), r["learner"], r.get("base")), fields
    )
    datasets = ["ihdp_A", "ihdp_B", "acic16"]
    learners = ["S", "T", "X", "R", "DR"]
    fig, axes = _figure(9.0, 3.4, len(datasets))
    for ax, dataset in zip(axes, datasets, strict=True):
        for k, (base, marker) in enumerate((("lgbm", "o"), ("linear", "s"))):
            cells = {r["learner"]: r for r in rows if r["dataset"] == dataset and r["base"] == base}
            x = np.arange(len(learners)) + (k - 0.5) * 0.25
            found = [
                (xi, cells[name]) for xi, name in zip(x, learners, strict=True) if name in cells
            ]
            best = np.array([c["best_peer_out"] for _, c in found])
            ax.errorbar(
                [xi for xi, _ in found],
                [c["dask_meta_out"] / c["best_peer_out"] for _, c in found],
                yerr=np.array([c["best_peer_out_se"] for _, c in found]) / best,
                fmt=marker,
                capsize=3,
                label={"lgbm": "LightGBM", "linear": "linear models"}[base],
            )
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(learners)), learners)
        ax.set_title(dataset, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_xlabel("learner")
    axes[0].set_ylabel("sqrt(PEHE) held out:\ndask-meta / best peer (bar: peer's se)")
    axes[0].legend(fontsize=7)
    fig.suptitle(
        "accuracy: below 1, dask-meta beats the best of EconML, CausalML and metalearners "
        f"(commits {', '.join(commits)})",
        fontsize=9,
    )
    _save(fig, "bench_accuracy.png")


def benchmarks() -> None:
    bench_peers()
    bench_plan_sweep()
    bench_scaling()
    bench_accuracy()


GROUPS: dict[str, Callable[[], None]] = {
    "evaluation": evaluation,
    "parallelism": parallelism,
    "benchmarks": benchmarks,
}


def main(argv: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    unknown = [g for g in argv if g not in GROUPS]
    if unknown:
        raise SystemExit(f"unknown figure groups {unknown}; choose from {list(GROUPS)}")
    for group in argv or list(GROUPS):
        GROUPS[group]()


if __name__ == "__main__":
    main(sys.argv[1:])
