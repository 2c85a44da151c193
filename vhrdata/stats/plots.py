"""Report plots: matplotlib on the Agg canvas (no pyplot, no display, no global backend switch).

Each `*_plot` function returns PNG bytes; the matching `*_figure` function returns the matplotlib Figure,
so tests can inspect ticks and labels. Text is set in DejaVu Sans, which has every Vietnamese letter.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

SPLIT_COLORS = {"all": "#555555", "train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
_OTHER_COLORS = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
FONT = "DejaVu Sans"  # ships with matplotlib; covers Vietnamese (ă â đ ê ô ơ ư and the tone marks)


def _figure(width: float = 7.0, height: float = 3.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _integer_axis(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _color(group: str, i: int) -> str:
    return SPLIT_COLORS.get(group, _OTHER_COLORS[i % len(_OTHER_COLORS)])


def histogram_plot(dist: dict[str, Any], title: str, xlabel: str) -> bytes:
    """Per-split histograms of one quantity, as shares of each split so small splits stay visible."""
    fig = _figure()
    ax = fig.add_subplot()
    edges = np.asarray(dist["edges"], dtype=float)
    groups = [g for g in dist["counts"] if g != "all"] or ["all"]
    for i, g in enumerate(groups):
        counts = np.asarray(dist["counts"][g], dtype=float)
        n = counts.sum()
        if n == 0:
            continue
        share = counts / n
        if len(groups) == 1:
            ax.stairs(share, edges, fill=True, color=_color(g, i), alpha=0.6, label=f"{g} (n={int(n)})")
        else:
            ax.stairs(share, edges, color=_color(g, i), linewidth=1.8, label=f"{g} (n={int(n)})")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of lines")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def count_histogram_figure(edges: list[float], counts: list[int], title: str, xlabel: str, ylabel: str):
    """One histogram in absolute counts, on whole-number axes (e.g. lines per writer).

    Bins one unit wide are drawn as bars centred on their value, so one writer with 25 lines is one bar
    at 25 on an axis of whole numbers around it, not a bar spanning 25.0-26.0.
    """
    fig = _figure()
    ax = fig.add_subplot()
    e = np.asarray(edges, dtype=float)
    c = np.asarray(counts, dtype=float)
    widths = np.diff(e)
    integer_bins = bool(len(widths)) and np.allclose(widths, 1) and np.allclose(e, np.round(e))
    if integer_bins:
        ax.bar(e[:-1], c, width=0.8, alpha=0.7, color="#1f77b4")
        ax.set_xlim(e[0] - 1.5, e[-2] + 1.5)
    else:
        ax.stairs(c, e, fill=True, alpha=0.7, color="#1f77b4")
    _integer_axis(ax.xaxis)
    _integer_axis(ax.yaxis)
    ax.set_ylim(0, max(1.0, float(c.max()) if c.size else 1.0) * 1.1)
    total = int(c.sum())
    unit = ylabel[:-1] if total == 1 and ylabel.endswith("s") else ylabel
    ax.set_title(f"{title} ({total} {unit})" if total <= 3 else title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig


def count_histogram_plot(edges: list[float], counts: list[int], title: str, xlabel: str, ylabel: str) -> bytes:
    """One histogram in absolute counts (PNG); see count_histogram_figure."""
    return _png(count_histogram_figure(edges, counts, title, xlabel, ylabel))


def grouped_bar_plot(
    table: dict[str, dict[str, int]], title: str, ylabel: str = "share (%)", normalize: bool = True
) -> bytes:
    """Bars per category, one colour per split; `table` is {group: {category: count}}."""
    fig = _figure()
    ax = fig.add_subplot()
    groups = [g for g in table if g != "all"] or ["all"]
    cats = list(next(iter(table.values())).keys()) if table else []
    x = np.arange(len(cats))
    width = 0.8 / max(1, len(groups))
    for i, g in enumerate(groups):
        vals = np.array([table[g].get(c, 0) for c in cats], dtype=float)
        if normalize and vals.sum() > 0:
            vals = 100.0 * vals / vals.sum()
        ax.bar(x + (i - (len(groups) - 1) / 2) * width, vals, width, color=_color(g, i), label=g)
    ax.set_xticks(x, cats)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if len(groups) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def bar_figure(labels: list[str], values: list[float], title: str, ylabel: str, *, horizontal: bool = False,
               rotate: bool | None = None, width: float = 7.0):
    """A single-series bar chart.

    `horizontal` draws one bar per row with the label as the y tick, read left to right: the form for many
    or long labels (characters, reason codes), which vertical bars would need rotated 90°. `rotate` is the
    old name of `horizontal`; labels are never rotated.
    """
    horizontal = bool(horizontal or rotate)
    whole = all(float(v).is_integer() for v in values)
    if horizontal:
        fig = _figure(width=min(width, 7.0), height=max(2.0, 0.8 + 0.2 * len(labels)))
        ax = fig.add_subplot()
        y = np.arange(len(labels))
        ax.barh(y, values, color="#1f77b4")
        ax.set_yticks(y, labels, fontfamily=FONT, fontsize=11 if len(labels) <= 40 else 9)
        ax.set_ylim(len(labels) - 0.5, -0.5)  # first (largest) on top
        ax.set_xlabel(ylabel)
        if whole:
            _integer_axis(ax.xaxis)
        ax.grid(axis="x", alpha=0.3)
    else:
        fig = _figure(width=width)
        ax = fig.add_subplot()
        x = np.arange(len(labels))
        ax.bar(x, values, color="#1f77b4")
        ax.set_xticks(x, labels, fontfamily=FONT)
        ax.set_ylabel(ylabel)
        if whole:
            _integer_axis(ax.yaxis)
        ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)
    return fig


def bar_plot(labels: list[str], values: list[float], title: str, ylabel: str, *, horizontal: bool = False,
             rotate: bool | None = None, width: float = 7.0) -> bytes:
    """A single-series bar chart (PNG); see bar_figure."""
    return _png(bar_figure(labels, values, title, ylabel, horizontal=horizontal, rotate=rotate, width=width))


def padding_plot(padding: dict[str, dict[str, dict[str, float]]], title: str) -> bytes:
    """Padding waste (%) per batch size, with and without width bucketing, for each split."""
    fig = _figure()
    ax = fig.add_subplot()
    labels, plain, bucketed = [], [], []
    for split, by_bs in padding.items():
        for bs, v in by_bs.items():
            labels.append(f"{split}\nB={bs}")
            plain.append(100 * v["shuffled"])
            bucketed.append(100 * v["bucketed"])
    x = np.arange(len(labels))
    ax.bar(x - 0.2, plain, 0.4, label="shuffled", color="#d62728")
    ax.bar(x + 0.2, bucketed, 0.4, label="width-bucketed", color="#2ca02c")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("padded pixels (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)
