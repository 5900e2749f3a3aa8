"""The weight-sharing supernet: EfficientFormerV2 at the space's largest config, made elastic (docs/search.md).

    supernet = Supernet(TINY_SPACE)
    supernet.set_active(supernet.sample(torch.Generator().manual_seed(0)))
    y = supernet.eval()(x)                              # the active subnet
    model = supernet.extract(supernet.active)           # a plain EfficientFormerV2 with the same outputs
    recalibrate_bn(supernet, batches)                   # before evaluating a subnet other than the largest

`Supernet(space)` is `EfficientFormerV2(space.max_config())` whose blocks are switched to their
elastic subclasses (search/elastic.py): the same parameter names, so its state dict is a plain
max-config state dict and `save_supernet` files load with `load_model` as that plain model too.
Subnet block j of a stage runs supernet block `space.block_map(...)[j]` (FFN-only blocks from the
front, attention blocks from the back).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from efficientformer.errors import CheckpointError, ConfigError
from efficientformer.factory import create_model, infer_config
from efficientformer.models.config import ModelConfig
from efficientformer.models.efficientformer_v2 import EfficientFormerV2
from efficientformer.search.elastic import (
    allocate_like,
    copy_leading_slices,
    keep_bn_statistics,
    make_elastic,
    tensors_of,
)
from efficientformer.search.space import SearchSpace
from efficientformer.weights.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from efficientformer.weights.metadata import SPACE_METADATA_KEY, read_metadata

# Fields a subnet must share with the supernet besides the space's own checks (the heads and bias tables).
_SHARED_FIELDS = ("num_classes", "img_size", "distillation")


class Supernet(EfficientFormerV2):
    """EfficientFormerV2 at `space.max_config()` that runs any subnet of `space` on shared, sliced weights.

    Args:
        space: the search space; its base config fixes classes, resolution, heads and key dims.
    """

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space.max_config())
        self.space = space
        make_elastic(self)
        self._active = self.config
        self.set_active(self.config)

    # --- the OFA surface ----------------------------------------------------------------------------
    @property
    def active(self) -> ModelConfig:
        """The subnet the supernet currently runs."""
        return self._active

    def check_subnet(self, config: ModelConfig) -> None:
        """Raise ValueError unless `config` is a point of the space with this supernet's shared fields."""
        self.space.validate(config)
        for field in _SHARED_FIELDS:
            if getattr(config, field) != getattr(self.config, field):
                raise ConfigError(f"{config.name}: {field} is {getattr(config, field)!r} but this supernet has "
                                  f"{getattr(self.config, field)!r}; use config.replace({field}=...)")

    def set_active(self, config: ModelConfig) -> None:
        """Run `config` from now on (it must be a point of the space; errors name the field)."""
        self.check_subnet(config)
        widths = config.widths
        self.stem.set_active(widths[0])
        for index, (stage, module) in enumerate(zip(config.stages, self.stages)):
            module.set_active(stage, self.space.block_map(index, stage.depth, stage.num_attn),
                              in_width=widths[index - 1] if index else None)
        self._active = config

    def sample(self, generator: torch.Generator) -> ModelConfig:
        """A random subnet (`space.sample`)."""
        return self.adapt(self.space.sample(generator))

    def largest(self) -> ModelConfig:
        return self.adapt(self.space.max_config())

    def smallest(self) -> ModelConfig:
        return self.adapt(self.space.min_config())

    def adapt(self, config: ModelConfig) -> ModelConfig:
        """`config` with this supernet's class count, resolution and distillation head (e.g. for `get_config('s0')`)."""
        return config.replace(**{field: getattr(self.config, field) for field in _SHARED_FIELDS})

    def extract(self, config: ModelConfig | None = None) -> EfficientFormerV2:
        """A plain `create_model(config)` with the subnet's weights copied in (default: the active subnet).

        In eval mode its outputs equal the supernet's with `config` active; it is on the supernet's
        device and in its train/eval mode. The supernet is left as it was (its active subnet too).
        """
        config = self.active if config is None else config
        self.check_subnet(config)
        model = allocate_like(self, lambda: create_model(config))
        shared = tensors_of(self)
        block_maps = self.block_maps(config)
        tensors = {key: shared[supernet_key(key, block_maps)] for key in tensors_of(model)}
        return copy_leading_slices(tensors, model).train(self.training)

    def block_maps(self, config: ModelConfig) -> list[tuple[int, ...]]:
        """Per stage, the supernet block each of `config`'s blocks runs as (`space.block_map`)."""
        return [self.space.block_map(index, stage.depth, stage.num_attn) for index, stage in enumerate(config.stages)]

    # --- training support ---------------------------------------------------------------------------
    def keep_bn_statistics(self) -> contextlib.AbstractContextManager:
        """Within the block, training passes leave the BN running statistics alone (search/elastic.py)."""
        return keep_bn_statistics(self)

    def fuse(self) -> EfficientFormerV2:
        raise RuntimeError("a supernet cannot be fused: extract a subnet first (supernet.extract(config))")


