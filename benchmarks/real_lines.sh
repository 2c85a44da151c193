#!/usr/bin/env bash
# Real-data result: the whole chain on ../shared/data/cinnamon-0916 with the project's own commands.
#
#   1. vhrdata ingest      the 1,500 Cinnamon lines
#   2. vhrdata split       per image (the data set has no writer ids), 80 % train / 10 % val / 10 % test
#   3. vhrdata build-lmdb  at the preset's recommended height
#   4. (optional) synthetic pretraining: vhrdata synth + ingest + split + build-lmdb + vhrmodel train
#   5. vhrmodel train --fast --preset small  (fine-tuned from the synthetic model when step 4 ran)
#   6. vhrmodel evaluate   on the untouched test 10 % (greedy, and beam search with the training-label LM)
#   7. vhrmodel predict    inference ms per line at batch 1 on one core, and batched
#
# The `val` split picks the best checkpoint and drives early stopping and the learning-rate
# schedule; the `test` split is touched by nothing but the final evaluation, and it is what is
# reported, with a 95 % bootstrap interval of CER (lines resampled). last.keras (the final
# weights, not chosen by val CER) is evaluated on test as well.
#
# Everything goes under $WORK (default work/real_lines, gitignored); the numbers end up in
# $WORK/results.json and $WORK/results.md, and every command run is in $WORK/commands.txt.
#
# Settings (environment variables):
#   WORK=work/real_lines   DATA=../shared/data/cinnamon-0916
#   TRAIN_MINUTES=120      training time budget (stops after the epoch that crosses it)
#   EPOCHS=200 PATIENCE=20 BATCH=16 LR=0.001 PRESET=small WORKERS=1 SEED=0
#   HEIGHT=<the preset's RECOMMENDED_HEIGHT>
#   PRETRAIN_LINES=0       synthetic lines for pretraining (0: none); PRETRAIN_MINUTES=30
#   INFER_LINES=50         lines timed by `vhrmodel predict`
#   RESUME=0               1: continue an interrupted real-data training run with --resume
#   REUSE_STORE=0          1: keep $WORK/records and $WORK/store from an earlier run
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-../shared/data/cinnamon-0916}
WORK=${WORK:-work/real_lines}
TRAIN_MINUTES=${TRAIN_MINUTES:-120}
EPOCHS=${EPOCHS:-200}
PATIENCE=${PATIENCE:-20}
BATCH=${BATCH:-16}
LR=${LR:-0.001}
PRESET=${PRESET:-small}
WORKERS=${WORKERS:-1}
SEED=${SEED:-0}
BIN=${BIN:-.venv/bin}
HEIGHT=${HEIGHT:-$("$BIN/python" -c "from vhrmodel.presets import RECOMMENDED_HEIGHT as H; print(H['$PRESET'])")}
PRETRAIN_LINES=${PRETRAIN_LINES:-0}
PRETRAIN_MINUTES=${PRETRAIN_MINUTES:-30}
INFER_LINES=${INFER_LINES:-50}
RESUME=${RESUME:-0}
REUSE_STORE=${REUSE_STORE:-0}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

if [ ! -f "$DATA/labels.json" ]; then
  echo "real lines not found at $DATA (only present inside the vhr workplace); nothing to do" >&2
  exit 0
fi
mkdir -p "$WORK"
CMDS="$WORK/commands.txt"
[ "$RESUME" = 1 ] || [ "$REUSE_STORE" = 1 ] || : > "$CMDS"

run() {  # log the exact command, then run it
  echo "$*" | tee -a "$CMDS"
  "$@"
}

# 1-3: records and store
if [ "$REUSE_STORE" != 1 ] && [ "$RESUME" != 1 ] || [ ! -f "$WORK/store/index.json" ]; then
  rm -rf "$WORK/records" "$WORK/store"
  run "$BIN/vhrdata" ingest "$DATA" --out "$WORK/records"
  run "$BIN/vhrdata" split "$WORK/records" --group image --ratios 0.8,0.1,0.1 --seed "$SEED"
  run "$BIN/vhrdata" build-lmdb "$WORK/records" --out "$WORK/store" --height "$HEIGHT"
fi

# 4: optional synthetic pretraining, at the same preprocessing settings
INIT=()
if [ "$PRETRAIN_LINES" -gt 0 ]; then
  SYN="$WORK/synth"
  if [ ! -f "$SYN/run/model.keras" ]; then
    rm -rf "$SYN"
    run "$BIN/vhrdata" synth "$SYN/raw" --lines "$PRETRAIN_LINES" --writers 40 --seed "$SEED"
    run "$BIN/vhrdata" ingest "$SYN/raw" --out "$SYN/records"
    run "$BIN/vhrdata" split "$SYN/records" --group writer --ratios 0.95,0.05,0 --seed "$SEED"
    run "$BIN/vhrdata" build-lmdb "$SYN/records" --out "$SYN/store" --height "$HEIGHT"
    run "$BIN/vhrmodel" train --store "$SYN/store" --out "$SYN/run" --preset "$PRESET" \
      --epochs "$EPOCHS" --batch-size "$BATCH" --lr "$LR" --workers "$WORKERS" --seed "$SEED" \
      --patience 5 --time-limit "$PRETRAIN_MINUTES" -q
  fi
  INIT=(--init-from "$SYN/run/model.keras")
fi

# 5: train on the real lines
RUN="$WORK/run"
if [ "$RESUME" = 1 ] && [ -f "$RUN/last.keras" ]; then
  run "$BIN/vhrmodel" train --store "$WORK/store" --out "$RUN" --epochs "$EPOCHS" --batch-size "$BATCH" \
    --lr "$LR" --workers "$WORKERS" --seed "$SEED" --patience "$PATIENCE" --time-limit "$TRAIN_MINUTES" \
    --resume -q
