#!/usr/bin/env bash
# The GPU check in one command, for one CUDA GPU, in under 8 minutes:
#   tools/gpu_check.sh [OUT.md]
# runs the GPU pytest suite (tests/test_gpu.py: oracle parity, INT8/FP8 error bounds, compile + CUDA
# graphs without recompiles, start-up figures, live step latency), the start-up bench (cold + warm
# restart) and `bench` for wp15-360p and wp15-720p in bf16 and int8 (compiled), and writes a markdown
# block (default gpu_check.md) to paste into docs/benchmarks.md. Without CUDA it is a dry run: the GPU
# tests must all skip cleanly, the CPU side of every command runs on the tiny preset, and it says so.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check.md}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PY=${PYTHON:-python}

if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  DEVICE=cuda
  GPU=$("$PY" -c "import torch; print(torch.cuda.get_device_name(), torch.cuda.get_device_capability())")
  echo "gpu_check: $GPU"
else
  DEVICE=cpu
  echo "gpu_check: DRY RUN: no CUDA device here, the CUDA parts are skipped (GPU tests must skip cleanly)"
fi

# 1. The GPU suite (skips everything, with the reason, without CUDA: then nothing may fail or pass).
set +e
timeout 150 "$PY" -m pytest -q -rs -s -m "gpu and not slow" tests/test_gpu.py -p no:cacheprovider >"$TMP/pytest.txt" 2>&1
rc=$?
set -e
tail -n 25 "$TMP/pytest.txt"
if [ "$rc" -ne 0 ]; then
  echo "gpu_check: the GPU suite failed (exit $rc)"; exit "$rc"
fi
if [ "$DEVICE" = cpu ] && grep -qE "[0-9]+ passed" "$TMP/pytest.txt"; then
  echo "gpu_check: a GPU test ran without CUDA: it must skip"; exit 1
fi

# 2. Benchmarks: the real layouts on CUDA, the tiny preset's CPU plumbing in the dry run.
if [ "$DEVICE" = cuda ]; then
  PRESETS="wp15-360p wp15-720p"; FRAMES="--frames 20 --warmup 3"; STARTUP=wp15-360p
else
  PRESETS="tiny"; FRAMES="--frames 2 --warmup 1"; STARTUP=tiny
fi
{
  echo "### GPU check ($(date -u +%Y-%m-%d), ${GPU:-dry run on CPU: no CUDA device}, torch $("$PY" -c 'import torch; print(torch.__version__)'))"
  echo
  echo '```'
  grep -E "^(live step|startup)" "$TMP/pytest.txt" || true
} >"$OUT"
for preset in $PRESETS; do
  for quant in none int8; do
    compile=on; [ "$DEVICE" = cpu ] && compile=off
    # Budget (worst case, every timeout hit): 150 s suite + 4 x 60 s + 90 s start-up = 8 minutes.
    timeout 60 "$PY" -m worldengine bench --preset "$preset" --device "$DEVICE" --dtype bfloat16 \
      --quant "$quant" --compile "$compile" $FRAMES >"$TMP/bench.txt" 2>&1 \
      || echo "$preset bf16 quant=$quant: failed or over 60 s (exit $?)" >>"$TMP/bench.txt"
    grep -E "^(run|\[bench\] $preset|$preset)" "$TMP/bench.txt" | tee -a "$OUT"
  done
done
startup_compile=on; [ "$DEVICE" = cpu ] && startup_compile=off
timeout 90 "$PY" -m worldengine bench --preset "$STARTUP" --device "$DEVICE" --dtype bfloat16 --quant int8 \
  --compile "$startup_compile" --frames 3 --cold >"$TMP/startup.txt" 2>&1 \
  || echo "start-up $STARTUP: failed or over 90 s (exit $?)" >>"$TMP/startup.txt"
grep -E "^(cold|warm|start-up)" "$TMP/startup.txt" | tee -a "$OUT"
echo '```' >>"$OUT"
echo "gpu_check: wrote $OUT"
[ "$DEVICE" = cpu ] && echo "gpu_check: dry run passed (CUDA parts skipped: no CUDA device)"
exit 0
