"""The ``dask-meta`` console script: parse the arguments, run the command, exit codes.

Errors in the job (invalid TOML, unknown key, bad import path, a class that is not an
estimator, a missing file or column) are found before any cluster starts and exit with
code 2; failures of the work exit with 1; an interrupt with 130. Either way, stderr ends
with one line saying why.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from dask_meta.cli.arguments import build_parser, flag_overrides
from dask_meta.cli.commands import demo, evaluate, fit, predict
from dask_meta.cli.schema import JobError, read_job


def _one_line(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, JobError) else f"{type(exc).__name__}: {exc}"
    notes = [n for n in getattr(exc, "__notes__", []) if isinstance(n, str)]
    if notes:
        text += " (" + "; ".join(notes) + ")"
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dask-meta`` with ``argv`` (default: the command line); the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "verbose", False):
        logging.getLogger("dask_meta").setLevel(logging.INFO)
    if args.command != "demo":
        logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        if args.command == "demo":
            return demo(args)
        job = read_job(args.config, [*args.overrides, *flag_overrides(args)])
        run = {"fit": fit, "predict": predict, "evaluate": evaluate}[args.command]
        return run(job, args)
    except JobError as exc:
        print(f"dask-meta {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dask-meta {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one-line reason, non-zero exit
        print(f"dask-meta {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
