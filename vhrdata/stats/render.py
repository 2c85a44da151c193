"""Render a DatasetReport as report.json, report.md (plots beside it) and a self-contained report.html."""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path
from typing import Any, Callable

from vhrdata.errors import OutputNotWritable
from vhrdata.stats import plots
from vhrdata.stats.compute import DatasetReport
from vhrdata.text import TONE_NAMES

logger = logging.getLogger(__name__)

ASSETS_DIR = "assets"
TOP_CHARS_PLOTTED = 60
TOP_WRITERS_SHOWN = 20


def make_plots(data: dict[str, Any]) -> dict[str, tuple[bytes, str]]:
    """All plots of a report: file name → (PNG bytes, caption)."""
    out: dict[str, tuple[bytes, str]] = {}
    counts = data["counts"]
    lpw = counts.get("lines_per_writer")
    if lpw and lpw["summary"]["n"]:
        out["lines_per_writer.png"] = (
            plots.count_histogram_plot(lpw["edges"], lpw["counts"], "Lines per writer", "lines", "writers"),
            "Lines per writer",
        )
    ll = data["label_lengths"]
    out["label_chars.png"] = (plots.histogram_plot(ll["chars"], "Label length (characters)", "characters"),
                              "Label length in characters")
    out["label_words.png"] = (plots.histogram_plot(ll["words"], "Label length (words)", "words"),
                              "Label length in words")
    sizes = data["image_sizes"]
    for key, label in (("width", "width (px)"), ("height", "height (px)"), ("aspect", "width / height")):
        out[f"image_{key}.png"] = (plots.histogram_plot(sizes[key], f"Image {label}", label), f"Image {label}")
    store = data.get("store")
    if store:
        out["store_width.png"] = (
            plots.histogram_plot(store["widths"], f"Width after preprocessing (height {store['height']})",
                                 "width (px)"),
            "Image width after preprocessing",
        )
        if store.get("padding"):
            out["store_padding.png"] = (
                plots.padding_plot(store["padding"]["by_split"], "Padding wasted per batch"),
                "Share of batch pixels that are padding, shuffled vs width-bucketed batches",
            )
    table = data["characters"]["table"][:TOP_CHARS_PLOTTED]
    if table:
        out["characters.png"] = (
            plots.bar_plot([r["label"] for r in table], [r["count"] for r in table],
                           f"Most frequent {len(table)} characters", "occurrences", rotate=True, width=9.0),
            "Character frequencies",
        )
    viet = data["vietnamese"]
    out["tones.png"] = (plots.grouped_bar_plot(viet["tones"], "Tones per syllable"), "Tone distribution per split")
    out["vowel_diacritics.png"] = (
        plots.grouped_bar_plot(viet["vowel_diacritics"], "Vowel diacritics and đ"),
        "Vowel diacritic distribution per split",
    )
    q = data["quarantine"]
    if q["total"]:
        out["quarantine.png"] = (
            plots.bar_plot(list(q["by_reason"]), list(q["by_reason"].values()), "Quarantined items by reason",
                           "items", rotate=len(q["by_reason"]) > 4),
            "Quarantine by reason",
        )
    return out


# ---------------------------------------------------------------- document model
# Both renderers walk the same list of blocks, so the markdown and the HTML cannot drift apart.
# Block kinds: ("h", level, text), ("p", text), ("table", headers, rows), ("img", name, caption),
# ("samples", split, entries), ("details", summary, blocks), ("row", blocks) shown side by side.


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if not v.is_integer() else f"{int(v):,}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v[:10]) + (f", … ({len(v)} in all)" if len(v) > 10 else "")
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "–"


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict) and d:
        rows = []
        for k, v in d.items():
            rows += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return rows
    return [(prefix, d)]


def _summary_table(dist: dict, name: str) -> tuple:
    headers = ["split", "n", "min", "p5", "median", "mean", "p95", "max"]
    rows = [[g] + [s[k] for k in headers[1:]] for g, s in dist["summary"].items()]
    return ("table", [f"{name}: " + headers[0]] + headers[1:], rows)


def _dist_row(dist: dict, name: str, image: str, caption: str) -> tuple:
    """A summary table beside its histogram."""
    return ("row", [_summary_table(dist, name), ("img", image, caption)])


