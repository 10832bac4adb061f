#!/usr/bin/env bash
# Every GPU check of the project in one run (BUDGET seconds, 9 minutes by default, on one H100/H200); on a machine
# without a GPU the same checks run on the CPU with smaller counts.
#
#   IGNITE_MBO_DATA_DIR=/data benchmarks/device_check.sh [OUT_DIR]
#
# Sections, each bounded in time so that one failure leaves the others standing:
#   1. the equality tests of the fast paths (stacked ensemble, shared forward, CUDA-graph step);
#   2. per-step ms of none / IGNITE / IGNITE-2 at 2x2048 (eager and, on CUDA, graph-captured);
#   3. ensemble training stacked vs member by member;
#   4. one full-fidelity GA trial on TF-Bind-8, plain and with IGNITE (wall time);
#   5. packing throughput at 1, 2, 4, 8 trials per GPU (benchmarks/gpu_packing.sh);
#   6. the product's path: the same 8 trials as section 5's 4-per-GPU packing, as a Ray Tune sweep with
#      `gpu: 0.25` per trial into MLflow (ignite-mbo sweep), trials/hour beside the raw packing's;
#   7. one full-fidelity trial of every baseline (seed 100), all at once: each baseline's trial time;
#   8. full-fidelity unregularized trials of the baselines over seeds 0-7 (as many as fit; ICT and RoMA, the
#      baselines without a GPU measurement, first), summarised.
# Needs TF-Bind-8 under $IGNITE_MBO_DATA_DIR; only section 6 starts Ray and MLflow (a local Ray and a
# sqlite store in OUT_DIR). Results also go to OUT_DIR.
# SECTIONS="4 8" runs only those; SWEEP="ens-mean mins" and WORKERS=N choose section 8's baselines and
# concurrency (the defaults put the baselines without a full-fidelity measurement yet first).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-$(mktemp -d /tmp/device_check.XXXXXX)}}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
started=$(date +%s)
section() { echo; echo "== $1 ($(( $(date +%s) - started )) s)"; }

if "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    cuda=1; STEPS=200; ENSEMBLE_EPOCHS=3; GA_LIMIT=150; PACKINGS="1 2 4 8"; PACK_EPOCHS=5; PACK_LIMIT=120
    SWEEP_LIMIT=${SWEEP_LIMIT:-150}; EVERY_LIMIT=${EVERY_LIMIT:-240}
    WORKERS=${WORKERS:-8}; SWEEP=${SWEEP:-"ict roma ens-mean mins ens-min grad-ascent coms cbas reinforce cma-es bo-qei"}
    FIDELITY=full
else
    cuda=0; STEPS=10; ENSEMBLE_EPOCHS=1; GA_LIMIT=120; PACKINGS=""; PACK_EPOCHS=1; PACK_LIMIT=0
    SWEEP_LIMIT=0; EVERY_LIMIT=${EVERY_LIMIT:-120}
    WORKERS=${WORKERS:-2}; SWEEP=${SWEEP:-"cma-es grad-ascent"}; FIDELITY=quick
fi
SECTIONS=" ${SECTIONS:-1 2 3 4 5 6 7 8} "
ALL_BASELINES="grad-ascent ens-mean ens-min reinforce cbas bo-qei cma-es mins coms roma ict"
wanted() { [[ "$SECTIONS" == *" $1 "* ]]; }
BUDGET=${BUDGET:-540}       # seconds for the whole script; section 6 gets what the others leave
TAIL=${TAIL:-170}           # section 6 starts no trial later than this many seconds before the budget ends

section "environment"
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu', 'threads', torch.get_num_threads())"

graphs=$cuda
if wanted 1; then
    section "1. equality of the fast paths (tests/test_training.py, tests/test_regularizers.py)"
    graphs=0
    if timeout 90 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_training.py tests/test_regularizers.py \
            > "$OUT/equality.log" 2>&1; then
        graphs=$cuda
    fi
    tail -3 "$OUT/equality.log"
fi
export IGNITE_MBO_CUDA_GRAPHS=$graphs
echo "CUDA graphs in the trials below: $graphs"

if wanted 2; then
    section "2. per-step time at 2x2048, batch 128"
    timeout 60 "$PYTHON" benchmarks/regularizer_overhead.py --batches "$STEPS" --repeats 3 2>&1 | tee "$OUT/steps.log"
fi

if wanted 3; then
    section "3. ensemble training, stacked vs member by member (5 x 1x256, IGNITE)"
    timeout 60 "$PYTHON" benchmarks/ensemble_vectorised.py --epochs "$ENSEMBLE_EPOCHS" 2>&1 | tee "$OUT/ensemble.log"
fi

