"""Elastic versions of the EfficientFormerV2 blocks: the plain blocks, run on leading slices of their weights.

Every elastic class subclasses its plain class (`ElasticMlp(Mlp)`, `ElasticConv2d(nn.Conv2d)`, ...),
is built at the largest sizes and keeps the plain parameter names, so a supernet state dict is a
plain max-config state dict. A narrower layer uses the *leading slice* of each weight: the first
`c` output channels, the first `c` input channels, the first `h` hidden channels (docs/search.md).

Only the leaves slice (`ElasticConv2d`, `ElasticBatchNorm2d`, `ElasticLinear`,
`ElasticLayerScale2d`). They read their input channels from the input; a full (non-depthwise)
conv also needs its output channels, which the block's `set_active` sets. The blocks therefore run
their parent's own `forward`; only `ElasticBlock` (an attention block can act as FFN-only) and
`ElasticStage` (elastic depth) override it. `freeze()` returns the plain parent at the active sizes
with the sliced tensors copied in (the protocol of timm's `reparameterize_model` / `.fuse()` walk).

`make_elastic(module)` turns a built plain network into an elastic one in place, leaves first, by
switching each module's class to its elastic subclass (they add no parameters; the same idiom as
layers.sync_batchnorm.convert_sync_batchnorm). The supernet is built that way, so it has exactly the
initialisation of the plain max-config model.

Batch norm (a choice; docs/search.md, Our choices): one BN per layer at the largest width, *sliced* like the convs,
instead of the paper's switchable BN (one BN per width option). Switchable BN would need a BN per
(width, ratio) pair and break the one-to-one parameter names with the plain model. Sliced
statistics are wrong for every subnet but the one they were collected on, so:
- while training the supernet only the largest subnet updates the running statistics
  (`keep_bn_statistics`); the others normalise with batch statistics. The saved supernet thus
  evaluates its largest subnet correctly, and loads as a plain max-config model;
- any other subnet is evaluated after `search.supernet.recalibrate_bn` (reset, then a cumulative average
  over a few training batches, as in slimmable networks / BigNAS), which the search always does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from efficientformer.layers import LayerScale2d
from efficientformer.layers.sync_batchnorm import SyncBatchNormFunction
from efficientformer.models.blocks import Attention2d, Attention2dDownsample, Block, Downsample, Mlp, Stem
from efficientformer.models.config import StageConfig
from efficientformer.models.efficientformer_v2 import Stage


def tensors_of(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of `module` by name, non-persistent buffers (bias indices) included."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def copy_leading_slices(source: nn.Module | dict[str, torch.Tensor], target: nn.Module) -> nn.Module:
    """Fill every parameter and buffer of `target` with the leading slice of `source`'s tensor of the same name."""
    available = tensors_of(source) if isinstance(source, nn.Module) else source
    with torch.no_grad():
        for key, tensor in tensors_of(target).items():
            if key not in available:
                raise KeyError(f"no tensor {key!r} to copy into {type(target).__name__}")
            full = available[key]
            if full.ndim != tensor.ndim or any(n > m for n, m in zip(tensor.shape, full.shape)):
                raise ValueError(f"{key}: {list(tensor.shape)} is not a leading slice of {list(full.shape)}")
            tensor.copy_(full[tuple(slice(0, n) for n in tensor.shape)])
    return target


def allocate_like(source: nn.Module, build: Callable[[], nn.Module]) -> nn.Module:
    """`build()` without running its initialisers: made on the meta device, then left uninitialised on
    `source`'s device and dtype (for `copy_leading_slices` to fill)."""
    reference = next(source.parameters())
    with torch.device("meta"):
        module = build()
    return module.to_empty(device=reference.device).to(reference.dtype)


def _check_size(what: str, value: int, largest: int) -> int:
    if not isinstance(value, int) or not 1 <= value <= largest:
        raise ValueError(f"{what} must be an integer in [1, {largest}] (the supernet's largest), got {value!r}")
    return value


# --- leaves: the only code that slices ----------------------------------------------------------------------


