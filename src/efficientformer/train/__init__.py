"""Training: recipes, losses and optimisation of the paper's recipe (docs/training.md)."""

from efficientformer.train.losses import DistillationLoss, SoftTargetCrossEntropy
from efficientformer.train.optim import CosineSchedule, adaptive_clip_grad_, create_optimizer, param_groups
from efficientformer.train.recipes import RECIPES, TrainRecipe, get_recipe
from efficientformer.train.task import ClassificationTask, StepInfo, TaskOutput, TrainTask

__all__ = ["RECIPES", "ClassificationTask", "CosineSchedule", "DistillationLoss", "SoftTargetCrossEntropy", "StepInfo",
           "TaskOutput", "TrainRecipe", "TrainTask", "adaptive_clip_grad_", "create_optimizer", "get_recipe",
           "param_groups"]