else
  rm -rf "$RUN"
  PRESET_ARG=(--preset "$PRESET")
  [ ${#INIT[@]} -gt 0 ] && PRESET_ARG=()  # keep the pretrained architecture
  run "$BIN/vhrmodel" train --store "$WORK/store" --out "$RUN" "${PRESET_ARG[@]}" "${INIT[@]}" \
    --epochs "$EPOCHS" --batch-size "$BATCH" --lr "$LR" --workers "$WORKERS" --seed "$SEED" \
    --patience "$PATIENCE" --time-limit "$TRAIN_MINUTES" -q
fi

# 6: evaluate on the untouched test 10 %
run "$BIN/vhrmodel" evaluate --model "$RUN/model.keras" --store "$WORK/store" --split test --out "$WORK/eval-best"
run "$BIN/vhrmodel" evaluate --model "$RUN/last.keras" --store "$WORK/store" --split test --out "$WORK/eval-last"
run "$BIN/vhrmodel" evaluate --model "$RUN/model.keras" --store "$WORK/store" --split test --out "$WORK/eval-beam" \
  --decoder beam --beam-width 10 --lm "$RUN/charlm.json"

# 7: inference time on held-out image files, one core
"$BIN/python" - "$WORK/records" "$INFER_LINES" > "$WORK/infer_images.txt" <<'EOF'
import sys
from vhrdata.records import read_records
df = read_records(sys.argv[1])
print("\n".join(df[df["split"] == "test"]["path"].head(int(sys.argv[2]))))
EOF
mapfile -t IMAGES < "$WORK/infer_images.txt"
ONE_CORE=(env TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0)
echo "${ONE_CORE[*]} $BIN/vhrmodel predict --model $RUN/model.keras --json --batch-size 1 <$INFER_LINES test images>" >> "$CMDS"
"${ONE_CORE[@]}" "$BIN/vhrmodel" predict --model "$RUN/model.keras" --json --batch-size 1 "${IMAGES[@]}" \
  > "$WORK/predict_batch1.jsonl"
echo "${ONE_CORE[*]} $BIN/vhrmodel predict --model $RUN/model.keras --json --batch-size 16 <$INFER_LINES test images>" >> "$CMDS"
"${ONE_CORE[@]}" "$BIN/vhrmodel" predict --model "$RUN/model.keras" --json --batch-size 16 "${IMAGES[@]}" \
  > "$WORK/predict_batch16.jsonl"

# results
"$BIN/python" - "$WORK" <<'EOF'
import json, statistics, sys
from pathlib import Path

work = Path(sys.argv[1])
train = json.loads((work / "run" / "train.json").read_text())
evals = {name: json.loads((work / f"eval-{name}" / "metrics.json").read_text()) for name in ("best", "last", "beam")}

def ms(name):
    rows = [json.loads(line) for line in (work / name).read_text().splitlines() if line.strip()]
    values = [r["ms"] for r in rows]
    return {"lines": len(values), "mean": round(statistics.mean(values), 2), "median": round(statistics.median(values), 2)}

keep = ("lines", "cer", "cer_ci95", "wer", "ser", "cer_no_diacritics", "chars_outside_charset", "ms_per_line_model")
results = {
    "data": "cinnamon-0916, split per image 80/10/10 (seed 0); reported on test, which nothing tuned on",
    "test": {name: {k: m[k] for k in keep} for name, m in evals.items()},
    "train": {k: train.get(k) for k in ("preset", "params", "model_bytes", "epochs_run", "best_epoch", "best_val_cer",
                                         "train_lines", "train_samples_per_s", "train_step_seconds", "wall_seconds",
                                         "stopped_by_time_limit", "init_from", "backend")},
    "inference_ms_per_line_one_core": {"batch_1": ms("predict_batch1.jsonl"), "batch_16": ms("predict_batch16.jsonl")},
    "commands": (work / "commands.txt").read_text().splitlines(),
}
(work / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
b, t, i = results["test"]["best"], results["train"], results["inference_ms_per_line_one_core"]
pct = lambda x: f"{100 * x:.2f} %"
md = [
    "# Real lines (cinnamon-0916, untouched test 10 %)", "",
    "| | greedy, best by val CER | greedy, last epoch | beam 10 + char LM |", "|---|---|---|---|",
]
for key, label in (("cer", "CER"), ("wer", "WER"), ("ser", "SER"), ("cer_no_diacritics", "CER without diacritics")):
    md.append(f"| {label} | " + " | ".join(pct(results["test"][n][key]) for n in ("best", "last", "beam")) + " |")
md.append("| CER 95 % interval | " + " | ".join(
    f"{pct(results['test'][n]['cer_ci95'][0])} – {pct(results['test'][n]['cer_ci95'][1])}" for n in ("best", "last", "beam")) + " |")
md += [
    "", f"- preset {t['preset']}, {t['params']:,} parameters, model file {t['model_bytes'] / 1e6:.2f} MB",
    f"- training: {t['train_samples_per_s']} samples/s, {t['wall_seconds'] / 60:.1f} min wall, {t['epochs_run']} epochs "
    f"(best {t['best_epoch']})",
    f"- inference on one core: {i['batch_1']['median']} ms/line at batch 1 (median), "
    f"{i['batch_16']['mean']} ms/line at batch 16 (mean)",
    "", "Commands:", "", "```", *results["commands"], "```", "",
]
(work / "results.md").write_text("\n".join(md))
print(json.dumps(results, indent=2, ensure_ascii=False))
EOF