class ElasticConv2d(nn.Conv2d):
    """A conv at its largest size on the leading slice: input channels from the input; output channels
    `active_out` (full convs) or equal to the input's (depthwise convs)."""

    active_out: int

    def _init_elastic(self) -> None:
        if self.padding_mode != "zeros" or self.groups not in (1, self.in_channels) or (
                self.groups > 1 and self.out_channels != self.in_channels):
            raise ValueError(f"ElasticConv2d supports full and depthwise convs with zero padding, got {self}")
        self.active_out = self.out_channels

    @property
    def depthwise(self) -> bool:
        return self.groups > 1

    def set_active(self, out_channels: int) -> None:
        """Output channels of a full conv (a depthwise conv follows its input)."""
        if self.depthwise:
            raise ValueError("a depthwise ElasticConv2d takes its channels from the input")
        self.active_out = _check_size("ElasticConv2d out_channels", out_channels, self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if self.depthwise:
            weight, groups, out = self.weight[:channels], channels, channels  # (c, 1, k, k)
        else:
            weight, groups, out = self.weight[:self.active_out, :channels], 1, self.active_out  # (out, c, k, k)
        bias = None if self.bias is None else self.bias[:out]
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over the input's channels, with the leading slice of the affine parameters and statistics.

    `update_stats = False` (see `keep_bn_statistics`) normalises training batches with their own
    statistics without touching the running ones. Under torchrun the batch statistics are those of
    the global batch (train.distributed's SyncBN, which the job's conversion applies to plain BNs only).
    """

    update_stats: bool

    def _init_elastic(self) -> None:
        if not (self.affine and self.track_running_stats):
            raise ValueError("ElasticBatchNorm2d needs affine parameters and running statistics")
        self.update_stats = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        update = self.training and self.update_stats
        factor = 0.0
        if update:  # nn.BatchNorm2d's rule; momentum None = cumulative average (recalibration)
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        # Leading slices are views: the running statistics of the full tensors are updated in place.
        mean, var = self.running_mean[:channels], self.running_var[:channels]
        weight, bias = self.weight[:channels], self.bias[:channels]
        if self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Under DDP, statistics over the global batch like the job's SyncBN for plain layers (docs/training.md).
            if not update:
                mean, var, factor = mean.clone(), var.clone(), 0.0
            return SyncBatchNormFunction.apply(x, weight, bias, mean, var, self.eps, factor)
        use_running = update or not self.training
        return F.batch_norm(x, mean if use_running else None, var if use_running else None, weight, bias,
                            self.training, factor, self.eps)


class ElasticLinear(nn.Linear):
    """A linear layer (the heads) on the leading input features."""

    def _init_elastic(self) -> None:
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, :x.shape[-1]], self.bias)  # (B, out)


class ElasticLayerScale2d(LayerScale2d):
    """`x * gamma[:C]` for an input of C channels."""

    def _init_elastic(self) -> None:
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma[:x.shape[1]].view(1, -1, 1, 1)


# --- blocks: set the active sizes, run the parent's forward, freeze to the parent -------------------------


class _ElasticBlock:
    """Shared by the elastic blocks: built with the plain parent's arguments (the largest sizes), then made
    elastic; `freeze()` is the plain parent at the active sizes (`plain()`, built without running its
    initialisers) filled with the leading slices of this block's tensors."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        make_elastic(self)

    def plain(self) -> nn.Module:
        raise NotImplementedError

    def freeze(self) -> nn.Module:
        return copy_leading_slices(self, allocate_like(self, self.plain))


class ElasticStem(_ElasticBlock, Stem):
    """Stem with an elastic output width (conv1 gives width // 2 channels)."""

    def _init_elastic(self) -> None:
        self.in_chans = self.conv1.conv.in_channels
        self.max_width = self.conv2.conv.out_channels
        self.set_active(self.max_width)

    def set_active(self, width: int) -> None:
        self.active_width = _check_size("stem width", width, self.max_width)
        self.conv1.conv.set_active(width // 2)
        self.conv2.conv.set_active(width)

    def plain(self) -> Stem:
        return Stem(self.in_chans, self.active_width)


class ElasticMlp(_ElasticBlock, Mlp):
    """FFN with elastic width (`dim`, the stage width) and hidden channels (width x ratio)."""

    def _init_elastic(self) -> None:
        self.set_active(self.dim, self.hidden)

    def set_active(self, dim: int, hidden: int) -> None:
        self.active_dim = _check_size("FFN width", dim, self.dim)
        self.active_hidden = _check_size("FFN hidden channels", hidden, self.hidden)
        self.fc1.conv.set_active(hidden)
        self.fc2.conv.set_active(dim)

    def plain(self) -> Mlp:
        return Mlp(self.active_dim, self.active_hidden, self.drop.p)


class ElasticAttention2d(_ElasticBlock, Attention2d):
    """MHSA with an elastic stage width; heads, key and value dims and the bias table are fixed."""

    def _init_elastic(self) -> None:
        self.set_active(self.dim)

    def set_active(self, dim: int) -> None:
        self.active_dim = _check_size("attention width", dim, self.dim)
        self.proj.conv.set_active(dim)  # q, k, v read `dim` input channels; stride_conv is depthwise

    def plain(self) -> Attention2d:
        return Attention2d(self.active_dim, self.input_grid, self.num_heads, self.key_dim,
                           self.value_dim // self.key_dim, stride=1 if self.stride_conv is None else 2)


class ElasticAttention2dDownsample(_ElasticBlock, Attention2dDownsample):
    """The attention path of the dual-path downsample with elastic input and output widths."""

    def _init_elastic(self) -> None:
        self.set_active(self.dim, self.out_dim)

    def set_active(self, dim: int, out_dim: int) -> None:
        self.active_dim = _check_size("downsample input width", dim, self.dim)
        self.active_out = _check_size("downsample output width", out_dim, self.out_dim)
        self.proj.conv.set_active(out_dim)

    def plain(self) -> Attention2dDownsample:
        return Attention2dDownsample(self.active_dim, self.active_out, self.input_grid, self.num_heads,
                                     self.key_dim, self.value_dim // self.key_dim)


class ElasticDownsample(_ElasticBlock, Downsample):
    """Stride-2 ConvNorm (+ elastic attention path) with elastic input and output widths."""

    def _init_elastic(self) -> None:
        self.max_in, self.max_out = self.conv.conv.in_channels, self.conv.conv.out_channels
        self.set_active(self.max_in, self.max_out)

    def set_active(self, in_dim: int, out_dim: int) -> None:
        self.active_in = _check_size("downsample input width", in_dim, self.max_in)
        self.active_out = _check_size("downsample output width", out_dim, self.max_out)
        self.conv.conv.set_active(out_dim)
        if self.attn is not None:
            self.attn.set_active(in_dim, out_dim)

    def plain(self) -> Downsample:
        return Downsample(self.active_in, self.active_out, None if self.attn is None else self.attn.plain())


class ElasticBlock(_ElasticBlock, Block):
    """A block whose width and FFN hidden channels are elastic and whose attention can be switched off."""

    def _init_elastic(self) -> None:
        self.set_active(self.mlp.dim, self.mlp.hidden, attention=self.token_mixer is not None)

    def set_active(self, dim: int, hidden: int, attention: bool) -> None:
        """Width, FFN hidden channels, and whether the attention runs (an FFN-only block when False)."""
        if attention and self.token_mixer is None:
            raise ValueError("this supernet block has no attention: attention blocks are the last ones of a stage")
        self.use_attention = attention
        self.mlp.set_active(dim, hidden)
        if attention:
            self.token_mixer.set_active(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_attention:
            x = x + self.drop_path1(self.ls1(self.token_mixer(x)))
        return x + self.drop_path2(self.ls2(self.mlp(x)))

    def plain(self) -> Block:
        mixer = self.token_mixer.plain() if self.use_attention else None
        drop_path = getattr(self.drop_path2, "drop_prob", 0.0)
        return Block(self.mlp.active_dim, self.mlp.plain(), mixer, drop_path, self.ls2.init_value)


class ElasticStage(Stage):
    """A stage that runs only its active blocks (elastic depth), in order."""

    def _init_elastic(self) -> None:
        self.active_blocks = tuple(range(len(self.blocks)))

    def set_active(self, stage: StageConfig, block_map: tuple[int, ...], in_width: int | None) -> None:
        """Activate `stage`: subnet block j runs supernet block `block_map[j]` (SearchSpace.block_map)."""
        if len(block_map) != stage.depth or any(not 0 <= b < len(self.blocks) for b in block_map):
            raise ValueError(f"block map {block_map} does not fit a stage of {len(self.blocks)} supernet blocks "
                             f"and depth {stage.depth}")
        if isinstance(self.downsample, ElasticDownsample):
            self.downsample.set_active(in_width, stage.width)
        for index, block in enumerate(block_map):
            self.blocks[block].set_active(stage.width, stage.hidden_width(index), stage.is_attention_block(index))
        self.active_blocks = tuple(block_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for index in self.active_blocks:
            x = self.blocks[index](x)
        return x


ELASTIC: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv2d: ElasticConv2d,
    nn.BatchNorm2d: ElasticBatchNorm2d,
    nn.Linear: ElasticLinear,
    LayerScale2d: ElasticLayerScale2d,
    Stem: ElasticStem,
    Mlp: ElasticMlp,
    Attention2d: ElasticAttention2d,
    Attention2dDownsample: ElasticAttention2dDownsample,
    Downsample: ElasticDownsample,
    Block: ElasticBlock,
    Stage: ElasticStage,
}


def make_elastic(module: nn.Module) -> nn.Module:
    """In place, children first: give every plain module of an ELASTIC type its elastic class (same tensors)."""
    for child in module.children():
        make_elastic(child)
    elastic = ELASTIC.get(type(module))
    if elastic is not None:
        module.__class__ = elastic
    if hasattr(module, "_init_elastic") and not getattr(module, "_elastic_ready", False):
        module._init_elastic()
        module._elastic_ready = True
    return module


@contextlib.contextmanager
def keep_bn_statistics(module: nn.Module) -> Iterator[None]:
    """Within the block, elastic batch norms of `module` train on batch statistics but leave the running ones alone."""
    norms = [m for m in module.modules() if isinstance(m, ElasticBatchNorm2d)]
    previous = [m.update_stats for m in norms]
    for norm in norms:
        norm.update_stats = False
    try:
        yield
    finally:
        for norm, value in zip(norms, previous):
            norm.update_stats = value


__all__ = [
    "ELASTIC",
    "ElasticAttention2d",
    "ElasticAttention2dDownsample",
    "ElasticBatchNorm2d",
    "ElasticBlock",
    "ElasticConv2d",
    "ElasticDownsample",
    "ElasticLayerScale2d",
    "ElasticLinear",
    "ElasticMlp",
    "ElasticStage",
    "ElasticStem",
    "allocate_like",
    "copy_leading_slices",
    "keep_bn_statistics",
    "make_elastic",
    "tensors_of",
]
