"""Bench output: a rich table for the screen, bench.csv, bench.json and a latency-vs-params scatter PNG.

matplotlib is optional (`pip install efficientformer[demo]`); without it the PNG is skipped and
`plot_latency_params` returns None.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from efficientformer.bench.run import BenchResult, BenchRow
from efficientformer.utils.io import write_csv, write_json
from efficientformer.utils.plots import pyplot, save_png

CSV_COLUMNS = tuple(field.name for field in dataclasses.fields(BenchRow))
FAMILY_MARKERS = {"efficientformerv2": "o", "mobilenetv2": "s"}
FAMILY_NAMES = {"efficientformerv2": "EfficientFormerV2", "mobilenetv2": "MobileNetV2"}


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _difference(row: BenchRow) -> tuple[str, str]:
    """The parity cells: the logits' relative error against unfused eager, and top-1 agreement."""
    if row.relative_error is None or row.top1_agreement is None:
        return "-", "-"
    return f"{row.relative_error:.1e}", f"{row.top1_agreement:.0%}"


def bench_table(result: BenchResult) -> Table:
    """One row per model, runtime and thread count (* marks the faster count): sizes, latency, throughput, MES,
    and the logits' distance from unfused eager (relative error, top-1 agreement on the parity images)."""
    config = result.config
    table = Table(title=f"{result.machine}\nimage {'x'.join(map(str, config.img_size))}, median of "
                        f"{config.repeats} interleaved runs after {config.warmup} warm-up",
                  title_justify="left")
    ref_label = next((row.label for row in result.rows if row.model == result.reference), "-")
    for header in ("runtime", "threads", "model", "params M", "fused M", "GMACs", f"b{config.batch} ms", "p90 ms",
                   f"b{config.batches[-1]} img/s", "x eager", "MES", f"MES vs {ref_label}", "err vs eager",
                   "top-1 = eager"):
        table.add_column(header, justify="left" if header in ("runtime", "model") else "right",
                         no_wrap=header in ("runtime", "model"))
    previous = None
    for row in result.rows:
        if previous is not None and (row.runtime, row.threads) != previous:
            table.add_section()
        previous = (row.runtime, row.threads)
        threads = f"{row.threads}" + (" *" if row.fastest_threads else "")
        if row.median_ms is None:
            table.add_row(row.runtime, threads, row.label, f"{row.params / 1e6:.2f}",
                          f"{row.params_deployed / 1e6:.2f}", f"{row.macs / 1e9:.3f}",
                          f"[red]{escape(row.error[:60])}[/]", *("",) * 7)
            continue
        difference = _difference(row) if row.error is None else (f"[red]{escape(row.error[:40])}[/]", "")
        table.add_row(row.runtime, threads, row.label, f"{row.params / 1e6:.2f}",
                      f"{row.params_deployed / 1e6:.2f}", f"{row.macs / 1e9:.3f}", _number(row.median_ms),
                      _number(row.p90_ms),
                      _number(row.images_per_s, 1), _number(row.speedup_vs_eager), _number(row.mes, 1),
                      _number(row.mes_vs_reference, 1), *difference)
    return table


