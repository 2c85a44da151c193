#!/usr/bin/env bash
# The main job end to end on the project's own synthetic data:
# synth → ingest → split → build-lmdb → verify → stats → short train → evaluate.
set -euo pipefail
work="${1:-demo-out}"
export PATH="$PWD/.venv/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Each stage writes a fresh run: clear what an earlier demo left (only the stage folders).
rm -rf "$work"/{synth,records,store,report,run,eval}
# The pipeline file resolves its own relative paths; --work is taken as typed (relative to the current folder).
vhrdata run "$(dirname "$0")/../pipelines/synthetic.yaml" --work "$work"
echo
echo "demo finished; outputs in $work/:"
echo "  records/   records.parquet, quarantine.jsonl, ingest.json, split.json"
echo "  store/     sharded LMDB store (vhrdata verify $work/store)"
echo "  report/    report.html, report.md, report.json"
echo "  run/       model.keras, history.csv"
echo "  eval/      metrics.json and the worst lines"
