#!/usr/bin/env bash
# GPU acceptance run on one GPU, offline: build vaenas._C with CUDA, run the CUDA and Triton tests
# compiled (never interpreted), benchmark the GPU backends against the reference, print a table.
# Needs torch (CUDA build), triton, nvcc, ninja, pytest, pytest-benchmark already installed.
# Logs go to $OUT when set (else a temporary folder). Each step has a time limit so that the
# whole script ends within 8 minutes; the exit status is non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG_DIR="${OUT:-$(mktemp -d)}"
mkdir -p "$LOG_DIR"
PYTHON="${PYTHON:-python3}"
unset TRITON_INTERPRET  # compiled Triton only; tests/conftest.py sets it only without a GPU
export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}"
failed=()

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $LOG_DIR/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout "$limit" "$@" > "$LOG_DIR/$name.log" 2>&1
    local status=$?
    echo "    exit $status after $((SECONDS - start))s, log $LOG_DIR/$name.log"
    if [ "$status" -ne 0 ]; then
        failed+=("$name")
        tail -n 40 "$LOG_DIR/$name.log"
    fi
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$PYTHON" -c 'import sys, torch, triton; print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), triton {triton.__version__}, GPU {torch.cuda.get_device_name()}")'
    nvcc --version | tail -n 1
} 2>&1 | tee "$LOG_DIR/versions.log"

# The editable install builds vaenas._C in place and maps kernels/ to vaenas.kernels. Offline with
# an older setuptools it can fail (pyproject's license string needs setuptools >= 77): then build
# in place and link kernels/ where the package expects it (this copy of the repo only).
echo "=== build (limit 200s): pip install --no-build-isolation --no-deps --no-index -e ."
if ! timeout 200 "$PYTHON" -m pip install --no-build-isolation --no-deps --no-index -e . > "$LOG_DIR/build.log" 2>&1; then
    tail -n 20 "$LOG_DIR/build.log"
    echo "    pip install -e failed (log $LOG_DIR/build.log): building in place instead"
    step build_inplace 200 "$PYTHON" setup.py build_ext --inplace
fi
"$PYTHON" -c 'import vaenas.kernels' 2>/dev/null || ln -s ../kernels vaenas/kernels
"$PYTHON" -c 'import json, vaenas; print(json.dumps(vaenas.build_info()))' 2>&1 | tee "$LOG_DIR/build_info.log"

# One step per test file, so that a crash in one cannot hide the results of the others.
step tests_cuda 90 "$PYTHON" -m pytest tests/ops/test_vae_decode.py -m cuda -q -rs -v --junitxml="$LOG_DIR/tests_cuda.xml"
tail -n 3 "$LOG_DIR/tests_cuda.log"
step tests_triton 120 "$PYTHON" -m pytest tests -m triton -q -rs --junitxml="$LOG_DIR/tests_triton.xml"
tail -n 3 "$LOG_DIR/tests_triton.log"

# -v: the log names every finished case even if the step runs out of time. Triton's first call
# per shape autotunes, so it gets its own step and time.
step bench_cuda 100 "$PYTHON" -m pytest bench/bench_vae_decode.py -m cuda -k "not triton" -q -v --benchmark-json="$LOG_DIR/bench_cuda.json"
sed -n '/vae_decode: architectures/,/^$/p' "$LOG_DIR/bench_cuda.log"
step bench_triton 120 "$PYTHON" -m pytest bench/bench_vae_decode.py -m cuda -k "triton or reference" -q -v --benchmark-json="$LOG_DIR/bench_triton.json"
sed -n '/vae_decode: architectures/,/^$/p' "$LOG_DIR/bench_triton.log"
# Gradient search: one architecture step of the NASNet supernet, mode two vs DARTS-style vs naive two-path (issue 7)
step bench_gated 120 "$PYTHON" bench/bench_gated.py --device cuda --steps 5
tail -n 6 "$LOG_DIR/bench_gated.log"

# Segmented batch norm + ReLU fused (issue 19 item 2): Triton on the GPU against the composite and aten,
# forward + backward, GB/s (the Triton tests above ran compiled: tests -m triton)
step bench_batch_norm 90 "$PYTHON" -m pytest bench/bench_batch_norm.py -m cuda -q -v --benchmark-json="$LOG_DIR/bench_batch_norm.json"
tail -n 12 "$LOG_DIR/bench_batch_norm.log"

# One-shot (issue 6): (a) NB201 evaluation G=16 vs G=1, (b) VAENAS loop vs SPOS training img/s,
# (c) ShuffleNet 224 px training img/s at batch 256 in bf16; then a 200-step one-shot smoke run of
# the whole CLI on the GPU (full NB201 supernet, 32 px digits, bf16, channels-last).
step bench_supernet 150 "$PYTHON" -m pytest bench/bench_supernet.py bench/bench_oneshot.py -m cuda -q -v --benchmark-json="$LOG_DIR/bench_supernet.json"
sed -n '/supernet: throughput/,/^$/p' "$LOG_DIR/bench_supernet.log"
step oneshot_smoke 90 "$PYTHON" -m vaenas.search method=oneshot progress=false train.device=cuda train.steps=200 \
    supernet.nasbench201.channels=16 supernet.nasbench201.cells_per_stage=5 data.image_size=32 \
    vaenas.refit_every=100 search.generations=1 --out "$LOG_DIR/oneshot_smoke"
tail -n 12 "$LOG_DIR/oneshot_smoke.log"

# Retraining (issue 20): DARTS V2 (C=36, 20 cells, batch 96, 32 px) training images/s of vaenas.train's loop
# (bf16, channels-last, compiled: the compilation is in the warm-up steps) against a DARTS-style fp32 eager
# loop with an .item() per step; then the CLI on the GPU: 2 digits epochs of a NASNet child with auxiliary
# head and drop path, stopped mid-run and resumed (CUDA random streams in the checkpoint).
step bench_train 240 "$PYTHON" -m pytest bench/ -m cuda -k retraining -q -v --benchmark-json="$LOG_DIR/bench_train.json"
sed -n '/supernet: throughput/,/^$/p' "$LOG_DIR/bench_train.log"
echo '{"space": "nasnet", "tokens": [4, 3, 5, 0, 3, 0, 7, 1, 0, 0, 4, 4, 0, 2, 2, 2, 0, 3, 1, 0, 0, 3, 2, 0, 0, 3, 0, 4]}' \
    > "$LOG_DIR/retrain_arch.json"
RETRAIN=(arch="$LOG_DIR/retrain_arch.json" recipe=digits progress=false train.device=cuda train.epochs=2
         data.image_size=32 train.auxiliary_weight=0.4 train.drop_path=0.2 train.ema_decay=0.99)
step retrain_smoke 90 "$PYTHON" -m vaenas.train "${RETRAIN[@]}" run.stop_at=30 --out "$LOG_DIR/retrain_smoke"
step retrain_resume 90 "$PYTHON" -m vaenas.train --resume "$LOG_DIR/retrain_smoke"
tail -n 8 "$LOG_DIR/retrain_resume.log"

if [ ${#failed[@]} -ne 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "gpu_check passed in ${SECONDS}s"