def build_blocks(data: dict[str, Any]) -> list:
    """The report as a list of blocks (see the comment above)."""
    b: list = []
    counts = data["counts"]
    total = counts["total"]
    splits = data["splits"]
    inp = data.get("input", {})
    b.append(("h", 1, "Dataset statistics"))
    b.append(("p", f"Input: {inp.get('path', '?')} ({inp.get('kind', '?')}); {data.get('generated_by', '')}."))
    if inp.get("records_note"):
        b.append(("p", f"Lines: {inp['records_note']}."))

    # Overview
    b.append(("h", 2, "Counts"))
    has_writers = bool(counts.get("writers"))
    rows = [["all", total, "100%", counts["writers"] if has_writers else None]]
    for s in splits:
        rows.append([s, counts["by_split"][s], _pct(counts["by_split"][s], total),
                     counts.get("writers_per_split", {}).get(s, 0) if has_writers else None])
    b.append(("table", ["split", "lines", "share", "writers"], rows))
    if not splits:
        b.append(("p", "Not split yet: run `vhrdata split` to see per-split figures."))
    src_rows = [[s, n] + [counts["by_source_split"][s].get(g, 0) for g in splits]
                for s, n in counts["by_source"].items()]
    b.append(("table", ["source", "lines"] + splits, src_rows))

    b.append(("h", 3, "Writers"))
    if counts.get("writers"):
        s = counts["lines_per_writer"]["summary"]
        b.append(("p", f"{counts['writers']} writers; lines per writer: min {_fmt(s['min'])}, "
                       f"median {_fmt(s['median'])}, mean {_fmt(s['mean'])}, max {_fmt(s['max'])}. "
                       f"{counts['lines_without_writer']} lines have no writer id."))
        b.append(("img", "lines_per_writer.png", "Lines per writer"))
        top = list(counts["by_writer"].items())[:TOP_WRITERS_SHOWN]
        b.append(("details", f"Top {len(top)} writers by lines",
                  [("table", ["writer", "lines"], [[w, n] for w, n in top])]))
    else:
        b.append(("p", f"No writer ids: all {counts['lines_without_writer']} lines lack one "
                       "(the split groups by image instead)."))

    # Label lengths
    b.append(("h", 2, "Label lengths"))
    b.append(_dist_row(data["label_lengths"]["chars"], "characters", "label_chars.png",
                       "Label length in characters"))
    b.append(_dist_row(data["label_lengths"]["words"], "words", "label_words.png", "Label length in words"))

    # Image sizes
    b.append(("h", 2, "Image sizes"))
    if inp.get("kind") == "store" and not inp.get("records"):
        b.append(("p", "Preprocessed images (the store holds no original sizes)."))
    else:
        b.append(("p", "Original image files, from the records' width and height columns."))
    for key, label in (("width", "width (px)"), ("height", "height (px)"), ("aspect", "aspect (w/h)")):
        b.append(_dist_row(data["image_sizes"][key], label, f"image_{key}.png", f"Image {label}"))

    store = data.get("store")
    if store:
        b += _store_blocks(store)

    # Characters
    chars = data["characters"]
    b.append(("h", 2, "Characters"))
    b.append(("p", f"{chars['distinct']} distinct characters, {chars['total']:,} in all."))
    if chars["table"]:
        b.append(("img", "characters.png", "Character frequencies"))
    b.append(("details", f"All {chars['distinct']} characters by frequency", [(
        "table", ["char", "code point", "name", "count"] + splits,
        [[r["label"], r["codepoint"], r["name"], r["count"]] + [r["by_split"].get(s, 0) for s in splits]
         for r in chars["table"]],
    )]))

    # Vietnamese
    viet = data["vietnamese"]
    b.append(("h", 2, "Vietnamese tones and diacritics"))
    b.append(("p", "Tones are counted per syllable (a run of letters); ngang is the unmarked tone. "
                   "Tone-mark errors dominate Vietnamese CER, so val and test should look like train here."))
    tone_cols = list(TONE_NAMES) + (["mixed"] if any("mixed" in t for t in viet["tones"].values()) else [])
    rows = []
    for g, t in viet["tones"].items():
        n = sum(t.values())
        rows.append([g, n] + [f"{t.get(c, 0):,} ({_pct(t.get(c, 0), n)})" for c in tone_cols])
    b.append(("row", [("table", ["split", "syllables"] + tone_cols, rows),
                      ("img", "tones.png", "Tone distribution per split")]))
    rows = []
    for g, t in viet["vowel_diacritics"].items():
        n = sum(t.values())
        rows.append([g, n] + [f"{v:,} ({_pct(v, n)})" for v in t.values()])
    dcols = list(next(iter(viet["vowel_diacritics"].values())).keys())
    b.append(("row", [("table", ["split", "letters"] + dcols, rows),
                      ("img", "vowel_diacritics.png", "Vowel diacritic distribution per split")]))
    tp = viet["tone_placement"]
    b.append(("h", 3, "Tone placement style"))
    b.append(("p", f"Open syllables oa, oe, uy in the {viet['tone_placement_source']} labels: "
                   f"tone on the first vowel (old style, e.g. hòa) {tp['old']:,} times, on the second "
                   f"(new style, e.g. hoà) {tp['new']:,} times. Cleaning unifies them."))
    b.append(("table", ["style", "words", "examples"],
              [["old (hòa)", tp["old"], ", ".join(tp["examples"]["old"])],
               ["new (hoà)", tp["new"], ", ".join(tp["examples"]["new"])]]))

    # Coverage
    cov = data["coverage"]
    b.append(("h", 2, "Charset coverage"))
    if cov.get("note"):
        b.append(("p", cov["note"]))
    elif not cov["chars"]:
        b.append(("p", f"Every val/test character appears at least {cov['min_train_count']} times in train."))
    else:
        ev = [s for s in splits if s != "train"]
        b.append(("p", f"{cov['never_in_train']} val/test characters never appear in train and "
                       f"{cov['rare_in_train']} appear fewer than {cov['min_train_count']} times; "
                       f"{cov['eval_lines_affected']} val/test lines contain one of them."))
        b.append(("table", ["char", "code point", "train"] + ev + ["examples"],
                  [[c["label"], c["codepoint"], c["train"]] + [c.get(s, 0) for s in ev]
                   + ["; ".join(f"{e['split']} {e['id']}: {e['text']}" for e in c["examples"])]
                   for c in cov["chars"]]))

    if store:
        b += _ctc_blocks(store)

    # Quarantine
    q = data["quarantine"]
    b.append(("h", 2, "Quarantine"))
    ing = data.get("ingest") or {}
    ic = ing.get("counts") or {}
    if ic:
        b.append(("p", f"Ingest read {_fmt(ic.get('in'))} items, kept {_fmt(ic.get('kept'))}, "
                       f"quarantined {_fmt(ic.get('quarantined'))}."))
    if q.get("by_stage"):
        b.append(("p", "Quarantined by stage: " + ", ".join(f"{k} {v:,}" for k, v in q["by_stage"].items()) + "."))
    if q["total"]:
        b.append(("table", ["reason", "items", "examples"],
                  [[r, n, "; ".join(f"{e.get('id', '?')}: {e.get('message', '')}" for e in q["examples"].get(r, []))]
                   for r, n in q["by_reason"].items()]))
        b.append(("img", "quarantine.png", "Quarantine by reason"))
    else:
        b.append(("p", "Nothing was quarantined."))

    # Split and leakage
    b.append(("h", 2, "Split and leakage"))
    if data.get("split"):
        b.append(("table", ["split setting", "value"], [[k, _fmt(v)] for k, v in data["split"].items()]))
    if data.get("leakage") is not None:
        b += _leakage_blocks(data["leakage"])
    elif not splits:
        b.append(("p", "No leakage report: the records are not split."))
    else:
        b.append(("p", "No leakage report: split.json is missing and the records lack the columns "
                       "(writer, sha1) the check needs."))

    # Samples
    b.append(("h", 2, "Samples"))
    for g, entries in data["samples"].items():
        b.append(("samples", g, entries))
    return b


