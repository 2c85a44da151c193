"""The shipped starter model: it is in the package, small, self-describing, and it reads.

It reads fresh synthetic lines in the system fonts it was trained on (a seed it never saw), through
`predict --model starter` as a user calls it.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from vhrmodel.artifact import read_model_info
from vhrmodel.metrics import cer
from vhrmodel.starter import STARTER_FILE, STARTER_HEIGHT, resolve_model, starter_path


def test_the_starter_ships_small_and_carries_its_charset_and_preprocessing():
    path = starter_path()
    assert path == STARTER_FILE and path.stat().st_size <= 4 * 1024 * 1024
    info = read_model_info(path)
    assert info["preprocessing"]["height"] == STARTER_HEIGHT
    # every Vietnamese letter, with its tone marks, in both cases
    for ch in "ăâđêôơưáàảãạấầẩẫậắằẳẵặếềểễệốồổỗộớờởỡợứừửữựíìỉĩịýỳỷỹỵĐ":
        assert ch in info["alphabet"], ch
    assert resolve_model("starter") == path and resolve_model("run/model.keras") == Path("run/model.keras")
    card = path.with_name("MODEL_CARD.md").read_text(encoding="utf-8")
    assert "synthetic" in card and "CER" in card


def _lines(root: Path, n: int) -> list[tuple[Path, str]]:
    pairs = []
    for ann in sorted((root / "annotations").glob("*.txt")):
        for row in ann.read_text(encoding="utf-8").splitlines():
            rel, text = row.split("\t", 1)
            pairs.append((root / "images" / rel, text))
    return pairs[:n]


@pytest.mark.slow
def test_predict_with_the_starter_reads_unseen_system_font_lines(tmp_path):
    from vhrdata.synth.generate import synthesize

    # A seed no starter run used (those are in MODEL_CARD.md), scanner paper, the system fonts.
    synthesize(tmp_path / "synth", lines=24, writers=6, seed=90210, fonts="system", workers=1)
    pairs = _lines(tmp_path / "synth", 24)
    assert len(pairs) == 24
    proc = subprocess.run(
        [sys.executable, "-m", "vhrmodel.cli", "predict", "--model", "starter", *[str(p) for p, _ in pairs]],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = proc.stdout.rstrip("\n").split("\n")
    assert len(rows) == len(pairs)
    # one image: the text alone; several: "path<TAB>text" per line, in order
    read = [r.split("\t", 1)[1] for r in rows]
    assert [r.split("\t", 1)[0] for r in rows] == [str(p) for p, _ in pairs]
    truth = [t for _, t in pairs]
    assert cer(truth, read) <= 0.10, list(zip(truth, read))[:5]
