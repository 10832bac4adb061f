#!/usr/bin/env bash
# Trials per hour when packing 1, 2, 4 and 8 trials onto one GPU (what a sweep's `resources.gpu`
# share of 1, 1/2, 1/4, 1/8 does), measured with benchmarks/trials.py: k worker processes share
# the visible GPU, each running whole trials (GA + IGNITE on TF-Bind-8 at the published 2x2048
# architecture, EPOCHS epochs instead of 100 so that the benchmark stays short), 2k trials per
# packing so every worker runs two. Prints trials/hour per packing and the speed-up over one.
#
#   IGNITE_MBO_DATA_DIR=/data benchmarks/gpu_packing.sh [OUT_DIR]
#   EPOCHS=10 PACKINGS="1 4 8" benchmarks/gpu_packing.sh /tmp/packing
#
# Needs a visible GPU (torch.cuda.is_available()); no Ray or MLflow. A few minutes on one H100.
set -uo pipefail
cd "$(dirname "$0")/.."

EPOCHS=${EPOCHS:-5}
PACKINGS=${PACKINGS:-"1 2 4 8"}
REGULARIZER=${REGULARIZER:-ignite}
OUT=${1:-$(mktemp -d /tmp/gpu_packing.XXXXXX)}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_packing.sh: torch sees no GPU" >&2; exit 2; }

printf "%-12s %8s %8s %12s %10s\n" "trials/GPU" "trials" "wall_s" "trials/hour" "speed-up"
base=""
for k in $PACKINGS; do
    start=$(date +%s.%N)
    "$PYTHON" benchmarks/trials.py "$OUT/packing_x$k.jsonl" --baselines grad-ascent --regularizers "$REGULARIZER" \
        --seeds "0-$(( 2 * k - 1 ))" --workers "$k" --set "epochs=$EPOCHS" > "$OUT/packing_x$k.log" 2>&1
    end=$(date +%s.%N)
    done_trials=$(grep -c . "$OUT/packing_x$k.jsonl" 2>/dev/null || echo 0)
    line=$("$PYTHON" -c "
wall = $end - $start; rate = 3600 * $done_trials / wall
base = float('${base:-0}' or 0) or rate
print(f'{wall:.0f} {rate:.0f} {rate / base:.2f}')")
    read -r wall rate speedup <<< "$line"
    [ -z "$base" ] && base=$rate
    printf "%-12s %8s %8s %12s %10s\n" "$k" "$done_trials" "$wall" "$rate" "$speedup"
done
echo "(GA + $REGULARIZER, 2x2048, $EPOCHS epochs per trial, process start-up included; logs in $OUT)"
