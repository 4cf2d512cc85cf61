#!/usr/bin/env bash
# One-command GPU check of the plugin on one H100/H200 (budget: under 8 minutes, bf16).
#
#   bash benchmarks/gpu_check.sh            on a machine with one CUDA GPU and ./.venv set up
#   bash benchmarks/gpu_check.sh --dry-run  the same pipeline on CPU with the tiny model (plumbing check)
#
# Measures, side by side in one run (benchmarks/bench_plugin_overhead.py, alternating launches):
#   1. gpt-180m, bf16, seq 2048, micro-batch 8, global batch 64, 30 steps: step time, MFU, peak memory,
#      plugin overhead (ramp + noise scale + HDF5 on vs off)
#   2. gpt-1.4b ("1B" class), bf16, seq 2048, micro-batch 2, global batch 16, 20 steps: the same
#   3. tests/gpu: fixed-seed bf16 losses bit-identical twice
# Results: one line per model on stdout and JSON lines in $OUT/gpu_check.jsonl (OUT defaults to
# ./gpu_check_out); record them in docs/benchmarks.md with the machine name.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-gpu_check_out}
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; elif [ -n "${1:-}" ]; then
  echo "gpu_check: unknown argument $1 (valid: --dry-run)" >&2; exit 2
fi
mkdir -p "$OUT"
RESULTS="$OUT/gpu_check.jsonl"
: > "$RESULTS"
START=$(date +%s)

if [ "$DRY" = 0 ]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_check: no CUDA GPU visible (use --dry-run on CPU)" >&2; exit 2; }
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  PREC=bf16; STEPS_S=30; STEPS_L=20
  SMALL=(--set "model.name='gpt-180m'" --set parallel.micro_batch=8 --set train.global_batch=64)
  LARGE=(--set "model.name='gpt-1.4b'" --set parallel.micro_batch=2 --set train.global_batch=16)
  RAMP_S="0:64"; RAMP_L="0:16"; LABEL_S=gpt-180m; LABEL_L=gpt-1.4b
else
  PREC=fp32; STEPS_S=8; STEPS_L=8
  SMALL=(--set "model.name='tiny'")
  LARGE=(--set "model.name='tiny'" --set parallel.micro_batch=1)
  RAMP_S="0:8"; RAMP_L="0:8"; LABEL_S=dry-run-tiny; LABEL_L=dry-run-tiny-mb1
fi
"$PY" - <<'PYEOF'
import torch, megatron.core as m
from batchlaw.plugin import _mcore
dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
print(f"gpu_check: {dev} | torch {torch.__version__} | megatron-core {m.__version__}"
      f" | transformer-engine {_mcore.have_te()} | apex {_mcore.have_apex()}", flush=True)
PYEOF
COMMON=(--nproc 1 --repeats 1 --json "$RESULTS" --set "train.precision=$PREC" --set train.lr=3e-4
        --set train.warmup_samples=0 --set data.kind=synthetic)
timeout 240 "$PY" benchmarks/bench_plugin_overhead.py --label "$LABEL_S" --steps "$STEPS_S" --ramp-on "$RAMP_S" \
  "${COMMON[@]}" "${SMALL[@]}"
timeout 240 "$PY" benchmarks/bench_plugin_overhead.py --label "$LABEL_L" --steps "$STEPS_L" --ramp-on "$RAMP_L" \
  "${COMMON[@]}" "${LARGE[@]}"
if [ "$DRY" = 0 ]; then
  timeout 150 "$PY" -m pytest -q tests/gpu
fi
echo "gpu_check: done in $(( $(date +%s) - START )) s; results in $RESULTS"