def load_subnet_weights(supernet: Supernet, source: EfficientFormerV2 | str | os.PathLike) -> ModelConfig:
    """Write a plain subnet's weights into the supernet's shared slices (warm start); returns its config.

    The inverse of `extract`: afterwards the supernet with that subnet active computes what the
    model does. A checkpoint file (e.g. the released L, a point of the paper space) is loaded at the
    supernet's resolution (bias tables resampled); with another class count the heads are left alone.
    Weights outside the subnet's slices keep their values.
    """
    skip_heads = False
    if not isinstance(source, nn.Module):
        checkpoint = read_checkpoint(source)
        config = checkpoint.config or infer_config(checkpoint.state_dict)
        skip_heads = config.num_classes != supernet.config.num_classes
        source = create_model(supernet.adapt(config), pretrained=checkpoint.path)
    config = supernet.adapt(source.config)
    supernet.set_active(config)
    block_maps = supernet.block_maps(config)
    shared = supernet.state_dict()
    with torch.no_grad():
        for key, tensor in source.state_dict().items():
            if not (skip_heads and key.startswith(("head.", "head_dist."))):
                shared[supernet_key(key, block_maps)][tuple(slice(0, n) for n in tensor.shape)].copy_(tensor)
    return config


def supernet_key(key: str, block_maps: list[tuple[int, ...]]) -> str:
    """The supernet tensor that a subnet's tensor `key` is a leading slice of.

    Only block indices change: subnet block j of stage i is supernet block `block_maps[i][j]`.
    """
    parts = key.split(".")
    if len(parts) > 3 and parts[0] == "stages" and parts[2] == "blocks":
        parts[3] = str(block_maps[int(parts[1])][int(parts[3])])
    return ".".join(parts)


def recalibrate_bn(model: nn.Module, batches: Iterable, max_batches: int | None = None) -> nn.Module:
    """Recompute every BN's running statistics on `batches` for the active architecture; returns `model` in eval mode.

    The statistics are reset and then averaged over the batches with equal weight (momentum None);
    only the batch norms run in training mode (no drop path, no dropout), without gradients.

    Args:
        model: a Supernet (its active subnet) or any network.
        batches: images (B, 3, H, W) or (images, labels, ...) tuples, e.g. a DataLoader over training data.
        max_batches: use at most this many batches.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    device = next(model.parameters()).device
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    seen = 0
    try:
        with torch.no_grad():
            for batch in batches:
                if max_batches is not None and seen >= max_batches:
                    break
                images = batch if isinstance(batch, torch.Tensor) else batch[0]
                model(images.to(device))
                seen += 1
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.eval()
    if seen == 0:
        raise ConfigError("recalibrate_bn got no batches: give it a few batches of training images")
    return model


# --- files ------------------------------------------------------------------------------------------------


def save_supernet(supernet: Supernet, path: str | os.PathLike) -> Path:
    """Write the supernet as safetensors: its weights, its max config and its search space (metadata)."""
    return save_checkpoint(supernet, path, metadata={SPACE_METADATA_KEY: supernet.space.to_json()})


def read_space(path: str | os.PathLike) -> SearchSpace:
    """The search space stored in a `save_supernet` file."""
    meta = read_metadata(path)
    if meta.search_space is None:
        raise CheckpointError(f"{path} has no search space in its metadata: not written by save_supernet "
                              f"(pass the space explicitly: load_supernet(path, space=...))")
    try:
        return SearchSpace.from_dict(meta.search_space)
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path}: invalid search space in metadata ({error})") from None


def load_supernet(path: str | os.PathLike, space: SearchSpace | None = None,
                  device: str | torch.device | None = None) -> Supernet:
    """Rebuild a supernet from a `save_supernet` file (or any max-config checkpoint with `space` given); eval mode."""
    space = read_space(path) if space is None else space
    supernet = Supernet(space)
    load_checkpoint(supernet, read_checkpoint(path), strict=True)
    if device is not None:
        supernet = supernet.to(device)
    return supernet.eval()


__all__ = ["SPACE_METADATA_KEY", "Supernet", "load_subnet_weights", "load_supernet", "read_space", "recalibrate_bn",
           "save_supernet"]
