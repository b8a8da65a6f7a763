"""Fit wall time and accuracy: dask-meta against metalearners, EconML and CausalML.

One command, one machine, the same generated data and base models for everyone:

    ./dev.sh bench peers                                # T, X, R, DR at 100k and 1M rows
    .venv/bin/python benchmarks/peers.py --rows 100000 --learners T DR

* Data: ``dask_meta.datasets.make_experiment`` (20 covariates, ``--variants`` variants, default
  3, linear effects), written to parquet once per size: by default by pandas, as one file
  (one row group up to a million rows, as a user's own file often is), or with ``--write
  cluster`` from the cluster, one file per partition.
* Base models: ``LGBMRegressor(n_estimators=100, verbose=-1)`` for every outcome and effect
  model, ``LGBMClassifier`` with the same params for propensities; each package lets
  LightGBM use its default threads, except dask-meta, whose plan chooses them (``--plan``:
  by default dask-meta's default, not given).
* Folds: ``--folds`` (default 5) for every cross-fitting package: metalearners and dask-meta
  (``n_folds``), EconML's ``DRLearner``/``NonParamDML`` (``cv``) and CausalML's R-learner
  (``n_fold``); EconML's and CausalML's S/T/X learners do not cross-fit.
* dask-meta reads the parquet lazily on a ``LocalCluster`` (1 worker x all cores, warmed up);
  the peers read it into memory first (not timed), each in its own virtualenv:
  metalearners in ``.venv-parity`` with its default parallelism (its fastest configuration
  here, see ``learners_vs_metalearners.py`` for its whole grid), EconML and CausalML in
  ``.venv-peers`` (``accuracy.py`` creates it).
* dask-meta is fitted with metalearners' folds (every model kind cross-fitted, the numbers
  metalearners gives) with its default arguments from the lazily read parquet (``--configs
  default``) and from pandas read before the timer starts (``pandas``), and with
  ``plan="auto"`` from the lazily read parquet (``auto``); and, for the like-for-like
  comparison with EconML and CausalML, doing their work (:func:`peer_config` says which fit
  each peer is compared with):

  * ``peers-folds`` (:data:`PEERS_FOLDS`): only the model kinds that the peers cross-fit are
    cross-fitted, the others are fitted once on all their rows (their T and X learners fit
    each model once, their DR and R learners cross-fit the nuisance models only); the
    cross-fitted ones get no overall model where the peers fit none and the CATE does not
    use it (:data:`PEERS_NO_OVERALL`, dask-meta's ``enable_overall``). The propensity model
    is one multi-class classifier, as in EconML's DR-learner.
  * ``peers-pairwise``: the same, with the propensity fitted as one binary model per
    treatment variant against control (:class:`dask_meta.PairwisePropensityClassifier`), as
    EconML's X-learner and CausalML do (:data:`PAIRWISE_PEERS`), and CausalML's folds where
    they differ (:data:`PAIRWISE_FOLDS`: its DR-learner's outcome models, 3).

  The peers' data are in memory before their timers start; so are dask-meta's for these two
  (``--peers-input persisted``, the default: the parquet persisted on the cluster, not
  timed; ``lazy`` times the read too).
* Reported: fit wall time, its ratio to dask-meta's (for EconML and CausalML also to
  dask-meta's doing their work), the wall time of the in-sample prediction (for dask-meta
  computed into the client's memory, where the peers return theirs), the RMSE of the
  in-sample CATE against the true one (over all variants), and the warnings dask-meta's fit
  and prediction print. A second table gives dask-meta's metalearners work as ratios to
  metalearners' fit and prediction times, against the targets :data:`FIT_TARGETS` (fit) and
  1 (prediction). EconML's ``NonParamDML`` takes one binary
  treatment, so its R-learner is "n/a" with 3 variants. CausalML is given propensity scores
  from the same propensity model (their computation counts in its fit time).

Results: ``benchmarks/results/peers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _peers_runner as peers  # noqa: E402
import accuracy  # noqa: E402
from _cluster import local_client, machine_load  # noqa: E402

RESULTS = HERE / "results" / "peers.json"
PACKAGES = ("dask-meta", "metalearners", "econml", "causalml")
#: dask-meta's package name in the results, per ``--configs`` value
OURS = {
    "default": "dask-meta",
    "pandas": "dask-meta, pandas input",
    "auto": "dask-meta, plan auto",
    "peers-folds": "dask-meta, peers' folds",
    "peers-pairwise": "dask-meta, peers' folds, pairwise propensity",
}
#: the configurations that fit metalearners' learner (every model kind cross-fitted)
METALEARNERS_WORK = ("default", "pandas", "auto")
#: fit time / metalearners' of dask-meta's defaults, per learner (the moonshot is 0.5); none
#: for the S-learner, whose metalearners fit with LightGBM never sees the treatment column
FIT_TARGETS = {"T": 0.75, "X": 0.6, "R": 0.6, "DR": 0.6}
#: per learner, the folds of each model kind that EconML and CausalML use (``None``: the
#: benchmark's ``--folds``); fitted with ``synchronize_cross_fitting=False``
PEERS_FOLDS: dict[str, dict[str, int | None]] = {
    "T": {"variant_outcome_model": 1},
    "X": {
        "variant_outcome_model": 1,
        "propensity_model": 1,
        "control_effect_model": 1,
        "treatment_effect_model": 1,
    },
    "R": {"outcome_model": None, "propensity_model": None, "treatment_model": 1},
    "DR": {"variant_outcome_model": None, "propensity_model": None, "treatment_model": 1},
}
#: per learner, the cross-fitted model kinds that EconML and CausalML fit no overall model
#: for (dask-meta's ``enable_overall``): their CATE does not use one. The DR-learner's
#: outcome models keep theirs, which its pseudo-outcomes use on the other variants' rows
#: (metalearners' definition), except in :data:`PEERS_ALL_ROWS`
PEERS_NO_OVERALL: dict[str, dict[str, bool]] = {
    "R": {"outcome_model": False, "propensity_model": False},
    "DR": {"propensity_model": False},
}
#: per learner, the configuration whose outcome models cross-fit every row
#: (``cross_fit_all_rows=True``) and so fit no overall model: EconML's DR-learner, whose one
#: outcome model with the treatment as a feature is cross-fitted on every row (the same
#: training rows: 4n over 5 folds)
PEERS_ALL_ROWS: dict[str, str] = {"DR": "peers-folds"}

#: per learner, the folds of the pairwise configuration where they differ from
#: :data:`PEERS_FOLDS`: the DR-learner's stands for CausalML's (:data:`PAIRWISE_PEERS`),
#: which rotates its outcome models over 3 folds (``KFold(n_splits=3)``, fixed), each
#: trained on a third of the rows, where EconML's ``DRLearner`` takes ``cv``
PAIRWISE_FOLDS: dict[str, dict[str, int]] = {"DR": {"variant_outcome_model": 3}}

#: per learner, the peers that fit its propensity as one binary model per treatment variant
#: on that variant's and the control rows: EconML's X-learner, and CausalML, whose
#: propensity inputs :func:`_peers_runner.propensities` computes so. EconML's DR-learner
#: fits one multi-class model, as metalearners does.
PAIRWISE_PEERS: dict[str, tuple[str, ...]] = {
    "X": ("econml", "causalml"),
    "R": ("causalml",),
    "DR": ("causalml",),
}
#: per learner, the peers' configurations it is fitted in (EconML's R-learner is n/a with
#: more than two variants, so the R-learner needs no multi-class one)
PEER_CONFIGS: dict[str, tuple[str, ...]] = {
    "S": ("peers-folds",),
    "T": ("peers-folds",),
    "X": ("peers-pairwise",),
    "R": ("peers-pairwise",),
    "DR": ("peers-folds", "peers-pairwise"),
}


PEER_CONFIGS_ALL = ("peers-folds", "peers-pairwise")


def peer_config(learner: str, peer: str) -> str:
    """The dask-meta configuration that does the same work as ``peer``'s ``learner``."""
    return "peers-pairwise" if peer in PAIRWISE_PEERS.get(learner, ()) else "peers-folds"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--learners", nargs="+", default=["T", "X", "R", "DR"], choices=accuracy.LEARNERS
    )
    parser.add_argument("--variants", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--peers", nargs="*", default=list(PACKAGES[1:]), choices=PACKAGES[1:], help="peers to run"
    )
    parser.add_argument(
        "--plan",
        default="default",
        choices=("default", "auto", "none"),
        help="dask-meta's plan argument (default: not given) but in the 'auto' configuration",
    )
    parser.add_argument(
        "--write",
        default="pandas",
        choices=("pandas", "cluster"),
        help="how the data reach parquet: one file written by pandas (one row group of up to "
        "a million rows, what a user's own file often is) or one file per partition of the "
        "generator, written from the cluster",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        default=list(OURS),
        choices=tuple(OURS),
        help="dask-meta's configurations: metalearners' work with the defaults on lazy "
        "parquet (default) and on pandas (pandas), with plan='auto' (auto), and the peers' work",
    )
    parser.add_argument(
        "--peers-input",
        default="persisted",
        choices=("persisted", "lazy"),
        help="dask-meta's input in the peers' configurations: persisted on the cluster "
        "before the timer starts, as the peers' data are in memory, or read lazily",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the fits of an earlier run with the same --results (dask-meta's from its "
        "JSON, the peers' from its checkpoint) and run only the others",
    )
    return parser.parse_args(argv)


def dask_meta_learner(args: argparse.Namespace, client, learner: str, config: str = "default"):
    """dask-meta's ``learner`` in ``config`` (see :data:`OURS`) and its ``fit`` keyword
    arguments; ``args`` gives ``folds``, ``variants``, ``seed`` and ``plan``."""
    import dask_meta

    n_folds: int | dict[str, int] = args.folds
    fit_kwargs: dict = {}
    learner_kwargs: dict = {}
    if config in PEER_CONFIGS_ALL:
        n_folds = {k: args.folds if f is None else f for k, f in PEERS_FOLDS[learner].items()}
        if config == "peers-pairwise":
            n_folds |= PAIRWISE_FOLDS.get(learner, {})
        fit_kwargs["synchronize_cross_fitting"] = False
        no_overall = dict(PEERS_NO_OVERALL.get(learner, {}))
        if PEERS_ALL_ROWS.get(learner) == config:
            learner_kwargs["cross_fit_all_rows"] = True
            no_overall["variant_outcome_model"] = False
        learner_kwargs["enable_overall"] = no_overall or True
    models = peers.model_kwargs(learner, *peers.base_models("lgbm100"))
    if config == "peers-pairwise":
        classifier = models["propensity_model_factory"](**models["propensity_model_params"])
        models["propensity_model_factory"] = dask_meta.PairwisePropensityClassifier
        models["propensity_model_params"] = {"estimator": classifier}
    plan = "auto" if config == "auto" else args.plan
    if plan != "default":  # else not given: the learner's default
        learner_kwargs["plan"] = None if plan == "none" else plan
    est = getattr(dask_meta, f"{learner}Learner")(
        is_classification=False,
        n_variants=args.variants,
        **models,
        n_folds=n_folds,
        random_state=args.seed,
        client=client,
        **learner_kwargs,
    )
    return est, fit_kwargs


def in_sample_mse(client, est, X, truth) -> list[float]:
    """Per variant, the mean squared error of ``est``'s in-sample CATE of the lazy frame
    ``X`` against the true CATE columns ``truth``, reduced on the cluster."""
    import dask

    cate = est.predict(X, is_oos=False)[:, :, 0]
    # tuning off: one partition per file, as the prediction (docs/out-of-core.md)
    with dask.config.set({"optimization.tune.active": False}):
        true = truth.to_dask_array(lengths=True)
    return [float(m) for m in client.compute(((cate - true) ** 2).mean(axis=0)).result()]


def fit_dask_meta(
    args: argparse.Namespace, client, path: Path, learner: str, config: str = "default"
) -> dict:
    """One fit of dask-meta in ``config`` and its in-sample prediction, each timed, with the
    warnings they print. The prediction is computed into memory, as metalearners returns
    it, and scored against the true CATE there."""
    import warnings

    import dask.dataframe as dd
    import numpy as np
    import pandas as pd
    from distributed import wait

    from dask_meta.datasets import cate_names, feature_names
    from dask_meta.planner import parallel_efficiency

    ddf = dd.read_parquet(path)
    features, cates = feature_names(ddf), cate_names(ddf)
    truth = pd.read_parquet(path, columns=cates).to_numpy()
    source = "lazy"
    X, y, w = ddf[features], ddf["y"], ddf["w"]
    if config == "pandas":
        frame = pd.read_parquet(path, columns=[*features, "y", "w"])
        X, y, w = frame[features], frame["y"], frame["w"]
        source = "pandas"
    elif config in PEER_CONFIGS_ALL and args.peers_input == "persisted":
        ddf = client.persist(ddf)
        wait(ddf)
        X, y, w = ddf[features], ddf["y"], ddf["w"]
        source = "persisted"
    est, fit_kwargs = dask_meta_learner(args, client, learner, config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        est.fit(X, y, w, **fit_kwargs)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        cate = est.predict(X, is_oos=False)
        cate = np.asarray(cate if isinstance(cate, np.ndarray) else cate.compute())
        predict_s = time.perf_counter() - start
    rmse = np.sqrt(((cate[:, :, 0] - truth) ** 2).mean(axis=0))
    report = est.fit_report_
    return {
        "package": OURS[config],
        "learner": learner,
        "fit_s": fit_s,
        "predict_s": predict_s,
        "pehe_in": float(np.sqrt((rmse**2).mean())),
        "rmse_in": [float(r) for r in rmse],
        "efficiency": parallel_efficiency(report, sum(client.nthreads().values()), fit_s),
        "plan": report.attrs.get("plan", {}),
        "input": source,
        "warnings": [f"{c.category.__name__}: {c.message}" for c in caught],
    }


def table(results: list[dict], rows_list: list[int], learners: list[str]) -> str:
    heads = [
        "rows",
        "learner",
        "package",
        "fit s",
        "ratio to dask-meta",
        "peer / dask-meta doing its work",
        "in-sample predict s",
        "RMSE",
        "note",
    ]
    body = []
    for n in rows_list:
        for learner in learners:
            mine = [r for r in results if r["rows"] == n and r["learner"] == learner]
            dm = next((r for r in mine if r["package"] == "dask-meta"), None)
            ours = {r["package"]: r for r in mine if r["package"] in OURS.values()}
            for r in mine:
                if "not_available" in r:
                    note = r["not_available"]
                    body.append([f"{n:,}", learner, r["package"], "n/a", "", "", "", "", note])
                    continue
                ratio = f"{r['fit_s'] / dm['fit_s']:.2f}" if dm else ""
                like = ""
                if r["package"] in ("econml", "causalml"):
                    matched = ours.get(OURS[peer_config(learner, r["package"])])
                    if matched:
                        like = f"{r['fit_s'] / matched['fit_s']:.2f}"
                note = ""
                if r["package"] in OURS.values():
                    note = (
                        f"{r.get('input', 'lazy')} input, plan {r['plan'].get('source')}: "
                        f"{r['plan'].get('threads_per_model')} thread(s)/model, "
                        f"efficiency {r['efficiency']:.2f}, "
                        f"{len(r.get('warnings', []))} warnings"
                    )
                predict = f"{r['predict_s']:.1f}" if r.get("predict_s") is not None else ""
                body.append(
                    [
                        f"{n:,}",
                        learner,
                        r["package"],
                        f"{r['fit_s']:.1f}",
                        ratio,
                        like,
                        predict,
                        f"{r['pehe_in']:.4f}",
                        note,
                    ]
                )
    return accuracy._format(heads, body)


def against_metalearners(results: list[dict], rows_list: list[int], learners: list[str]) -> str:
    """dask-meta's metalearners work (defaults on lazy parquet and on pandas, plan auto)
    as ratios to metalearners' fit and in-sample prediction times, and the targets."""
    heads = ["rows", "learner", "configuration", "fit / ml", "target", "predict / ml", "RMSE / ml"]
    body = []
    verdicts = {"fit": True, "predict": True, "warnings": True}
    for n in rows_list:
        for learner in learners:
            mine = {r["package"]: r for r in results if r["rows"] == n and r["learner"] == learner}
            ml = mine.get("metalearners")
            if ml is None or "fit_s" not in ml:
                continue
            for config in METALEARNERS_WORK:
                r = mine.get(OURS[config])
                if r is None:
                    continue
                fit = r["fit_s"] / ml["fit_s"]
                predict = r["predict_s"] / ml["predict_s"] if ml.get("predict_s") else None
                worst = max(a / b for a, b in zip(r["rmse_in"], ml["rmse_in"], strict=True))
                target = FIT_TARGETS.get(learner) if config != "auto" else None
                if target is not None:
                    verdicts["fit"] &= fit <= target
                    verdicts["warnings"] &= not r.get("warnings")
                verdicts["predict"] &= predict is not None and predict <= 1.0
                body.append(
                    [
                        f"{n:,}",
                        learner,
                        OURS[config],
                        f"{fit:.2f}",
                        f"<= {target}" if target is not None else "",
                        f"{predict:.2f}" if predict is not None else "n/a",
                        f"{worst:.3f}",
                    ]
                )
    if not body:
        return "no metalearners fit beside dask-meta's metalearners work in this run: no targets"
    lines = [accuracy._format(heads, body), ""]
    lines.append(
        "target: dask-meta's defaults (lazy parquet and pandas) fit within the target ratio of "
        f"metalearners' fit time: {'PASS' if verdicts['fit'] else 'FAIL'}"
    )
    lines.append(
        "target: in-sample prediction no slower than metalearners' in every configuration: "
        f"{'PASS' if verdicts['predict'] else 'FAIL'}"
    )
    lines.append(
        "target: no warning from a fit and prediction with the defaults: "
        f"{'PASS' if verdicts['warnings'] else 'FAIL'}"
    )
    lines.append("RMSE / ml: the worst variant's in-sample RMSE ratio (one fit each, one seed)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pythons: dict[str, Path] = {}
    if "metalearners" in args.peers:
        pythons["metalearners"] = accuracy.PARITY_VENV / "bin" / "python"
        if not pythons["metalearners"].exists():
            raise SystemExit("metalearners runs in .venv-parity: create it with ./dev.sh parity")
    if {"econml", "causalml"} & set(args.peers):
        pythons["econml"] = pythons["causalml"] = accuracy.ensure_peers_venv()
    load = machine_load()

    from dask_meta.datasets import make_experiment

    cores = len(os.sched_getaffinity(0))
    results: list[dict] = []
    if args.resume and args.results.exists():
        results = [
            r
            for r in json.loads(args.results.read_text())["results"]
            if r["package"] in OURS.values()
        ]
    checkpoint = accuracy.Checkpoint(args.results, args.resume)
    with tempfile.TemporaryDirectory(prefix="dask-meta-peers-") as tmp_name:
        tmp = Path(tmp_name)
        for n in args.rows:
            path = tmp / f"experiment-{n}.parquet"
            with local_client(1, cores) as client:
                data = make_experiment(n, 20, args.variants, seed=args.seed)
                if args.write == "pandas":
                    data.compute().to_parquet(path, index=False)
                else:
                    data.to_parquet(path, write_index=False)
                for learner in args.learners:
                    for config in args.configs:
                        if config in PEER_CONFIGS_ALL and config not in PEER_CONFIGS[learner]:
                            continue
                        if any(
                            (r["rows"], r["learner"], r["package"]) == (n, learner, OURS[config])
                            for r in results
                        ):
                            continue  # --resume: fitted in the earlier run
                        r = fit_dask_meta(args, client, path, learner, config)
                        results.append({**r, "rows": n})
                        print(
                            f"[peers] {n:,} {learner} {r['package']}: {r['fit_s']:.1f} s",
                            file=sys.stderr,
                        )
                        save(args, cores, load, results)
            # the cluster is closed: the peers get the cores to themselves
            for package in args.peers:
                jobs = [
                    {
                        "data": str(path),
                        "dataset": f"generated-{n}",  # the checkpoint's key: one per size
                        "rows": n,
                        "seed": args.seed,
                        "learner": learner,
                        "base": "lgbm100",
                        "folds": args.folds,
                        "package": package,
                    }
                    for learner in args.learners
                ]
                results += accuracy.run_peer(pythons[package], jobs, tmp, checkpoint)
                save(args, cores, load, results)

    text = save(args, cores, load, results)
    print(text)
    print(f"\nresults: {args.results}")
    return 0


def save(args: argparse.Namespace, cores: int, load: tuple, results: list[dict]) -> str:
    """Write what is measured so far (a long run that stops keeps its finished rows)."""
    text = table(results, args.rows, args.learners)
    text += "\n\n" + against_metalearners(results, args.rows, args.learners)
    document = {
        "benchmark": "peers",
        "args": vars(args),
        "machine": {"cores": cores, "platform": platform.platform(), "load_average": load},
        "versions": {
            "python": platform.python_version(),
            **{n: version(n) for n in ("dask-meta", "dask", "lightgbm", "scikit-learn")},
        },
        "results": [{k: v for k, v in r.items() if k != "data"} for r in results],
        "table": text,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(document, indent=2, default=str))
    return text


if __name__ == "__main__":
    sys.exit(main())
