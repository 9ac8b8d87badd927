#!/usr/bin/env bash
# The paper profile's own path on one GPU, as one prepared call of the device tool (issue 12): the CLI,
# the embedded corpus with GPT-2's tokenizer (shipped with the package: the device machine needs neither
# the hub nor `datasets`), the paper's batch (32 x 8), schedule (warm-up 100, cosine, lr 5e-4) and
# precision (fp16 pretraining, bf16 finetuning), a fixed budget of pretraining steps, then a short
# finetuning on embedded story questions. Logs, metrics.jsonl and the figures drawn from them go to one
# archive, $OUT/paper_gpu.tgz (the device tool brings back at most 8 files).
#   bash benchmarks/paper_gpu_run.sh            # PRETRAIN_STEPS=600 FINETUNE_STEPS=200 by default
# DEVICE, PYTHON and SETS (extra key=value settings for both runs) make the same path a CPU dry run in
# seconds, which tests/test_benchmarks.py runs, e.g.
#   DEVICE=cpu PRETRAIN_STEPS=2 FINETUNE_STEPS=2 SETS="model.n_layer=1 data.train_stories=100" bash benchmarks/paper_gpu_run.sh
set -euo pipefail
OUT=${OUT:-build}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
RUNS=${RUNS:-/tmp/paper-gpu-runs}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-600}
FINETUNE_STEPS=${FINETUNE_STEPS:-200}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
common=(--profile paper --set device="$DEVICE" --set data.stories=embedded --set data.instructions=embedded
        --set data.train_stories=200000 --set data.val_stories_count=2000 --set data.instruction_limit=50000)
for pair in ${SETS:-}; do common+=(--set "$pair"); done
start=$(date +%s)
"$PYTHON" -m helpers pretrain "${common[@]}" --out "$RUNS/pretrain" --quiet \
    --set pretrain.max_steps="$PRETRAIN_STEPS" --set pretrain.log_every=20 --set pretrain.eval_every=100 \
    --set pretrain.save_every=0 --set pretrain.eval_max_batches=20 | tee "$WORK/pretrain.log"
mid=$(date +%s)
"$PYTHON" -m helpers finetune "${common[@]}" --init "$RUNS/pretrain" --out "$RUNS/finetune" --quiet \
    --set finetune.max_steps="$FINETUNE_STEPS" --set finetune.log_every=10 --set finetune.eval_every=50 \
    --set finetune.save_every=0 --set finetune.eval_max_batches=20 | tee "$WORK/finetune.log"
end=$(date +%s)
cp "$RUNS/pretrain/metrics.jsonl" "$WORK/pretrain-metrics.jsonl"
cp "$RUNS/finetune/metrics.jsonl" "$WORK/finetune-metrics.jsonl"
"$PYTHON" - "$RUNS" "$WORK" <<'PY'
import sys
from pathlib import Path
from helpers.plots import metric_figure
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
for stage in ("pretrain", "finetune"):
    for metric in ("train_loss", "eval_loss", "learning_rate", "tokens_per_sec"):
        metric_figure({f"paper profile, {stage}": runs / stage}, metric, title=f"GPU {stage}: {metric}",
                      path=out / f"gpu_{stage}_{metric}.png")
PY
echo "pretraining $((mid - start)) s, finetuning $((end - mid)) s" | tee "$WORK/times.txt"
tar czf "$OUT/paper_gpu.tgz" -C "$WORK" .
