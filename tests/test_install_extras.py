"""The light install: pip's resolution of `.[lite]` holds no TensorFlow and all the light install runs on,
and the CLI says in one line what to install when a module is missing."""

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from vhrmodel_fixtures import BLOCKER, blocker

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
    from vhrmodel.extras import LITE_MODULES

    names = {item["metadata"]["name"].lower().replace("_", "-") for item in json.loads(report.read_text())["install"]}
    assert "vhr" in names and "onnxruntime" in names and "ai-edge-litert" in names, sorted(names)
    # Every module a light install runs on (the runtimes, rapidfuzz for --lexicon) is resolved.
    assert {m.replace("_", "-") for m in LITE_MODULES.values()} <= names, sorted(names)
    assert "numpy" in names and "opencv-python-headless" in names and "pillow" in names
    assert not names & set(HEAVY), sorted(names & set(HEAVY))


def run_cli(*args: str, blocked: str = BLOCKER) -> subprocess.CompletedProcess:
    code = blocked + textwrap.dedent(f"""
        import sys
        from vhrmodel.cli import main
        sys.argv = ["vhrmodel"] + {list(args)!r}
        main()
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)


def _one_line_hint(proc: subprocess.CompletedProcess, hint: str = "pip install 'vhr[train]'") -> str:
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert hint in lines[0]
    return lines[0]


def fake_export(folder: Path, fmt: str) -> Path:
    """An export folder whose manifest and artifact checksum are right (the artifact is not a model)."""
    from vhrmodel.export import ARTIFACTS, EXPORT_VERSION, MANIFEST

    folder.mkdir(parents=True)
    artifact = folder / ARTIFACTS[fmt]
    artifact.write_bytes(b"not really a model")
    info = {"export_version": EXPORT_VERSION, "format": fmt, "quantization": "none", "artifact": artifact.name,
            "artifact_sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(), "alphabet": "ab",
            "preprocessing": {"height": 32}, "downsample": 4, "height": 32, "input_signature": {}}
    (folder / MANIFEST).write_text(json.dumps(info), encoding="utf-8")
    return folder


def line_png(path: Path) -> Path:
    from PIL import Image

    Image.new("L", (120, 32), 255).save(path)
    return path


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


@pytest.mark.parametrize("fmt,module", [("onnx", "onnxruntime"), ("litert", "ai_edge_litert")])
def test_an_export_without_its_runtime_says_what_to_install(fmt, module, tmp_path):
    folder = fake_export(tmp_path / fmt, fmt)
    proc = run_cli("predict", "--model", str(folder), str(line_png(tmp_path / "line.png")),
                   blocked=blocker(module, "tensorflow", "keras"))
    line = _one_line_hint(proc, "pip install 'vhr[lite]'")
    assert f"{folder} (a" in line and f"needs {module}, which this install lacks" in line


def test_a_saved_model_export_without_tensorflow_says_what_to_install(tmp_path):
    folder = fake_export(tmp_path / "saved", "saved_model")
    line = _one_line_hint(run_cli("predict", "--model", str(folder), str(line_png(tmp_path / "line.png"))))
    assert "needs tensorflow" in line and "onnx or litert" in line


def test_lexicon_without_rapidfuzz_says_what_to_install(tmp_path):
    from vhrmodel.decoding import CharNgramLM

    lm = tmp_path / "charlm.json"
    lm.write_text(CharNgramLM(order=2).fit(["ab", "ba"]).to_json(), encoding="utf-8")
    proc = run_cli("predict", "--model", str(fake_export(tmp_path / "onnx", "onnx")), str(line_png(tmp_path / "l.png")),
                   "--decoder", "beam", "--lm", str(lm), "--lexicon", blocked=blocker("rapidfuzz", "tensorflow", "keras"))
    line = _one_line_hint(proc, "pip install 'vhr[lite]'")
    assert "needs rapidfuzz, which this install lacks" in line and "--lexicon" in line


def test_require_lite_names_the_module_and_the_lite_extra(monkeypatch):
    from vhrmodel import extras
    from vhrmodel.errors import MissingDependencyError

    for part, module in extras.LITE_MODULES.items():
        monkeypatch.setattr(extras, "installed", lambda m, module=module: m != module)
        with pytest.raises(MissingDependencyError, match=rf"^reading needs {module}, .*: pip install 'vhr\[lite\]'$"):
            extras.require_lite(part, "reading")
    monkeypatch.setattr(extras, "installed", lambda m: True)
    extras.require_lite("lexicon", "reading")