def markdown_table(result: BenchResult) -> str:
    """The same table as GitHub markdown (for the README)."""
    config = result.config
    header = ["runtime", "threads", "model", "params (M)", "deployed (M)", "GMACs", f"b{config.batch} ms (p90)",
              f"b{config.batches[-1]} img/s", "x eager", "MES", f"MES vs {result.reference or '-'}",
              "relative error vs eager", "top-1 = eager"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result.rows:
        latency = (f"{row.median_ms:.2f} ({row.p90_ms:.2f})" if row.median_ms is not None
                   else f"failed: {row.error}")
        cells = [row.runtime, f"{row.threads}" + (" (faster)" if row.fastest_threads else ""), row.model,
                 f"{row.params / 1e6:.2f}", f"{row.params_deployed / 1e6:.2f}",
                 f"{row.macs / 1e9:.3f}", latency, _number(row.images_per_s, 1), _number(row.speedup_vs_eager),
                 _number(row.mes, 1), _number(row.mes_vs_reference, 1), *_difference(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_bench_csv(result: BenchResult, path: str | os.PathLike) -> Path:
    """One CSV row per model and runtime, every column of BenchRow (empty where not measured)."""
    records = [{key: ("" if value is None else value) for key, value in dataclasses.asdict(row).items()}
               for row in result.rows]
    if not records:
        records = [dict.fromkeys(CSV_COLUMNS, "")]
    return write_csv(records, path)


def write_bench_json(result: BenchResult, path: str | os.PathLike) -> Path:
    """Rows, settings, machine line, versions, date and the raw per-call times."""
    return write_json(path, result.to_dict())


def plot_latency_params(result: BenchResult, path: str | os.PathLike) -> Path | None:
    """Scatter of batch latency (ms) against deployed parameters (M): one colour per runtime, one marker per
    family, every point labelled, a family's points joined by size within a runtime; None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    # One point per model and runtime: its faster thread count.
    rows = [row for row in result.rows if row.median_ms is not None and row.fastest_threads is not False]
    if not rows:
        return None
    runtimes = list(dict.fromkeys(row.runtime for row in rows))
    colours = {runtime: plt.get_cmap("tab10")(index % 10) for index, runtime in enumerate(runtimes)}
    figure, axis = plt.subplots(figsize=(9, 6))
    for runtime in runtimes:
        for family, marker in FAMILY_MARKERS.items():
            points = sorted((row.params_deployed / 1e6, row.median_ms, row.label) for row in rows
                            if row.runtime == runtime and row.family == family)
            if not points:
                continue
            xs, ys, labels = zip(*points)
            axis.plot(xs, ys, linestyle="-" if family == "efficientformerv2" else ":", color=colours[runtime],
                      alpha=0.5, linewidth=1)
            axis.scatter(xs, ys, marker=marker, s=60, color=colours[runtime], edgecolors="black", linewidths=0.5,
                         zorder=3)
    # One label per model, above its slowest point: all its runtimes share the x position.
    for model in dict.fromkeys(row.model for row in rows):
        top = max((row for row in rows if row.model == model), key=lambda row: row.median_ms)
        axis.annotate(top.label, (top.params_deployed / 1e6, top.median_ms), textcoords="offset points",
                      xytext=(0, 8), ha="center", fontsize=9, fontweight="bold")
    axis.margins(x=0.08, y=0.12)
    params = [row.params_deployed for row in rows]
    latencies = [row.median_ms for row in rows]
    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 20, not 2x10^1
    for values, scale, ticks in ((params, axis.set_xscale, axis.xaxis), (latencies, axis.set_yscale, axis.yaxis)):
        if max(values) / min(values) > 4:
            scale("log")
            ticks.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
            ticks.set_minor_formatter(NullFormatter())
            ticks.set_major_formatter(plain)
    axis.set_xlabel("parameters of the deployed (fused) model, millions")
    axis.set_ylabel(f"median latency at batch {result.config.batch}, ms")
    axis.grid(alpha=0.3, which="both")
    handles = [Line2D([], [], color=colours[r], marker="o", linestyle="-", label=r) for r in runtimes]
    families = sorted({row.family for row in rows})
    handles += [Line2D([], [], color="grey", marker=FAMILY_MARKERS[f], linestyle="-" if f == "efficientformerv2"
                       else ":", markeredgecolor="black", label=FAMILY_NAMES[f]) for f in families]
    axis.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, title="runtime / family")
    axis.set_title(f"latency vs size, {'x'.join(map(str, result.config.img_size))} images\n{result.machine}",
                   fontsize=9)
    return save_png(figure, path)


def write_report(result: BenchResult, directory: str | os.PathLike) -> dict[str, Path]:
    """bench.csv, bench.json and (with matplotlib) bench.png in `directory` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = {"csv": write_bench_csv(result, directory / "bench.csv"),
               "json": write_bench_json(result, directory / "bench.json")}
    png = plot_latency_params(result, directory / "bench.png")
    if png is not None:
        written["png"] = png
    return written


__all__ = ["bench_table", "markdown_table", "plot_latency_params", "write_bench_csv", "write_bench_json",
           "write_report"]
