"""Progress of a fit: a bar of the fit's jobs, and log messages of its stages.

The bar is off by default and switched on by the Dask config key ``dask_meta.progress``,
which :func:`verbose` sets::

    dask_meta.verbose()                  # from now on, in this process
    with dask_meta.verbose():            # for these fits only
        learner.fit(X, y, w)
    DASK_DASK_META__PROGRESS=True        # environment variable, e.g. for batch jobs

A config key rather than a ``fit(..., verbose=)`` or constructor argument: the learners keep
metalearners' signatures exactly, the switch reaches every fit a call makes
(``fit_all_nuisance``, grid searches, surrogate models of an explainer), and it follows
Dask's own conventions (``dask.config.set`` as a context manager, config files, environment
variables). The bar counts base-model fits (the planner's jobs) as they finish; the total
grows while treatment-stage jobs wait for the nuisance models they need (``+``). In Jupyter
it is an ipywidgets bar when ipywidgets is installed, otherwise a text line, in a terminal
redrawn in place on stderr, and in logs (stderr not a terminal) one line per tenth of the
jobs. Stage start and end go to ``logging.getLogger("dask_meta")`` at INFO level, with or
without the bar.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import IO, Any, Protocol

import dask


class Job(Protocol):
    """What the progress display reads of a planner job: the stage it belongs to."""

    @property
    def stage(self) -> str: ...


logger = logging.getLogger("dask_meta")

CONFIG_KEY = "dask_meta.progress"


def verbose(enabled: bool = True) -> Any:
    """Show a progress bar of every fit's jobs (``enabled=False``: hide it).

    Sets the Dask config key ``dask_meta.progress``; use it once, or as a context manager
    to restore the previous setting afterwards.
    """
    return dask.config.set({CONFIG_KEY: bool(enabled)})


def enabled() -> bool:
    return bool(dask.config.get(CONFIG_KEY, default=False))


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except Exception:
        return False
    return ip is not None and hasattr(ip, "kernel")


class _TextBar:
    """A one-line text bar: redrawn in place on a terminal, else a line per tenth."""

    width = 24

    def __init__(self, stream: IO[str], in_place: bool):
        self.stream = stream
        self.in_place = in_place
        self.last_draw = 0.0
        self.last_tenth = -1
        self.finished = False

    def draw(self, line: str, fraction: float, final: bool) -> None:
        now = time.monotonic()
        if self.in_place:
            if not final and now - self.last_draw < 0.1:
                return
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            # in a log: a line whenever the tenth changes (the total grows when treatment
            # jobs are built, so it can go down), and the final line always, once
            tenth = int(fraction * 10)
            if final:
                if self.finished:
                    return
                self.finished = True
            elif tenth == self.last_tenth:
                return
            self.last_tenth = tenth
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last_draw = now


class _WidgetBar:
    def __init__(self, title: str):
        import ipywidgets
        from IPython.display import display

        self.bar = ipywidgets.IntProgress(min=0, max=1, value=0, description=title)
        self.label = ipywidgets.HTML()
        display(ipywidgets.HBox([self.bar, self.label]))

    def update(self, done: int, total: int, text: str, final: bool, failed: bool) -> None:
        self.bar.max = max(total, 1)
        self.bar.value = done
        self.label.value = text
        if final:
            self.bar.bar_style = "danger" if failed else "success"


class JobProgress:
    """Follows one planner run: logs stage start/end and, when enabled, draws the bar."""

    def __init__(
        self,
        label: str,
        jobs: Sequence[Job],
        show: bool,
        waiting: int = 0,
        stream: IO[str] | None = None,
    ):
        self.title = label.removeprefix("dask_meta-") or label
        self.started = time.monotonic()
        self.total: Counter[str] = Counter()
        self.done: Counter[str] = Counter()
        self.stage_started: dict[str, float] = {}
        self.stage_done: set[str] = set()
        self.initial = {job.stage for job in jobs}
        self.waiting = 0
        self.closed = False
        self.text: _TextBar | None = None
        self.widget: _WidgetBar | None = None
        if show:
            notebook = _in_notebook()
            if notebook:
                try:
                    self.widget = _WidgetBar(self.title)
                except Exception:  # no ipywidgets: a text line redrawn in place
                    self.widget = None
            if self.widget is None:
                out = stream if stream is not None else sys.stderr
                in_place = notebook or bool(getattr(out, "isatty", lambda: False)())
                self.text = _TextBar(out, in_place)
        self.added(jobs, waiting)

    # -- the planner's calls -------------------------------------------------------------

    def added(self, jobs: Sequence[Job], waiting: int) -> None:
        """New jobs are known (the first ones, or deferred ones now built)."""
        self.waiting = waiting
        for job in jobs:
            if job.stage not in self.stage_started:
                self.stage_started[job.stage] = time.monotonic()
                n = sum(1 for j in jobs if j.stage == job.stage)
                more = ", more to come" if waiting else ""
                logger.info("%s: %s stage started (%d fits%s)", self.title, job.stage, n, more)
            self.total[job.stage] += 1
        self._draw()

    def finished(self, job: Job, waiting: int) -> None:
        """One job is done; ``waiting``: deferred groups not built yet."""
        self.waiting = waiting
        self.done[job.stage] += 1
        stage = job.stage
        if (
            stage not in self.stage_done
            and self.done[stage] == self.total[stage]
            and (waiting == 0 or stage in self.initial)
        ):
            self.stage_done.add(stage)
            logger.info(
                "%s: %s stage done: %d fits in %.1f s",
                self.title,
                stage,
                self.done[stage],
                time.monotonic() - self.stage_started[stage],
            )
        self._draw()

    def close(self, failed: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self._draw(final=True, failed=failed)
        if failed:
            logger.info("%s: fit stopped after %d fits", self.title, sum(self.done.values()))

    # -- drawing ---------------------------------------------------------------------------

    def line(self, failed: bool = False) -> str:
        done, total = sum(self.done.values()), sum(self.total.values())
        more = "+" if self.waiting else ""
        stages = "  ".join(
            f"{stage} {self.done[stage]}/{self.total[stage]}" for stage in self.stage_started
        )
        elapsed = time.monotonic() - self.started
        status = "  failed" if failed else ""
        return f"{done}/{total}{more} fits  {stages}  {elapsed:.1f} s{status}"

    def _draw(self, final: bool = False, failed: bool = False) -> None:
        done, total = sum(self.done.values()), sum(self.total.values())
        fraction = done / total if total else 0.0
        if self.widget is not None:
            self.widget.update(done, total, self.line(failed), final, failed)
        elif self.text is not None:
            filled = round(fraction * _TextBar.width)
            bar = "#" * filled + "-" * (_TextBar.width - filled)
            self.text.draw(f"{self.title} [{bar}] {self.line(failed)}", fraction, final)


def fit_progress(label: str, jobs: Sequence[Job], waiting: int = 0) -> JobProgress:
    """The planner's hook for one run (``waiting``: deferred job groups not built yet): logs
    stage start/end, and draws a bar when ``dask_meta.progress`` is set."""
    return JobProgress(label, jobs, show=enabled(), waiting=waiting)
