#!/usr/bin/env bash
# Checks every CUDA kernel without a GPU: installs NVRTC and ptxas from the Python wheels
# nvidia-cuda-nvrtc-cu12 / nvidia-cuda-nvcc-cu12 when missing (idempotent), compiles every
# kernel translation unit with NVRTC (the same code path the backend uses at run time) to PTX
# for sm_80 and sm_90, assembles each with `ptxas -v` for its architecture, and fails on any
# compile error and on any register spill ("spill stores" / "spill loads" not zero).
# The reports are kept under target/cuda-check/ (or $CARGO_TARGET_DIR/cuda-check/).
# A CUDA toolkit found through CUDA_HOME / CUDA_PATH or in /usr/local/cuda is used instead of
# the wheels when it has both.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
site_dir() { "$PY" -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null; }
# A CUDA toolkit (CUDA_HOME, /usr/local/cuda) first, then the pip wheels.
find_tools() {
  local d sp
  NVRTC_LIB=""; PTXAS=""
  for d in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
    [ -n "$d" ] && { [ -e "$d/lib64/libnvrtc.so.12" ] || [ -e "$d/lib64/libnvrtc.so" ]; } && [ -x "$d/bin/ptxas" ] || continue
    NVRTC_LIB="$d/lib64"; PTXAS="$d/bin/ptxas"; return 0
  done
  sp=$(site_dir) || return 1
  d=$(find "$sp/nvidia" -name 'libnvrtc.so.12' 2>/dev/null | head -n1 || true)
  [ -n "$d" ] && NVRTC_LIB=$(dirname "$d")
  PTXAS=$(find "$sp/nvidia" -type f -name ptxas 2>/dev/null | head -n1 || true)
  [ -n "$NVRTC_LIB" ] && [ -n "$PTXAS" ]
}

if ! find_tools; then
  echo "cuda-check: installing NVRTC and ptxas (pip wheels nvidia-cuda-nvrtc-cu12, nvidia-cuda-nvcc-cu12)" >&2
  { "$PY" -m pip install -q nvidia-cuda-nvrtc-cu12 nvidia-cuda-nvcc-cu12 2>/dev/null ||
    "$PY" -m pip install -q --break-system-packages nvidia-cuda-nvrtc-cu12 nvidia-cuda-nvcc-cu12; } >&2
  find_tools || { echo "cuda-check: NVRTC or ptxas still not found after the install" >&2; exit 1; }
fi
chmod +x "$PTXAS" 2>/dev/null || true
# `--print-nvrtc-dir`: only say where libnvrtc.so.12 is (for LD_LIBRARY_PATH), e.g. for the
# GPU suite, whose backend compiles its kernels with NVRTC at run time.
if [ "${1:-}" = "--print-nvrtc-dir" ]; then echo "$NVRTC_LIB"; exit 0; fi
echo "cuda-check: NVRTC in $NVRTC_LIB; $("$PTXAS" --version | tail -n1)"

out="${CARGO_TARGET_DIR:-target}/cuda-check"
rm -rf "$out"
mkdir -p "$out/ptx"
out=$(cd "$out" && pwd)

# 1. NVRTC: every translation unit for compute_80 and compute_90 (a Rust test over the
#    backend's own source list and include expansion).
LD_LIBRARY_PATH="$NVRTC_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  EPA_REQUIRE_NVRTC=1 EPA_CUDA_PTX_DIR="$out/ptx" \
  cargo test -p epa-kernels --locked --test cuda_nvrtc -- --nocapture

# 2. ptxas: assemble each PTX for its architecture; fail on errors and on spills.
shopt -s nullglob
ptx_files=("$out"/ptx/*.ptx)
[ ${#ptx_files[@]} -gt 0 ] || { echo "cuda-check: NVRTC wrote no PTX" >&2; exit 1; }
fail=0
for ptx in "${ptx_files[@]}"; do
  sm=${ptx%.ptx}; sm=${sm##*.}            # e.g. sm_90
  name=$(basename "$ptx" .ptx)
  log="$out/$name.ptxas.txt"
  if ! "$PTXAS" -arch="$sm" -v "$ptx" -o "$out/$name.cubin" >"$log" 2>&1; then
    echo "cuda-check: ptxas failed on $name:" >&2; cat "$log" >&2; fail=1; continue
  fi
  spills=$(grep -E '[1-9][0-9]* bytes spill (stores|loads)' "$log" || true)
  if [ -n "$spills" ]; then
    echo "cuda-check: register spills in $name:" >&2; cat "$log" >&2; fail=1
  fi
  kernels=$(grep -c 'Compiling entry function' "$log" || true)
  regs=$(grep -o 'Used [0-9]* registers' "$log" | awk '{print $2}' | sort -n | tail -n1)
  printf 'cuda-check: %-18s %2s kernels, no spills, at most %s registers\n' "$name" "$kernels" "$regs"
done
[ "$fail" = 0 ] || { echo "cuda-check: FAILED (reports in $out)" >&2; exit 1; }
echo "cuda-check: every kernel compiles for sm_80 and sm_90 without spills (reports in $out)"
