#!/usr/bin/env bash
# Runs every cargo-fuzz target for N seconds (default 10): `scripts/fuzz.sh 120` or
# `scripts/fuzz.sh 600` is the long mode. Fails if any target finds a crash. Needs the nightly
# toolchain and cargo-fuzz.
#
# Seeds come from the committed `fuzz/corpus/<target>`; inputs found during the run go to a
# scratch directory (`EPA_FUZZ_SCRATCH`, default a fresh temporary one) so the committed seed
# corpora stay small. One summary line per target: executions, coverage, features, corpus.
# EPA_FUZZ_TARGETS="a b" runs only those targets.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-10}"
scratch="${EPA_FUZZ_SCRATCH:-$(mktemp -d -t epa-fuzz.XXXXXX)}"
targets="${EPA_FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
# EPA_FUZZ_NO_BUILD=1 reuses the binaries of the last build (while the tree does not compile).
if [[ "${EPA_FUZZ_NO_BUILD:-0}" != 1 ]]; then
  cargo +nightly fuzz build
fi
bin="target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"
for t in $targets; do
  mkdir -p "corpus/$t" "$scratch/$t" "artifacts/$t"
  echo "fuzz: $t for ${secs}s"
  log="$scratch/$t.log"
  # The binaries `cargo fuzz build` made just now (`cargo fuzz run` would rebuild per target).
  ASAN_OPTIONS="detect_odr_violation=0" "$bin/$t" "$scratch/$t" "corpus/$t" \
    -artifact_prefix="artifacts/$t/" -max_total_time="$secs" -rss_limit_mb=4096 \
    >"$log" 2>&1 || true
  grep -E '^(==[0-9]+==|SUMMARY)' "$log" || true
  # The last status line libFuzzer printed: `#<execs> DONE cov: <n> ft: <n> corp: <n>/<size> ...`.
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$last")
  echo "fuzz: $t: ${execs:-?} executions, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}"
  # cargo fuzz exits non-zero on a crash; the artifacts say which input failed.
  if compgen -G "artifacts/$t/crash-*" >/dev/null || compgen -G "artifacts/$t/leak-*" >/dev/null \
     || compgen -G "artifacts/$t/oom-*" >/dev/null || compgen -G "artifacts/$t/timeout-*" >/dev/null; then
    echo "fuzz: $t found a failing input:" >&2
    ls "artifacts/$t" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
done
echo "fuzz: all targets ran without a crash (run logs in $scratch)"
