"""EfficientFormerV2 (Li et al., arXiv 2212.08059) built from a ModelConfig."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from efficientformer.errors import ConfigError
from efficientformer.models.blocks import Attention2d, Attention2dDownsample, Block, Downsample, Mlp, Stem
from efficientformer.models.config import (
    NUM_STAGES,
    STAGE_STRIDES,
    STRIDE_ATTENTION_STAGE,
    ModelConfig,
    check_input_size,
)


def _stage_indices(indices: Sequence[int], num_stages: int, what: str) -> tuple[int, ...]:
    """Sorted, distinct stage indices in [0, num_stages); negative ones count from the end."""
    try:
        values = [int(i) for i in indices]
    except TypeError:
        raise ConfigError(f"{what} must be a sequence of stage indices, got {indices!r}") from None
    if not values or any(not -num_stages <= i < num_stages for i in values):
        raise ConfigError(f"{what} must be stage indices in [0, {num_stages - 1}] (or negative from the end), "
                          f"got {tuple(indices)}")
    normalised = sorted({i % num_stages for i in values})
    if len(normalised) != len(values):
        raise ConfigError(f"{what} has a repeated stage: {tuple(indices)}")
    return tuple(normalised)


class FeatureInfo(list):
    """A list of {'num_chs', 'reduction', 'module'} dicts with timm's FeatureInfo accessors (mmpretrain uses them)."""

    def channels(self) -> list[int]:
        return [info["num_chs"] for info in self]

    def reduction(self) -> list[int]:
        return [info["reduction"] for info in self]

    def module_name(self) -> list[str]:
        return [info["module"] for info in self]


class Stage(nn.Module):
    """An optional downsample (identity for stage 1) followed by the stage's blocks.

    With `grad_checkpointing` set, each block's activations are recomputed in the backward pass
    instead of stored (BatchNorm statistics are then updated twice per step, as in timm).
    """

    def __init__(self, downsample: nn.Module, blocks: list[Block]) -> None:
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            for block in self.blocks:
                x = checkpoint(block, x, use_reentrant=False)
            return x
        return self.blocks(x)


