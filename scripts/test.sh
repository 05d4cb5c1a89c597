#!/usr/bin/env bash
# The one test command: installs what is missing, then format, lints, every test and a fuzz
# smoke run of every decoder. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { current="$*"; printf '\n==> %s\n' "$*"; }
current="install-deps"
# A step that stops the run says so, even when the failing command printed nothing.
trap 'echo "test: FAILED (exit $?) in step: $current" >&2' ERR

bash scripts/install-deps.sh

# A test run builds from cold once: incremental caches would only add gigabytes of disk (the
# workspace's incremental directories outgrow its binaries) and time.
export CARGO_INCREMENTAL=0
disk() { df -h "${CARGO_TARGET_DIR:-target}" 2>/dev/null | awk 'NR==2 {print "disk: " $4 " free on " $6}' || true; }
mkdir -p "${CARGO_TARGET_DIR:-target}"
disk

start=$(date +%s)

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
# Mesa's lavapipe (installed above) is a Vulkan adapter on the CPU: the wgpu kernels must run
# for real here, so a missing adapter fails the run instead of skipping; so does a missing
# chromium (the status page is driven in it headless).
EPA_REQUIRE_WGPU=1 EPA_REQUIRE_CHROMIUM=1 cargo test --workspace --locked

step "CUDA kernels: NVRTC and ptxas for sm_80 / sm_90, no register spills" && bash scripts/cuda-check.sh

step "package check (metadata, systemd unit, tarball layout)"
bash scripts/package.sh --check
step "supply chain: cargo deny, cargo audit" && bash scripts/supply-chain.sh

if [ "${EPA_SKIP_FUZZ:-0}" != 1 ] && rustup toolchain list 2>/dev/null | grep '^nightly' >/dev/null; then
  step "fuzz smoke runs (${EPA_FUZZ_SECONDS:=10} s per target)"
  disk
  bash scripts/fuzz.sh "$EPA_FUZZ_SECONDS"
else
  step "fuzz smoke runs skipped (EPA_SKIP_FUZZ=1 or no nightly toolchain)"
fi

echo
disk
echo "all checks passed in $(( $(date +%s) - start )) s"
