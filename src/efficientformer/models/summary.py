"""Parameter and MAC counts of a model, in total and per stage (docs/model.md, Counts)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from efficientformer.models.config import ModelConfig
from efficientformer.models.efficientformer_v2 import EfficientFormerV2
from efficientformer.utils.sizes import to_pair

HEAD_PART = "head"


@dataclass(frozen=True)
class StageSummary:
    """One stage (its downsample included): shape, size and cost."""

    index: int
    depth: int
    width: int
    num_attn: int
    down_attn: bool
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class ModelSummary:
    """What `model_summary` measured; MACs are multiply-accumulates of a batch-1 eval forward.

    Counted (torch FlopCounterMode, MACs = FLOPs / 2): convolutions, linears and matmuls, including
    the attention matmuls (Q.K, P.V) and the talking-head mixing. Not counted: BatchNorm, GELU,
    softmax, bias and residual adds, the bilinear upsample, average pooling and the bias gather;
    with a fused model the folded BNs cost nothing anyway. This is the convention of docs/model.md (Counts).

    Args:
        parts: params and MACs per top-level part: "stem", "stages.0".."stages.3" (each with its
            downsample) and "head" (final norm + head + head_dist); absent for a features-only model.
        macs_by_op: MACs per aten operator (convolution, bmm, mm, addmm).
    """

    name: str
    img_size: tuple[int, int]
    num_classes: int
    distillation: bool
    params: int
    macs: int
    stages: tuple[StageSummary, ...]
    params_by_part: dict[str, int] = field(default_factory=dict)
    macs_by_part: dict[str, int] = field(default_factory=dict)
    macs_by_op: dict[str, int] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        data = dataclasses.asdict(self)
        data["img_size"] = list(self.img_size)
        data["stages"] = [{**s, "output_shape": list(s["output_shape"])} for s in data["stages"]]
        data["gmacs"] = self.gmacs
        data["mparams"] = self.mparams
        return data


def param_count(model_or_config: nn.Module | ModelConfig) -> int:
    """Number of parameters; a config is built on the meta device, so nothing is allocated."""
    if isinstance(model_or_config, ModelConfig):
        with torch.device("meta"):
            model_or_config = EfficientFormerV2(model_or_config)
    return sum(p.numel() for p in model_or_config.parameters())


def _part_of(name: str) -> str:
    """'stages.2.blocks.0.mlp.fc1.conv.weight' -> 'stages.2'; norm/head/head_dist -> 'head'."""
    first, _, rest = name.partition(".")
    if first == "stages":
        return f"stages.{rest.partition('.')[0]}"
    if first in ("norm", "head", "head_dist", "head_drop"):
        return HEAD_PART
    return first


def count_macs(module: nn.Module, *inputs, **kwargs) -> tuple[Any, int, dict[str, int]]:
    """Run `module` once under FlopCounterMode (meta tensors work); returns (output, MACs, MACs by op name)."""
    with FlopCounterMode(display=False) as counter:
        out = module(*inputs, **kwargs)
    counts = counter.get_flop_counts().get("Global", {})  # empty when nothing countable ran
    by_op = {str(op).removeprefix("aten."): flops // 2 for op, flops in counts.items()}
    return out, counter.get_total_flops() // 2, by_op


def _as_model(model_or_config: nn.Module | ModelConfig, img_size) -> tuple[EfficientFormerV2, tuple[int, int]]:
    if isinstance(model_or_config, ModelConfig):
        config = model_or_config if img_size is None else model_or_config.replace(img_size=img_size)
        with torch.device("meta"):
            model = EfficientFormerV2(config)
        return model, config.img_size
    if not isinstance(model_or_config, EfficientFormerV2):
        kind = type(model_or_config).__name__
        raise TypeError(f"model_summary takes an EfficientFormerV2 or a ModelConfig, got {kind}")
    built_for = model_or_config.config.img_size
    if img_size is not None:
        size = to_pair(img_size)
        if size != built_for:
            raise ValueError(f"img_size {size} differs from the {built_for} this model was built for; summarise "
                             f"model.config.replace(img_size=...) instead, or rebuild the model")
    return model_or_config, built_for


def model_summary(model_or_config: nn.Module | ModelConfig, img_size: int | tuple[int, int] | None = None
                  ) -> ModelSummary:
    """Params and MACs of a model (or of a config, built on the meta device) for one image of `img_size`.

    Args:
        model_or_config: an EfficientFormerV2 (measured as it is: fused, features-only, ...) or a config.
        img_size: input size; defaults to the config's. A built model only accepts its own size.
    """
    model, size = _as_model(model_or_config, img_size)
    config = model.config
    params_by_part: dict[str, int] = {}
    for name, param in model.named_parameters():
        part = _part_of(name)
        params_by_part[part] = params_by_part.get(part, 0) + param.numel()

    reference = next(model.parameters())
    macs_by_part: dict[str, int] = {}
    macs_by_op: dict[str, int] = {}
    stages = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(1, config.in_chans, *size, device=reference.device, dtype=reference.dtype)
            steps = [("stem", model.stem)] + [(f"stages.{i}", stage) for i, stage in enumerate(model.stages)]
            if not model.features_only:
                steps.append((HEAD_PART, model.forward_head))
            for part, module in steps:
                x, macs, by_op = count_macs(module, x)
                macs_by_part[part] = macs
                for op, value in by_op.items():
                    macs_by_op[op] = macs_by_op.get(op, 0) + value
                if part.startswith("stages."):
                    stages.append(_stage_summary(int(part.split(".")[1]), module, x, params_by_part[part], macs))
    finally:
        model.train(was_training)
    return ModelSummary(
        name=config.name, img_size=size, num_classes=0 if model.features_only else model.num_classes,
        distillation=getattr(model, "head_dist", None) is not None, params=sum(params_by_part.values()),
        macs=sum(macs_by_part.values()), stages=tuple(stages), params_by_part=params_by_part,
        macs_by_part=macs_by_part, macs_by_op=macs_by_op)


def _stage_summary(index: int, stage: nn.Module, output: torch.Tensor, params: int, macs: int) -> StageSummary:
    blocks = list(stage.blocks)
    width = output.shape[1]
    return StageSummary(
        index=index, depth=len(blocks), width=width,
        num_attn=sum(getattr(block, "token_mixer", None) is not None for block in blocks),
        down_attn=getattr(stage.downsample, "attn", None) is not None,
        output_shape=tuple(output.shape), params=params, macs=macs)


__all__ = ["ModelSummary", "StageSummary", "count_macs", "model_summary", "param_count"]
