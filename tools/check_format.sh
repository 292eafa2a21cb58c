#!/usr/bin/env bash
# Every tracked Swift file is as `swift-format` (configuration: .swift-format) writes it, and no source
# line is longer than 120 characters. `tools/check_format.sh --fix` formats in place first.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .swift-format ] || { echo "tools/check_format.sh: .swift-format is missing" >&2; exit 1; }
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.swift')
else   # CI's isolated copy of the checkout is not a git repository
    mapfile -t files < <(find Package.swift Sources Tests fuzz tools -name '*.swift' -not -path '*/.build*' | sort)
fi
if [ "${1:-}" = "--fix" ]; then
    swift-format format -i --configuration .swift-format "${files[@]}"
fi
status=0
for f in "${files[@]}"; do
    [ -e "$f" ] || continue
    if ! swift-format format --configuration .swift-format "$f" | cmp -s - "$f"; then
        echo "not formatted: $f (run tools/check_format.sh --fix)" >&2
        status=1
    fi
done
# Characters, not bytes (UTF-8 source).
long=$(printf '%s\0' "${files[@]}" | xargs -0 python3 -c '
import sys
for f in sys.argv[1:]:
    for i, line in enumerate(open(f, encoding="utf-8").read().split("\n"), 1):
        if len(line) > 120: print(f"{f}:{i}: {len(line)} characters")
')
if [ -n "$long" ]; then
    echo "$long" >&2
    echo "lines over 120 characters (above)" >&2
    status=1
fi
exit $status
