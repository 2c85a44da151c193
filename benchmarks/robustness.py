"""The robustness table of docs/RESULTS.md: one model on test-clean, test-camera and test-unseen-font.

    python benchmarks/robustness.py --model RUN/model.keras --records work/real_lines/records \
        --work work/robust [--decoder greedy --decoder beam] [--lm RUN/charlm.json] [--lexicon] [--beam-width W]

- test-clean: the records' untouched `test` split, built at the model's preprocessing settings;
- test-camera: the same lines through `vhrdata degrade` (TEST_CAMERA ranges, TEST_CAMERA_SEED: other
  ranges and another seed than training augmentation);
- test-unseen-font: `vhrdata synth --fonts held-out --capture camera` (faces never used for
  training lines), 300 lines, 30 writers, seed 916.

Every set is built once per preprocessing settings under WORK and reused. The sets are never
trained or tuned on. Prints one JSON object: per set and decoder, CER with its 95 % bootstrap
interval, WER and line count, read from each evaluation's metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
UNSEEN = {"lines": 300, "writers": 30, "seed": 916}


def sh(*args) -> None:
    subprocess.run([str(a) for a in args], check=True, stdout=subprocess.DEVNULL)


def build_sets(records: Path, work: Path, settings) -> dict[str, Path]:
    tag = settings.hash()[:12]
    flags = settings.cli_flags().split()
    stores = {}
    clean = work / f"clean-{tag}"
    if not (clean / "index.json").exists():
        sh(BIN / "vhrdata", "build-lmdb", records, "--out", clean, *flags)
    stores["test-clean"] = clean
    for name, make_raw in (
        ("test-camera", lambda raw: sh(BIN / "vhrdata", "degrade", records, "--out", raw)),
        ("test-unseen-font", lambda raw: sh(
            BIN / "vhrdata", "synth", raw, "--lines", UNSEEN["lines"], "--writers", UNSEEN["writers"],
            "--seed", UNSEEN["seed"], "--fonts", "held-out", "--capture", "camera")),
    ):
        raw, rec, store = work / name, work / f"{name}-records", work / f"{name}-{tag}"
        if not (rec / "split.json").exists():
            if not (raw / "manifest.csv").exists() and not (raw / "synth.json").exists():
                make_raw(raw)
            sh(BIN / "vhrdata", "ingest", raw, "--out", rec)
            sh(BIN / "vhrdata", "split", rec, "--ratios", "0,0,1")
        if not (store / "index.json").exists():
            sh(BIN / "vhrdata", "build-lmdb", rec, "--out", store, *flags)
        stores[name] = store
    return stores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--records", required=True, type=Path, help="ingested + split real records (test split used)")
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--decoder", action="append", choices=["greedy", "beam"])
    ap.add_argument("--lm", help="char LM for beam (default: none)")
    ap.add_argument("--lexicon", action="store_true", help="also beam + LM + lexicon")
    ap.add_argument("--beam-width", type=int, default=None,
                    help="beams kept; default: the width the LM was tuned at (as predict decodes), else 10")
    ap.add_argument("--label", default=None, help="name of this row in the output")
    args = ap.parse_args()

    from vhrdata.preprocess import PreprocessSettings
    from vhrmodel.artifact import read_model_info
    from vhrmodel.lm import read_char_lm, resolve_beam_width

    info = read_model_info(args.model)
    args.beam_width = resolve_beam_width(read_char_lm(args.lm) if args.lm else None, args.beam_width)
    settings = PreprocessSettings.from_dict(info["preprocessing"])
    args.work.mkdir(parents=True, exist_ok=True)
    stores = build_sets(args.records, args.work, settings)
    recipes = [("greedy", [])] if "greedy" in (args.decoder or ["greedy"]) else []
    if "beam" in (args.decoder or []):
        lm = ["--lm", args.lm] if args.lm else []
        # --no-lexicon: a tuned LM file turns the lexicon on by default.
        recipes.append(("beam+lm" if args.lm else "beam", ["--decoder", "beam", "--beam-width", str(args.beam_width), *lm,
                                                          "--no-lexicon"]))
        if args.lexicon:
            recipes.append(("beam+lm+lexicon", ["--decoder", "beam", "--beam-width", str(args.beam_width), *lm,
                                                 "--lexicon"]))
    label = args.label or Path(args.model).parent.name
    out = {"model": str(args.model), "label": label, "settings": settings.to_dict(), "beam_width": args.beam_width,
           "results": {}}
    for set_name, store in stores.items():
        for rname, flags in recipes:
            ev = args.work / "eval" / label / f"{set_name}-{rname}"
            sh(BIN / "vhrmodel", "evaluate", "--model", args.model, "--store", store, "--split", "test",
               "--out", ev, *flags)
            m = json.loads((ev / "metrics.json").read_text())
            out["results"][f"{set_name}/{rname}"] = {
                "cer": m["cer"], "cer_ci95": m["cer_ci95"], "wer": m["wer"], "lines": m["lines"],
            }
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
