"""`make demo` from the repository, as a newcomer runs it (slow: about 4-5 minutes on 2 cores).

The demo runs pipelines/synthetic.yaml (synth → ingest → split → build-lmdb → verify → stats →
train → evaluate) and then `vhrmodel predict` on one test line. One run serves every test here.
"""

import json
import os
import re
import subprocess

import pytest

from conftest import REPO
from vhrmodel.metrics import cer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("demo") / "demo-out"
    proc = subprocess.run(["make", "-C", str(REPO), "demo", f"DEMO_DIR={out_dir}"],
                          capture_output=True, text=True, timeout=1500, env={**os.environ, "MAKEFLAGS": ""})
    return proc, proc.stdout + proc.stderr, out_dir


def _summary(out):
    found = re.findall(r"(\d+) lines · CER ([\d.]+)% · WER ([\d.]+)%", out)
    assert found, out[-3000:]
    lines, c, w = found[-1]
    return int(lines), float(c), float(w)


def test_make_demo_runs_end_to_end_and_prints_what_it_measured(demo):
    proc, out, out_dir = demo
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    lines, demo_cer, demo_wer = _summary(out)
    metrics = json.loads((out_dir / "eval" / "metrics.json").read_text(encoding="utf-8"))
    # The printed figures are the saved ones, on the untouched test split.
    assert metrics["split"] == "test" and metrics["lines"] == lines >= 30
    assert round(metrics["cer"] * 100, 2) == demo_cer and round(metrics["wer"] * 100, 2) == demo_wer
    # predict read one test line and printed its truth beside what it read.
    truth = re.search(r"^  truth: (.+)$", out, re.M).group(1)
    read = re.search(r"^  read:  (.*)$", out, re.M).group(1)
    assert truth.strip() and read.strip(), "predict printed no text"
    assert "demo finished; outputs in" in out
    for folder in ("records", "store", "report", "run", "eval"):
        assert (out_dir / folder).is_dir(), folder


def test_make_demo_reads_its_synthetic_lines(demo):
    proc, out, _ = demo
    assert proc.returncode == 0
    _, demo_cer, _ = _summary(out)
    truth = re.search(r"^  truth: (.+)$", out, re.M).group(1)
    read = re.search(r"^  read:  (.*)$", out, re.M).group(1)
    assert demo_cer <= 10.0 and cer([truth], [read]) <= 0.25
