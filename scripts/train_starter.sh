#!/usr/bin/env bash
# Train the starter model shipped as vhrmodel/starter/starter.keras (synthetic lines only), in three stages:
#   bash scripts/train_starter.sh [WORK] [MINUTES]
# 1. printed faces: 6,000 synthetic Vietnamese address lines (seed 31, 240 writers) in the system fonts
#    (`--fonts system`: DejaVu on Debian), scanner paper. CTC learns these within one epoch; started on
#    the handwriting faces directly, it had not learned after 4,000 steps.
# 2. handwriting: fine-tuned from stage 1 on 9,000 lines (seed 11) in the cached handwriting faces
#    (`make fonts`, all but the held-out ones) and matplotlib's DejaVu, half scanner, half camera.
# All: the `small` preset at height 32 (what pipelines/synthetic.yaml builds, so the demo can
# fine-tune it), no augmentation. The shipped file is stage 1's epoch 7 (lr 0.002), then stage 2's
# epoch 2 (lr 0.001), then stage 3's epoch 4 (lr 0.001; two sittings of 2 epochs): vhrmodel/starter/MODEL_CARD.md. Nothing here reads real
# data. A finished store is reused and a stopped run resumes. Copy WORK/hand3/run/model.keras to
# vhrmodel/starter/starter.keras.
set -euo pipefail
work="${1:-work/starter}"
minutes="${2:-55}"
export PATH="$PWD/.venv/bin:$PATH"
stage() {  # stage DIR EPOCHS LR [train options...]
  local dir="$1" epochs="$2" lr="$3"; shift 3
  local resume=()
  [ -f "$dir/run/last.keras" ] && resume=(--resume)
  [ ${#resume[@]} -eq 0 ] || set --  # a resumed run keeps its --init-from weights
  vhrmodel train --store "$dir/store" --out "$dir/run" --epochs "$epochs" --batch-size 16 --lr "$lr" --no-augment \
    --val-limit 200 --patience 8 --time-limit "$minutes" --quiet --no-tensorboard "${resume[@]}" "$@"
}
build() {  # build DIR SYNTH-OPTIONS...
  local dir="$1"; shift
  [ -f "$dir/store/index.json" ] && return
  rm -rf "$dir"/{raw,records,store}
  vhrdata synth "$dir/raw" "$@"
  vhrdata ingest "$dir/raw" --layout kalapa --out "$dir/records"
  vhrdata split "$dir/records" --ratios 0.95,0.05,0 --group writer --seed 0
  vhrdata build-lmdb "$dir/records" --out "$dir/store" --height 32 --max-width 1024
}
build "$work/printed" --lines 6000 --writers 240 --seed 31 --fonts system --capture scanner
stage "$work/printed" 7 0.002 --preset small
mpl_fonts="$(python -c 'from vhrdata.synth.fonts import matplotlib_font_dir as d; print(d())')"
build "$work/hand" --lines 9000 --writers 240 --seed 11 --capture mix --fonts train --font-dir "$mpl_fonts"
stage "$work/hand" 2 0.001 --init-from "$work/printed/run/model.keras"
# 3. more handwriting: 20,000 fresh lines (seed 12, 600 writers), the same faces and papers, from stage 2
#    (the shipped stage-2 file was `--init-from starter` before this stage replaced it).
build "$work/hand3" --lines 20000 --writers 600 --seed 12 --capture mix --fonts train --font-dir "$mpl_fonts"
stage "$work/hand3" 30 0.001 --init-from "$work/hand/run/model.keras"
vhrmodel evaluate --model "$work/hand3/run/model.keras" --store "$work/hand3/store" --split val --out "$work/hand3/eval-val"
