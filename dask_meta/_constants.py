"""Model-kind names and other constants shared with metalearners."""

PROPENSITY_MODEL = "propensity_model"
VARIANT_OUTCOME_MODEL = "variant_outcome_model"
TREATMENT_MODEL = "treatment_model"
OUTCOME_MODEL = "outcome_model"
BASE_MODEL = "base_model"
CONTROL_EFFECT_MODEL = "control_effect_model"
TREATMENT_EFFECT_MODEL = "treatment_effect_model"

NUISANCE = "nuisance"
TREATMENT = "treatment"

OVERALL = "overall"
MEAN = "mean"
MEDIAN = "median"
OOS_METHODS = (OVERALL, MEDIAN, MEAN)

# Reserved column names of the internal training frame.
Y_COL = "__dask_meta_y__"
W_COL = "__dask_meta_w__"
FOLD_PREFIX = "__dask_meta_fold_"
PARAM_PREFIX = "__dask_meta_param_"
#: A row's identity (its global row number, or a hash of ``fold_key``): what a bootstrap
#: replicate draws the row's weight from (:mod:`dask_meta.resampling`).
ROW_ID_COL = "__dask_meta_row_id__"
RESERVED_PREFIX = "__dask_meta_"

#: Rows of a partition strategy fold column that a model did not train on.
NOT_IN_SPLIT = -1

#: Rows per partition when in-memory input is turned into a Dask frame. Fixed, so that
#: "partition" folds of in-memory input do not depend on the cluster.
ROWS_PER_PARTITION = 250_000
