"""Type aliases used across dask-meta (one place, as in metalearners)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd

#: Covariates: an in-memory matrix or a Dask collection.
Matrix = np.ndarray | pd.DataFrame | dd.DataFrame | da.Array
#: Outcome, treatment or any per-row vector.
Vector = np.ndarray | pd.Series | dd.Series | da.Array
#: Output of ``predict``: numpy for in-memory input, a lazy Dask array for Dask input.
Prediction = np.ndarray | da.Array

OosMethod = Literal["overall", "mean", "median"]
PredictMethod = Literal["predict", "predict_proba"]
FoldStrategy = Literal["partition", "hash", "sklearn"]

#: A feature set: ``None`` (all columns), ``[]`` (a constant column) or column names/positions.
Features = Sequence[str] | Sequence[int] | None
Params = dict[str, Any]
ModelFactory = type | dict[str, type]
