#!/usr/bin/env bash
# Runs every cargo-fuzz target for N seconds (default 10): `scripts/fuzz.sh 600` is the long mode.
# Fails if any target finds a crash. Needs the nightly toolchain and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-10}"
targets=$(cargo +nightly fuzz list)
cargo +nightly fuzz build
for t in $targets; do
  mkdir -p "corpus/$t"
  echo "fuzz: $t for ${secs}s"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=4096 2>&1 \
    | grep -E '^(#[0-9]+ *DONE|==[0-9]+==|SUMMARY|Done )' || true
  # cargo fuzz exits non-zero on a crash; with pipefail and `|| true` we re-check artifacts instead.
  if compgen -G "artifacts/$t/crash-*" >/dev/null || compgen -G "artifacts/$t/leak-*" >/dev/null \
     || compgen -G "artifacts/$t/oom-*" >/dev/null || compgen -G "artifacts/$t/timeout-*" >/dev/null; then
    echo "fuzz: $t found a failing input:" >&2
    ls "artifacts/$t" >&2
    exit 1
  fi
done
echo "fuzz: all targets ran without a crash"
