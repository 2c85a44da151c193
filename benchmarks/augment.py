"""Augmentation throughput: lines per second on one core, per transform and with the defaults.

Prints one JSON object. Lines are synthetic 64 px high strokes of a typical address-line width,
so the numbers need no dataset. Compare with training throughput (samples/s in train.json):
augmentation runs in the reader's worker processes and must be many times faster.

`lines_per_s_defaults_with_camera` (the defaults plus every camera effect at p=0.3,
`AugmentConfig.with_camera()`) is measured in the same run as `lines_per_s_defaults`, and
`camera_over_defaults` is their ratio.

    .venv/bin/python benchmarks/augment.py [--width 900] [--batch 32] [--batches 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from vhrmodel.augment import PAD_VALUE, AugmentConfig, augment_batch


def synthetic_batch(batch: int, height: int, width: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = np.full((batch, height, width), PAD_VALUE, np.uint8)
    widths = rng.integers(width * 3 // 4, width + 1, batch).astype(np.int32)
    for i, w in enumerate(widths):
        images[i, :, :w] = 235
        for x in range(8, int(w) - 8, 11):
            y = int(rng.integers(8, height // 2))
            images[i, y : y + height // 3, x : x + 3] = 25
    return images, widths


def lines_per_second(cfg: AugmentConfig, images, widths, batches: int) -> float:
    rng = np.random.default_rng(0)
    augment_batch(images, widths, rng, cfg)  # warm caches
    t0 = time.perf_counter()
    for _ in range(batches):
        augment_batch(images, widths, rng, cfg)
    return round(batches * len(widths) / (time.perf_counter() - t0), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=900)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)  # one core, like one reader worker
    images, widths = synthetic_batch(args.batch, args.height, args.width)
    result = {
        "benchmark": "augment",
        "height": args.height,
        "mean_width": float(widths.mean()),
        "batch": args.batch,
        "cpu_count": os.cpu_count(),
        "lines_per_s_defaults": lines_per_second(AugmentConfig(), images, widths, args.batches),
        "lines_per_s_defaults_with_camera": lines_per_second(AugmentConfig.with_camera(), images, widths,
                                                             args.batches),
        "lines_per_s_every_transform": lines_per_second(
            AugmentConfig(**{f.name: 1.0 for f in dataclasses.fields(AugmentConfig) if f.name.startswith("p_")}),
            images, widths, args.batches),
        "lines_per_s_per_transform": {},
    }
    for f in dataclasses.fields(AugmentConfig):
        if f.name.startswith("p_"):
            cfg = dataclasses.replace(AugmentConfig.off(), **{f.name: 1.0})
            result["lines_per_s_per_transform"][f.name[2:]] = lines_per_second(cfg, images, widths, args.batches)
    result["camera_over_defaults"] = round(
        result["lines_per_s_defaults_with_camera"] / result["lines_per_s_defaults"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
