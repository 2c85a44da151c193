"""Load test of `vhrmodel serve` on 127.0.0.1: micro-batched against --max-batch 1, in one run.

Starts the server twice on a free loopback port (once with --max-batch 16, once with
--max-batch 1), runs N concurrent clients for a bounded time against each, and prints JSON:
lines/s, p50/p95/p99 latency, error count, the server's RSS at start and end and the CPU
seconds it used, and the ratios of micro-batched to unbatched throughput (lines per second, and
lines per server CPU second, which a busy shared machine disturbs less).

    .venv/bin/python benchmarks/serve_load.py [--model EXPORT_OR_KERAS] [--clients 16] [--seconds 20]

Without --model it exports the `small` preset with random weights to ONNX (speed does not depend
on the weights). Only loopback is ever contacted; every loop is bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAX_REQUESTS_PER_CLIENT = 100_000


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used (its threads together)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def line_pngs(n: int) -> list[bytes]:
    import cv2

    sys.path.insert(0, str(HERE))
    from inference import synthetic_lines

    return [cv2.imencode(".png", img)[1].tobytes() for img in synthetic_lines(n, 512, seed=1)]


def default_model(tmp: Path) -> str:
    """The `small` preset with random weights, exported to ONNX under `tmp` (speed does not depend on the weights)."""
    from vhrdata.preprocess import PreprocessSettings
    from vhrmodel.artifact import save_model, settings_to_dict
    from vhrmodel.export import export_model
    from vhrmodel.presets import build_model

    alphabet = " 0123456789abcdefghijklmnopqrstuvwxyzđàáảãạâầấẩẫậăằắẳẵặèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ"
    net = build_model("small", alphabet=alphabet, preprocessing=settings_to_dict(PreprocessSettings(height=48)))
    keras_path = save_model(net, tmp / "model.keras", include_optimizer=False)
    export_model(keras_path, tmp / "onnx", format="onnx")
    return str(tmp / "onnx")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q / 100.0 * (len(values) - 1))))], 2)


async def load(url: str, images: list[bytes], clients: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    batch_sizes: list[int] = []
    errors: dict[str, int] = {}
    deadline = time.monotonic() + seconds

    async def client(k: int, http: httpx.AsyncClient) -> None:
        for i in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= deadline:
                return
            data = images[(k + i) % len(images)]
            t0 = time.perf_counter()
            try:
                r = await http.post(url + "/v1/recognize", content=data, headers={"Content-Type": "image/png"})
                if r.status_code == 200:
                    latencies.append((time.perf_counter() - t0) * 1000.0)
                    batch_sizes.append(int(r.json()["results"][0].get("batch_size", 1)))
                else:
                    errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
            except httpx.HTTPError as ex:
                errors[type(ex).__name__] = errors.get(type(ex).__name__, 0) + 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(k, http) for k in range(clients)))
        elapsed = time.perf_counter() - t0
    return {
        "lines": len(latencies), "seconds": round(elapsed, 2), "lines_per_s": round(len(latencies) / elapsed, 2),
        "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95), "p99_ms": percentile(latencies, 99),
        "errors": sum(errors.values()), "errors_by_kind": errors,
        "mean_batch_size": round(sum(batch_sizes) / len(batch_sizes), 2) if batch_sizes else None,
    }


def run_server(model: str, max_batch: int, clients: int, seconds: float, images: list[bytes], threads: int | None
               ) -> dict:
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "vhrmodel.cli", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
           "--max-batch", str(max_batch), "--max-queue", str(max(256, 4 * clients))]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("VHR_TOKEN", None)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # at most 60 s to start
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited: {proc.stderr.read().decode()[-1000:]}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        for data in images[:4]:  # warm-up
            httpx.post(url + "/v1/recognize", content=data, timeout=30)
        start_rss, start_cpu = rss_mb(proc.pid), cpu_seconds(proc.pid)
        result = asyncio.run(load(url, images, clients, seconds))
        end_cpu = cpu_seconds(proc.pid)
        result.update(max_batch=max_batch, clients=clients, server_rss_mb_start=start_rss,
                      server_rss_mb_end=rss_mb(proc.pid))
        if start_cpu is not None and end_cpu is not None and end_cpu > start_cpu:
            # On a shared machine the server gets what CPU the others leave: lines per CPU
            # second it used measures its work per line whatever that share was.
            result["server_cpu_s"] = round(end_cpu - start_cpu, 2)
            result["lines_per_server_cpu_s"] = round(result["lines"] / (end_cpu - start_cpu), 2)
        if start_rss is not None and result["server_rss_mb_end"] is not None:
            result["server_rss_growth_mb"] = round(result["server_rss_mb_end"] - start_rss, 1)
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="export folder or .keras file (default: small preset, random weights, ONNX)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0, help="per server; at most 30 (two servers: 60 s in all)")
    ap.add_argument("--threads", type=int, default=None, help="runtime threads of an exported model")
    args = ap.parse_args()
    seconds = min(args.seconds, 30.0)
    tmp = Path(tempfile.mkdtemp(prefix="vhr-bench-serve-"))
    try:
        model = args.model or default_model(tmp)
        images = line_pngs(16)
        batched = run_server(model, 16, args.clients, seconds, images, args.threads)
        single = run_server(model, 1, args.clients, seconds, images, args.threads)
        ratio = round(batched["lines_per_s"] / single["lines_per_s"], 2) if single["lines_per_s"] else None
        per_cpu = [r.get("lines_per_server_cpu_s") for r in (batched, single)]
        cpu_ratio = round(per_cpu[0] / per_cpu[1], 2) if all(per_cpu) else None
        print(json.dumps({"benchmark": "serve_load", "model": args.model or "small preset, random weights, ONNX",
                          "host": "127.0.0.1", "cpus": os.cpu_count(), "load_average": list(os.getloadavg()),
                          "micro_batched": batched, "max_batch_1": single,
                          "throughput_ratio_batched_vs_1": ratio, "per_cpu_second_ratio_batched_vs_1": cpu_ratio},
                         indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
