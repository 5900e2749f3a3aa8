"""Name -> ModelConfig registry: the only place a model name resolves to an architecture."""

from __future__ import annotations

from efficientformer.errors import ConfigError, UnknownNameError
from efficientformer.models.config import ModelConfig

_REGISTRY: dict[str, ModelConfig] = {}


def register(config: ModelConfig, *, public: bool = True) -> ModelConfig:
    """Add `config` under `config.name`; `public=False` hides it from `list_models()` (test configs)."""
    if config.name in _REGISTRY:
        raise ConfigError(f"model {config.name!r} is already registered")
    _REGISTRY[config.name] = config
    if not public:
        _HIDDEN.add(config.name)
    return config


_HIDDEN: set[str] = set()


def get(name: str) -> ModelConfig:
    """The registered config for `name`; short aliases ('s0', 'l') are accepted."""
    key = name if name in _REGISTRY else f"efficientformerv2_{name.lower()}"
    if key not in _REGISTRY:
        raise UnknownNameError(f"unknown model {name!r}; known models: {', '.join(list_models(include_hidden=True))}")
    return _REGISTRY[key]


def list_models(include_hidden: bool = False) -> list[str]:
    """Registered model names in registration order."""
    return [name for name in _REGISTRY if include_hidden or name not in _HIDDEN]
