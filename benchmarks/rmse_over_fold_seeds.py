"""Accuracy over fold seeds: dask-meta against metalearners 0.13.0 on one generated data set.

One fit's RMSE against the true CATE depends on which rows land in which fold; for the
R-learner on 1M rows that alone moves it by several percent. A single pair of fits cannot
say whether dask-meta is as accurate as metalearners, so this fits the same learner on the
same data (generated once with ``--seed``) with several fold seeds on both sides:

* dask-meta: ``random_state=s`` with its default ``fold_strategy="partition"`` (and shared
  LightGBM bins), as in ``learners_vs_metalearners.py``;
* metalearners: ``random_state=s`` (its shuffled ``KFold``), default configuration.

It prints, per variant, the mean RMSE and its standard error over the seeds on each side and
the ratio of the means. Fit times are printed too but are not the point (``--quick`` runs of
``learners_vs_metalearners.py`` measure them on a quiet machine).

    .venv/bin/python benchmarks/rmse_over_fold_seeds.py --learner R --fold-seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import tlearner_vs_metalearners as single  # noqa: E402
from _cluster import local_client  # noqa: E402

RESULTS = HERE / "results" / "rmse_over_fold_seeds_{learner}.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fold-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--learner", default="R", choices=("S", "T", "X", "R", "DR"))
    known, rest = parser.parse_known_args(argv)
    args = single.parse_args(["--learner", known.learner, "--quick", *rest])
    args.fold_seeds = known.fold_seeds
    return args


def summary(rmses: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over seeds, per variant."""
    values = np.asarray(rmses)
    se = values.std(axis=0, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0 * values[0]
    return values.mean(axis=0), se


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dm_runs, ml_runs = [], []
    with tempfile.TemporaryDirectory(prefix="dask-meta-seeds-") as tmp:
        path = Path(tmp) / "experiment.parquet"
        with local_client(args.workers, args.threads) as client:
            single.write_data(args, path)
            for seed in args.fold_seeds:
                run = single.run_dask_meta(
                    argparse.Namespace(**{**vars(args), "seed": seed}), client, path
                )
                dm_runs.append({"seed": seed, "fit_s": run["fit_s"], "rmse": run["rmse"]})
                print(
                    f"[dask-meta] fold seed {seed}: fit {run['fit_s']:.1f} s, "
                    f"RMSE {np.round(run['rmse'], 4).tolist()}"
                )
        for seed in args.fold_seeds:
            ml = single.run_metalearners(
                argparse.Namespace(**{**vars(args), "seed": seed}), path, cap_seconds=0.0
            )
            config = ml["configs"][0]
            ml_runs.append({"seed": seed, "fit_s": config["fit_s"], "rmse": config["rmse"]})
            print(
                f"[metalearners] fold seed {seed}: fit {config['fit_s']:.1f} s, "
                f"RMSE {np.round(config['rmse'], 4).tolist()}"
            )

    dm_mean, dm_se = summary([r["rmse"] for r in dm_runs])
    ml_mean, ml_se = summary([r["rmse"] for r in ml_runs])
    print(
        f"\n{args.learner}-learner, LightGBM n_estimators={args.trees}: {args.rows:,} rows x "
        f"{args.features} features, {args.variants} variants, {args.folds} folds, data seed "
        f"{args.seed}, fold seeds {args.fold_seeds}\n"
    )
    print("variant  dask-meta RMSE mean +- se  metalearners RMSE mean +- se  ratio of means")
    for k in range(len(dm_mean)):
        print(
            f"{k + 1:>7}  {dm_mean[k]:>15.4f} +- {dm_se[k]:.4f}  {ml_mean[k]:>18.4f} +- "
            f"{ml_se[k]:.4f}  {dm_mean[k] / ml_mean[k]:>14.3f}"
        )
    results = Path(str(RESULTS).format(learner=args.learner.lower()))
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "dask_meta": dm_runs,
                "metalearners": ml_runs,
            },
            indent=2,
        )
    )
    print(f"\nresults: {results.relative_to(single.REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
