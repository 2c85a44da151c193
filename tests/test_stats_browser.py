"""The HTML report in a real browser: headless Chromium loads it without console errors and shows every image.

`make test` runs scripts/ensure_chromium.sh first, which installs Debian's chromium where it can.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from test_stats import make_records  # tests/ is on sys.path under pytest's default import mode
from vhrdata.quarantine import QuarantineItem, write_quarantine
from vhrdata.stats import compute_stats, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="headless chromium not found; run scripts/ensure_chromium.sh (needs apt-get and root) to install it",
    ),
]

# Injected before the page's own content: records errors (script errors, failed resource loads, console.error)
# and, once the page has loaded, every image's natural size, into a <pre> that --dump-dom prints.
PROBE = """<script>
window.__vhrErrors = [];
window.addEventListener("error", function (e) {
  var t = e.target || {};
  window.__vhrErrors.push(e.message || ("failed to load " + (t.src || t.href || t.tagName)));
}, true);
(function () {
  var orig = console.error;
  console.error = function () { window.__vhrErrors.push(Array.prototype.join.call(arguments, " ")); orig.apply(console, arguments); };
})();
window.addEventListener("load", function () {
  var imgs = Array.prototype.map.call(document.images, function (i) {
    return {alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight};
  });
  var pre = document.createElement("pre");
  pre.id = "vhr-probe";
  pre.textContent = JSON.stringify({errors: window.__vhrErrors, images: imgs});
  document.body.appendChild(pre);
});
</script>"""


def load_in_chromium(page: Path, tmp_path: Path) -> tuple[dict, list[str]]:
    """Load `page` (with the probe injected) in headless Chromium.

    Returns:
        (probe result {"errors", "images"}, console lines Chromium logged to stderr).
    """
    text = page.read_text(encoding="utf-8")
    probed = page.with_name(page.stem + ".probe.html")
    probed.write_text(re.sub(r"<head>", "<head>" + PROBE, text, count=1), encoding="utf-8")
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=10000", "--dump-dom", probed.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r'<pre id="vhr-probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"the page never fired its load event; chromium said: {proc.stderr[-2000:]}"
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(html.unescape(m.group(1))), console


def test_probe_catches_broken_images_and_console_errors(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
        '<img alt="broken" src="data:image/png;base64,AAAA"><img alt="missing" src="missing.png">'
        '<script>console.error("boom")</script></body></html>',
        encoding="utf-8",
    )
    probe, console = load_in_chromium(page, tmp_path)
    assert [i["width"] for i in probe["images"]] == [0, 0]
    assert any("boom" in e for e in probe["errors"])
    assert any("failed to load" in e for e in probe["errors"])
    assert any("boom" in line for line in console)


@pytest.mark.parametrize("kind", ["records", "store"])
def test_report_html_loads_cleanly_and_shows_every_image(tmp_path, kind):
    d = tmp_path / "records"
    make_records(d)
    write_quarantine([QuarantineItem(reason="empty_label", message="label is empty", id="x1")],
                     d / "quarantine.jsonl")
    if kind == "store":
        from vhrdata.preprocess import PreprocessSettings
        from vhrdata.store import build_store

        build_store(d, tmp_path / "store", PreprocessSettings(height=32), workers=0)
        d = tmp_path / "store"
    report = compute_stats(d, samples_per_split=2)
    assert report.data["input"]["kind"] == kind
    out = tmp_path / "report"
    write_report(report, out, formats=("html",))
    probe, console = load_in_chromium(out / "report.html", tmp_path)
    assert probe["errors"] == []
    assert console == []
    expected = len(re.findall(r"<img ", (out / "report.html").read_text(encoding="utf-8")))
    assert len(probe["images"]) == expected
    assert expected >= len(report.thumbnails) + 5  # the plots and the thumbnails
    not_shown = [i["alt"] for i in probe["images"] if not (i["complete"] and i["width"] > 0)]
    assert not_shown == []
