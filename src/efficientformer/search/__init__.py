"""Architecture search (SPEC 5): the search space, the supernet, the latency lookup table and the slimming search."""

from efficientformer.search.space import DEFAULT_SPACE, SPACES, TINY_SPACE, SearchSpace, StageSpace, get_space, signature

__all__ = ["DEFAULT_SPACE", "SPACES", "TINY_SPACE", "SearchSpace", "StageSpace", "get_space", "signature"]
