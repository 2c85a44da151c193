"""A light install (`vhr[lite]`) predicts and serves with an exported model, TensorFlow and Keras blocked from import."""

import json
import subprocess
import sys
import textwrap

import pytest
from vhrmodel_fixtures import BLOCKER, TEXTS

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install '.[lite]')")
pytest.importorskip("tf2onnx", reason="tf2onnx is not installed (pip install '.[export]')")


@pytest.fixture(scope="module")
def exports(trained_run, tmp_path_factory):
    from vhrmodel.export import export_model

    root = tmp_path_factory.mktemp("lite")
    model = trained_run[0] / "model.keras"
    export_model(model, root / "onnx", format="onnx")
    export_model(model, root / "litert", format="litert")
    return root


def run_blocked(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_blocker_blocks():
    proc = subprocess.run([sys.executable, "-c", BLOCKER + "import keras"], capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked" in proc.stderr


@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_recognizer_predicts_with_an_export_without_tensorflow(fmt, exports, line_store):
    pytest.importorskip("ai_edge_litert") if fmt == "litert" else None
    from vhrdata.records import read_records
    from vhrdata.store import open_store

    df = read_records(open_store(line_store).index["build"]["records"])
    df = df[df["split"] == "train"].sort_values("id")
    paths = list(df["path"])[:6]
    out = run_blocked(f"""
        import json, sys
        from vhrmodel.predict import Recognizer
        rec = Recognizer({str(exports / fmt)!r})
        preds = rec.recognize({paths!r}, batch_size=3)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        print(json.dumps({{"texts": [p.text for p in preds], "runtime": rec.runtime.name, "loaded": loaded,
                           "chars": len(preds[0].chars)}}))
    """)
    assert out["loaded"] == []
    assert out["runtime"] == ("onnxruntime" if fmt == "onnx" else "litert")
    assert out["texts"] == TEXTS[:6]
    assert out["chars"] == len(TEXTS[0])


def test_the_server_answers_without_tensorflow(exports, line_store):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from vhrdata.records import read_records
    from vhrdata.store import open_store

    df = read_records(open_store(line_store).index["build"]["records"])
    path = sorted(df[df["split"] == "train"]["path"])[0]
    out = run_blocked(f"""
        import json, sys
        from fastapi.testclient import TestClient
        from vhrmodel.predict import Recognizer
        from vhrmodel.serve.app import ServeSettings, create_app
        app = create_app(Recognizer({str(exports / "onnx")!r}), ServeSettings())
        with TestClient(app) as client:
            r = client.post("/v1/recognize", files={{"files": ("a.png", open({path!r}, "rb").read(), "image/png")}})
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        print(json.dumps({{"status": r.status_code, "body": r.json(), "loaded": loaded}}))
    """)
    assert out["loaded"] == [] and out["status"] == 200
    assert out["body"]["results"][0]["text"] in TEXTS
