"""A bootstrap's fits: the point fit and every replicate in one planner run.

The replicates share the point fit's training frame, folds and plan (one
:class:`~dask_meta.learners.fit_run.FitRun`, read once; :meth:`FitRun.replicate_of` gives
each replicate its own learner, job keys and weights) and, for LightGBM, the shared binned
Datasets: the weights change between replicates, the bins do not. All their jobs go to the
planner together, under the same resources and limits, ordered longest first, and are
cancelled together on an error.

The models of a learner's linear CATE (``_linear_cate_kinds``) that are not cross-fitted
sum their predictions on their own training rows as they are fitted
(:mod:`dask_meta.backends.scores`): :class:`TrainedSum`, which the bootstrap's ATE reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dask_meta._constants import NUISANCE, TREATMENT
from dask_meta._typing import Matrix, Vector
from dask_meta.backends import FitResult, RowSelection, supports_sample_weight
from dask_meta.factories import factory_name
from dask_meta.learners.fit_run import Entries, FitRun
from dask_meta.learners.fitting import (
    fit_entries,
    install,
    qualified_fit_params,
    run_report,
)
from dask_meta.learners.jobs import collect, plan_jobs
from dask_meta.planner import Deferred, Job, Limits
from dask_meta.resampling import Resample

STAGES = (NUISANCE, TREATMENT)


@dataclass(frozen=True)
class TrainedSum:
    """A fitted model's sum of count x prediction over the rows it trained on (``rows``,
    without the replicate's resample: its drawn rows of that selection)."""

    rows: RowSelection
    total: np.ndarray


#: per fit (point fit first): the trained sums of its models, by (kind, ordinal)
TrainedSums = list[dict[tuple[str, int], TrainedSum]]


def check_resamplable(learner: Any) -> None:
    """Every model of the learner must be refitted with weights (before any data is read)."""
    if learner._prefitted_nuisance_models:
        raise ValueError(
            "a bootstrap refits every model on each replicate's weights, but the learner has "
            f"prefitted nuisance models {sorted(learner._prefitted_nuisance_models)}; pass "
            "their factories instead"
        )
    for kind, models in {**learner._nuisance_models, **learner._treatment_models}.items():
        cfe = models[0]
        if not supports_sample_weight(cfe.estimator_factory, cfe.estimator_params):
            raise TypeError(
                f"the bootstrap weighs rows through sample_weight, but the {kind}'s "
                f"{factory_name(cfe.estimator_factory)}.fit takes no sample_weight; use a base "
                "model that does (most scikit-learn estimators and LightGBM do)"
            )


def fit_replicates(
    fits: Sequence[Any],
    seeds: Sequence[int],
    X: Matrix,
    y: Vector,
    w: Vector,
    limits: Limits,
    fit_params: dict | None,
    synchronize: bool,
) -> tuple[pd.DataFrame, TrainedSums]:
    """Fit ``fits[0]`` on the data and ``fits[1 + r]`` on replicate ``r``'s weights (drawn
    from ``seeds[r]``), in one planner run; install the models in each learner only if
    every fit succeeded. Returns the run's report, one row per base-model fit, with the
    replicate of each (-1: the point fit), and each fit's trained sums."""
    point = fits[0]
    qualified = qualified_fit_params(point, fit_params)
    entries: Entries = fit_entries(point, STAGES, synchronize)
    run = FitRun.begin(point, X, y, w, qualified, entries, limits, synchronize, row_ids=True)
    run.n_fits = len(fits)
    run.sum_predictions = frozenset(point._linear_cate_kinds)
    runs = [run] + [
        run.replicate_of(learner, r, Resample(seed))
        for r, (learner, seed) in enumerate(zip(fits[1:], seeds, strict=True))
    ]
    try:
        jobs: list[Job] = []
        deferred: list[Deferred] = []
        for each in runs:
            each_jobs, each_deferred = plan_jobs(each, entries, None if each is run else run)
            jobs.extend(each_jobs)
            deferred.extend(each_deferred)
        results = run.planner.run(jobs, deferred)
        fitted = [collect(each, results) for each in runs]
    except BaseException:
        run.planner.cancel_all()
        raise
    finally:
        if any(each.shared_bins for each in runs):
            run.planner.drop_bins(run.token)
        run.planner.release()
    report = run_report(run)
    replicate_of = {
        job.key: -1 if job.replicate is None else job.replicate
        for each in runs
        for _, owned in each.owners.values()
        for job in owned
    }
    report.insert(1, "replicate", report["key"].map(replicate_of).astype(int))
    for each, models in zip(runs, fitted, strict=True):
        install(each, models, STAGES, report)
    sums = [trained_sums(each, results) for each in runs]
    report.attrs["trained_sums"] = sum(len(s) for s in sums)
    return report, sums


def trained_sums(run: FitRun, results: dict[str, FitResult]) -> dict[tuple[str, int], TrainedSum]:
    """The trained sums that one fit's models gave, by (kind, ordinal)."""
    sums = {}
    for need, (_, jobs) in run.owners.items():
        for job in jobs:
            total = results[job.key].prediction_sum
            if total is not None:
                sums[need] = TrainedSum(dataclasses.replace(job.spec.rows, resample=None), total)
    return sums
