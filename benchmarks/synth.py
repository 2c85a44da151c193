"""Synthetic line generation throughput: lines per second with 1 and 2 worker processes.

Prints one JSON object. Each run writes a full dataset (render, encode, write files, annotations)
into a temporary folder with `vhrdata.synth.synthesize`, so the numbers include everything
`vhrdata synth` does. `load_avg` is the 1-minute load average at the start: on a shared machine
a high value means the 2-worker number is limited by other processes, not by the generator.

    .venv/bin/python benchmarks/synth.py [--lines 400] [--writers 8] [--layout kalapa] [--height 96]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from vhrdata.synth import find_fonts, synthesize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=400)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--layout", default="kalapa", choices=["kalapa", "iam"])
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts to time")
    args = ap.parse_args()

    result = {
        "benchmark": "synth",
        "layout": args.layout,
        "lines": args.lines,
        "writers": args.writers,
        "height": args.height,
        "fonts": len(find_fonts()),
        "cpu_count": os.cpu_count(),
        "load_avg": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (int(w) for w in args.workers.split(",")):
            out = Path(tmp) / f"w{workers}"
            t0 = time.perf_counter()
            summary = synthesize(out, lines=args.lines, writers=args.writers, seed=0, layout=args.layout,
                                 workers=workers, height=args.height)
            seconds = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            result[f"workers_{workers}"] = {
                "seconds": round(seconds, 2),
                "lines_per_s": round(args.lines / seconds, 1),
                "bytes_per_line": size // args.lines,
                "fonts_used": len(summary["fonts"]),
            }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
