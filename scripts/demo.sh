#!/usr/bin/env bash
# The main job end to end on the project's own synthetic data:
# synth → ingest → split → build-lmdb → verify → stats → short train → evaluate → predict one line.
set -euo pipefail
work="${1:-demo-out}"
export PATH="$PWD/.venv/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Each stage writes a fresh run: clear what an earlier demo left (only the stage folders).
rm -rf "$work"/{synth,records,store,report,run,eval}
# The pipeline file resolves its own relative paths; --work is taken as typed (relative to the current folder).
vhrdata run "$(dirname "$0")/../pipelines/synthetic.yaml" --work "$work"
# Read one test line with the fine-tuned model, as a user would read their own image.
line="$(python -c 'import sys; from vhrdata.records import read_records as r; d = r(sys.argv[1]); t = d[d.split == "test"].sort_values("id").iloc[0]; print(t.path); print(t.text)' "$work/records")"
image="$(sed -n 1p <<<"$line")"
echo
echo "vhrmodel predict --model $work/run/model.keras $image"
echo "  truth: $(sed -n 2p <<<"$line")"
echo "  read:  $(vhrmodel predict --model "$work/run/model.keras" "$image")"
echo
echo "demo finished; outputs in $work/:"
echo "  records/   records.parquet, quarantine.jsonl, ingest.json, split.json"
echo "  store/     sharded LMDB store (vhrdata verify $work/store)"
echo "  report/    report.html, report.md, report.json"
echo "  run/       model.keras, history.csv, history.png"
echo "  eval/      metrics.json and the worst lines"
