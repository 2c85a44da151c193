"""The report's plots read well: whole-number axes for counts, horizontal character labels, Vietnamese glyphs."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from test_stats import make_records
from vhrdata.cli import main
from vhrdata.stats import plots
from vhrdata.stats.compute import histogram_edges

VIETNAMESE = list("␣nhàđươễỹẮ,")


def _lines_per_writer_figure(per_writer: list[int]):
    edges = histogram_edges(np.asarray(per_writer, float), integer=True)
    counts = np.histogram(per_writer, bins=edges)[0].tolist()
    return plots.count_histogram_figure(edges, counts, "Lines per writer", "lines", "writers")


def _ticks(axis) -> list[float]:
    lo, hi = axis.get_view_interval()
    return [t for t in axis.get_majorticklocs() if lo - 1e-9 <= t <= hi + 1e-9]


@pytest.mark.parametrize("per_writer", [[25], [3, 7, 7], list(range(1, 200, 3)), [40] * 12 + [41, 90]],
                         ids=["one writer", "three writers", "many writers", "spread"])
def test_lines_per_writer_has_whole_number_axes(per_writer):
    fig = _lines_per_writer_figure(per_writer)
    fig.canvas.draw()
    ax = fig.axes[0]
    for axis in (ax.xaxis, ax.yaxis):
        ticks = _ticks(axis)
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert all("." not in t.get_text() for t in axis.get_ticklabels() if t.get_text())
    # every writer's line count lies inside the axis, and the count axis reaches the tallest bar
    lo, hi = ax.get_xlim()
    assert lo < min(per_writer) and max(per_writer) < hi
    assert ax.get_ylim()[1] >= np.histogram(per_writer, bins=histogram_edges(np.asarray(per_writer, float),
                                                                          integer=True))[0].max()


def test_one_writer_is_one_bar_centred_on_its_line_count():
    fig = _lines_per_writer_figure([25])
    fig.canvas.draw()
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_height() > 0]
    assert len(bars) == 1
    assert bars[0].get_x() + bars[0].get_width() / 2 == pytest.approx(25)
    assert 25 in _ticks(ax.xaxis) and _ticks(ax.yaxis)[-1] >= 1
    assert ax.get_title() == "Lines per writer (1 writer)"


def test_characters_are_horizontal_bars_with_upright_readable_labels():
    counts = list(range(len(VIETNAMESE) * 10, 0, -10))
    fig = plots.bar_figure(VIETNAMESE, counts, "Most frequent characters", "occurrences", rotate=True, width=9.0)
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = ax.get_yticklabels()
    assert [t.get_text() for t in labels] == VIETNAMESE  # the character is the y tick label, top first
    assert all(t.get_rotation() == 0 for t in labels + ax.get_xticklabels())
    assert all(t.get_fontfamily() == [plots.FONT] for t in labels)
    assert labels[0].get_position()[1] < labels[-1].get_position()[1]  # y axis inverted: most frequent on top
    assert ax.get_ylim()[0] > ax.get_ylim()[1]
    widths = [p.get_width() for p in ax.patches]
    assert widths == counts
    assert all(float(t).is_integer() for t in _ticks(ax.xaxis))


def test_the_label_font_has_every_vietnamese_glyph():
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    font = FT2Font(font_manager.findfont(plots.FONT, fallback_to_default=False))
    assert "DejaVuSans" in font.postscript_name
    cmap = font.get_charmap()
    letters = "aăâbcdđeêghiklmnoôơpqrstuưvxy"
    tones = "\u0300\u0301\u0303\u0309\u0323"
    precomposed = "àáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵĐđ␣"
    assert all(ord(c) in cmap for c in letters + letters.upper() + tones + precomposed)


def test_vertical_bars_keep_labels_upright_too():
    fig = plots.bar_figure(["a", "b"], [1.5, 2.5], "t", "share")
    fig.canvas.draw()
    assert all(t.get_rotation() == 0 for t in fig.axes[0].get_xticklabels())


def _writers_lines(n_writers: int, per_writer: int) -> list:
    splits = ("train", "val", "test")
    return [(f"w{w}", splits[w % 3] if n_writers > 2 else "train", f"Phường Hoà Minh số {w} {i}")
            for w in range(n_writers) for i in range(per_writer)]


@pytest.mark.parametrize("n_writers", [1, 30])
def test_stats_report_writes_the_plots_for_one_and_many_writers(tmp_path, n_writers):
    make_records(tmp_path / "rec", _writers_lines(n_writers, 3 if n_writers > 1 else 25))
    res = CliRunner().invoke(main, ["stats", str(tmp_path / "rec"), "--out", str(tmp_path / "rep"), "--samples", "1"])
    assert res.exit_code == 0, res.output
    assets = tmp_path / "rep" / "assets"
    for name in ("lines_per_writer.png", "characters.png"):
        with Image.open(assets / name) as im:
            assert im.format == "PNG" and im.width >= 300 and im.height >= 150
    rows = min(60, len(set("".join(t for _, _, t in _writers_lines(n_writers, 1)))))
    with Image.open(assets / "characters.png") as im:
        assert im.height >= 18 * rows  # one readable row per character
    assert "lines_per_writer.png" in (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
