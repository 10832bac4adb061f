#!/usr/bin/env bash
# Trials per hour when packing 1, 2, 4 and 8 trials onto one GPU.
#
# Runs the same TRIALS trials (GA + IGNITE on TF-Bind-8, seeds 0..TRIALS-1, a HIDDEN-wide model
# trained EPOCHS epochs) as one local sweep per packing, with --gpus-per-trial 1, 1/2, 1/4, 1/8,
# and prints, per packing, the wall clock of the sweep, trials per hour between the first trial's
# start and the last trial's end (from MLflow; Ray's start-up excluded), how many trials ran on
# CUDA, and the GPU's peak memory and mean utilisation (nvidia-smi, sampled every second).
#
#   IGNITE_MBO_DATA_DIR=/data benchmarks/gpu_packing.sh [OUT_DIR]
#   TRIALS=16 EPOCHS=20 PACKINGS="1 4 8" benchmarks/gpu_packing.sh /tmp/packing
#
# Needs a CUDA build of torch, a visible GPU and TRIALS >= the largest packing. With the defaults
# it takes a few minutes on one H100. Every sweep stops its own Ray instance when it ends.
set -euo pipefail

TRIALS=${TRIALS:-8}
EPOCHS=${EPOCHS:-10}
HIDDEN=${HIDDEN:-2048}
TASK=${TASK:-TFBind8-Exact-v0}
PACKINGS=${PACKINGS:-"1 2 4 8"}
CPUS_PER_TRIAL=${CPUS_PER_TRIAL:-1}
OUT=${1:-$(mktemp -d /tmp/gpu_packing.XXXXXX)}
PYTHON=${PYTHON:-python3}
IGNITE=${IGNITE:-ignite-mbo}
GPU=${GPU:-0}                   # the one GPU the sweeps see
export CUDA_VISIBLE_DEVICES=$GPU

command -v nvidia-smi >/dev/null || { echo "gpu_packing.sh: nvidia-smi not found; run this on a GPU machine" >&2; exit 2; }
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_packing.sh: torch sees no GPU (a CPU build of torch?)" >&2; exit 2; }
mkdir -p "$OUT"

SEEDS=$("$PYTHON" -c "print(list(range($TRIALS)))")
cat > "$OUT/packing.yaml" <<EOF
name: packing
description: the same $TRIALS GA + IGNITE trials at a given number of trials per GPU
trial:
  task: $TASK
  baseline: grad-ascent
  regularizer: ignite
  fidelity: full
  baseline_options: {hidden_size: $HIDDEN, epochs: $EPOCHS}
grid:
  seed: $SEEDS
failure: {max_retries: 0}
resources: {cpu: $CPUS_PER_TRIAL, gpu: 1}
EOF

summary() {  # trials/hour from the MLflow runs: first start to last end; trials on CUDA
    "$PYTHON" - "$1" "$2" <<'EOF'
import sys
from mlflow.tracking import MlflowClient
uri, experiment = sys.argv[1], sys.argv[2]
client = MlflowClient(uri)
runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], "tags.`ignite_mbo.kind` = 'trial'")
done = [r for r in runs if r.info.status == "FINISHED"]
span = (max(r.info.end_time for r in done) - min(r.info.start_time for r in done)) / 1000 if done else float("nan")
cuda = sum(r.data.tags.get("ignite_mbo.device", "").startswith("cuda") for r in done)
print(f"{len(done)} {span:.1f} {3600 * len(done) / span:.1f} {cuda}")
EOF
}

printf "%-15s %8s %8s %12s %10s %14s %12s\n" "trials/GPU" "trials" "wall_s" "trials/hour" "on_cuda" "peak_mem_MiB" "mean_util_%"
for k in $PACKINGS; do
    fraction=$("$PYTHON" -c "print(1 / $k)")
    name="packing_x$k"
    nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits -i "$GPU" -lms 1000 \
        > "$OUT/$name.gpu.csv" 2>/dev/null &
    sampler=$!
    start=$(date +%s.%N)
    "$IGNITE" sweep "$OUT/packing.yaml" --override "name=$name" --gpus-per-trial "$fraction" \
        --num-cpus "$(( k * CPUS_PER_TRIAL > $(nproc) ? $(nproc) : k * CPUS_PER_TRIAL ))" \
        --tracking-uri "sqlite:///$OUT/$name.db" --output-dir "$OUT/results" \
        > "$OUT/$name.log" 2>&1 || echo "packing $k: sweep failed, see $OUT/$name.log" >&2
    end=$(date +%s.%N)
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    stats=$(summary "sqlite:///$OUT/$name.db" "$name" 2>/dev/null || echo "0 nan nan 0")
    read -r done span per_hour cuda <<< "$stats"
    gpu_stats=$(awk -F', *' '{ if ($1 > p) p = $1; u += $2; n++ } END { printf "%d %.0f\n", p, (n ? u / n : 0) }' "$OUT/$name.gpu.csv")
    read -r peak util <<< "$gpu_stats"
    wall=$("$PYTHON" -c "print(f'{$end - $start:.0f}')")
    printf "%-15s %8s %8s %12s %10s %14s %12s\n" "$k" "$done" "$wall" "$per_hour" "$cuda/$done" "$peak" "$util"
done
echo "(trials/hour: first trial start to last trial end, from MLflow; logs and stores in $OUT)"
