"""A learner's constructor and fit arguments: resolved per model kind and checked at once.

As in metalearners, per-model arguments (factories, params, folds, feature sets) are given
once for all kinds or as a dict per kind, and are resolved and validated at construction,
so that errors surface before any data is read.
"""

from __future__ import annotations

import copy
from collections.abc import Collection
from typing import Any

import numpy as np

from dask_meta._constants import NUISANCE, PROPENSITY_MODEL, TREATMENT
from dask_meta.crossfit import CrossFitEstimator, _estimator_type, _instance
from dask_meta.factories import factory_name


def model_dict(argument: Any, expected_names: Collection[str]) -> dict:
    """One value per model kind: a dict that names them all, or the same value for each."""
    if isinstance(argument, dict) and set(argument.keys()) >= set(expected_names):
        return {key: argument[key] for key in expected_names}
    return {name: argument for name in expected_names}


def combine_propensity(
    propensity_specs: Any, nuisance_specs: Any, nuisance_model_names: set[str]
) -> dict:
    """Nuisance factories or params per kind, the propensity model's from its own argument."""
    if PROPENSITY_MODEL in nuisance_model_names:
        others = nuisance_model_names - {PROPENSITY_MODEL}
        return model_dict(nuisance_specs, others) | {PROPENSITY_MODEL: propensity_specs}
    return model_dict(nuisance_specs, nuisance_model_names)


def parse_fit_params(
    fit_params: dict | None, nuisance_names: Collection[str], treatment_names: Collection[str]
) -> dict[str, dict[str, dict]]:
    """Both forms of metalearners' ``fit_params``: flat (to every model) or qualified."""
    if fit_params is not None and not isinstance(fit_params, dict):
        raise TypeError(f"fit_params must be a dict or None, got {type(fit_params).__name__}")
    if not fit_params or (NUISANCE not in fit_params and TREATMENT not in fit_params):
        flat = dict(fit_params or {})
        return {
            NUISANCE: {k: dict(flat) for k in nuisance_names},
            TREATMENT: {k: dict(flat) for k in treatment_names},
        }
    out: dict[str, dict[str, dict]] = {
        NUISANCE: {k: {} for k in nuisance_names},
        TREATMENT: {k: {} for k in treatment_names},
    }
    for stage, names in ((NUISANCE, nuisance_names), (TREATMENT, treatment_names)):
        given = fit_params.get(stage) or {}
        if not isinstance(given, dict):
            raise TypeError(f"fit_params[{stage!r}] must be a dict of model kind -> params")
        for kind in names:
            if kind in given:
                out[stage][kind] = dict(given[kind])
    return out


def check_enable_overall(learner: Any, value: Any, kinds: set[str]) -> dict[str, bool]:
    """``enable_overall`` per model kind: one bool, or a dict of some kinds (others True).

    metalearners' ``CrossFitEstimator`` argument, which its learners always leave True. An
    overall model is used only by out-of-sample predictions with ``oos_method="overall"``
    (and, for the X- and DR-learner's outcome models, by the fit); without it those
    predictions take ``"mean"`` or ``"median"`` and the fit saves one model per kind.
    """
    if isinstance(value, bool | np.bool_):
        by_kind = dict.fromkeys(kinds, bool(value))
    elif isinstance(value, dict):
        unknown = set(value) - kinds
        if unknown:
            raise ValueError(
                f"enable_overall has unknown model kinds {sorted(unknown)}; "
                f"{type(learner).__name__} has {sorted(kinds)}"
            )
        for kind, flag in value.items():
            if not isinstance(flag, bool | np.bool_):
                raise TypeError(f"enable_overall[{kind!r}] must be a bool, got {flag!r}")
        by_kind = {kind: bool(value.get(kind, True)) for kind in kinds}
    else:
        raise TypeError(
            f"enable_overall must be a bool or a dict of model kind to bool, got {value!r}"
        )
    for kind in sorted(kinds):
        if by_kind[kind]:
            continue
        if learner.n_folds[kind] == 1:
            raise ValueError(
                f"enable_overall is False for {kind}, whose n_folds is 1: without "
                "cross-fitting the overall model is its only model"
            )
        if kind in learner._fit_needs_overall:
            raise ValueError(
                f"enable_overall cannot be False for {kind}: the {type(learner).__name__}'s "
                "fit predicts the other variants' rows with its overall models. Pass a "
                "dict for the other kinds, e.g. enable_overall={'propensity_model': False}"
            )
    return by_kind


