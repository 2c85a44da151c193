"""ms/line of the server's model and decoding step by micro-batch size, in one process, one runtime thread.

The 16 lines of serve_load.py are cut, in their order, into micro-batches of 1, 2, 4, 8 and 16
lines, and each micro-batch goes through what the server's model thread runs
(`vhrmodel.serve.app.recognize_prepared`: the runtime in groups of at most GROUP lines of
similar width, then decoding and per-character alignment of the whole micro-batch). Per size it
prints ms/line of the runtime, of decoding (greedy text and confidence), of alignment, and in
all; for 16 lines also the runtime in one call padded to the widest line. Every figure is the
best of --repeats passes, the sizes interleaved within each pass, so the ratios come from one run.

    .venv/bin/python benchmarks/serve_batch.py [--model EXPORT] [--repeats 7]

Without --model it exports the `small` preset with random weights to ONNX.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = (1, 2, 4, 8, 16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="export folder (default: small preset, random weights, ONNX)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="runtime threads")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from serve_load import default_model, line_pngs

    from vhrdata.images import SizeLimits
    from vhrmodel.export import open_exported
    from vhrmodel.predict import Recognizer
    from vhrmodel.serve.app import GROUP, _check_and_prepare, recognize_prepared

    tmp = Path(tempfile.mkdtemp(prefix="vhr-bench-batch-"))
    try:
        rec = Recognizer(open_exported(args.model or default_model(tmp), threads=args.threads))
        items = [_check_and_prepare(rec, data, f"line{i}", SizeLimits()) for i, data in enumerate(line_pngs(16))]
        rec.warm_up()
        n = len(items)
        best: dict[str, float] = {}

        def keep(key: str, seconds: float) -> None:
            ms = seconds * 1000.0 / n
            best[key] = min(best.get(key, ms), ms)

        for _ in range(max(1, args.repeats)):
            for size in SIZES:
                batches = [items[i : i + size] for i in range(0, n, size)]
                model = decode = align = 0.0
                for batch in batches:
                    tensors = [t for t, _, _ in batch]
                    t0 = time.perf_counter()
                    logits, lengths = rec.logits(tensors, group=GROUP)
                    t1 = time.perf_counter()
                    texts, _ = rec.decode(logits, lengths)
                    t2 = time.perf_counter()
                    rec.char_infos_batch(texts, logits, lengths, [None] * len(batch))
                    t3 = time.perf_counter()
                    model, decode, align = model + t1 - t0, decode + t2 - t1, align + t3 - t2
                keep(f"{size}/model", model)
                keep(f"{size}/decode", decode)
                keep(f"{size}/align", align)
                t0 = time.perf_counter()
                for batch in batches:
                    recognize_prepared(rec, batch)
                keep(f"{size}/total", time.perf_counter() - t0)
            t0 = time.perf_counter()
            rec.logits([t for t, _, _ in items])
            keep("16/model_one_call", time.perf_counter() - t0)
        by_size = {str(s): {k: round(best[f"{s}/{k}"], 3) for k in ("model", "decode", "align", "total")}
                   for s in SIZES}
        by_size["16"]["model_one_call"] = round(best["16/model_one_call"], 3)
        print(json.dumps({
            "benchmark": "serve_batch", "model": args.model or "small preset, random weights, ONNX",
            "runtime": rec.runtime.name, "threads": args.threads, "lines": n, "group": GROUP,
            "widths": " ".join(str(t.shape[1]) for t, _, _ in items), "repeats": args.repeats,
            "ms_per_line_best_of_repeats": by_size,
            "total_ratio_1_vs_16": round(best["1/total"] / best["16/total"], 2),
            "model_ratio_1_vs_16": round(best["1/model"] / best["16/model"], 2),
        }, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
