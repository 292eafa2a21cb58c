#!/usr/bin/env bash
# Builds the libFuzzer targets (Swift -sanitize=fuzzer,address) and runs each for SECONDS
# (default 60). Usage: fuzz/run.sh [SECONDS] [TARGET ...]
# New inputs accumulate in .build-fuzz/corpus/<target> (seeded from fuzz/corpus/<target>), so
# repeated runs add up; a crash is saved under .build-fuzz/artifacts/<target>/ and fails the run.
# FuzzTokenizer uses the CLIP BPE vocabulary the product finds (the repository's copy), or
# $CAVPT_FUZZ_VOCAB when set.
# FUZZ_NO_BUILD=1 runs the binaries already built.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(FuzzSafeTensors FuzzSplitJSON FuzzConfig FuzzTokenizer FuzzJPEG)
scratch=.build-fuzz

for target in "${targets[@]}"; do
    [ -z "${FUZZ_NO_BUILD:-}" ] || break
    echo "== build $target"
    # (ld.gold warns once per ASan symbol; those lines are dropped, the build's status is kept.)
    set +e
    CAVPT_FUZZ=1 swift build -c debug --product "$target" --scratch-path "$scratch" --manifest-cache none \
        -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address 2>&1 \
        | grep -v "Cannot export local symbol"
    built=${PIPESTATUS[0]}
    set -e
    [ "$built" -eq 0 ] || { echo "fuzz/run.sh: $target did not build" >&2; exit 1; }
done

status=0
for target in "${targets[@]}"; do
    corpus=$scratch/corpus/$target
    artifacts=$scratch/artifacts/$target
    export TMPDIR=$PWD/$scratch/tmp/$target
    mkdir -p "$corpus" "$artifacts" "$TMPDIR"
    log=$scratch/logs/$target.$(date +%Y%m%d-%H%M%S).log
    mkdir -p "$(dirname "$log")"
    echo "== run $target for ${seconds}s (corpus $corpus, log $log)"
    # Leak checking is off: the Swift runtime's caches read as leaks at exit. Swift's own
    # backtracer is off too: ASan reports its memory reads, burying the real report. Each input gets 10 s.
    set +e
    ASAN_OPTIONS=detect_leaks=0:${ASAN_OPTIONS:-} SWIFT_BACKTRACE=enable=no "$scratch/debug/$target" "$corpus" "fuzz/corpus/$target" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -detect_leaks=0 -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
    rc=$?
    set -e
    rm -rf "$TMPDIR"
    executions=$(awk '/stat::number_of_executed_units/{n=$2} END{print n}' "$log")
    echo "   exit $rc, ${executions:-?} executions, corpus $(ls "$corpus" | wc -l) files"
    if [ $rc -ne 0 ]; then
        echo "fuzz/run.sh: $target failed (exit $rc); the input is in $artifacts/:" >&2
        grep -E "ERROR|Fatal error|SUMMARY|Test unit written" "$log" | head -5 >&2
        status=1
    fi
done
exit $status
