#!/usr/bin/env bash
# Rewrites the README's configuration-key table from the schema (`cavpt-dist config --list --markdown`);
# Tests/TrainingTests/ReadmeTests.swift fails when the two differ.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-.build/debug/cavpt-dist}
"$binary" config --list --markdown > /tmp/cavpt-keys.md
python3 - <<'PY'
s = open("README.md").read()
start = s.index("| key | default | meaning |")
end = s.index("\n## Commands")
open("README.md", "w").write(s[:start] + open("/tmp/cavpt-keys.md").read() + s[end:])
PY
