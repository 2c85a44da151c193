"""The light install: pip's resolution of `.[lite]` holds no TensorFlow, and the CLI says what to install."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from vhrmodel_fixtures import BLOCKER

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "tensorflow-cpu", "tf-keras", "keras", "tensorboard", "jax", "jaxlib", "torch", "tf2onnx")
# What pip says when it cannot reach the package index.
OFFLINE = ("NewConnectionError", "Network is unreachable", "Temporary failure in name resolution",
           "Failed to establish a new connection", "ConnectTimeoutError", "ProxyError", "No matching distribution",
           "Could not find a version", "ReadTimeoutError", "connection broken")


def _pip_version() -> tuple[int, ...]:
    import pip

    return tuple(int(p) for p in pip.__version__.split(".")[:2] if p.isdigit())


def test_lite_resolution_has_no_tensorflow(tmp_path):
    if _pip_version() < (23, 0):
        pytest.skip("pip install --dry-run --report needs pip 23 or newer")
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--no-input",
           "--disable-pip-version-check", "--no-build-isolation", "--timeout", "15", "--retries", "1",
           "--report", str(report), f"{ROOT}[lite]"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip("pip could not resolve .[lite] within 10 minutes (package index unreachable or slow)")
    if proc.returncode != 0:
        if any(s.lower() in proc.stderr.lower() for s in OFFLINE):
            pytest.skip(f"the package index is unreachable (offline): {proc.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"pip cannot resolve .[lite]: {proc.stderr[-2000:]}")
    names = {item["metadata"]["name"].lower().replace("_", "-") for item in json.loads(report.read_text())["install"]}
    assert "vhr" in names and "onnxruntime" in names and "ai-edge-litert" in names, sorted(names)
    assert "numpy" in names and "opencv-python-headless" in names and "pillow" in names
    assert not names & set(HEAVY), sorted(names & set(HEAVY))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    code = BLOCKER + textwrap.dedent(f"""
        import sys
        from vhrmodel.cli import main
        sys.argv = ["vhrmodel"] + {list(args)!r}
        main()
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)


def _one_line_hint(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "pip install 'vhr[train]'" in lines[0]
    return lines[0]


def test_train_without_keras_says_what_to_install(tmp_path):
    line = _one_line_hint(run_cli("train", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "run")))
    assert "`vhrmodel train` needs keras and tensorflow" in line


def test_predict_with_a_keras_file_without_keras_says_what_to_install(tmp_path):
    model = tmp_path / "x.keras"
    model.write_bytes(b"PK not really a model")
    line = _one_line_hint(run_cli("predict", "--model", str(model), str(tmp_path / "line.png")))
    assert f"--model {model} (a Keras model) needs keras" in line


def test_extras_checks_do_not_import():
    from vhrmodel.extras import installed, missing_keras

    assert installed("numpy") and not installed("surely_not_a_module_vhr")
    assert isinstance(missing_keras(), list)
