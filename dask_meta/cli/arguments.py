"""The command-line arguments of ``dask-meta`` and the job keys its flags stand for."""

from __future__ import annotations

import argparse
import json
from typing import Any

from dask_meta.cli.schema import JOB_KEYS


def _job_arguments(parser: argparse.ArgumentParser, config_required: bool) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="JOB.toml",
        required=config_required,
        help="the job file (TOML)" + ("" if config_required else "; optional here"),
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override a job key, e.g. --set learner.n_folds=3 or "
        "--set 'learner.nuisance_model_params={n_estimators=50}' (VALUE is read as TOML, "
        "else as a string); repeatable, applied in order after the file",
    )
    cluster = parser.add_argument_group("cluster (job section [cluster])")
    cluster.add_argument("--scheduler", metavar="ADDRESS", help="connect to this scheduler")
    cluster.add_argument("--workers", type=int, help="embedded LocalCluster: workers")
    cluster.add_argument("--threads", type=int, help="embedded LocalCluster: threads per worker")
    cluster.add_argument(
        "--memory-limit", metavar="SIZE", help="embedded LocalCluster: memory per worker"
    )
    parser.add_argument(
        "--report", metavar="FILE.html", help="write a Dask performance report of the work"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log dask_meta's stages (INFO)"
    )


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """Dedicated flags as job keys (applied after the file and --set)."""
    pairs: list[tuple[str, Any]] = [
        ("cluster.scheduler", args.scheduler),
        ("cluster.workers", args.workers),
        ("cluster.threads", args.threads),
        ("cluster.memory_limit", args.memory_limit),
        ("model.path", getattr(args, "model", None)),
    ]
    if args.command == "fit":
        pairs += [("model.overwrite", True if args.overwrite else None)]
        pairs += [("model.trusted", True if args.trusted else None)]
    else:
        section = args.command
        pairs += [
            (f"{section}.data", args.data),
            (f"{section}.output", args.output),
            (f"{section}.is_oos", False if args.in_sample else None),
            (f"{section}.oos_method", args.oos_method),
            ("model.trusted", True if args.trusted else None),
        ]
        if section == "predict":
            pairs += [("predict.keep", args.keep or None)]
            pairs += [("predict.overwrite", True if args.overwrite else None)]
    out = []
    for key, value in pairs:
        if value is None:
            continue
        out.append(f"{key}={json.dumps(value)}")
    return out


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``dask-meta`` and its commands ``fit``, ``predict``, ``evaluate``,
    ``demo``."""
    parser = argparse.ArgumentParser(
        prog="dask-meta",
        description="CATE meta-learners (S, T, X, R, DR) on Dask: fit, predict and evaluate "
        "from a TOML job file, on a running cluster (--scheduler) or an embedded LocalCluster.",
        epilog="Run 'dask-meta COMMAND --help' for a command's options. Job keys: "
        + "; ".join(f"[{s}] {', '.join(k)}" for s, k in JOB_KEYS.items())
        + " (and the learner's constructor arguments).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = sub.add_parser(
        "fit",
        help="fit a learner on parquet data and save it",
        description="Fit the job's learner on [data] and save it to model.path (with the "
        "fold assignment, so that in-sample prediction works after loading). Shows a "
        "progress bar of the base-model fits and the dashboard link.",
    )
    _job_arguments(fit, config_required=True)
    fit.add_argument("--model", metavar="DIR", help="where to save the learner (model.path)")
    fit.add_argument("--overwrite", action="store_true", help="replace an existing model.path")
    fit.add_argument(
        "--trusted",
        action="store_true",
        help="pickle models that skops cannot store (loading them then needs --trusted)",
    )

    for name, text in (
        ("predict", "write the CATE of parquet data with a saved learner"),
        ("evaluate", "score a saved learner's base models on parquet data (JSON)"),
    ):
        command = sub.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ". Loads model.path (checksums "
            "verified; only trusted types unless --trusted).",
        )
        _job_arguments(command, config_required=False)
        command.add_argument("--model", metavar="DIR", help="the saved learner (model.path)")
        command.add_argument("--data", metavar="PATH", help=f"parquet data ({name}.data)")
        command.add_argument(
            "--output",
            metavar="PATH",
            help="CATE parquet directory (predict.output)"
            if name == "predict"
            else "also write the scores to this JSON file (evaluate.output)",
        )
        command.add_argument(
            "--in-sample",
            action="store_true",
            help=f"the data is exactly the training data ({name}.is_oos=false)",
        )
        command.add_argument(
            "--oos-method", choices=["overall", "mean", "median"], help=f"{name}.oos_method"
        )
        command.add_argument(
            "--trusted", action="store_true", help="load pickled models and untrusted types"
        )
        if name == "predict":
            command.add_argument(
                "--keep",
                metavar="COLUMN",
                action="append",
                help="a column of the data to write before the CATE (repeatable)",
            )
            command.add_argument(
                "--overwrite", action="store_true", help="replace an existing output"
            )

    demo = sub.add_parser(
        "demo",
        help="fit a learner on generated data on an embedded LocalCluster",
        description="Fit a T-learner with LightGBM on generated data on an embedded "
        "LocalCluster and print the RMSE against the true CATE.",
    )
    demo.add_argument("--rows", type=int, default=200_000)
    demo.add_argument("--features", type=int, default=20)
    demo.add_argument("--variants", type=int, default=3)
    demo.add_argument("--folds", type=int, default=5)
    demo.add_argument("--workers", type=int, default=1)
    demo.add_argument("--threads", type=int, default=2)
    demo.add_argument("--seed", type=int, default=0)
    return parser
