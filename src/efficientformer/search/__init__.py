"""Architecture search (docs/search.md): the space, the supernet, the latency lookup table and the slimming search."""

from efficientformer.search.lut import LatencyTable, ParamCounter, build_lut, decompose
from efficientformer.search.run import SearchJob, run_search
from efficientformer.search.sandwich import SandwichTask, train_supernet
from efficientformer.search.slimming import SlimResult, slim
from efficientformer.search.space import (
    DEFAULT_SPACE,
    SPACES,
    TINY_SPACE,
    SearchSpace,
    StageSpace,
    get_space,
    signature,
)
from efficientformer.search.supernet import Supernet, load_subnet_weights, load_supernet, recalibrate_bn, save_supernet

__all__ = ["DEFAULT_SPACE", "SPACES", "TINY_SPACE", "LatencyTable", "ParamCounter", "SandwichTask", "SearchJob",
           "SearchSpace", "SlimResult", "StageSpace", "Supernet", "build_lut", "decompose", "get_space",
           "load_subnet_weights", "load_supernet", "recalibrate_bn", "run_search", "save_supernet", "signature", "slim",
           "train_supernet"]
