"""Moved to `efficientformer.data.datasets` (a run's datasets and the held-out split need nothing of train/).

This module stays only for train/evaluate.py until that file imports from data/; new code imports data.datasets.
"""

from efficientformer.data.datasets import (
                                           DEFAULT_VAL_SPLIT,
                                           EVAL_CROP_PCT,
                                           SPLIT_SEED,
                                           RunData,
                                           eval_dataset,
                                           run_datasets,
                                           split_digest,
                                           stratified_split,
)

__all__ = ["DEFAULT_VAL_SPLIT", "EVAL_CROP_PCT", "SPLIT_SEED", "RunData", "eval_dataset", "run_datasets",
           "split_digest", "stratified_split"]
