"""`--pretrained` of a comparison: which models start from published weights, decided before anything trains.

A model has published weights when the zoo has default weights for its name (weights/zoo.py) and
its architecture is the registered one (a search's found.json that kept the name `efficientformerv2_s0`
but changed a stage would not fit them). Each such run gets the weight tag as the training job's own
`pretrained` option, so the weights are loaded exactly as `efficientformer train --pretrained TAG`
loads them (heads re-initialised for the run's classes, bias tables resampled to its resolution).

Modes: 'all' — every model must have published weights, otherwise a ConfigError names those that
have none; 'available' — those that have them start from them, the others train from scratch and
are named in the log and in the table's `start` column.
"""

from __future__ import annotations

from collections.abc import Sequence

from efficientformer.errors import ConfigError
from efficientformer.models import registry
from efficientformer.models.config import ModelConfig
from efficientformer.models.spec import ModelSpec
from efficientformer.weights.download import resolve_weights
from efficientformer.weights.zoo import DEFAULT

PRETRAINED_MODES = ("all", "available")
SCRATCH = "scratch"


def published_tag(spec: ModelSpec) -> str | None:
    """The default weight tag of `spec`'s architecture, or None when the zoo has none for it."""
    if not isinstance(spec, ModelConfig) or spec.name not in DEFAULT:
        return None
    return DEFAULT[spec.name] if registry.get(spec.name).stages == spec.stages else None


def check_mode(mode: str | None) -> None:
    """Raises ConfigError for a mode that is neither None nor one of PRETRAINED_MODES."""
    if mode is not None and mode not in PRETRAINED_MODES:
        raise ConfigError(f"pretrained must be one of {', '.join(PRETRAINED_MODES)} (or None: every model from "
                          f"scratch), got {mode!r}")


def start_weights(specs: Sequence[ModelSpec], mode: str | None) -> dict[str, str | None]:
    """Model name -> the weight tag its runs start from (None: from scratch), for `mode` (module docstring).

    With mode 'available' the models without weights map to None; the caller names them in its log.

    Raises:
        ConfigError: mode 'all' and some models have no published weights (named in the message).
    """
    if mode is None:
        return {spec.name: None for spec in specs}
    tags = {spec.name: published_tag(spec) for spec in specs}
    missing = [name for name, tag in tags.items() if tag is None]
    if missing and mode == "all":
        raise ConfigError(f"no published weights for {', '.join(missing)} (the zoo has {', '.join(DEFAULT)}): "
                          f"--pretrained available trains them from scratch and the others from their weights")
    return tags


def fetch(tags: dict[str, str | None]) -> None:
    """Download (or check in the cache) every tag now, so that a missing file stops the comparison before any
    training instead of failing one model's run after the others have trained."""
    for tag in sorted({tag for tag in tags.values() if tag is not None}):
        resolve_weights(tag)


__all__ = ["PRETRAINED_MODES", "SCRATCH", "check_mode", "fetch", "published_tag", "start_weights"]
