"""The HTTP API and web page of `vhrmodel serve` (FastAPI on uvicorn).

- `POST /v1/recognize`: one or more images as multipart files (any field name; "files" in the
  page), or one image as the raw body. Answers `{"model_id", "results": [...]}` with, per
  image, its text, confidence, per-character confidences and x-ranges, and ms.
- `GET /v1/model`: alphabet, preprocessing, format, runtime, source hash and batching limits.
- `GET /healthz`; `GET /` the page (assets from the package, nothing from a CDN); OpenAPI at
  `/openapi.json` and `/docs`.

Bad input gets a JSON error `{"error": {"status", "code", "message"}}` and the server goes
on: 413 for a body over the upload limit (counted while reading, whatever Content-Length
says), 415 for bytes that are not an image by their magic bytes (the declared type is
ignored), 422 for an empty, truncated or undecodable image or one whose header claims more
pixels than the limits (checked before any pixel is decoded, by `vhrdata.images`), 503 with
Retry-After when the batching queue is full, 401 without the bearer token when one is set.

The server reads only the bytes it is sent: no request names a path it opens. CORS is off (no
CORS headers), and the page is sent with a Content-Security-Policy that allows only its own
origin.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from vhrdata.errors import ImageDecodeError
from vhrdata.images import SizeLimits, check_image_bytes, decode_image
from vhrdata.preprocess import preprocess_gray
from vhrdata.quarantine import Reason
from vhrmodel.serve.batcher import MicroBatcher, QueueFull

STATIC = Path(__file__).resolve().parent / "static"
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
# Reasons that mean "these bytes are not an image" (415); every other decode failure is 422.
NOT_IMAGE = {Reason.NOT_AN_IMAGE}
# Most lines per runtime call within a micro-batch: ONNX Runtime on CPU reads a line fastest in
# calls of 4-8 lines of similar width; 16 lines padded to the widest waste the padding's work.
GROUP = 8


@dataclass
class ServeSettings:
    """Limits of one server (the `vhrmodel serve` options)."""

    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_queue: int = 256
    max_upload_mb: float = 10.0
    max_files: int = 64
    token: str | None = None
    limits: SizeLimits = SizeLimits()
    warm_up: bool = True

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def model_description(recognizer, source: str | None = None) -> dict[str, Any]:
    """What `GET /v1/model` says about the model behind `recognizer`."""
    runtime = recognizer.runtime
    info = getattr(runtime, "info", None)
    if info:  # an export: its manifest
        return {
            "model_id": info.get("model_id"),
            "format": info["format"],
            "runtime": runtime.name,
            "quantization": info["quantization"],
            "source_sha256": (info.get("source") or {}).get("sha256"),
            "artifact_sha256": info["artifact_sha256"],
            "alphabet": runtime.alphabet,
            "preprocessing": runtime.preprocessing,
            "preprocessing_hash": info.get("preprocessing_hash"),
            "downsample": runtime.downsample,
            "height": runtime.height,
        }
    sha = None
    if source and Path(source).is_file():
        from vhrmodel.artifact import file_sha256

        sha = file_sha256(source)
    return {
        "model_id": f"{sha[:12]}-keras-none" if sha else f"{runtime.name}-in-memory",
        "format": "keras",
        "runtime": runtime.name,
        "quantization": "none",
        "source_sha256": sha,
        "artifact_sha256": sha,
        "alphabet": runtime.alphabet,
        "preprocessing": runtime.preprocessing,
        "preprocessing_hash": recognizer.settings.hash(),
        "downsample": runtime.downsample,
        "height": runtime.height,
    }


def _char_dict(c) -> dict[str, Any]:
    return {"char": c.char, "confidence": c.confidence, "frames": list(c.frames), "x": list(c.x),
            "x_original": list(c.x_original) if c.x_original is not None else None}


def recognize_prepared(recognizer, items: list[tuple[np.ndarray, int, float]], group: int | None = GROUP
                       ) -> list[dict[str, Any]]:
    """Model + decoding of one micro-batch of prepared lines: (tensor, original width, prepare ms).

    The lines go through the runtime in groups of at most `group` lines of similar width (so
    little of a call is padding), and the whole micro-batch is decoded and aligned together.
    """
    t0 = time.perf_counter()
    tensors = [t for t, _, _ in items]
    logits, lengths = recognizer.logits(tensors, group=group)
    texts, confs = recognizer.decode(logits, lengths)
    crops = recognizer.settings.crop_margins
    scales = [None if crops else width / max(1, tensor.shape[1]) for tensor, width, _ in items]
    chars = recognizer.char_infos_batch(texts, logits, lengths, scales)
    out = [{"text": text, "confidence": round(float(conf), 5), "chars": [_char_dict(c) for c in line]}
           for text, conf, line in zip(texts, confs, chars)]
    share = (time.perf_counter() - t0) * 1000.0 / max(1, len(items))
    for r, (_, _, prep_ms) in zip(out, items):
        r["ms"] = round(prep_ms + share, 3)
        r["batch_size"] = len(items)
    return out


def _check_and_prepare(recognizer, data: bytes, name: str, limits: SizeLimits) -> tuple[np.ndarray, int, float]:
    """Header check, decode and preprocessing of one uploaded image (runs in a worker thread)."""
    t0 = time.perf_counter()
    if not data:
        raise ApiError(422, "empty_file", f"{name}: the image is empty (0 bytes)")
    check = check_image_bytes(data, limits, name, decode=False)
    if not check.ok and check.reason != Reason.IMAGE_TOO_SMALL:
        status = 415 if check.reason in NOT_IMAGE else 422
        raise ApiError(status, str(getattr(check.reason, "value", check.reason)), check.message)
    try:
        gray = decode_image(data, limits)
    except ImageDecodeError as ex:
        reason = getattr(ex, "reason", None)
        raise ApiError(415 if reason in NOT_IMAGE else 422, str(getattr(reason, "value", reason or "undecodable")),
                       f"{name}: {ex}") from None
    tensor = preprocess_gray(gray, recognizer.settings)[0]
    return tensor, int(gray.shape[1]), (time.perf_counter() - t0) * 1000.0


def create_app(recognizer, settings: ServeSettings | None = None, source: str | None = None):
    """The FastAPI app serving `recognizer` (a `vhrmodel.predict.Recognizer`).

    Args:
        recognizer: the model, on any runtime.
        settings: limits, batching and the optional bearer token.
        source: the model path (for the source hash of a .keras model in `/v1/model`).
    """
    from vhrmodel import __version__

    settings = settings or ServeSettings()
    description = model_description(recognizer, source)
    batcher = MicroBatcher(lambda items: recognize_prepared(recognizer, items), max_batch=settings.max_batch,
                           max_wait_ms=settings.max_wait_ms, max_queue=settings.max_queue)

    # Image checks and preprocessing run in a pool as large as the machine's cores, not in
    # Starlette's 40-thread pool: more threads than cores only contend for the GIL, and each
    # thread that allocates gets a malloc arena of its own, which kept the RSS growing under load.
    prepare_pool: list[concurrent.futures.ThreadPoolExecutor] = []

    @asynccontextmanager
    async def lifespan(app):
        if settings.warm_up:
            await run_in_threadpool(recognizer.warm_up)
        prepare_pool.append(concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="vhr-prepare"))
        batcher.start()
        yield
        await batcher.stop()
        prepare_pool.pop().shutdown(wait=False)

    async def prepare(data: bytes, name: str) -> tuple[np.ndarray, int, float]:
        if not prepare_pool:  # the app runs without its lifespan (some test clients)
            return await run_in_threadpool(_check_and_prepare, recognizer, data, name, settings.limits)
        return await asyncio.get_running_loop().run_in_executor(
            prepare_pool[0], _check_and_prepare, recognizer, data, name, settings.limits)

    app = FastAPI(title="vhr line recogniser", version=__version__, lifespan=lifespan,
                  description="Handwritten Vietnamese text-line recognition. POST line images to /v1/recognize.")
    app.state.batcher = batcher
    app.state.description = description

    @app.exception_handler(ApiError)
    async def api_error(request, ex: ApiError):
        return JSONResponse({"error": {"status": ex.status, "code": ex.code, "message": ex.message}},
                            status_code=ex.status, headers=ex.headers)

    def authorize(request: Request) -> None:
        if settings.token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), settings.token.encode()):
            raise ApiError(401, "unauthorized", "this server needs `Authorization: Bearer <token>`",
                           {"WWW-Authenticate": "Bearer"})

    async def read_body(request: Request) -> bytes:
        limit = settings.max_upload_bytes
        declared = request.headers.get("content-length")
        too_big = ApiError(413, "too_large", f"the request body is over the upload limit of "
                                             f"{settings.max_upload_mb:g} MB (--max-upload-mb)")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_big
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_big
                chunks.append(chunk)
        except ClientDisconnect:
            raise ApiError(400, "disconnected", "the client closed the connection before the body was sent") from None
        return b"".join(chunks)

    async def uploaded_images(request: Request) -> list[tuple[str, bytes]]:
        body = await read_body(request)
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            return [("<body>", body)]
        sent = False

        async def replay():  # the body, already read within the limit, for Starlette's form parser
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=settings.max_files, max_fields=16)
        except Exception as ex:  # python-multipart and Starlette raise several types for a bad form
            raise ApiError(422, "bad_form", f"the multipart body cannot be parsed: {ex}") from None
        files = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((value.filename or key, await value.read()))
        await form.close()
        if not files:
            raise ApiError(422, "no_image", "the multipart body holds no file; send images as file fields")
        return files

    recognize_schema = {
        "requestBody": {
            "required": True,
            "description": "Line images as multipart files (field `files`, repeatable), or one image as the raw body.",
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": {
                    "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
                "image/*": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "401": {"description": "missing or wrong bearer token"},
            "413": {"description": "body over --max-upload-mb"},
            "415": {"description": "not an image by its magic bytes"},
            "422": {"description": "empty, truncated, undecodable or too large by its header"},
            "503": {"description": "the queue is full; retry after Retry-After seconds"},
        },
    }

    @app.post("/v1/recognize", openapi_extra=recognize_schema, summary="Recognise line images")
    async def recognize(request: Request) -> dict[str, Any]:
        """Per image: text, confidence, per-character confidences and x-ranges, ms; and the model id."""
        authorize(request)
        images = await uploaded_images(request)
        prepared = []
        for name, data in images:
            prepared.append(await prepare(data, name))
        try:
            results = await batcher.submit_many(prepared)
        except QueueFull as ex:
            raise ApiError(503, "busy", f"the server is busy ({ex}); retry shortly", {"Retry-After": "1"}) from None
        for (name, _), r in zip(images, results):
            r["name"] = name
        return {"model_id": description["model_id"], "results": results}

    @app.get("/v1/model", summary="The model being served")
    async def model(request: Request) -> dict[str, Any]:
        authorize(request)
        return {**description, "max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms,
                "max_upload_mb": settings.max_upload_mb, "limits": {"max_width": settings.limits.max_width,
                                                                    "max_height": settings.limits.max_height,
                                                                    "max_pixels": settings.limits.max_pixels}}

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model_id": description["model_id"], "waiting": batcher.waiting}

    page_headers = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer"}

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=page_headers)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
