#!/usr/bin/env bash
# The one script to run on a machine with an NVIDIA GPU (H100 / H200): it builds, checks the
# CUDA kernels (NVRTC + ptxas, scripts/cuda-check.sh), runs the CUDA and wgpu conformance
# tests and the byte-identical-proof tests with EPA_REQUIRE_CUDA=1 / EPA_REQUIRE_WGPU=1 (a
# missing device fails instead of skipping), then the CUDA kernel and ML-KEM timings and
# `epa bench --suite kernels` / `--suite kem` in release.
# Everything it prints is also written under $OUT (when set) or target/gpu-suite/:
# nvidia-smi.txt, one log per step, cuda-kernels.json, wgpu-kernels.json, bench-kernels.json, and summary.txt
# (printed last).
#
#   bash scripts/gpu-suite.sh            # everything
#   EPA_GPU_SUITE_SKIP_BENCH=1 bash scripts/gpu-suite.sh   # tests only
set -uo pipefail
cd "$(dirname "$0")/.."

dir="${OUT:-target/gpu-suite}"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
summary="$dir/summary.txt"
: >"$summary"
failed=0

note() { printf '%s\n' "$*" | tee -a "$summary"; }
step() {
  local name=$1; shift
  local log="$dir/$name.log" t0 rc
  printf '\n==> %s: %s\n' "$name" "$*"
  t0=$(date +%s)
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" = 0 ]; then
    note "ok     $name ($(( $(date +%s) - t0 )) s)"
  else
    note "FAILED $name (exit $rc, $(( $(date +%s) - t0 )) s; log $log)"; failed=1
  fi
  return 0
}

# 1. The GPU and its driver, as the figures must name them.
if command -v nvidia-smi >/dev/null; then
  nvidia-smi | tee "$dir/nvidia-smi.txt"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm \
    --format=csv | tee "$dir/gpu.csv"
  note "gpu    $(nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader | head -n1)"
else
  note "gpu    nvidia-smi not found: no NVIDIA driver on this machine"
fi

# 2. NVRTC for the backend at run time (a CUDA toolkit or the pip wheel), and the kernel check.
nvrtc_dir=$(bash scripts/cuda-check.sh --print-nvrtc-dir 2>/dev/null | tail -n1)
if [ -n "$nvrtc_dir" ]; then
  export LD_LIBRARY_PATH="$nvrtc_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  note "nvrtc  $nvrtc_dir"
else
  note "nvrtc  not found: the CUDA backend cannot compile its kernels (tests will fail)"
fi
step cuda-check bash scripts/cuda-check.sh

# Vulkan for wgpu on the NVIDIA driver: the loader (libvulkan1) must be installed, and a
# container that mounts the driver under /usr/local/nvidia keeps its ICD manifest there.
if ! ldconfig -p 2>/dev/null | grep libvulkan.so.1 >/dev/null; then
  note "vulkan no Vulkan loader (libvulkan.so.1): wgpu finds no adapter; install libvulkan1"
fi
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  note "vulkan VK_DRIVER_FILES=$VK_DRIVER_FILES"
fi

# 3. Conformance and byte-identical proofs on the real devices (release: the sizes are real).
export EPA_REQUIRE_CUDA=1 EPA_REQUIRE_WGPU=1
step build cargo build --release --locked --workspace --all-targets
step kernels-tests cargo test --release --locked -p epa-kernels -- --nocapture
# Unit tests that need a device and private items (ML-KEM chunking and budget): #[ignore]d
# elsewhere, run here by name.
step kernels-device-unit-tests cargo test --release --locked -p epa-kernels --lib \
  cuda::mlkem::tests -- --ignored --nocapture
prover_tests=()
for t in prover/tests/accel*.rs; do prover_tests+=(--test "$(basename "$t" .rs)"); done
step prover-accel-tests cargo test --release --locked -p epa-prover "${prover_tests[@]}" -- --nocapture

# 4. Timings: the CUDA and wgpu kernels at the issues' sizes (each checked against the CPU once), then
#    the kernels bench suite (CPU, CUDA, wgpu against stock winterfell and the anchors).
if [ "${EPA_GPU_SUITE_SKIP_BENCH:-0}" != 1 ]; then
  step cuda-bench env EPA_CUDA_BENCH=1 EPA_CUDA_BENCH_JSON="$dir/cuda-kernels.json" \
    cargo test --release --locked -p epa-kernels --test cuda_bench -- --ignored --nocapture
  step wgpu-bench env EPA_WGPU_BENCH=1 EPA_WGPU_BENCH_JSON="$dir/wgpu-kernels.json" \
    cargo test --release --locked -p epa-kernels --test wgpu_bench -- --ignored --nocapture
  # The suites through the epa-benches `bench` example (the library `epa bench` calls, without
  # the epa binary's RocksDB / hwloc): CPU, CUDA and wgpu rows, stock winterfell as the anchor.
  step bench-kernels cargo run --release --locked -p epa-benches --example bench -- \
    --suite kernels --json "$dir/bench-kernels.json"
  # ML-KEM-768 batch decapsulation on the GPU, host-device transfers included (every secret
  # checked against the reference), at a large batch; then the kem suite (CPU, GPUs and anchors).
  step mlkem-cuda env EPA_MLKEM_CUDA_MEASURE=1048576 \
    cargo test --release --locked -p epa-kernels --test cuda_mlkem measure -- --ignored --nocapture
  step mlkem-wgpu env EPA_MLKEM_WGPU_MEASURE=65536 \
    cargo test --release --locked -p epa-kernels --test mlkem_wgpu measured -- --ignored --nocapture
  step bench-kem cargo run --release --locked -p epa-benches --example bench -- \
    --suite kem --json "$dir/bench-kem.json"
fi

printf '\n==> summary (%s)\n' "$dir"
cat "$summary"
exit "$failed"
