"""The Mobile Efficiency Score of the paper (docs/search.md): MES = Score * prod_i (M_i / U_i) ** -alpha_i.

The metrics are parameters and on-device latency. The units U and importances alpha default to the
values recalled from the paper (docs/search.md, "MES constants": 3 M parameters, 1 ms, alpha 0.5 and
1.0), which reproduce its S0/S1/S2/L scores 102.9/63.8/30.5/12.6 from the iPhone 12 latencies; keep
them configurable, and compare latencies only within one device and runtime (`relative_to` makes a reference model,
e.g. MobileNetV2 on the same runtime, score exactly `score`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from efficientformer.errors import ConfigError


@dataclass(frozen=True)
class MESConstants:
    """Units and importances of the score.

    Args:
        score: the score of a model exactly at the units.
        params_unit: parameters that count as one unit.
        latency_unit_ms: latency (ms) that counts as one unit, on the device being scored.
        params_alpha, latency_alpha: how strongly each metric pulls the score down.
    """

    score: float = 100.0
    params_unit: float = 3e6
    latency_unit_ms: float = 1.0
    params_alpha: float = 0.5
    latency_alpha: float = 1.0

    def __post_init__(self) -> None:
        for name in ("score", "params_unit", "latency_unit_ms"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"MESConstants.{name} must be positive, got {getattr(self, name)!r}")
        for name in ("params_alpha", "latency_alpha"):
            if getattr(self, name) < 0:
                raise ConfigError(f"MESConstants.{name} must be >= 0, got {getattr(self, name)!r}")

    def relative_to(self, params: float, latency_ms: float) -> MESConstants:
        """The same importances with a reference model's params and latency as units (it scores `score`)."""
        return dataclasses.replace(self, params_unit=float(params), latency_unit_ms=float(latency_ms))


PAPER_MES = MESConstants()


def mobile_efficiency_score(params: float, latency_ms: float, constants: MESConstants = PAPER_MES) -> float:
    """MES of a model with `params` parameters and `latency_ms` latency; higher is better."""
    if params <= 0 or latency_ms <= 0:
        raise ConfigError(f"MES needs positive params and latency, got params={params!r}, latency_ms={latency_ms!r}")
    return (constants.score * (params / constants.params_unit) ** -constants.params_alpha
            * (latency_ms / constants.latency_unit_ms) ** -constants.latency_alpha)


__all__ = ["PAPER_MES", "MESConstants", "mobile_efficiency_score"]
