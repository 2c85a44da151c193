"""`vhrmodel serve`: the API, bad input, the token, the bind rule, the queue bound and micro-batching."""

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import png_header_only
from vhrmodel_fixtures import TEXTS

pytest.importorskip("fastapi", reason="fastapi is not installed (pip install '.[serve]')")
pytest.importorskip("httpx", reason="httpx is not installed (pip install '.[serve]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install '.[lite]')")
pytest.importorskip("tf2onnx", reason="tf2onnx is not installed (pip install '.[export]')")

from fastapi.testclient import TestClient  # noqa: E402

from vhrmodel.predict import Recognizer  # noqa: E402
from vhrmodel.serve import ServeError, check_bind  # noqa: E402
from vhrmodel.serve.app import ServeSettings, create_app  # noqa: E402
from vhrmodel.serve.batcher import MicroBatcher, QueueFull  # noqa: E402


@pytest.fixture(scope="module")
def export_dir(trained_run, tmp_path_factory) -> Path:
    from vhrmodel.export import export_model

    out = tmp_path_factory.mktemp("serve") / "onnx"
    export_model(trained_run[0] / "model.keras", out, format="onnx")
    return out


@pytest.fixture(scope="module")
def lines(line_store) -> list[tuple[str, bytes]]:
    from vhrdata.records import read_records
    from vhrdata.store import open_store

    df = read_records(open_store(line_store).index["build"]["records"])
    df = df[df["split"] == "train"].sort_values("id")
    return [(text, Path(p).read_bytes()) for text, p in zip(df["text"], df["path"])]


@pytest.fixture(scope="module")
def recognizer(export_dir):
    return Recognizer(export_dir)


def client_for(recognizer, **settings) -> TestClient:
    return TestClient(create_app(recognizer, ServeSettings(**settings)))


def test_health_model_and_openapi(recognizer):
    with client_for(recognizer) as c:
        assert c.get("/healthz").json()["status"] == "ok"
        m = c.get("/v1/model").json()
        assert m["format"] == "onnx" and m["runtime"] == "onnxruntime" and m["alphabet"]
        assert m["source_sha256"] and m["model_id"].endswith("-onnx-none")
        schema = c.get("/openapi.json").json()
        assert "/v1/recognize" in schema["paths"] and "/v1/model" in schema["paths"]
        body = schema["paths"]["/v1/recognize"]["post"]["requestBody"]["content"]
        assert "multipart/form-data" in body and "image/*" in body


