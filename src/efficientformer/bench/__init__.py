"""Benchmarking: the latency harness, runtimes, the bench run against MobileNetV2, its reports, and MES."""

from efficientformer.bench.mes import PAPER_MES, MESConstants, mobile_efficiency_score
from efficientformer.bench.run import BenchConfig, BenchResult, BenchRow, run_bench
from efficientformer.bench.timing import Timing, time_interleaved

__all__ = ["PAPER_MES", "BenchConfig", "BenchResult", "BenchRow", "MESConstants", "Timing", "mobile_efficiency_score",
           "run_bench", "time_interleaved"]
