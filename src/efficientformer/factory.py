"""Compose architectures and weights: create_model, build_model (either family), load_model, convert_checkpoint."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from torch import nn

from efficientformer.errors import ConfigError, MissingFileError, UnknownNameError
from efficientformer.models import registry
from efficientformer.models.config import ModelConfig
from efficientformer.models.efficientformer_v2 import EfficientFormerV2
from efficientformer.models.mobilenetv2 import MOBILENETV2_CONFIGS, MobileNetV2, MobileNetV2Config
from efficientformer.models.spec import ModelSpec, build_network, family_of, spec_from_json
from efficientformer.utils.jsonarg import is_json_text, looks_like_path
from efficientformer.weights.checkpoint import (
    Checkpoint,
    CheckpointError,
    attention_grids,
    load_checkpoint,
    read_checkpoint,
    write_state_dict,
)
from efficientformer.weights.convert import LAYOUTS, bias_table_grids
from efficientformer.weights.download import resolve_weights
from efficientformer.weights.metadata import config_metadata
from efficientformer.weights.zoo import DEFAULT, WEIGHTS, DataConfig, default_weights

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


ARGUMENT_KINDS = ("spec", "json text", "json file", "checkpoint", "name", "weight tag")


def _is_name(text: str) -> bool:
    if text in MOBILENETV2_CONFIGS:
        return True
    try:
        registry.get(text)
    except UnknownNameError:
        return False
    return True


def _file_kind(path: Path) -> str:
    """.json: a config; a checkpoint suffix: a checkpoint; another name: a config when it holds JSON text."""
    if path.suffix == ".json":
        return "json file"
    if path.name.endswith(CHECKPOINT_SUFFIXES):
        return "checkpoint"
    with open(path, "rb") as handle:
        return "json file" if handle.read(64).lstrip().startswith(b"{") else "checkpoint"


def classify_argument(value: str | os.PathLike | ModelSpec) -> str:
    """What a model or weights argument is: the one rule (docs/architecture.md, "How a model argument is resolved").

    In this order:
    1. a spec object (ModelConfig, MobileNetV2Config);
    2. JSON text: starts with "{";
    3. a path: ends in .json or a checkpoint suffix, or has a directory part; it must exist
       (MissingFileError). .json is a config file, a checkpoint suffix a checkpoint, any other file a
       config when it holds JSON text, else a checkpoint;
    4. a model name or alias of either family ('s0', 'efficientformerv2_s0', 'mobilenetv2_100');
    5. a weight tag of the zoo;
    6. an existing file of another name, kind as in 3;
    7. else UnknownNameError listing the names, aliases and tags.
    So a bare value is a name before it is a file: 's0' is the variant even beside a file called s0,
    './s0' is the file. Returns one of `ARGUMENT_KINDS`.
    """
    if isinstance(value, (ModelConfig, MobileNetV2Config)):
        return "spec"
    text = str(value)
    if is_json_text(text):
        return "json text"
    if looks_like_path(text, CHECKPOINT_SUFFIXES):
        if not Path(text).is_file():
            raise MissingFileError(f"{text} does not exist (a path, as it ends in .json or "
                                   f"{'/'.join(CHECKPOINT_SUFFIXES)} or has a directory part)")
        return _file_kind(Path(text))
    if _is_name(text):
        return "name"
    if text in WEIGHTS:
        return "weight tag"
    if Path(text).is_file():
        return _file_kind(Path(text))
    models = registry.list_models(include_hidden=True) + list(MOBILENETV2_CONFIGS)
    raise UnknownNameError(f"unknown model {text!r}; known models: {', '.join(models)} (or a short alias such as "
                           f"'s0'); weight tags: {', '.join(WEIGHTS) or 'none'}; or a config JSON file or text, or a "
                           f"checkpoint file")


def classify_weights(value: str | os.PathLike) -> str:
    """`classify_argument` for a weights argument: 'checkpoint' or 'weight tag', else a ConfigError naming it."""
    kind = classify_argument(value)
    if kind not in ("checkpoint", "weight tag"):
        raise ConfigError(f"weights {str(value)!r} are a {kind}, not weights: give a checkpoint file or a weight tag "
                          f"({', '.join(WEIGHTS) or 'none'})")
    return kind


def resolve_spec(name_or_spec: str | os.PathLike | ModelSpec) -> ModelSpec:
    """The spec of a model argument of either family, by `classify_argument`'s rule: a spec, JSON text or file, a
    checkpoint (its stored config, or the registered model its keys match), a name or alias, a weight tag (its
    model)."""
    kind = classify_argument(name_or_spec)
    text = str(name_or_spec)
    if kind == "spec":
        return name_or_spec
    if kind in ("json text", "json file"):
        return spec_from_json(text)
    if kind == "checkpoint":
        return _config_of(read_checkpoint(text), None)
    if kind == "weight tag":
        return registry.get(WEIGHTS[text].model)
    return MOBILENETV2_CONFIGS[text] if text in MOBILENETV2_CONFIGS else registry.get(text)


def resolve_config(name_or_config: str | os.PathLike | ModelConfig) -> ModelConfig:
    """A registered name (or short alias like 's0'), a ModelConfig, a ModelConfig JSON file, or a checkpoint file.

    A checkpoint gives the config stored in it (ours), or the registered model its keys and shapes match.
    """
    spec = resolve_spec(name_or_config)
    if not isinstance(spec, ModelConfig):
        raise ConfigError(f"{name_or_config} is a {family_of(spec)} model ({spec.name}), not an EfficientFormerV2 "
                          f"config")
    return spec


def create_model(name_or_config: str | os.PathLike | ModelConfig, *, pretrained: str | os.PathLike | bool | None = None,
                 num_classes: int | None = None, img_size: int | tuple[int, int] | None = None,
                 features_only: bool = False, out_indices: tuple[int, ...] | None = None, frozen_stages: int = -1,
                 norm_eval: bool = False, device: str | torch.device | None = None,
                 **overrides) -> EfficientFormerV2:
    """Build a model from a registered name, a config or a config JSON, optionally with weights.

    Args:
        pretrained: a weight tag from `efficientformer list`, True for the model's default tag, or a
            local checkpoint path (official, timm or ours). The tag is downloaded once into the cache.
            With a different `num_classes` than the weights, the heads are left freshly initialised.
        num_classes, img_size: override the config (bias tables are resampled to `img_size`).
        features_only: return the stage maps instead of logits (a detection/segmentation backbone).
        out_indices: the stages (0-3) a features_only model returns; later stages are not built.
        frozen_stages: -1 none; N: the stem and the first N stages get no gradient and stay in eval mode.
        norm_eval: every BatchNorm stays in eval mode while training.
        overrides: any other ModelConfig field (drop_path_rate, distillation, ...).
    """
    config = resolve_config(name_or_config)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    if img_size is not None:
        overrides["img_size"] = img_size
    if overrides:
        config = config.replace(**overrides)
    backbone = {} if out_indices is None else {"out_indices": tuple(out_indices)}
    model = EfficientFormerV2(config, features_only=features_only, frozen_stages=frozen_stages, norm_eval=norm_eval,
                              **backbone)
    model.pretrained_tag = None
    if pretrained not in (None, False):
        tag = default_weights(config.name).tag if pretrained is True else str(pretrained)
        model.pretrained_tag = tag if tag in WEIGHTS else None  # data_config(model) reads the tag's preprocessing
        checkpoint = read_checkpoint(_weights_path(pretrained, config))
        head = checkpoint.state_dict.get("head.weight")
        skip_head = head is None and config.num_classes > 0 or head is not None and head.shape[0] != config.num_classes
        load_checkpoint(model, checkpoint, strict=True, skip_head=skip_head)
    model.pretrained_cfg = pretrained_cfg(model)
    if device is not None:
        model = model.to(device)
    return model


def build_model(name_or_spec: str | os.PathLike | ModelSpec, *, num_classes: int | None = None,
                img_size: int | tuple[int, int] | None = None, pretrained: str | os.PathLike | bool | None = None,
                device: str | torch.device | None = None) -> nn.Module:
    """A network of either family (models/spec.py) from a name, spec, config JSON or checkpoint: what training builds.

    EfficientFormerV2 goes through `create_model`. MobileNetV2 is built from its config; there are no
    published MobileNetV2 weights, so `pretrained` must be a checkpoint file (heads left freshly
    initialised when its class count differs).
    """
    spec = resolve_spec(name_or_spec)
    if isinstance(spec, ModelConfig):
        return create_model(spec, pretrained=pretrained, num_classes=num_classes, img_size=img_size, device=device)
    changes = {key: value for key, value in (("num_classes", num_classes), ("img_size", img_size)) if value is not None}
    model = build_network(spec.replace(**changes) if changes else spec)
    if pretrained not in (None, False):
        if pretrained is True or not Path(str(pretrained)).is_file():
            raise ConfigError(f"there are no published {spec.name} weights: pass a checkpoint file as pretrained, "
                              f"got {pretrained!r}")
        checkpoint = read_checkpoint(pretrained)
        head = checkpoint.state_dict.get("head.weight")
        skip_head = head is not None and head.shape[0] != model.num_classes
        load_checkpoint(model, checkpoint, strict=True, skip_head=skip_head)
    return model if device is None else model.to(device)


def pretrained_cfg(model: EfficientFormerV2) -> dict:
    """timm's `model.pretrained_cfg` (what `timm.data.resolve_model_data_config(model)` reads): the data config
    plus the weight tag, class count, classifier and first-conv names."""
    if model.features_only:
        heads, num_classes = None, 0
    else:
        heads = ("head", "head_dist") if model.head_dist is not None else "head"
        num_classes = model.num_classes
    return {**data_config(model).to_dict(), "tag": getattr(model, "pretrained_tag", None), "num_classes": num_classes,
            "classifier": heads, "first_conv": "stem.conv1.conv", "fixed_input_size": False}


def _weights_path(pretrained: str | os.PathLike | bool, config: ModelConfig) -> Path:
    if pretrained is True:
        pretrained = default_weights(config.name).tag
    tag = str(pretrained)
    if tag in WEIGHTS and WEIGHTS[tag].model != config.name:
        raise ConfigError(f"weights {tag!r} are for {WEIGHTS[tag].model}, not {config.name}")
    return resolve_weights(tag)


def data_config(model_or_tag: nn.Module | ModelSpec | str) -> DataConfig:
    """Eval preprocessing (mean, std, crop_pct, interpolation, input size) for a model or a weight tag.

    A weight tag gives the entry's values; a registered name (or alias) those of its default
    weights; a model created with `pretrained=TAG` those of the tag at the model's own input size.
    Anything else (random or local weights, MobileNetV2) gets ImageNet mean/std, bicubic, crop 0.875 at its size.
    """
    if isinstance(model_or_tag, str) and model_or_tag in WEIGHTS:
        return WEIGHTS[model_or_tag].data_config()
    if isinstance(model_or_tag, (MobileNetV2, MobileNetV2Config)):
        config = model_or_tag.config if isinstance(model_or_tag, MobileNetV2) else model_or_tag
        return dataclasses.replace(DataConfig(), input_size=(config.in_chans, *config.img_size))
    if isinstance(model_or_tag, EfficientFormerV2):
        config, tag = model_or_tag.config, getattr(model_or_tag, "pretrained_tag", None)
    elif isinstance(model_or_tag, (str, ModelConfig)):
        config = resolve_config(model_or_tag)
        tag = DEFAULT.get(config.name) if isinstance(model_or_tag, str) else None
    else:
        raise TypeError(f"data_config takes a model, a ModelConfig, a model name or a weight tag, "
                        f"got {type(model_or_tag).__name__}")
    base = WEIGHTS[tag].data_config() if tag in WEIGHTS else DataConfig()
    return dataclasses.replace(base, input_size=(config.in_chans, *config.img_size))


def infer_config(state_dict: dict[str, torch.Tensor]) -> ModelConfig:
    """The registered architecture whose parameter shapes match an our-layout state dict.

    The class count comes from the head, the resolution from the stage-4 bias table (square).
    """
    head = state_dict.get("head.weight")
    overrides = {"num_classes": 0 if head is None else head.shape[0],
                 "distillation": "head_dist.weight" in state_dict}
    grids = bias_table_grids({k: v for k, v in state_dict.items() if k.startswith("stages.3.downsample.")})
    if grids:
        rows, cols = next(iter(grids.values()))
        overrides["img_size"] = (rows * 16, cols * 16)
    wanted = {k: tuple(v.shape) for k, v in state_dict.items() if not k.endswith("attention_bias_idxs")}
    for name in registry.list_models(include_hidden=True):
        try:
            config = registry.get(name).replace(**overrides)
        except ValueError:
            continue
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in EfficientFormerV2(config).state_dict().items()}
        if shapes == wanted:
            return config
    raise CheckpointError("the checkpoint matches none of the registered architectures "
                          f"({', '.join(registry.list_models())}); pass the model name or a config")


def _config_of(checkpoint: Checkpoint, model: str | ModelSpec | None) -> ModelSpec:
    if model is not None:
        config = resolve_spec(model)
        head = checkpoint.state_dict.get("head.weight")
        if head is not None and head.shape[0] != config.num_classes:
            config = config.replace(num_classes=head.shape[0])
        return config
    return checkpoint.config or infer_config(checkpoint.state_dict)


def load_model(path: str | os.PathLike, *, model: str | ModelSpec | None = None,
               device: str | torch.device | None = None) -> EfficientFormerV2 | MobileNetV2:
    """Rebuild the right model from a checkpoint file alone and load it strictly; returned in eval mode.

    Our files name their family and config (a trained MobileNetV2 comes back as one).

    Args:
        model: the architecture, needed only when the file has no config and matches no registered one.
    """
    checkpoint = read_checkpoint(path)
    spec = _config_of(checkpoint, model)
    if isinstance(spec, ModelConfig):
        backbone = {} if checkpoint.out_indices is None else {"out_indices": checkpoint.out_indices}
        net = EfficientFormerV2(spec, features_only=checkpoint.features_only, **backbone)
    else:
        net = build_network(spec)
    load_checkpoint(net, checkpoint, strict=True)
    net.pretrained_tag = None
    if isinstance(net, EfficientFormerV2):
        net.pretrained_cfg = pretrained_cfg(net)
    if device is not None:
        net = net.to(device)
    return net.eval()


def convert_checkpoint(source: str | os.PathLike, destination: str | os.PathLike, to: str = "ours",
                       model: str | ModelSpec | None = None) -> tuple[str, str]:
    """Rewrite a checkpoint in another layout; every tensor is copied bit-exactly.

    Args:
        to: 'ours' (safetensors + config), 'timm' (safetensors, timm names) or 'official' ({'model': ...} .pth).
        model: the architecture when the file has none and it cannot be inferred.

    Returns:
        (source layout, destination layout).
    """
    if to not in LAYOUTS:
        raise ConfigError(f"--to must be one of {', '.join(LAYOUTS)}, got {to!r}")
    checkpoint = read_checkpoint(source)
    metadata = None
    grids = None
    if to == "ours":
        metadata = config_metadata(_config_of(checkpoint, model), checkpoint.features_only, checkpoint.out_indices)
    elif to == "official" and isinstance(checkpoint.config, ModelConfig):
        grids = attention_grids(checkpoint.config)
    write_state_dict(checkpoint.state_dict, destination, to, metadata, grids=grids)
    return checkpoint.layout, to


__all__ = ["ARGUMENT_KINDS", "build_model", "classify_argument", "classify_weights", "convert_checkpoint",
           "create_model", "data_config", "infer_config", "load_model", "pretrained_cfg", "resolve_config",
           "resolve_spec"]
