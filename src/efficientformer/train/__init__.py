"""Training: the training job and its recipes, evaluation, segmentation, losses, optimisation and the
`TrainTask` seam a new task plugs into (docs/training.md).

    summary = run_training(TrainJob(output="runs/flowers", data="~/flowers", recipe=get_recipe("finetune")))
"""

from efficientformer.train.ema import ModelEma
from efficientformer.train.evaluate import run_eval
from efficientformer.train.job import TrainJob, run_training
from efficientformer.train.loop import NonFiniteLossError
from efficientformer.train.losses import DistillationLoss, SoftTargetCrossEntropy
from efficientformer.train.optim import CosineSchedule, adaptive_clip_grad_, create_optimizer, param_groups
from efficientformer.train.recipes import RECIPES, TrainRecipe, get_recipe
from efficientformer.train.segment_job import SegmentJob, run_segment_eval, run_segment_predict, run_segment_training
from efficientformer.train.task import ClassificationTask, StepInfo, TaskOutput, TrainTask
from efficientformer.train.teacher import load_teacher

__all__ = ["RECIPES", "ClassificationTask", "CosineSchedule", "DistillationLoss", "ModelEma", "NonFiniteLossError",
           "SegmentJob", "SoftTargetCrossEntropy", "StepInfo", "TaskOutput", "TrainJob", "TrainRecipe", "TrainTask",
           "adaptive_clip_grad_", "create_optimizer", "get_recipe", "load_teacher", "param_groups", "run_eval",
           "run_segment_eval", "run_segment_predict", "run_segment_training", "run_training"]
