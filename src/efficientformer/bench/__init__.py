"""Benchmarking: the Mobile Efficiency Score (and, later, latency tables against MobileNetV2)."""

from efficientformer.bench.mes import PAPER_MES, MESConstants, mobile_efficiency_score

__all__ = ["PAPER_MES", "MESConstants", "mobile_efficiency_score"]
