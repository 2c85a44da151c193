"""The `vhrmodel serve` page in a real browser: Debian's chromium driven by Playwright.

Set VHR_SCREENSHOT=path.png to also save a screenshot of the page after an upload (the README's
docs/img/serve_page.png is made this way).
"""

import base64
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from vhrmodel_fixtures import TEXTS

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("chromium is not installed (scripts/ensure_chromium.sh installs Debian's)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install '.[browser]')")
pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install '.[serve]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install '.[lite]')")
pytest.importorskip("tf2onnx", reason="tf2onnx is not installed (pip install '.[export]')")


@pytest.fixture(scope="module")
def lines(line_store) -> list[tuple[str, Path]]:
    from vhrdata.records import read_records
    from vhrdata.store import open_store

    df = read_records(open_store(line_store).index["build"]["records"])
    df = df[df["split"] == "train"].sort_values("id")
    return [(t, Path(p)) for t, p in zip(df["text"], df["path"])]


@pytest.fixture(scope="module")
def server(trained_run, tmp_path_factory):
    """A real uvicorn on 127.0.0.1 (free port) serving the ONNX export of the trained fixture model."""
    import uvicorn

    from vhrmodel.export import export_model
    from vhrmodel.predict import Recognizer
    from vhrmodel.serve.app import ServeSettings, create_app

    out = tmp_path_factory.mktemp("browser") / "onnx"
    export_model(trained_run[0] / "model.keras", out, format="onnx")
    app = create_app(Recognizer(out), ServeSettings())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):  # bounded wait for startup
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        except Exception as ex:  # a chromium Playwright cannot drive
            pytest.skip(f"Playwright cannot start {CHROMIUM}: {str(ex).splitlines()[0]}")
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda ex: page.errors.append(str(ex)))
    page.goto(server + "/")
    # Locator waits, not wait_for_function: the page's CSP (no 'unsafe-eval') refuses string predicates.
    page.locator("#model-line", has_text="Model ").wait_for()
    yield page
    context.close()


def test_page_loads_without_console_errors(page):
    assert page.errors == []
    assert "onnx" in page.text_content("#model-line")
    assert page.evaluate("document.characterSet") == "UTF-8"
    assert "đọc" in page.text_content("h1")


def test_upload_a_line_and_see_its_text(page, lines):
    text, path = lines[3]
    page.set_input_files("#files", str(path))
    page.wait_for_selector("#upload-results li.done .text")
    shown = page.get_attribute("#upload-results li.done .text", "data-text")
    assert shown == text
    assert page.locator("#upload-results li.done .text span").count() == len(text)  # one coloured span per char
    assert "ms/line" in page.text_content("#upload-results li.done .ms")
    assert page.errors == []
    if os.environ.get("VHR_SCREENSHOT"):
        for t, p in (lines[1], lines[6]):
            page.set_input_files("#files", str(p))
        page.locator("#upload-results li.done").nth(2).wait_for()
        page.screenshot(path=os.environ["VHR_SCREENSHOT"], full_page=True)


def test_drag_and_drop_several_lines(page, lines):
    picked = lines[8:10]
    payload = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for _, p in picked]
    page.evaluate("""(files) => {
        const dt = new DataTransfer();
        for (const f of files) {
            const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
            dt.items.add(new File([bytes], f.name, {type: "image/png"}));
        }
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
    }""", payload)
    page.locator("#upload-results li.done").nth(1).wait_for()
    shown = page.eval_on_selector_all("#upload-results li.done .text", "els => els.map(e => e.dataset.text)")
    assert sorted(shown) == sorted(t for t, _ in picked)


def test_draw_on_the_canvas_and_see_a_result(page):
    box = page.locator("#pad").bounding_box()
    x0, y0, h = box["x"], box["y"], box["height"]
    for k in range(4):  # four short strokes, like letters
        page.mouse.move(x0 + 60 + 90 * k, y0 + h * 0.3)
        page.mouse.down()
        for i in range(1, 9):
            page.mouse.move(x0 + 60 + 90 * k + 6 * i, y0 + h * (0.3 + 0.05 * i))
        page.mouse.up()
    inked = page.evaluate("""() => {
        const c = document.getElementById("pad"), d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 128) n++; return n; }""")
    assert inked > 100
    with page.expect_response(lambda r: r.url.endswith("/v1/recognize")) as answer:
        page.click("#recognise")
    assert answer.value.status == 200
    assert answer.value.json()["results"][0]["ms"] > 0
    page.wait_for_selector("#draw-results li.done .meta .ms")
    assert page.errors == []
