#!/usr/bin/env bash
# Installs what building and testing EPA needs on a fresh Debian/Ubuntu machine.
# Idempotent: it installs only what is missing, and runs `apt-get update` only then.
set -euo pipefail

# System packages:
#   pkg-config, libclang-dev  - bindings of native libraries (RocksDB, hwloc)
#   librocksdb-dev            - the durable job journal and shard state (docs/adr)
#   libhwloc-dev, libudev-dev - NUMA topology discovery
#   mesa-vulkan-drivers       - Vulkan on the CPU (lavapipe), so wgpu kernels are tested without a GPU
#   cmake, clang              - native builds of some crates (aws-lc-sys)
#   chromium                  - headless end-to-end test of the status page (tests/status_page.rs)
APT_PACKAGES=(pkg-config libclang-dev librocksdb-dev libhwloc-dev libudev-dev mesa-vulkan-drivers cmake clang chromium)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Rust: stable with rustfmt and clippy; nightly only for cargo-fuzz.
command -v cargo >/dev/null || { echo "install-deps: cargo not found: install Rust (rustup) first" >&2; exit 1; }
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep "^$c" >/dev/null || rustup component add "$c"
done
if [ "${EPA_SKIP_FUZZ:-0}" != 1 ]; then
  rustup toolchain list 2>/dev/null | grep '^nightly' >/dev/null || {
    echo "install-deps: no nightly toolchain: fuzz smoke runs will be skipped (EPA_SKIP_FUZZ=1)" >&2; }
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
fi
