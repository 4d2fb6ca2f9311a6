#!/bin/bash
# The one prepared GPU check of issue 8 (bench/gpu_scale.py): the 1B shape, then the 7B shape, on one H100/H200.
#
#   bash bench/run_gpu_check.sh                 # results in $OUT (the device tool's folder) or ./bench_out
#
# Sized for a 15-minute machine lease (start included): each shape gets a hard time limit (1B: 4 min, 7B: 6 min),
# and a shape that fails or runs out of time does not stop the next. Installs nothing: it needs python3 with CUDA
# torch, transformers and peft (present on the lent machines' image) and imports langadapt from this checkout.
# Writes at most 8 files (the device tool returns no more): env.txt, log_1b.txt, log_7b.txt, and
# gpu_scale_{1b,7b}.{json,md}. Copy the tables into bench/RESULTS.md with the card's name.
set -uo pipefail

OUT=${OUT:-bench_out}
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-10}                 # measured optimizer steps per configuration
WARMUP_STEPS=${WARMUP_STEPS:-3}    # steps before timing (CUDA init, cuBLAS heuristics, allocator warm-up)
LIMIT_1B=${LIMIT_1B:-240}          # seconds
LIMIT_7B=${LIMIT_7B:-360}          # seconds
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Fewer allocator splits: the 7B seed run holds 27 GB of fp32 weights next to fp16 activations.
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}

{
  echo "== $(date -u +%FT%TZ) bench/run_gpu_check.sh, git $(git rev-parse --short HEAD 2>/dev/null || echo none)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
  "$PYTHON" -c 'import sys, torch, transformers, peft, accelerate; print("python", sys.version.split()[0], "torch",
torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "peft", peft.__version__,
"accelerate", accelerate.__version__)' 2>&1
} | tee "$OUT/env.txt"

status=0
for shape in 1b 7b; do
  limit=$LIMIT_1B; [ "$shape" = 7b ] && limit=$LIMIT_7B
  echo "== shape $shape (limit ${limit}s)"
  timeout "$limit" "$PYTHON" bench/gpu_scale.py --shape "$shape" --output_dir "$OUT" \
    --steps "$STEPS" --warmup_steps "$WARMUP_STEPS" 2>&1 | tee "$OUT/log_$shape.txt"
  rc=${PIPESTATUS[0]}
  [ "$rc" -ne 0 ] && { echo "== shape $shape failed with status $rc" | tee -a "$OUT/log_$shape.txt"; status=$rc; }
done
exit $status