def _leakage_blocks(leak: dict) -> list:
    """The summary `vhrdata split` prints: writers and identical images in two splits, shared texts."""
    try:
        wl, il, st = leak["writer_leaks"], leak["image_leaks"], leak["shared_texts"]
    except (KeyError, TypeError):  # another leakage format: show it as it is
        return [("table", ["leakage check", "value"], [[k, _fmt(v)] for k, v in _flatten(leak)])]
    verdict = "no writer or image leaks" if leak.get("ok") else "LEAKAGE between splits"
    rows = [
        ["writers in two splits", wl["count"],
         "; ".join(f"{e['writer']}: {_fmt(e['splits'])}" for e in wl.get("examples", []))],
        ["identical images in two splits", il["count"],
         "; ".join(", ".join(map(str, e)) for e in il.get("examples", []))],
        [f"texts shared across splits ({st.get('lines', 0):,} lines)", st["count"],
         "; ".join(f"{'/'.join(e['splits'])}: {e['text']}" for e in st.get("examples", [])[:3])],
    ]
    return [("p", f"Leakage check: {verdict}. Shared texts are reported, not failed: identical addresses "
                  "are common."), ("table", ["leakage check", "count", "examples"], rows)]


def _store_blocks(store: dict) -> list:
    b: list = [("h", 2, "Store: preprocessed widths and padding")]
    b.append(("p", f"Store {store['path']}; preprocessing: {_fmt(store.get('settings'))}; "
                   f"model downsampling {store['downsample']}."))
    b.append(("table", ["split", "lines in", "stored", "quarantined", f"squeezed to {store['max_width']} px"],
              [[sp, c.get("in"), c.get("count"), c.get("quarantined"), c.get("capped")]
               for sp, c in store["counts"].items()]))
    b.append(_dist_row(store["widths"], "width after preprocessing", "store_width.png",
                       "Image width after preprocessing"))
    pad = store.get("padding")
    if pad:
        b.append(("p", f"Share of batch pixels that are padding ({pad['note']})."))
        rows = []
        for split, by_bs in pad["by_split"].items():
            for bs, v in by_bs.items():
                rows.append([split, bs, f"{100 * v['shuffled']:.1f}%", f"{100 * v['bucketed']:.1f}%"])
        b.append(("row", [("table", ["split", "batch size", "shuffled", "width-bucketed"], rows),
                          ("img", "store_padding.png", "Padding per batch")]))
    return b