def test_multipart_files_and_raw_body(recognizer, lines):
    with client_for(recognizer) as c:
        files = [("files", (f"l{i}.png", data, "image/png")) for i, (_, data) in enumerate(lines[:4])]
        r = c.post("/v1/recognize", files=files)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_id"].endswith("-onnx-none")
        assert [x["text"] for x in body["results"]] == [t for t, _ in lines[:4]]
        first = body["results"][0]
        assert first["name"] == "l0.png" and first["ms"] > 0 and 0 < first["confidence"] <= 1
        assert [c["char"] for c in first["chars"]] == list(first["text"])
        for ch in first["chars"]:
            assert 0 < ch["confidence"] <= 1 and ch["x"][0] < ch["x"][1] and ch["x_original"][0] < ch["x_original"][1]
        text, data = lines[5]
        r = c.post("/v1/recognize", content=data, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200 and r.json()["results"][0]["text"] == text


def test_every_bad_input_gets_its_status_and_the_server_goes_on(recognizer, lines):
    from PIL import Image

    text, good = lines[3]
    buf = io.BytesIO()
    Image.new("L", (400, 40), 255).save(buf, "PNG")
    truncated = buf.getvalue()[: len(buf.getvalue()) // 2]
    too_big = b"\x89PNG" + os.urandom(200_000)
    with client_for(recognizer, max_upload_mb=0.1) as c:
        cases = [
            (c.post("/v1/recognize", content=too_big, headers={"Content-Type": "image/png"}), 413),
            (c.post("/v1/recognize", content=iter([b"\x89PNG" + b"\0" * 60_000] * 3)), 413),  # chunked, no length
            (c.post("/v1/recognize", files={"files": ("x.png", b"%PDF-1.4\n1 0 obj\n", "image/png")}), 415),
            (c.post("/v1/recognize", content=b"/etc/passwd", headers={"Content-Type": "image/png"}), 415),
            (c.post("/v1/recognize", content=truncated), 422),
            (c.post("/v1/recognize", content=png_header_only(30_000, 30_000)), 422),
            (c.post("/v1/recognize", content=b""), 422),
            (c.post("/v1/recognize", files={"other": (None, "just a field")}), 422),
        ]
        for response, status in cases:
            assert response.status_code == status, (status, response.text)
            err = response.json()["error"]
            assert err["status"] == status and err["message"] and err["code"]
        assert "pixels" in cases[5][0].json()["error"]["message"] or "large" in cases[5][0].json()["error"]["message"]
        r = c.post("/v1/recognize", files={"files": ("good.png", good, "image/png")})
        assert r.status_code == 200 and r.json()["results"][0]["text"] == text


def test_token_is_required_when_set(recognizer, lines):
    _, good = lines[0]
    with client_for(recognizer, token="s3cret") as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/v1/model").status_code == 401
        r = c.post("/v1/recognize", content=good)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert c.post("/v1/recognize", content=good, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/v1/recognize", content=good, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_no_cors_headers_and_the_page_is_served(recognizer):
    with client_for(recognizer) as c:
        r = c.get("/v1/model", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        pre = c.options("/v1/recognize", headers={"Origin": "http://evil.example",
                                                  "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in pre.headers
        page = c.get("/")
        assert page.status_code == 200 and '<meta charset="utf-8">' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
        for asset in ("/static/app.js", "/static/style.css", "/favicon.ico"):
            assert c.get(asset).status_code == 200


def test_a_full_queue_answers_503_with_retry_after(recognizer, lines):
    with client_for(recognizer, max_queue=2) as c:
        files = [("files", (f"l{i}.png", data, "image/png")) for i, (_, data) in enumerate(lines[:3])]
        r = c.post("/v1/recognize", files=files)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert c.post("/v1/recognize", files=files[:2]).status_code == 200


def test_micro_batcher_groups_concurrent_items_and_bounds_its_queue():
    calls = []
    gate = threading.Event()

    def fn(items):
        gate.wait(10)
        calls.append(list(items))
        return [x * 10 for x in items]

    async def main():
        b = MicroBatcher(fn, max_batch=4, max_wait_ms=0, max_queue=8)
        b.start()
        first = asyncio.ensure_future(b.submit_many([0]))
        await asyncio.sleep(0.05)  # the worker now holds item 0 in a call blocked on the gate
        rest = [asyncio.ensure_future(b.submit_many([i])) for i in range(1, 9)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await b.submit_many([99])
        gate.set()
        results = await asyncio.gather(first, *rest)
        await b.stop()
        return results

    results = asyncio.run(main())
    assert [r[0] for r in results] == [i * 10 for i in range(9)]
    assert calls[0] == [0] and max(len(c) for c in calls) == 4 and sum(len(c) for c in calls) == 9


def test_batched_lines_read_as_alone(recognizer, lines):
    from vhrmodel.serve.app import _check_and_prepare, recognize_prepared
    from vhrdata.images import SizeLimits

    items = [_check_and_prepare(recognizer, data, "x", SizeLimits()) for _, data in lines[:8]]
    together = recognize_prepared(recognizer, items)
    alone = [recognize_prepared(recognizer, [it])[0] for it in items]
    for a, b in zip(together, alone):
        assert a["text"] == b["text"] and a["chars"] == b["chars"]
        assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-4)


def test_a_mixed_width_micro_batch_reads_as_one_by_one_in_groups_of_similar_width(recognizer, lines, monkeypatch):
    from vhrdata.images import SizeLimits
    from vhrmodel.serve.app import GROUP, _check_and_prepare, recognize_prepared

    items = [_check_and_prepare(recognizer, data, "x", SizeLimits()) for _, data in lines]
    # Two lines three times as wide as the others, so one padded call would be mostly padding.
    for a, b in ((0, 9), (3, 12)):
        wide = np.concatenate([items[a][0], items[b][0], items[a][0]], axis=1)
        items.append((wide, items[a][1] + items[b][1] + items[a][1], 0.0))
    assert len(items) > 2 * GROUP
    alone = [recognize_prepared(recognizer, [it])[0] for it in items]
    calls = []
    run = recognizer.runtime.logits

    def spy(images, widths):
        calls.append((images.shape[0] * images.shape[2], int(np.sum(widths))))
        return run(images, widths)

    monkeypatch.setattr(recognizer.runtime, "logits", spy)
    together = recognize_prepared(recognizer, items)
    grouped, calls[:] = list(calls), []
    one_call = recognize_prepared(recognizer, items, group=None)
    assert len(grouped) == 3 and len(calls) == 1
    padding = lambda cs: sum(total - own for total, own in cs)  # noqa: E731
    assert padding(grouped) < padding(calls) / 2
    for a, b, c in zip(together, alone, one_call):
        assert a["text"] == b["text"] == c["text"]
        assert a["chars"] == b["chars"] == c["chars"]
        assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-4)
        assert a["confidence"] == pytest.approx(c["confidence"], abs=1e-4)
        assert a["batch_size"] == len(items) and b["batch_size"] == 1
    assert [r["text"] for r in together[:4]] == [t for t, _ in lines[:4]]


def test_bind_rule():
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)
    check_bind("0.0.0.0", "tok")
    check_bind("0.0.0.0", None, insecure=True)
    with pytest.raises(ServeError, match="--token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(ServeError):
        check_bind("192.0.2.7", None)


def test_cli_refuses_an_open_bind_without_a_token(export_dir, monkeypatch):
    from vhrmodel.cli import main

    monkeypatch.delenv("VHR_TOKEN", raising=False)
    r = CliRunner().invoke(main, ["serve", "--model", str(export_dir), "--host", "0.0.0.0"])
    assert r.exit_code != 0 and "refusing" in r.output and "Traceback" not in r.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_server_on_loopback(export_dir, lines):
    import httpx

    port = free_port()
    env = {**os.environ, "VHR_TOKEN": "tok"}
    proc = subprocess.Popen([sys.executable, "-m", "vhrmodel.cli", "serve", "--model", str(export_dir),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):  # bounded wait for the server to start
            if proc.poll() is not None:
                pytest.fail(proc.stderr.read().decode()[-2000:])
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        auth = {"Authorization": "Bearer tok"}
        text, data = lines[7]
        r = httpx.post(url + "/v1/recognize", files={"files": ("a.png", data, "image/png")}, headers=auth, timeout=30)
        assert r.status_code == 200 and r.json()["results"][0]["text"] == text
        assert httpx.post(url + "/v1/recognize", content=data, timeout=30).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)