class EfficientFormerV2(nn.Module):
    """The network: stem -> 4 stages -> BN -> global average pool -> class head (+ distillation head).

    Args:
        config: the architecture.
        features_only: build the backbone only; `forward` returns the stage maps (strides 4/8/16/32)
            selected by `out_indices`, and `feature_info` describes them.
        out_indices: stages (0-3) whose maps a features_only model returns; stages after the last
            one are not built.
        frozen_stages: -1 freezes nothing; N >= 0 freezes the stem and the first N stages (mmdet's
            convention): their parameters get no gradient and they stay in eval mode.
        norm_eval: keep every BatchNorm (SyncBatchNorm too) in eval mode while training, so their
            statistics do not move (detection/segmentation fine-tuning with small batches).
    """

    def __init__(self, config: ModelConfig, features_only: bool = False, out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1, norm_eval: bool = False) -> None:
        super().__init__()
        self.config = config
        self.features_only = features_only
        self.out_indices = _stage_indices(out_indices, NUM_STAGES, "out_indices")
        if not features_only and self.out_indices != tuple(range(NUM_STAGES)):
            raise ConfigError(f"out_indices={tuple(out_indices)} needs features_only=True "
                              f"(a classifier uses all stages)")
        num_built = max(self.out_indices) + 1 if features_only else NUM_STAGES
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_built:
            raise ConfigError(f"frozen_stages must be an integer in [-1, {num_built}] (-1: none, 0: the stem, "
                              f"N: the stem and the first N stages), got {frozen_stages!r}")
        self.frozen_stages = frozen_stages
        self.norm_eval = bool(norm_eval)
        self.num_classes = config.num_classes
        self.distilled_training = False
        self.head_folded = False
        widths = config.widths
        total_blocks = sum(config.depths)
        drop_rates = [config.drop_path_rate * i / max(total_blocks - 1, 1) for i in range(total_blocks)]

        # Which layer goes where (grids, attention, stride attention, the attention downsample) is
        # ModelConfig's: the latency table decomposes a network by the same layouts.
        self.stem = Stem(config.in_chans, widths[0])
        stages = []
        block_index = 0
        for stage_index in range(NUM_STAGES):
            down = config.downsample_layout(stage_index)
            if down is None:
                downsample: nn.Module = nn.Identity()
            else:
                attn = None
                if down.attention:
                    attn = Attention2dDownsample(down.in_width, down.out_width, down.grid, num_heads=config.attn_heads,
                                                 key_dim=config.down_attn_key_dim, attn_ratio=config.down_attn_ratio)
                downsample = Downsample(down.in_width, down.out_width, attn)
            blocks = []
            for layout in config.block_layouts(stage_index):
                mixer = None
                if layout.attention:
                    mixer = Attention2d(layout.width, layout.grid, num_heads=config.attn_heads,
                                        key_dim=config.attn_key_dim, attn_ratio=config.attn_ratio, stride=layout.stride)
                blocks.append(Block(layout.width, Mlp(layout.width, layout.hidden), mixer,
                                    drop_path=drop_rates[block_index], layer_scale_init=config.layer_scale_init))
                block_index += 1
            stages.append(Stage(downsample, blocks))
        self.stages = nn.Sequential(*stages[:num_built])
        self.feature_info = FeatureInfo({"num_chs": widths[i], "reduction": STAGE_STRIDES[i], "module": f"stages.{i}"}
                                        for i in (self.out_indices if features_only else range(NUM_STAGES)))
        self.num_features = widths[num_built - 1]
        if not features_only:
            self.norm = nn.BatchNorm2d(widths[-1])
            self.head_drop = nn.Dropout(config.drop_rate)
            self.head = self._make_head(config.num_classes)
            self.head_dist = self._make_head(config.num_classes) if config.distillation else None
        self._freeze_stages()

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        for module in (self.stem, *self.stages[:self.frozen_stages]):
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> EfficientFormerV2:
        """As nn.Module.train, but frozen stages, and with `norm_eval` every BatchNorm, stay in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def _make_head(self, num_classes: int) -> nn.Module:
        if num_classes == 0:
            return nn.Identity()
        head = nn.Linear(self.num_features, num_classes)
        nn.init.trunc_normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
        return head

    def _check_input(self, x: torch.Tensor) -> None:
        """Any (height, width) the architecture allows; the attention biases follow the input's grid."""
        if x.ndim != 4 or x.shape[1] != self.config.in_chans:
            raise ValueError(f"expected input of shape (B, {self.config.in_chans}, H, W), got {tuple(x.shape)}")
        size = (x.shape[-2], x.shape[-1])
        if size == self.config.img_size:
            return
        check_input_size(self.config, size)
        stride = STAGE_STRIDES[STRIDE_ATTENTION_STAGE]  # the 1/16 grid fixes every bias table's grid
        grid, built = (-(-size[0] // stride), -(-size[1] // stride)), self.config.stage_grids[STRIDE_ATTENTION_STAGE]
        if grid != built and any(getattr(m, "bias_frozen", False) for m in self.modules()):
            h, w = self.config.img_size
            raise ConfigError(
                f"input {size[0]}x{size[1]}: this fused model runs only at its built size {h}x{w} (or a size with "
                f"the same 1/16 grid {built[0]}x{built[1]}), because fusing froze its attention biases for that grid. "
                f"Run the unfused model (it resamples them), or fuse one created with img_size=({size[0]}, {size[1]}).")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> last stage map (B, C4, H/32, W/32)."""
        self._check_input(x)
        return self.stages(self.stem(x))

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False):
        """Stage maps on the way through the network (timm's signature).

        Args:
            indices: stages to return: None = every built stage, an int n = the last n, or a list (negative
                counts from the end).
            norm: apply the final BatchNorm to the last stage's map (classifier models only).
            stop_early: stop after the last stage asked for.
            output_fmt: only 'NCHW'.
            intermediates_only: return only the list; otherwise (final map, list), the final map being the
                last stage's output, through the final norm when the classifier's last stage ran.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        num = len(self.stages)
        take = tuple(range(num)) if indices is None else (
            tuple(range(num - indices, num)) if isinstance(indices, int) else _stage_indices(indices, num, "indices"))
        if not take or min(take) < 0:
            raise ValueError(f"indices must select stages in [0, {num - 1}], got {indices!r}")
        if norm and self.features_only:
            raise ValueError("norm=True needs the final norm, which a features_only model does not have")
        self._check_input(x)
        x = self.stem(x)
        intermediates = []
        last = max(take) if stop_early or intermediates_only else num - 1
        for index in range(last + 1):
            x = self.stages[index](x)
            if index in take:
                intermediates.append(self.norm(x) if norm and index == NUM_STAGES - 1 else x)
        if intermediates_only:
            return intermediates
        if not self.features_only and last == NUM_STAGES - 1:
            x = self.norm(x)
        return x, intermediates

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False, return_both: bool = False):
        """Pool and classify a (B, C4, h, w) map.

        Args:
            pre_logits: return the pooled, normalised features (B, C4).
            return_both: return (class logits, distillation logits) instead of their average.
        """
        if self.features_only:
            raise RuntimeError("this model was built with features_only=True and has no head")
        if pre_logits and self.head_folded:
            raise RuntimeError("pre_logits is unavailable on a fused model: its final norm is folded into the head")
        # keepdim + flatten: the same numbers, and a mean XNNPACK delegates (it takes 4-d keepdim means only).
        x = self.norm(x).mean(dim=(2, 3), keepdim=True).flatten(1)  # (B, C4)
        x = self.head_drop(x)
        if pre_logits:
            return x
        logits = self.head(x)
        if self.head_dist is None:
            return (logits, logits) if return_both else logits
        logits_dist = self.head_dist(x)
        if return_both or (self.distilled_training and self.training):
            return logits, logits_dist
        return (logits + logits_dist) / 2

    def forward(self, x: torch.Tensor):
        if self.features_only:
            return self.forward_intermediates(x, self.out_indices, intermediates_only=True)
        return self.forward_head(self.forward_features(x))

    def set_distilled_training(self, enable: bool = True) -> None:
        """While training, return (class logits, distillation logits) from `forward` (hard distillation)."""
        self.distilled_training = enable

    def get_classifier(self) -> nn.Module | tuple[nn.Module, nn.Module]:
        """The classifier: `head`, or `(head, head_dist)` with a distillation head (as timm returns it)."""
        if self.features_only:
            raise RuntimeError("this model was built with features_only=True and has no head")
        return self.head if self.head_dist is None else (self.head, self.head_dist)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace both heads with fresh ones for `num_classes` outputs (0 = pooled features).

        Args:
            global_pool: timm's argument; only average pooling exists here (None or 'avg').
        """
        if self.features_only:
            raise RuntimeError("this model was built with features_only=True and has no head")
        if global_pool not in (None, "avg"):
            raise ValueError(f"global_pool must be None or 'avg' (the only pooling this model has), "
                             f"got {global_pool!r}")
        device = self.norm.weight.device
        self.config = self.config.replace(num_classes=num_classes)
        self.num_classes = num_classes
        self.head = self._make_head(num_classes).to(device)
        self.head_dist = self._make_head(num_classes).to(device) if self.config.distillation else None

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations (less memory)."""
        for stage in self.stages:
            stage.grad_checkpointing = enable

    def group_matcher(self, coarse: bool = False) -> dict[str, object]:
        """Parameter-name patterns that order the layers from input to output (timm's convention).

        Coarse: the stem, each stage, the final norm. Fine: each downsample and each block on its own.
        Unmatched parameters (the heads) come last. Used by layer-wise learning-rate decay.
        """
        if coarse:
            blocks = [(r"^stages\.(\d+)", None), (r"^norm", (99999,))]
        else:
            blocks = [(r"^stages\.(\d+)\.downsample", (0,)), (r"^stages\.(\d+)\.blocks\.(\d+)", (1,)),
                      (r"^norm", (99999,))]
        return {"stem": r"^stem", "blocks": blocks}

    def no_weight_decay(self) -> set[str]:
        """Names of parameters that should not be weight-decayed: bias tables (norms/biases/scales go by shape)."""
        return {name for name, _ in self.named_parameters() if name.endswith("attention_biases")}

    def fuse(self) -> EfficientFormerV2:
        """Inference only (children already fused): fold the final BN into the heads and average them."""
        if self.features_only or self.num_classes == 0:
            return self
        bn = self.norm
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C4,)
            shift = bn.bias - bn.running_mean * scale
            heads = [self.head] if self.head_dist is None else [self.head, self.head_dist]
            weight = sum(h.weight for h in heads) / len(heads)  # (classes, C4)
            bias = sum(h.bias for h in heads) / len(heads)
            merged = nn.Linear(self.num_features, self.num_classes, device=weight.device, dtype=weight.dtype)
            merged.weight.copy_(weight * scale)
            merged.bias.copy_(bias + weight @ shift)
        self.norm = nn.Identity()
        self.head = merged
        self.head_dist = None
        self.head_folded = True
        return self