def _ctc_blocks(store: dict) -> list:
    ctc = store.get("ctc")
    if not ctc:
        return []
    b: list = [("h", 2, "CTC feasibility")]
    b.append(("p", ctc.get("note", "")))
    b.append(("table", ["split", "lines", "feasible (stored)", "infeasible (quarantined)", "min slack (frames)",
                        "p5 slack", "median frames / needed"],
              [[s, v["lines"], v["feasible"], v["infeasible"], v.get("min_slack"), v.get("p5_slack"),
                v.get("median_frames_per_needed")] for s, v in ctc["by_split"].items()]))
    if ctc.get("examples"):
        b.append(("table", ["infeasible id", "message"], [[e.get("id"), e.get("message")] for e in ctc["examples"]]))
    return b


# ---------------------------------------------------------------- markdown

def _md_cell(v: Any) -> str:
    s = _fmt(v) if not isinstance(v, str) else v
    for ch in "\\`*_[]<>|":
        s = s.replace(ch, "\\" + ch)
    return s.replace("\n", " ")


def render_markdown(report: DatasetReport, assets: str = ASSETS_DIR) -> str:
    """report.md; plots and thumbnails are referenced as files under `assets/`."""

    def walk(blocks: list) -> list[str]:
        out: list[str] = []
        for blk in blocks:
            kind = blk[0]
            if kind == "h":
                out += ["#" * blk[1] + " " + blk[2], ""]
            elif kind == "p":
                out += [blk[1], ""]
            elif kind == "table":
                headers, rows = blk[1], blk[2]
                out.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
                out.append("|" + "---|" * len(headers))
                out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
                out.append("")
            elif kind == "img":
                out += [f"![{blk[2]}]({assets}/{blk[1]})", ""]
            elif kind == "samples":
                out += [f"### {blk[1]}", ""]
                for e in blk[2]:
                    img = f"![{_md_cell(e['id'])}]({assets}/{e['thumbnail']})" if e["thumbnail"] else "(no image)"
                    out += [f"{img}  ", f"`{e['id']}`: {_md_cell(e['text'])}", ""]
            elif kind == "details":
                out += [f"**{blk[1]}**", ""] + walk(blk[2])
            elif kind == "row":
                out += walk(blk[1])
        return out

    return "\n".join(walk(build_blocks(report.data))).rstrip() + "\n"


# ---------------------------------------------------------------- html

