#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/) with clang into build-fuzz/ and runs
# each for SECONDS (default 60) on a scratch copy of its seed corpus, so the
# committed corpus under fuzz/corpus/ never grows. SECONDS=0 only replays the
# corpus (a quick regression check).
#
#   scripts/fuzz.sh [SECONDS]
#
# Exits non-zero if any harness crashes, leaks, times out or runs out of
# memory. The offending input is kept in build-fuzz/fuzz-artifacts/RUN/NAME/
# and shown in hex with the report; reproduce with
#   build-fuzz/fuzz/fuzz_NAME build-fuzz/fuzz-artifacts/RUN/NAME/crash-...
# and minimize with -minimize_crash=1 -runs=100000 added.
# and, once fixed, add it to fuzz/corpus/<name>/ as a regression seed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS]" >&2
    exit 2
fi

# -max_len per harness, in bytes:
#   envelope_address  4096: an RCPT argument is one SMTP command line
#                     (RFC 5321: 512 octets; Postfix and Sendmail accept up to
#                     2048 by default, plus ESMTP parameters); the parser is
#                     linear, so 4096 covers every MTA with room to spare.
#   target_address    1024: check_target rejects anything over 254 octets with
#                     its first comparison, so longer values reach no other
#                     code; 1024 leaves room around the 254/255 boundary. A
#                     1 MB limit would spend the time copying buffers (the
#                     unit tests already cover a 1 MiB value).
#   header_policy     4096: matching is patterns x names; 4096 bytes is a
#                     full default list plus a few hundred header names, more
#                     than a real message carries, at full speed.
#   config_loader    16384: real configs are a few KB (contrib's is ~3 KB);
#                     16 KB fits whole spliced configs and yaml-cpp's nesting
#                     limit (2000 levels), at a few thousand runs/s.
harnesses=(envelope_address target_address header_policy config_loader)
declare -A max_len=([envelope_address]=4096 [target_address]=1024 [header_policy]=4096 [config_loader]=16384)

if ! command -v clang++ >/dev/null; then
    echo "fuzz: clang++ not found; run scripts/install-deps.sh" >&2
    exit 1
fi

echo "== fuzz: building build-fuzz (clang, libFuzzer, ASan + UBSan)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DIMPALEMAIL_FUZZ=ON -DIMPALEMAIL_TESTS=OFF >/dev/null
cmake --build build-fuzz --target fuzzers -j"$(nproc)" >/dev/null

symbolizer="$(command -v llvm-symbolizer || true)"
[ -n "$symbolizer" ] || symbolizer=/usr/lib/llvm-14/bin/llvm-symbolizer
if [ -x "$symbolizer" ]; then
    export ASAN_SYMBOLIZER_PATH="$symbolizer"
fi
# halt/abort so that every report is a crash libFuzzer records.
# A 64 MB quarantine (default 256) keeps each harness under ~300 MB RSS.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:symbolize=1:quarantine_size_mb=64"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:symbolize=1"

scratch="$(mktemp -d "${TMPDIR:-/tmp}/impalemail-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
run_id="$(date +%Y%m%d-%H%M%S)"
artifacts="$PWD/build-fuzz/fuzz-artifacts/$run_id"
logs="$PWD/build-fuzz/fuzz-logs"
mkdir -p "$logs"

failed=()
for h in "${harnesses[@]}"; do
    bin="build-fuzz/fuzz/fuzz_$h"
    corpus="$scratch/$h"
    mkdir -p "$corpus" "$artifacts/$h"
    cp fuzz/corpus/"$h"/* "$corpus"/
    if [ "$h" = config_loader ]; then
        cp contrib/impalemail.yaml "$corpus/contrib-current.yaml" # whatever it says today
    fi
    args=(-max_len="${max_len[$h]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
          -artifact_prefix="$artifacts/$h/" -dict="fuzz/fuzz_$h.dict")
    if [ "$seconds" -eq 0 ]; then
        args+=(-runs=0)
    else
        args+=(-max_total_time="$seconds")
    fi
    log="$logs/$h.log"
    start="$(date +%s)"
    rc=0
    "$bin" "${args[@]}" "$corpus" >"$log" 2>&1 || rc=$?
    elapsed=$(( $(date +%s) - start ))
    [ "$elapsed" -gt 0 ] || elapsed=1

    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
    new_artifacts=()
    for f in "$artifacts/$h"/*; do
        [ -e "$f" ] && new_artifacts+=("$(basename "$f")")
    done
    crashes=${#new_artifacts[@]}
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1 # died without writing an input (e.g. a crash while loading)
    fi
    if [ -n "$execs" ]; then
        echo "fuzz_$h: $execs execs in $elapsed s ($(( execs / elapsed ))/s), $crashes crashes"
    else
        echo "fuzz_$h: ? execs in $elapsed s (no final stats), $crashes crashes"
    fi

    if [ "$rc" -ne 0 ]; then
        failed+=("fuzz_$h")
        echo "---- fuzz_$h failed (exit $rc); log: $log"
        # The report: from the first sanitizer/libFuzzer/invariant line on.
        awk '/^==[0-9]+==|^==FUZZ INVARIANT==|ERROR: libFuzzer|runtime error:/ {p=1} p' "$log" | head -n 80
        for f in "${new_artifacts[@]}"; do
            echo "---- input $artifacts/$h/$f ($(stat -c %s "$artifacts/$h/$f") bytes), hex:"
            od -An -tx1 -v "$artifacts/$h/$f" | head -n 40
        done
    fi
done

rmdir "$artifacts"/* "$artifacts" 2>/dev/null || true # keep only runs that found something
if [ "${#failed[@]}" -ne 0 ]; then
    echo "== fuzz: FAILED: ${failed[*]}"
    exit 1
fi
echo "== fuzz: all harnesses clean"
