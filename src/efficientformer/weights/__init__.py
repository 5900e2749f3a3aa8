"""Weights apart from architectures: checkpoint files (ours, timm's, the official .pth), layout conversion,
the zoo of published weights and their hash-verified downloads.

    checkpoint = read_checkpoint("eformer_s0_450.pth")     # any layout: keys in ours, config when stored
    report = load_checkpoint(model, checkpoint)            # strict: CheckpointError naming what does not fit
    meta = read_metadata("best.safetensors")               # config, classes, eval crop, search space, typed
    path = resolve_weights("efficientformerv2_s0.snap_dist_in1k")  # a tag: downloaded once into the cache
"""

from efficientformer.errors import CheckpointError, DownloadError
from efficientformer.weights.checkpoint import (
    Checkpoint,
    LoadReport,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    write_state_dict,
)
from efficientformer.weights.convert import LAYOUTS, LayoutError, detect_layout, official_to_ours, ours_to_official
from efficientformer.weights.download import cache_dir, fetch_weights, resolve_weights
from efficientformer.weights.metadata import CheckpointMeta, read_metadata
from efficientformer.weights.zoo import (
    DEFAULT,
    WEIGHTS,
    DataConfig,
    Weights,
    default_weights,
    get_weights,
    list_weights,
)

__all__ = ["DEFAULT", "LAYOUTS", "WEIGHTS", "Checkpoint", "CheckpointError", "CheckpointMeta", "DataConfig",
           "DownloadError", "LayoutError", "LoadReport", "Weights", "cache_dir", "default_weights", "detect_layout",
           "fetch_weights", "get_weights", "list_weights", "load_checkpoint", "official_to_ours", "ours_to_official",
           "read_checkpoint", "read_metadata", "resolve_weights", "save_checkpoint", "write_state_dict"]
