"""Comparison output: compare.csv, compare.json, a markdown table, and compare.png (accuracy vs measured latency).

matplotlib is optional (`pip install 'efficientformer[demo]'`); without it the PNG is skipped and
`plot_compare` returns None.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from efficientformer.compare.rows import CompareRow
from efficientformer.compare.run import CompareResult
from efficientformer.utils.io import write_csv, write_json
from efficientformer.utils.plots import pyplot, save_png

CSV_COLUMNS = tuple(field.name for field in dataclasses.fields(CompareRow))
FAMILY_MARKERS = {"efficientformerv2": "o", "mobilenetv2": "s"}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (latency, accuracy) points no other point beats, fastest first.

    A point is beaten when another is at least as fast and at least as accurate, and strictly better
    in one of the two; of identical points only the first is kept.
    """
    order = sorted(range(len(points)), key=lambda index: (points[index][0], -points[index][1], index))
    front, best = [], float("-inf")
    for index in order:
        if points[index][1] > best:
            front.append(index)
            best = points[index][1]
    return front


def _number(value: float | None, digits: int = 2, scale: float = 1.0) -> str:
    """`value / scale` with `digits` decimals, '-' when missing."""
    return "-" if value is None else f"{value / scale:.{digits}f}"


def _accuracy(row: CompareRow, key: str) -> str:
    """'97.50', or with several seeds '97.50 (96.80-98.10)': the mean and the range."""
    mean = getattr(row, key)
    if mean is None:
        return "-"
    if row.runs < 2:
        return f"{mean:.2f}"
    return f"{mean:.2f} ({getattr(row, f'{key}_min'):.2f}-{getattr(row, f'{key}_max'):.2f})"


def markdown_table(result: CompareResult) -> str:
    """One line per model as GitHub markdown; several seeds show accuracy as mean (min-max); with --pretrained a
    `start` column names the weights each model started from (or 'scratch')."""
    seeds = result.config.seeds
    starts = result.config.pretrained is not None
    header = ["model", *(["start"] if starts else []), "params (M)", "deployed (M)", "GMACs", "top-1 %", "top-5 %",
              f"{result.runtime} ms (p90)", "MES", f"MES vs {result.reference or '-'}", "train time",
              "seeds" if seeds > 1 else "seed"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result.rows:
        latency = "-" if row.median_ms is None else f"{row.median_ms:.2f} ({row.p90_ms:.2f})"
        cells = [row.model, *([row.start] if starts else []), _number(row.params, scale=1e6),
                 _number(row.params_deployed, scale=1e6), _number(row.macs, 3, scale=1e9), _accuracy(row, "top1"),
                 _accuracy(row, "top5"), latency, _number(row.mes, 1), _number(row.mes_vs_reference, 1),
                 "-" if row.training_s is None else f"{row.training_s:.0f} s", row.seeds or "-"]
        if row.error:
            cells[-1] += f" (failed: {row.error})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_compare_csv(result: CompareResult, path: str | os.PathLike) -> Path:
    """One row per model, every column of CompareRow (empty where not measured)."""
    records = [{key: ("" if value is None else value) for key, value in dataclasses.asdict(row).items()}
               for row in result.rows]
    return write_csv(records, path)


def write_compare_json(result: CompareResult, path: str | os.PathLike) -> Path:
    """Rows, every run (seed, accuracy, time, error), settings, machine, versions, date and the raw per-call times."""
    return write_json(path, result.to_dict())


def plot_compare(result: CompareResult, path: str | os.PathLike) -> Path | None:
    """Held-out top-1 against median latency, one point per model (min-max bars over seeds), the Pareto front
    drawn as a step line; None without matplotlib or when no model has both numbers."""
    plt = pyplot()
    rows = [row for row in result.rows if row.top1 is not None and row.median_ms is not None]
    if plt is None or not rows:
        return None
    front = [rows[index] for index in pareto_front([(row.median_ms, row.top1) for row in rows])]
    figure, axis = plt.subplots(figsize=(8, 5.5))
    xs, ys = [row.median_ms for row in front], [row.top1 for row in front]
    axis.plot(xs + [max(row.median_ms for row in rows) * 1.05], ys + ys[-1:], drawstyle="steps-post",
              color="tab:red", alpha=0.6, linewidth=1.5, zorder=1, label="Pareto front")
    for index, row in enumerate(rows):
        colour = f"C{index % 10}"
        if row.runs > 1:
            axis.errorbar([row.median_ms], [row.top1], yerr=[[row.top1 - row.top1_min], [row.top1_max - row.top1]],
                          color=colour, capsize=4, linewidth=1, zorder=2)
        on_front = row in front
        axis.scatter([row.median_ms], [row.top1], marker=FAMILY_MARKERS.get(row.family, "o"), s=90 if on_front else 60,
                     color=colour, edgecolors="black", linewidths=1.2 if on_front else 0.5, zorder=3,
                     label=f"{row.label}: {row.median_ms:.3g} ms, {row.top1:.1f}%")
        axis.annotate(row.label, (row.median_ms, row.top1), textcoords="offset points", xytext=(0, 9), ha="center",
                      fontsize=9, fontweight="bold" if on_front else "normal")
    axis.margins(x=0.12, y=0.15)
    axis.set_xlabel(f"median latency on {result.runtime}, batch 1, {rows[0].img_size}, {rows[0].threads} thread(s), ms")
    seeds = f"mean of {result.config.seeds} seeds, bars min-max" if result.config.seeds > 1 else "one seed"
    axis.set_ylabel(f"held-out top-1 (%), {seeds}")
    data = result.config.data or "embedded digits"
    axis.set_title(f"{data}, {result.config.recipe.name} recipe, {result.config.recipe.epochs} epochs\n"
                   f"{result.machine}", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    return save_png(figure, path)


def write_report(result: CompareResult, directory: str | os.PathLike) -> dict[str, Path]:
    """compare.csv, compare.json and (with matplotlib) compare.png in `directory` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = {"csv": write_compare_csv(result, directory / "compare.csv"),
               "json": write_compare_json(result, directory / "compare.json")}
    png = plot_compare(result, directory / "compare.png")
    if png is not None:
        written["png"] = png
    return written


__all__ = ["CSV_COLUMNS", "markdown_table", "pareto_front", "plot_compare", "write_compare_csv", "write_compare_json",
           "write_report"]