def check_synchronize(learner: Any, synchronize: Any) -> None:
    """``synchronize_cross_fitting``: a bool; for a learner whose models then share folds,
    one ``n_folds`` of at least 2."""
    if not isinstance(synchronize, bool | np.bool_):
        raise TypeError(f"synchronize_cross_fitting must be a bool, got {synchronize!r}")
    if synchronize and learner._synchronizes:
        values = set(learner.n_folds.values())
        if len(values) > 1:
            raise ValueError(
                "When using synchronization of cross-fitting, all provided n_folds values "
                f"must be equal; got {learner.n_folds}. Pass one n_folds or "
                "synchronize_cross_fitting=False."
            )
        if min(values) < 2:
            raise ValueError(
                "Need at least two folds to use synchronization of cross-fitting; pass "
                "n_folds >= 2 or synchronize_cross_fitting=False."
            )


def check_prefitted(learner: Any, kind: str, models: Any) -> None:
    """Reused fitted models: dask-meta cross-fit estimators, as many as the kind has, fitted."""
    if not isinstance(models, list | tuple) or not all(
        isinstance(m, CrossFitEstimator) for m in models
    ):
        raise TypeError(
            f"fitted models for {kind} must be a list of dask_meta CrossFitEstimator "
            "(e.g. another learner's _nuisance_models[kind])"
        )
    expected = learner.nuisance_model_specifications()[kind].cardinality(learner)
    if len(models) != expected:
        raise ValueError(f"{kind} needs {expected} fitted models, got {len(models)}")
    for m in models:
        if not m.is_fitted:
            raise ValueError(f"the fitted models passed for {kind} are not fitted")


def check_model_types(learner: Any) -> None:
    """Regressors where ``predict`` is used, classifiers where ``predict_proba`` is."""
    checks = [
        (kind, learner._nuisance_models[kind][0], spec, "nuisance")
        for kind, spec in learner.nuisance_model_specifications().items()
    ] + [
        (kind, learner._treatment_models[kind][0], spec, "treatment")
        for kind, spec in learner.treatment_model_specifications().items()
    ]
    for kind, cfe, spec, stage in checks:
        method = spec.predict_method(learner)
        factory = cfe.estimator_factory
        cfe_type = _estimator_type(factory, cfe.estimator_params)
        if cfe_type == "classifier" and method == "predict":
            raise ValueError(
                f"The {stage} model {kind} is supposed to be used with the predict method "
                f"'predict' but {factory_name(factory)} is a classifier; pass a regressor."
            )
        if cfe_type == "regressor" and method == "predict_proba":
            raise ValueError(
                f"The {stage} model {kind} is supposed to be used with the predict method "
                f"'predict_proba' but {factory_name(factory)} is not a classifier; pass a "
                "classifier."
            )
        if cfe_type is None:
            # neither by its tags (a duck-typed estimator or a factory function): it must
            # at least have the method the learner calls
            instance = _instance(factory, cfe.estimator_params)
            if instance is not None and not callable(getattr(instance, method, None)):
                raise ValueError(
                    f"The {stage} model {kind} is supposed to be used with the predict method "
                    f"{method!r} but {factory_name(factory)} builds a "
                    f"{type(instance).__name__}, which has no {method}."
                )


def init_args(learner: Any) -> dict[str, Any]:
    """Arguments that rebuild an unfitted learner with the same configuration."""
    pre = learner._prefitted_nuisance_models
    return {
        "is_classification": learner.is_classification,
        "n_variants": learner.n_variants,
        "nuisance_model_factory": {
            k: v
            for k, v in learner.nuisance_model_factory.items()
            if k != PROPENSITY_MODEL and k not in pre
        },
        "treatment_model_factory": learner.treatment_model_factory,
        "propensity_model_factory": (
            learner.nuisance_model_factory.get(PROPENSITY_MODEL)
            if PROPENSITY_MODEL not in pre
            else None
        ),
        "nuisance_model_params": {
            k: v
            for k, v in learner.nuisance_model_params.items()
            if k != PROPENSITY_MODEL and k not in pre
        },
        "treatment_model_params": learner.treatment_model_params,
        "propensity_model_params": (
            learner.nuisance_model_params.get(PROPENSITY_MODEL)
            if PROPENSITY_MODEL not in pre
            else None
        ),
        "fitted_nuisance_models": {
            k: copy.deepcopy(v)
            for k, v in learner._nuisance_models.items()
            if k in pre and k != PROPENSITY_MODEL
        },
        "fitted_propensity_model": (
            copy.deepcopy(learner._nuisance_models.get(PROPENSITY_MODEL))
            if PROPENSITY_MODEL in pre
            else None
        ),
        "feature_set": learner.feature_set,
        "n_folds": learner.n_folds,
        "random_state": learner.random_state,
        "fold_strategy": learner.fold_strategy,
        "fold_key": learner.fold_key,
        "client": learner.client,
        "persist": learner.persist,
        "plan": learner.plan,
        "enable_overall": learner.enable_overall,
    }
