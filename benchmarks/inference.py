"""ms per line of each runtime on one core: Keras-TF, LiteRT float, LiteRT dynamic/int8, ONNX Runtime.

Builds the `small` preset with random weights (speed does not depend on the weights), exports it
with `vhrmodel.export.export_model`, then times `runtime.logits` on the same synthetic lines at
batch 1 and batch 16, each runtime in its own process pinned to CPU 0 (`taskset -c 0`) with one
thread. Prints JSON: ms/line, artifact size, and each ratio to Keras-TF measured in this run.

    .venv/bin/python benchmarks/inference.py [--lines 32] [--width 512] [--calibration STORE]

--calibration STORE (a store of height 48) adds LiteRT int8; without it LiteRT dynamic stands
in for the quantised model. Uses `taskset` when it exists (Linux), else runs unpinned and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEIGHT = 48
ONE_THREAD = {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
              "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def synthetic_lines(n: int, width: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w = int(width * rng.uniform(0.7, 1.3)) // 4 * 4
        img = np.full((HEIGHT, w), 255, np.uint8)
        for _ in range(w // 6):  # ink strokes
            x, y = int(rng.integers(0, w - 4)), int(rng.integers(8, HEIGHT - 12))
            img[y : y + int(rng.integers(2, 10)), x : x + 3] = int(rng.integers(0, 80))
        out.append(img)
    return out


def worker(kind: str, path: str, lines: int, width: int) -> dict:
    """Time one runtime (runs in the pinned, one-thread subprocess)."""
    from vhrmodel.runtime import batch_logits

    if kind == "keras":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        from vhrmodel.runtime import open_runtime

        runtime = open_runtime(path)
    else:
        from vhrmodel.export import open_exported

        runtime = open_exported(path, threads=1)
    images = synthetic_lines(lines, width)
    out = {}
    for batch in (1, 16):
        batch_logits(runtime, images[:batch])  # warm-up: graph tracing, tensor allocation
        batch_logits(runtime, images[:batch])
        t0 = time.perf_counter()
        for start in range(0, len(images), batch):
            batch_logits(runtime, images[start : start + batch])
        out[f"ms_per_line_batch{batch}"] = round((time.perf_counter() - t0) * 1000.0 / len(images), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=32)
    ap.add_argument("--width", type=int, default=512, help="mean line width in pixels (height 48)")
    ap.add_argument("--calibration", default=None, help="store (height 48) for a LiteRT int8 export")
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.lines, args.width)))
        return

    os.environ.update(ONE_THREAD)
    from vhrdata.charset import Charset  # noqa: F401  (the alphabet below is a plausible Vietnamese one)
    from vhrdata.preprocess import PreprocessSettings
    from vhrmodel.artifact import save_model, settings_to_dict
    from vhrmodel.export import export_model
    from vhrmodel.presets import build_model

    alphabet = "".join(sorted(set(" 0123456789,.-/abcdefghijklmnopqrstuvwxyzđáàảãạăắằẳẵặâấầẩẫậéèẻẽẹêếềểễệíìỉĩị"
                                  "óòỏõọôốồổỗộơớờởỡợúùủũụưứừửữựýỳỷỹỵABCDEFGHIKLMNOPQRSTUVXYĐ")))
    tmp = Path(tempfile.mkdtemp(prefix="vhr-bench-inference-"))
    try:
        model = build_model("small", alphabet=alphabet,
                            preprocessing=settings_to_dict(PreprocessSettings(height=HEIGHT)))
        keras_path = save_model(model, tmp / "model.keras", include_optimizer=False)
        variants = {"keras_tf": ("keras", keras_path, None)}
        plan = [("onnxruntime", "onnx", "none"), ("onnxruntime_dynamic", "onnx", "dynamic"),
                ("litert_float", "litert", "none"), ("litert_dynamic", "litert", "dynamic")]
        if args.calibration:
            plan.append(("litert_int8", "litert", "int8"))
        for name, fmt, quant in plan:
            info = export_model(keras_path, tmp / name, format=fmt, quantize=quant, calibration=args.calibration)
            variants[name] = ("exported", tmp / name, info["size_bytes"])
        pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
        results = {}
        for name, (kind, path, size) in variants.items():
            cmd = pin + [sys.executable, __file__, "--lines", str(args.lines), "--width", str(args.width),
                         "--worker", kind, str(path)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ONE_THREAD})
            if proc.returncode != 0:
                results[name] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["file_bytes"] = size if size is not None else Path(path).stat().st_size
            results[name] = row
        base = results.get("keras_tf", {})
        for row in results.values():
            for b in (1, 16):
                key = f"ms_per_line_batch{b}"
                if key in row and key in base:
                    row[f"speedup_vs_keras_batch{b}"] = round(base[key] / row[key], 2)
        timed = {k: v for k, v in results.items() if "ms_per_line_batch1" in v}
        fastest = min(timed, key=lambda k: timed[k]["ms_per_line_batch1"]) if timed else None
        print(json.dumps({
            "benchmark": "inference", "preset": "small (random weights)", "height": HEIGHT,
            "mean_width_px": args.width, "lines": args.lines, "cpu": "taskset -c 0" if pin else "unpinned",
            "threads": 1, "results": results, "fastest_batch1": fastest,
            "note": "speedup_vs_keras = Keras-TF ms/line divided by this runtime's ms/line, same run",
        }, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
