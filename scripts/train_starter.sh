#!/usr/bin/env bash
# Train the starter model shipped as vhrmodel/starter/starter.keras (synthetic lines only).
#   bash scripts/train_starter.sh [WORK] [MINUTES]
# The recipe of the shipped file (vhrmodel/starter/MODEL_CARD.md): 6,000 synthetic Vietnamese address
# lines (seed 31, 240 writers) in the system fonts (`--fonts system`: DejaVu on Debian), scanner paper,
# the `small` preset at height 32 (what pipelines/synthetic.yaml builds, so the demo can fine-tune it),
# no augmentation, lr 0.002, 8 epochs (about 40 minutes on 2 cores). Nothing here reads real data.
# A finished store is reused and a stopped run resumes. Copy WORK/run/model.keras to
# vhrmodel/starter/starter.keras.
set -euo pipefail
work="${1:-work/sys32}"
minutes="${2:-55}"
export PATH="$PWD/.venv/bin:$PATH"
if [ ! -f "$work/store/index.json" ]; then
  rm -rf "$work"/{raw,records,store}
  vhrdata synth "$work/raw" --lines 6000 --writers 240 --seed 31 --fonts system --capture scanner
  vhrdata ingest "$work/raw" --layout kalapa --out "$work/records"
  vhrdata split "$work/records" --ratios 0.95,0.05,0 --group writer --seed 0
  vhrdata build-lmdb "$work/records" --out "$work/store" --height 32 --max-width 1024
fi
resume=()
[ -f "$work/run/last.keras" ] && resume=(--resume)
vhrmodel train --store "$work/store" --out "$work/run" --preset small --epochs 8 --batch-size 16 --lr 0.002 \
  --no-augment --val-limit 200 --patience 8 --time-limit "$minutes" --quiet --no-tensorboard "${resume[@]}"
vhrmodel evaluate --model "$work/run/model.keras" --store "$work/store" --split val --out "$work/eval-val"
