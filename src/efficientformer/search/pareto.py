"""The search's Pareto plot: accuracy against latency along the slimming trajectory, with reference models.

matplotlib is optional (`pip install 'efficientformer[demo]'`) and imported inside `plot_pareto`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from efficientformer.search.slimming import Step
from efficientformer.utils.plots import pyplot, save_png


@dataclass(frozen=True)
class Reference:
    """A model to mark on the plot; without an accuracy it is drawn as a vertical line at its latency."""

    name: str
    latency_ms: float
    params: int | None = None
    mes: float | None = None
    accuracy: float | None = None


def plot_pareto(steps: Sequence[Step], path: str | os.PathLike, *, references: Sequence[Reference] = (),
                target_latency_ms: float | None = None, title: str = "", latency_label: str = "latency (ms)"
                ) -> Path | None:
    """Write the PNG; returns its path, or None when matplotlib is not installed."""
    plt = pyplot()
    if plt is None:
        return None
    figure, axes = plt.subplots(figsize=(8, 5.5), dpi=120)
    latency = [s.latency_ms for s in steps]
    accuracy = [s.accuracy for s in steps]
    axes.plot(latency, accuracy, "-", color="tab:blue", alpha=0.5, zorder=1)
    points = axes.scatter(latency, accuracy, c=range(len(steps)), cmap="viridis", s=28, zorder=2,
                          label="slimming trajectory")
    figure.colorbar(points, ax=axes, label="step")
    axes.scatter([latency[0]], [accuracy[0]], s=140, facecolors="none", edgecolors="black", zorder=3)
    axes.annotate("start (largest)", (latency[0], accuracy[0]), textcoords="offset points", xytext=(-10, 8),
                  ha="right", fontsize=9)
    axes.scatter([latency[-1]], [accuracy[-1]], marker="*", s=260, color="tab:red", zorder=4,
                 label=f"found: {latency[-1]:.3g} ms, {accuracy[-1]:.1f}%")
    for index, reference in enumerate(references):
        colour = f"C{(index + 1) % 10}"
        if reference.accuracy is None:
            axes.axvline(reference.latency_ms, color=colour, linestyle=":", linewidth=1.5,
                         label=f"{reference.name}: {reference.latency_ms:.3g} ms (accuracy not measured here)")
        else:
            axes.scatter([reference.latency_ms], [reference.accuracy], marker="D", s=60, color=colour, zorder=4,
                         edgecolors="black", label=f"{reference.name}: {reference.latency_ms:.3g} ms, "
                                                   f"{reference.accuracy:.1f}%")
    if target_latency_ms is not None:
        axes.axvline(target_latency_ms, color="gray", linestyle="--", linewidth=1,
                     label=f"latency target {target_latency_ms:.3g} ms")
    axes.set_xlabel(latency_label)
    axes.set_ylabel("supernet accuracy (%, held-out, BN recalibrated)")
    axes.set_title(title or "accuracy vs latency along the search", fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    return save_png(figure, path, tight=False)


__all__ = ["Reference", "plot_pareto"]