_CSS = """
body{font-family:"DejaVu Sans","Noto Sans",Arial,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{border-bottom:2px solid #1f77b4;padding-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f0f4f8}tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:.5em 0 1.5em}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#666}
nav{background:#f6f8fa;padding:.5em 1em;border:1px solid #e1e4e8;font-size:.9em}
nav a{margin-right:1em}
.sample{margin:.4em 0 1em}.sample img{display:block;max-width:100%;border:1px solid #ccc;background:#fff}
.sample .label{font-size:1.05em}.sample code{color:#666;font-size:.85em}
details{margin:.5em 0 1em}
.row{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}.row figure{flex:1 1 560px;max-width:720px}summary{cursor:pointer;color:#1f77b4}
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(report: DatasetReport, plot_pngs: dict[str, tuple[bytes, str]] | None = None) -> str:
    """A self-contained report.html: CSS inline, plots and thumbnails as data URIs, no script."""
    pngs = plot_pngs if plot_pngs is not None else make_plots(report.data)
    esc = html.escape
    blocks = build_blocks(report.data)

    def anchor(text: str) -> str:
        return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")

    def cell(v: Any, tag: str = "td") -> str:
        num = isinstance(v, (int, float)) and not isinstance(v, bool)
        cls = ' class="num"' if num and tag == "td" else ""
        return f"<{tag}{cls}>{esc(_fmt(v) if not isinstance(v, str) else v)}</{tag}>"

    def walk(blks: list) -> list[str]:
        out: list[str] = []
        for blk in blks:
            kind = blk[0]
            if kind == "h":
                out.append(f'<h{blk[1]} id="{anchor(blk[2])}">{esc(blk[2])}</h{blk[1]}>')
            elif kind == "p":
                out.append(f"<p>{esc(blk[1])}</p>")
            elif kind == "table":
                out.append("<table><thead><tr>" + "".join(cell(h, "th") for h in blk[1]) + "</tr></thead><tbody>")
                out += ["<tr>" + "".join(cell(c) for c in r) + "</tr>" for r in blk[2]]
                out.append("</tbody></table>")
            elif kind == "img":
                if blk[1] in pngs:
                    out.append(f'<figure><img src="{_data_uri(pngs[blk[1]][0])}" alt="{esc(blk[2])}">'
                               f"<figcaption>{esc(blk[2])}</figcaption></figure>")
            elif kind == "samples":
                out.append(f'<h3 id="samples-{anchor(blk[1])}">{esc(blk[1])}</h3>')
                for e in blk[2]:
                    png = report.thumbnails.get(e["thumbnail"]) if e["thumbnail"] else None
                    img = (f'<img src="{_data_uri(png)}" alt="{esc(e["id"])}">' if png else "<em>(no image)</em>")
                    out.append(f'<div class="sample">{img}<span class="label">{esc(e["text"])}</span> '
                               f"<code>{esc(e['id'])} · {e['width']}×{e['height']}</code></div>")
            elif kind == "details":
                out.append(f"<details><summary>{esc(blk[1])}</summary>")
                out += walk(blk[2])
                out.append("</details>")
            elif kind == "row":
                out.append('<div class="row">')
                out += walk(blk[1])
                out.append("</div>")
        return out

    body = walk(blocks)
    h2s = [blk[2] for blk in blocks if blk[0] == "h" and blk[1] == 2]
    nav = "<nav>" + "".join(f'<a href="#{anchor(t)}">{esc(t)}</a>' for t in h2s) + "</nav>"
    # The nav goes right before the first section.
    first = next((i for i, line in enumerate(body) if line.startswith("<h2")), len(body))
    body = body[:first] + [nav] + body[first:]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>vhr dataset statistics</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# ---------------------------------------------------------------- files

def write_report(
    report: DatasetReport,
    out_dir: str | Path,
    *,
    formats: tuple[str, ...] = ("json", "md", "html"),
    callback: Callable[[int, int], None] | None = None,
) -> dict[str, Path]:
    """Write report.json, report.md (+ assets/ with its plots and thumbnails) and report.html.

    Returns:
        {format: path} of the files written.
    """
    bad = set(formats) - {"json", "md", "html"}
    if bad:
        raise ValueError(f"formats must be among json, md, html. Received: formats={formats!r}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        raise OutputNotWritable(f"cannot create {out}: {ex}") from None
    written: dict[str, Path] = {}
    steps = len(formats)
    done = 0

    def _write(name: str, text_or_bytes: str | bytes) -> Path:
        path = out / name
        tmp = path.with_name(path.name + ".tmp")
        try:
            if isinstance(text_or_bytes, bytes):
                tmp.write_bytes(text_or_bytes)
            else:
                tmp.write_text(text_or_bytes, encoding="utf-8")
            tmp.replace(path)
        except OSError as ex:
            raise OutputNotWritable(f"cannot write {path}: {ex}") from None
        return path

    pngs = make_plots(report.data) if ("md" in formats or "html" in formats) else {}
    if "json" in formats:
        written["json"] = _write("report.json", json.dumps(report.data, ensure_ascii=False, indent=1) + "\n")
        done += 1
        if callback:
            callback(done, steps)
    if "md" in formats:
        (out / ASSETS_DIR).mkdir(exist_ok=True)
        for name, (png, _) in pngs.items():
            _write(f"{ASSETS_DIR}/{name}", png)
        for name, png in report.thumbnails.items():
            _write(f"{ASSETS_DIR}/{name}", png)
        written["md"] = _write("report.md", render_markdown(report))
        done += 1
        if callback:
            callback(done, steps)
    if "html" in formats:
        written["html"] = _write("report.html", render_html(report, pngs))
        done += 1
        if callback:
            callback(done, steps)
    return written
