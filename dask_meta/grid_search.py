"""``MetaLearnerGridSearch``: metalearners' grid search, every candidate fitted on the cluster.

Same arguments, grid enumeration, ``raw_results_`` / ``results_`` and errors as
``metalearners.grid_search``. What differs is where the work happens:

* Dask inputs are persisted **once**, as one frame holding X, y and w (and once more for the
  test set): every candidate reads the partitions from the cluster's memory, never the
  source files again. Candidates are built with ``persist=False`` (unless
  ``metalearner_params`` says otherwise) so they do not copy those partitions a second time.
* Candidates run concurrently: ``n_jobs`` candidates at a time (None: as many as the cluster
  has threads, -1: all), each through its own planner on the same client; the scheduler's
  ``threads`` resources keep the cluster from being oversubscribed. Candidates with a gang
  (collection) base model run one at a time, as every gang fit must run alone.
* ``fit_time`` and ``score_time`` are wall times of a candidate's ``fit`` and ``evaluate``;
  with concurrent candidates they overlap.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import dask.dataframe as dd
import pandas as pd
from sklearn.model_selection import ParameterGrid

from dask_meta import runtime
from dask_meta._constants import OVERALL, PROPENSITY_MODEL, W_COL, Y_COL
from dask_meta._typing import Matrix, Vector
from dask_meta.backends import COLLECTION, backend_of
from dask_meta.cluster import resolve_client
from dask_meta.data import _NO_TUNING, combine, is_dask
from dask_meta.factories import factory_name, flatten
from dask_meta.learners.base import MetaLearner


@dataclass(frozen=True)
class GSResult:
    """Result of one candidate: the fitted learner, its scores and times."""

    metalearner: Any
    train_scores: dict
    test_scores: dict | None
    fit_time: float
    score_time: float


@dataclass(frozen=True)
class _Candidate:
    params: dict[str, Any]
    gang: bool


class MetaLearnerGridSearch:
    """Exhaustive search over base models and their parameters for a meta-learner.

    Arguments as in metalearners: ``base_learner_grid`` maps every model kind to fit (all
    kinds minus those prefitted through ``metalearner_params``) to a sequence of factories;
    ``param_grid`` is ``{kind: {FactoryClassName: {param: [values]}}}``; ``random_state``
    goes to every candidate and must not be in ``metalearner_params``. ``n_jobs`` is the
    number of candidates fitted at the same time (see the module docstring); ``verbose > 0``
    prints one line per finished candidate.
    """

    def __init__(
        self,
        metalearner_factory: type[MetaLearner],
        metalearner_params: Mapping[str, Any],
        base_learner_grid: Mapping[str, Sequence[type]],
        param_grid: Mapping[str, Mapping[str, Mapping[str, Sequence]]],
        scoring: dict[str, list] | None = None,
        n_jobs: int | None = None,
        random_state: int | None = None,
        verbose: int = 0,
        store_raw_results: bool = True,
        store_results: bool = True,
    ):
        self.metalearner_factory = metalearner_factory
        self.metalearner_params = metalearner_params
        self.scoring = scoring
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.store_raw_results = store_raw_results
        self.store_results = store_results

        all_models = set(metalearner_factory.nuisance_model_specifications()) | set(
            metalearner_factory.treatment_model_specifications()
        )
        self.fitted_models = set(metalearner_params.get("fitted_nuisance_models", None) or {})
        if metalearner_params.get("fitted_propensity_model", None) is not None:
            self.fitted_models |= {PROPENSITY_MODEL}
        self.models_to_fit = all_models - self.fitted_models
        if set(base_learner_grid) != self.models_to_fit:
            raise ValueError(
                "base_learner_grid keys don't match the expected model names. "
                f"base_learner_grid keys were expected to be {self.models_to_fit}."
            )
        if n_jobs is not None and (not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1):
            raise ValueError(f"n_jobs must be None, -1 or a positive integer, got {n_jobs!r}")
        self.base_learner_grid = base_learner_grid
        self.param_grid = param_grid

    def _candidates(self) -> list[_Candidate]:
        factory = self.metalearner_factory
        outcome_kinds = (
            set(factory.nuisance_model_specifications()) - {PROPENSITY_MODEL}
        ) & self.models_to_fit
        treatment_kinds = set(factory.treatment_model_specifications())
        candidates = []
        for base_learners in ParameterGrid(dict(self.base_learner_grid)):
            per_kind = {
                kind: list(
                    ParameterGrid(
                        dict(_grid_of(self.param_grid.get(kind, {}), base_learners[kind]))
                    )
                )
                for kind in self.models_to_fit
            }
            gang = any(backend_of(f) == COLLECTION for f in base_learners.values())
            for params in ParameterGrid(per_kind):
                grid_params = {
                    "nuisance_model_factory": {k: base_learners[k] for k in outcome_kinds},
                    "treatment_model_factory": {k: base_learners[k] for k in treatment_kinds},
                    "propensity_model_factory": base_learners.get(PROPENSITY_MODEL, None),
                    "nuisance_model_params": {k: params[k] for k in outcome_kinds},
                    "treatment_model_params": {k: params[k] for k in treatment_kinds},
                    "propensity_model_params": params.get(PROPENSITY_MODEL, None),
                    "random_state": self.random_state,
                }
                shared = set(grid_params) & set(self.metalearner_params)
                if shared:
                    raise ValueError(
                        f"{shared} should not be specified in metalearner_params as they are "
                        "used internally. Please use the correct parameters."
                    )
                candidates.append(
                    _Candidate(
                        {"persist": False} | dict(self.metalearner_params) | grid_params, gang
                    )
                )
        return candidates

    def fit(
        self,
        X: Matrix,
        y: Vector,
        w: Vector,
        X_test: Any = None,
        y_test: Any = None,
        w_test: Any = None,
        oos_method: str = OVERALL,
        **kwargs: Any,
    ) -> MetaLearnerGridSearch:
        """Fit and score every candidate; ``kwargs`` go to each candidate's ``fit``.

        With ``X_test``, ``y_test`` and ``w_test``, candidates are also scored out of sample
        with ``oos_method``.
        """
        candidates = self._candidates()
        self.grid_size_ = len(candidates)
        self.results_: pd.DataFrame | None = None
        client = resolve_client(self.metalearner_params.get("client"))
        has_test = X_test is not None and y_test is not None and w_test is not None
        train, train_frame = _persist_once(client, X, y, w)
        test, test_frame = (
            _persist_once(client, X_test, y_test, w_test) if has_test else (None, None)
        )
        self._persisted = [f for f in (train_frame, test_frame) if f is not None]
        self._client = client

        def score(candidate: _Candidate) -> GSResult:
            # the current client is a context variable, which pool threads do not inherit
            with runtime.as_current(client):
                return fit_and_score(candidate)

        def fit_and_score(candidate: _Candidate) -> GSResult:
            start = time.perf_counter()
            learner = self.metalearner_factory(**candidate.params)
            learner.fit(*train, **kwargs)
            fit_time = time.perf_counter() - start
            start = time.perf_counter()
            train_scores = learner.evaluate(*train, is_oos=False, scoring=self.scoring)
            test_scores = (
                learner.evaluate(*test, is_oos=True, oos_method=oos_method, scoring=self.scoring)
                if test is not None
                else None
            )
            score_time = time.perf_counter() - start
            return GSResult(learner, train_scores, test_scores, fit_time, score_time)

        width = self._concurrency(client, candidates)
        results = self._run(candidates, score, width)
        if self.store_raw_results:
            self.raw_results_: list[GSResult] | Iterator[GSResult] | None = list(results)
            self._release()
        else:
            self.raw_results_ = results
        if self.store_results:
            self.results_ = _format_results(self.raw_results_)  # type: ignore[arg-type]
            if not self.store_raw_results:
                self.raw_results_ = None
        return self

    def _concurrency(self, client: Any, candidates: Sequence[_Candidate]) -> int:
        if any(c.gang for c in candidates):
            return 1
        if self.n_jobs == -1:
            return max(len(candidates), 1)
        if self.n_jobs is None:
            return max(1, min(len(candidates), runtime.total_threads(client)))
        return self.n_jobs

    def _run(
        self, candidates: Sequence[_Candidate], score: Any, width: int
    ) -> Generator[GSResult, None, None]:
        """Candidates in the order they finish (a list keeps the grid order)."""
        done: list[tuple[int, GSResult]] = []
        # dask.config.set is process-global: hold the no-tuning setting for the whole search
        # so that candidates entering and leaving it in other threads cannot switch it back
        with dask.config.set(_NO_TUNING), ThreadPoolExecutor(max_workers=width) as pool:
            futures = {pool.submit(score, c): i for i, c in enumerate(candidates)}
            try:
                for future in as_completed(futures):
                    result = future.result()
                    if self.verbose > 0:
                        print(
                            f"[MetaLearnerGridSearch] candidate {futures[future] + 1}/"
                            f"{len(candidates)}: fit {result.fit_time:.1f} s, "
                            f"score {result.score_time:.1f} s"
                        )
                    if self.store_raw_results:
                        done.append((futures[future], result))
                    else:
                        yield result
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        yield from (r for _, r in sorted(done, key=lambda item: item[0]))
        if not self.store_raw_results:
            self._release()

    def _release(self) -> None:
        """Drop the search's hold on the persisted inputs once every candidate is scored.

        The fitted candidates keep what they need; the partitions leave the workers' memory
        when nothing refers to them any more.
        """
        self._persisted = []


def _grid_of(grids: Mapping[str, Any], factory: Any) -> Any:
    """A factory's parameter grid: under its name (``partial(LGBMRegressor)`` for a partial),
    else under the name of the class a partial wraps (``LGBMRegressor``)."""
    name = factory_name(factory)
    if name in grids:
        return grids[name]
    return grids.get(factory_name(flatten(factory, {})[0]), {})


def _persist_once(client: Any, X: Any, y: Any, w: Any) -> tuple[tuple[Any, Any, Any], Any]:
    """(X, y, w) backed by one persisted frame, so the source is read once; in-memory as is."""
    if not is_dask(X):
        return (X, y, w), None
    if isinstance(X, da.Array):
        persisted = runtime.persist(client, [X, y, w])
        return tuple(persisted), persisted  # type: ignore[return-value]
    frame = combine(X, {Y_COL: ("y", y), W_COL: ("w", w)}).frame
    with dask.config.set(_NO_TUNING):
        persisted = runtime.persist(client, frame)
    names = list(X.columns) if isinstance(X, dd.DataFrame) else [X.name]
    x_part = persisted[names] if isinstance(X, dd.DataFrame) else persisted[names[0]]
    return (x_part, persisted[Y_COL], persisted[W_COL]), persisted


def _format_results(results: Sequence[GSResult]) -> pd.DataFrame:
    """metalearners' results table: one row per candidate, indexed by its configuration."""
    rows = []
    nuisance_kinds: list[str] = []
    treatment_kinds: list[str] = []
    for result in results:
        learner = result.metalearner
        row: dict[str, Any] = {"metalearner": type(learner).__name__}
        nuisance_kinds = sorted(
            set(learner.nuisance_model_specifications()) - learner._prefitted_nuisance_models
        )
        treatment_kinds = sorted(learner.treatment_model_specifications())
        for kind in nuisance_kinds:
            row[kind] = factory_name(learner.nuisance_model_factory[kind])
            for param, value in learner.nuisance_model_params[kind].items():
                row[f"{kind}_{param}"] = value
        for kind in treatment_kinds:
            row[kind] = factory_name(learner.treatment_model_factory[kind])
            for param, value in learner.treatment_model_params[kind].items():
                row[f"{kind}_{param}"] = value
        row["fit_time"] = result.fit_time
        row["score_time"] = result.score_time
        for name, value in result.train_scores.items():
            row[f"train_{name}"] = value
        for name, value in (result.test_scores or {}).items():
            row[f"test_{name}"] = value
        rows.append(row)
    df = pd.DataFrame(rows)
    columns = sorted(df.columns)
    index = ["metalearner"]
    for kind in [*nuisance_kinds, *treatment_kinds]:
        index.extend(c for c in columns if c.startswith(kind))
    return df.set_index(index)
