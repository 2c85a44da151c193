"""Train and inference throughput of the model presets on synthetic batches; prints JSON.

Measures the model alone (no data pipeline): a fixed random batch of uint8 line images is
fed to `train_on_batch` / `predict_on_batch` repeatedly after warm-up steps.

On a shared machine, compare candidates measured in the same run (interleaved repeats) and
read the `_best` fields; CPU time per sample is reported too.

Example (the table in docs/DESIGN.md, "Model"):
    .venv/bin/python benchmarks/model_throughput.py --presets tiny,small --height 48 --width 900 \
        --config '{"small_h64": {"preset": "small", "height": 64, "width": 1200},
                   "base_h64": {"preset": "base", "height": 64, "width": 1200}}' \
        --steps 3 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="tiny,small,base", help="comma-separated preset names ('' for none)")
    p.add_argument("--config", default="{}",
                   help='JSON {name: {"preset": ..., "height": ..., "width": ..., **overrides}} of extra candidates')
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=1200, help="batch width in pixels (real lines at H=64: ~1100-1300)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-classes", type=int, default=140, help="charset size + 1 (cinnamon-0916 has 139 characters)")
    p.add_argument("--label-length", type=int, default=56)
    p.add_argument("--steps", type=int, default=5, help="timed train steps per candidate")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1, help="measure every candidate this many times, interleaved")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (0: library default)")
    p.add_argument("--jit", choices=["false", "true", "auto"], default="false", help="model.compile(jit_compile=...)")
    p.add_argument("--no-inference", action="store_true")
    return p.parse_args()


def main():
    args = parse_args()
    if args.threads:
        for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "XLA_FLAGS_THREADS"):
            os.environ.setdefault(var, str(args.threads))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import numpy as np

    if keras.backend.backend() == "tensorflow" and args.threads:
        import tensorflow as tf  # thread pools only; the model code itself never uses tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)

    from vhrmodel.losses import CTCLoss
    from vhrmodel.presets import build_model

    candidates = {}
    for name in filter(None, args.presets.split(",")):
        candidates[name] = {"preset": name}
    candidates.update(json.loads(args.config))

    def make_batch(height, width):
        rng = np.random.default_rng(0)
        images = np.full((args.batch_size, height, width, 1), 255, np.uint8)
        ink = rng.random((args.batch_size, height // 2, width - 40, 1)) < 0.15
        images[:, height // 4 : height // 4 + height // 2, 20 : width - 20][ink] = 0
        labels = rng.integers(1, args.num_classes, (args.batch_size, args.label_length)).astype(np.int32)
        return images, labels

    jit = {"false": False, "true": True, "auto": "auto"}[args.jit]

    models = {}
    batches = {}
    for name, spec in candidates.items():
        spec = dict(spec)
        preset = spec.pop("preset", name)
        # A candidate may set its own input size (a lower height also means narrower lines).
        height, width = spec.pop("height", args.height), spec.pop("width", args.width)
        batches[name] = images, labels = make_batch(height, width)
        keras.utils.set_random_seed(0)
        model = build_model(preset, num_classes=args.num_classes, height=height, **spec)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=CTCLoss(), jit_compile=jit)
        for _ in range(args.warmup):
            model.train_on_batch(images, labels)
        if not args.no_inference:
            model.predict_on_batch(images)
            model.predict_on_batch(images[:1])
        models[name] = model

    results = {name: {"params": models[name].count_params(), "train_samples_per_s": [], "train_cpu_ms_per_sample": [],
                      "infer_samples_per_s": [], "infer_ms_per_line_batch1": []} for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            images, labels = batches[name]
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                model.train_on_batch(images, labels)
            samples = args.steps * args.batch_size
            results[name]["train_samples_per_s"].append(samples / (time.perf_counter() - start))
            results[name]["train_cpu_ms_per_sample"].append(1000 * (time.process_time() - cpu_start) / samples)
            if args.no_inference:
                continue
            start = time.perf_counter()
            for _ in range(args.steps):
                model.predict_on_batch(images)
            results[name]["infer_samples_per_s"].append(args.steps * args.batch_size / (time.perf_counter() - start))
            start = time.perf_counter()
            for _ in range(args.steps):
                model.predict_on_batch(images[:1])
            results[name]["infer_ms_per_line_batch1"].append(1000 * (time.perf_counter() - start) / args.steps)

    def summary(values):
        return round(float(np.median(values)), 2) if values else None

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "load_average_1min": round(load[0], 2) if load else None,
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "jit_compile": args.jit,
        "batch": [args.batch_size, args.height, args.width, 1],
        "label_length": args.label_length,
        "steps": args.steps,
        "repeats": args.repeats,
        "models": {
            name: {
                "params": r["params"],
                "input": list(batches[name][0].shape[1:3]),
                "train_samples_per_s": summary(r["train_samples_per_s"]),
                # The best repeat is the least disturbed by other load on a shared machine.
                "train_samples_per_s_best": round(max(r["train_samples_per_s"]), 2),
                # CPU time is less disturbed by other load on a shared machine than wall time.
                "train_cpu_ms_per_sample": summary(r["train_cpu_ms_per_sample"]),
                "train_cpu_ms_per_sample_best": round(min(r["train_cpu_ms_per_sample"]), 2),
                "infer_samples_per_s": summary(r["infer_samples_per_s"]),
                "infer_ms_per_line_batch1": summary(r["infer_ms_per_line_batch1"]),
                "train_samples_per_s_runs": [round(v, 2) for v in r["train_samples_per_s"]],
            }
            for name, r in results.items()
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
