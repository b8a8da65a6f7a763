"""``cross_fit_all_rows``: the X- and DR-learner's outcome models cross-fitted on every row.

metalearners predicts the rows of the other variants with each outcome model's overall
model (trained on all of its variant's rows). With ``cross_fit_all_rows=True`` every training
row, of every variant, is predicted by the fold model that did not train on the row's fold,
as Kennedy's DR-learner and EconML cross-fit. The fit then needs no overall outcome model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dask_meta._constants import VARIANT_OUTCOME_MODEL


class AllRowsCrossFitting:
    """The ``cross_fit_all_rows`` argument of the learners whose outcome models (one per
    variant) predict the other variants' rows during fit (X, DR).

    With True, the outcome models' in-sample predictions on every row come from their fold
    models, so the fit needs no overall outcome model and ``enable_overall`` may be False for
    ``variant_outcome_model``: each fit then trains on n rows fewer. Results differ from
    metalearners' (default False: metalearners' numbers). It needs a fold for every row: the
    ``"partition"`` or ``"hash"`` fold strategy, whose outcome models share one fold column.
    """

    cross_fit_all_rows: bool
    fold_strategy: str

    def __init__(self, *args: Any, cross_fit_all_rows: bool = False, **kwargs: Any):
        if not isinstance(cross_fit_all_rows, bool | np.bool_):
            raise TypeError(f"cross_fit_all_rows must be a bool, got {cross_fit_all_rows!r}")
        # set first: the base checks enable_overall against _fit_needs_overall
        self.cross_fit_all_rows = bool(cross_fit_all_rows)
        super().__init__(*args, **kwargs)
        self._check_cross_fit_all_rows()

    def _check_cross_fit_all_rows(self) -> None:
        if self.cross_fit_all_rows and self.fold_strategy == "sklearn":
            raise ValueError(
                'cross_fit_all_rows=True needs fold_strategy="partition" or "hash": '
                'fold_strategy="sklearn" splits each variant\'s rows on their own, so the '
                "other variants' rows have no fold"
            )

    @property
    def _fit_needs_overall(self) -> frozenset[str]:
        """Model kinds whose overall models the fit predicts with (the outcome models on the
        other variants' rows, unless ``cross_fit_all_rows``)."""
        return frozenset() if self.cross_fit_all_rows else frozenset({VARIANT_OUTCOME_MODEL})

    @property
    def init_args(self) -> dict[str, Any]:
        return super().init_args | {"cross_fit_all_rows": self.cross_fit_all_rows}  # type: ignore[misc]
