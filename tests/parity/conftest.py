"""Fixtures of the parity suite: a LocalCluster and metalearners' synthetic reference data.

This directory is run on its own, in the parity virtualenv (``./dev.sh parity``), so it
defines its own cluster fixtures instead of relying on ``tests/conftest.py``.

The data are regenerated exactly as metalearners' ``tests/conftest.py`` does (reference §7):
a fresh ``default_rng(1337)``, ``generate_covariates(100_000, 25, format="numpy")``, then its
``_generate_rct_experiment_data`` logic with the same generator, in the same draw order,
then ``train_test_split(test_size=0.2, random_state=1337)``. Only then are the splits cut
down to their first rows: parity needs no 100k rows and CI time is short.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from metalearners._utils import get_linear_dimension
from metalearners.data_generation import (
    compute_experiment_outputs,
    generate_covariates,
    generate_treatment,
)
from metalearners.outcome_functions import constant_treatment_effect, linear_treatment_effect
from sklearn.model_selection import train_test_split

SEED = 1337
SIGMA_TAU = 0.5
SAMPLE_SIZE = 100_000
N_NUMERICALS = 25
TEST_FRACTION = 0.2

#: metalearners' four numerical reference setups that S and T cover (reference §7):
#: name -> (is_classification, propensity score(s), tau of the constant effect or None)
SETUPS: dict[str, tuple[bool, float | list[float], np.ndarray | None]] = {
    "binary_y_binary_w_linear": (True, 0.3, None),
    "continuous_y_binary_w_linear": (False, 0.3, None),
    "continuous_y_multi_w_linear": (False, [0.2, 0.1, 0.3, 0.15, 0.25], None),
    "continuous_y_multi_w_constant": (
        False,
        [0.2, 0.1, 0.3, 0.15, 0.25],
        np.array([-2, 5, 0, 3]),
    ),
}


def generate_rct_experiment_data(
    covariates: np.ndarray,
    is_classification: bool,
    rng: np.random.Generator,
    propensity_score: float | list[float],
    tau: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """metalearners' ``_generate_rct_experiment_data``: treatment, outcome, true CATE."""
    n = covariates.shape[0]
    if isinstance(propensity_score, list):
        n_variants = len(propensity_score)
        propensity_scores = np.array(propensity_score) * np.ones((n, n_variants))
    else:
        n_variants = 2
        propensity_scores = propensity_score * np.ones(n)
    treatment = generate_treatment(propensity_scores, rng=rng)
    dim = get_linear_dimension(covariates)
    if tau is None:
        outcome_function = linear_treatment_effect(dim, n_variants=n_variants, rng=rng)
    else:
        outcome_function = constant_treatment_effect(dim, tau=tau, rng=rng)
    potential_outcomes = outcome_function(covariates)
    observed_outcomes, true_cate = compute_experiment_outputs(
        potential_outcomes,
        treatment,
        sigma_tau=SIGMA_TAU,
        n_variants=n_variants,
        is_classification=is_classification,
        return_probability_cate=True,
        rng=rng,
    )
    return treatment, observed_outcomes, true_cate


@dataclass(frozen=True)
class Experiment:
    """One reference setup, split as metalearners' tests split it (then cut down)."""

    name: str
    is_classification: bool
    propensity: float | list[float]
    tau: np.ndarray | None
    n_variants: int
    X_train: np.ndarray
    y_train: np.ndarray
    w_train: np.ndarray
    cate_train: np.ndarray
    X_test: np.ndarray
    cate_test: np.ndarray

    @property
    def features(self) -> list[str]:
        return [f"x{i}" for i in range(self.X_train.shape[1])]

    def train_frame(self) -> pd.DataFrame:
        """Covariates, ``y`` and ``w`` of the training rows in one pandas frame."""
        frame = pd.DataFrame(self.X_train, columns=self.features)
        frame["y"] = self.y_train
        frame["w"] = self.w_train
        return frame

    def test_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.X_test, columns=self.features)

    def first(self, n_train: int, n_test: int) -> Experiment:
        """The first rows of each split (the parity argument needs no 100k rows)."""
        return Experiment(
            self.name,
            self.is_classification,
            self.propensity,
            self.tau,
            self.n_variants,
            self.X_train[:n_train],
            self.y_train[:n_train],
            self.w_train[:n_train],
            self.cate_train[:n_train],
            self.X_test[:n_test],
            self.cate_test[:n_test],
        )


def make_experiment(name: str) -> Experiment:
    is_classification, propensity_score, tau = SETUPS[name]
    # metalearners' function-scoped ``rng`` fixture is shared by the covariates fixture and
    # the data-set fixture of one test: one generator, covariates drawn first
    rng = np.random.default_rng(SEED)
    covariates, _, _ = generate_covariates(SAMPLE_SIZE, N_NUMERICALS, format="numpy", rng=rng)
    treatment, observed_outcomes, true_cate = generate_rct_experiment_data(
        covariates, is_classification, rng, propensity_score, tau
    )
    X_train, X_test, y_train, _, w_train, _, cate_train, cate_test = train_test_split(
        covariates,
        observed_outcomes,
        treatment,
        true_cate,
        test_size=TEST_FRACTION,
        random_state=SEED,
    )
    return Experiment(
        name,
        is_classification,
        propensity_score,
        tau,
        len(np.unique(treatment)),
        X_train,
        y_train,
        w_train,
        cate_train,
        X_test,
        cate_test,
    )


def pytest_generate_tests(metafunc):
    """Tests taking ``setup`` run once per reference setup."""
    if "setup" in metafunc.fixturenames:
        metafunc.parametrize("setup", list(SETUPS))


@pytest.fixture(scope="session")
def experiments():
    """Reference setups by name, generated once per session, on first use."""
    cache: dict[str, Experiment] = {}

    def get(name: str) -> Experiment:
        if name not in cache:
            cache[name] = make_experiment(name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def cluster():
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        resources={"threads": 1},
        dashboard_address=":0",
        processes=True,
    ) as c:
        yield c


@pytest.fixture(scope="session")
def client(cluster):
    """The session's client; not the process default (learners get ``client=`` explicitly)."""
    with Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture
def default_client(client):
    """The session client, also installed as the default client for the test.

    Lazy Dask outputs are then computed on the cluster by a plain ``.compute()``, as for a
    user with a client.
    """
    with client.as_current():
        yield client


@pytest.fixture(scope="session")
def cache():
    """Session-wide memo of metalearners' fits and predictions (shared between inputs)."""
    return {}