if wanted 4; then
    section "4. one full-fidelity GA trial on TF-Bind-8, plain then IGNITE"
    for regularizer in none ignite; do
        timeout "$GA_LIMIT" "$PYTHON" benchmarks/trials.py "$OUT/ga_timing.jsonl" --baselines grad-ascent \
            --regularizers "$regularizer" --seeds 100 --fidelity "$FIDELITY" --workers 1 --threads 1 2>&1 | grep -v "^$"
    done
fi

if [ -n "$PACKINGS" ] && wanted 5; then
    section "5. packing: trials per hour at 1, 2, 4, 8 trials per GPU"
    EPOCHS=$PACK_EPOCHS PACKINGS="$PACKINGS" timeout "$PACK_LIMIT" benchmarks/gpu_packing.sh "$OUT/packing" 2>&1 | tee "$OUT/packing.log"
fi

if [ "$SWEEP_LIMIT" -gt 0 ] && wanted 6; then
    section "6. Ray Tune sweep, gpu: 0.25 per trial, into MLflow (section 5's 4-per-GPU trials)"
    cat > "$OUT/ray_packing.yaml" <<EOF
name: ray_packing
trial: {task: TFBind8-Exact-v0, baseline: grad-ascent, regularizer: ignite, fidelity: full,
        baseline_options: {epochs: $PACK_EPOCHS}}
grid: {seed: [0, 1, 2, 3, 4, 5, 6, 7]}
resources: {cpu: 1, gpu: 0.25}
EOF
    sweep_start=$(date +%s.%N)
    timeout "$SWEEP_LIMIT" "$PYTHON" -m ignite_mbo.cli sweep "$OUT/ray_packing.yaml" --output-dir "$OUT/sweeps" \
        --tracking-uri "sqlite:///$OUT/mlflow.db" --quiet > "$OUT/ray_packing.log" 2>&1
    sweep_rc=$?
    sweep_end=$(date +%s.%N)
    tail -4 "$OUT/ray_packing.log"
    raw=$(awk '$1 == "4" {print $4}' "$OUT/packing.log" 2>/dev/null)
    "$PYTHON" - "$OUT/sweeps/ray_packing/results.parquet" "$sweep_start" "$sweep_end" "$sweep_rc" "${raw:-}" <<'EOF'
import sys
import pandas as pd
path, start, end, rc, raw = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
try:
    done = int((pd.read_parquet(path)["status"] == "TERMINATED").sum())
except OSError:
    done = 0
wall = end - start
print(f"Ray Tune sweep, 4 trials per GPU: {done}/8 trials finished in {wall:.0f} s (exit {rc}; Ray and MLflow "
      f"start-up included) = {3600 * done / wall:.0f} trials/hour; raw packing x4 (section 5): "
      f"{raw or 'not measured'} trials/hour")
EOF
fi

if wanted 7; then
    section "7. one $FIDELITY-fidelity trial of every baseline (seed 100, all at once): trial times"
    # shellcheck disable=SC2086
    timeout "$EVERY_LIMIT" "$PYTHON" benchmarks/trials.py "$OUT/every_baseline.jsonl" --baselines $ALL_BASELINES \
        --seeds 100 --fidelity "$FIDELITY" --workers 11 --threads 1 > "$OUT/every_baseline.log" 2>&1
    "$PYTHON" - "$OUT/every_baseline.jsonl" <<'EOF'
import json
import os
import sys
rows = [json.loads(line) for line in open(sys.argv[1])] if os.path.exists(sys.argv[1]) else []
for row in sorted(rows, key=lambda row: row["wall_time_s"]):
    print(f"{row['baseline']:<12} {row['wall_time_s']:8.1f} s  (eleven trials sharing the machine)")
print(f"{len(rows)} of 11 baselines finished within the section's limit")
EOF
fi

if wanted 8; then
    left=$(( BUDGET - ($(date +%s) - started) - 15 ))
    start_for=$(( left - TAIL > 10 ? left - TAIL : 10 ))
    section "8. $FIDELITY-fidelity trials, seeds 0-7, regularizer none ($WORKERS at a time; new trials start for ${start_for} s, all end within ${left} s)"
    # shellcheck disable=SC2086
    timeout "$(( left > 30 ? left : 30 ))" "$PYTHON" benchmarks/trials.py "$OUT/trials.jsonl" --baselines $SWEEP --seeds 0-7 \
        --fidelity "$FIDELITY" --workers "$WORKERS" --threads 1 --order baseline --deadline "$start_for" \
        > "$OUT/trials.log" 2>&1
    tail -2 "$OUT/trials.log"
fi

section "summary"
"$PYTHON" benchmarks/summarize_trials.py "$OUT/ga_timing.jsonl" "$OUT/every_baseline.jsonl" "$OUT/trials.jsonl" 2>/dev/null | tee "$OUT/summary.txt"
echo "done in $(( $(date +%s) - started )) s; files in $OUT"
