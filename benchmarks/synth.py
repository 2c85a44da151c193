"""Synthetic line generation throughput: lines per second with 1 and 2 worker processes.

Prints one JSON object. Each run writes a full dataset (render, encode, write files, annotations)
into a temporary folder with `vhrdata.synth.synthesize`, so the numbers include everything
`vhrdata synth` does. `load_avg` is the 1-minute load average at the start: on a shared machine
a high value means the wall-clock numbers are limited by other processes, not by the generator;
`lines_per_cpu_s` (lines per CPU-second, workers included) is then the better measure of one core.

`captures` (default "scanner,camera,mix") are timed in the same run, one worker each, so
`camera_over_scanner` and `mix_over_scanner` are ratios measured together; `fonts` says whether
the Fontsource handwriting faces (make fonts) or the system fallback were used.

    .venv/bin/python benchmarks/synth.py [--lines 400] [--writers 8] [--layout kalapa] [--height 96] [--tmp DIR]
        [--workers 1,2] [--captures scanner,camera,mix] [--fonts train]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vhrdata.synth import resolve_fonts, synthesize


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool workers, once joined)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_once(args: argparse.Namespace, workers: int, capture: str = "scanner") -> dict:
    """Time one synthesize() call; meant to run in a fresh process so no cache starts warm."""
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        out = Path(tmp) / "out"
        t0, cpu0 = time.perf_counter(), _cpu_seconds()
        summary = synthesize(out, lines=args.lines, writers=args.writers, seed=0, layout=args.layout,
                             workers=workers, height=args.height, capture=capture, fonts=args.fonts)
        seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "seconds": round(seconds, 2),
        "lines_per_s": round(args.lines / seconds, 1),
        "cpu_seconds": round(cpu, 2),
        "lines_per_cpu_s": round(args.lines / cpu, 1),
        "bytes_per_line": size // args.lines,
        "fonts_used": len(summary["fonts"]),
        "captures": summary["captures"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=400)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--layout", default="kalapa", choices=["kalapa", "iam"])
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts to time")
    ap.add_argument("--tmp", default=None, help="folder for the temporary output (file writes can be slow on /tmp)")
    ap.add_argument("--captures", default="scanner,camera,mix", help="captures timed with 1 worker")
    ap.add_argument("--fonts", default="train", choices=["train", "held-out", "all"])
    ap.add_argument("--capture", default="scanner", help=argparse.SUPPRESS)
    ap.add_argument("--once", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.once is not None:
        print(json.dumps(run_once(args, args.once, args.capture)))
        return

    choice = resolve_fonts(args.fonts)
    result = {
        "benchmark": "synth",
        "layout": args.layout,
        "lines": args.lines,
        "writers": args.writers,
        "height": args.height,
        "fonts": len(choice.fonts),
        "font_source": choice.source,
        "cpu_count": os.cpu_count(),
        "load_avg": round(os.getloadavg()[0], 2),
        "tmp": args.tmp or tempfile.gettempdir(),
    }
    common = ["--lines", str(args.lines), "--writers", str(args.writers), "--layout", args.layout,
              "--height", str(args.height), "--fonts", args.fonts] + (["--tmp", args.tmp] if args.tmp else [])

    def once(workers: int, capture: str) -> dict:
        done = subprocess.run([sys.executable, __file__, *common, "--once", str(workers), "--capture", capture],
                              check=True, capture_output=True, text=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    for workers in (int(w) for w in args.workers.split(",") if w):
        result[f"workers_{workers}"] = once(workers, "scanner")
    captures = [c for c in args.captures.split(",") if c]
    for capture in captures:
        result[f"capture_{capture}"] = once(1, capture)
    if "scanner" in captures:
        base = result["capture_scanner"]["lines_per_cpu_s"]
        for capture in captures:
            if capture != "scanner":
                result[f"{capture}_over_scanner"] = round(result[f"capture_{capture}"]["lines_per_cpu_s"] / base, 3)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
