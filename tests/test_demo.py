"""`make demo` from the repository, as a newcomer runs it: it must read its own synthetic lines.

Slow (about 5 minutes on 2 cores): synth → ... → fine-tune the shipped starter model → evaluate →
predict one line. Needs the starter model in the package (vhrmodel/starter/starter.keras).
"""

import os
import re
import subprocess

import pytest

from conftest import REPO
from vhrmodel.metrics import cer
from vhrmodel.starter import STARTER_FILE

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not STARTER_FILE.is_file(), reason="this checkout ships no starter model")
def test_make_demo_reads_its_synthetic_lines(tmp_path):
    env = {**os.environ, "MAKEFLAGS": ""}
    proc = subprocess.run(["make", "-C", str(REPO), "demo", f"DEMO_DIR={tmp_path / 'demo'}"],
                          capture_output=True, text=True, timeout=1500, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    # evaluate's summary line of the test split: "N lines · CER x% · WER y% · ..."
    summaries = re.findall(r"(\d+) lines · CER ([\d.]+)% · WER ([\d.]+)%", out)
    assert summaries, out[-3000:]
    lines, demo_cer, _ = summaries[-1]
    assert int(lines) >= 30
    assert float(demo_cer) <= 10.0, out[-3000:]
    truth = re.search(r"^  truth: (.*)$", out, re.M).group(1)
    read = re.search(r"^  read:  (.*)$", out, re.M).group(1)
    assert read.strip(), "predict printed no text"
    assert cer([truth], [read]) <= 0.25, (truth, read)
    # The metrics the summary printed are the ones written to disk.
    assert (tmp_path / "demo" / "eval" / "metrics.json").is_file()
