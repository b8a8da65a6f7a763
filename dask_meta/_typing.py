"""Type aliases used across dask-meta (one place, as in metalearners)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import scipy.sparse as sps

#: Covariates: an in-memory matrix (numpy, pandas, polars, scipy.sparse) or a Dask collection.
Matrix = np.ndarray | pd.DataFrame | sps.spmatrix | sps.sparray | dd.DataFrame | da.Array
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
#: A base-model factory: an estimator class or any callable returning an estimator
#: (``functools.partial(LGBMRegressor, n_estimators=5)``), or one per model kind.
ModelFactory = Callable[..., Any] | dict[str, Callable[..., Any]]
#: ``cv``: one ``(train_indices, test_indices)`` pair per fold (in-memory input).
SplitIndices = list[tuple[np.ndarray, np.ndarray]]
Scorer = str | Callable
Scorers = Sequence[Scorer]
Scoring = Mapping[str, Scorers]
