#!/usr/bin/env bash
# Train the starter model shipped as vhrmodel/starter/starter.keras (synthetic lines only).
#   bash scripts/train_starter.sh [WORK] [MINUTES]
# Synthetic Vietnamese address lines in the cached handwriting faces (`make fonts`, all but the
# held-out ones) and matplotlib's DejaVu faces (what `make demo` draws with when the handwriting
# faces are not cached), half scanner and half camera captures; the `small` preset at height 32
# (what pipelines/synthetic.yaml builds), so the demo and any 32 px store can `--init-from starter`.
# Nothing here reads real data. Copy WORK/run/model.keras to vhrmodel/starter/starter.keras.
set -euo pipefail
work="${1:-work/starter32}"
minutes="${2:-90}"
export PATH="$PWD/.venv/bin:$PATH"
mpl_fonts="$(python -c 'from vhrdata.synth.fonts import matplotlib_font_dir as d; print(d())')"
# A finished store is reused (same seed, same data; build-lmdb verifies its settings on open).
if [ ! -f "$work/store/index.json" ]; then
  rm -rf "$work"/{raw,records,store}
  vhrdata synth "$work/raw" --lines 9000 --writers 240 --seed 11 --capture mix --fonts train --font-dir "$mpl_fonts"
  vhrdata ingest "$work/raw" --layout kalapa --out "$work/records"
  vhrdata split "$work/records" --ratios 0.95,0.05,0 --group writer --seed 0
  vhrdata build-lmdb "$work/records" --out "$work/store" --height 32 --max-width 1024
fi
resume=()
[ -f "$work/run/last.keras" ] && resume=(--resume)
vhrmodel train --store "$work/store" --out "$work/run" --preset small --epochs 60 --batch-size 16 --lr 0.002 \
  --patience 8 --time-limit "$minutes" --quiet "${resume[@]}"
vhrmodel evaluate --model "$work/run/model.keras" --store "$work/store" --split val --out "$work/eval-val"
