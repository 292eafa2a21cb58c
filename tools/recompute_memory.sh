#!/usr/bin/env bash
# Peak RSS and seconds per step of `cavpt-dist bench step` for each runtime.recompute mode, for the
# README's activation-memory table. Run it with nothing else on the machine.
#
#   tools/recompute_memory.sh [--arch ViT-L/14] [--batch 32] [--precision fp32] [--steps 1] [--modes none,attention,blocks]
#
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are removed and the OpenBLAS core is printed (bench step's first
# line). CAVPT_MEMORY_LIMIT_KB (default 20000000) caps each run's address space, so a mode that does not
# fit fails with an allocation error instead of pushing the machine into swap or the OOM killer.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=ViT-L/14 batch=32 precision=fp32 steps=1 modes=none,attention,blocks
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) arch=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --precision) precision=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --modes) modes=$2; shift 2 ;;
        *) echo "tools/recompute_memory.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
binary=.build/release/cavpt-dist
[ -x "$binary" ] || { echo "tools/recompute_memory.sh: build first: swift build -c release" >&2; exit 1; }
limit=${CAVPT_MEMORY_LIMIT_KB:-20000000}
echo "| $arch, B=$batch, $precision | s/step | peak RSS |"
echo "|---|---|---|"
for mode in ${modes//,/ }; do
    out=$( (ulimit -v "$limit"; env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$binary" bench step --arch "$arch" \
        --batch "$batch" --precision "$precision" --steps "$steps" --recompute "$mode") 2>&1) || {
        echo "| recompute $mode | did not fit in $((limit / 1000000)) GB (address space): ${out##*$'\n'} | |"
        continue
    }
    echo "$out" | sed -n 1p >&2
    line=$(echo "$out" | grep "median")
    seconds=$(echo "$line" | sed -E 's/.*median ([0-9.]+)s.*/\1/')
    rss=$(echo "$line" | sed -E 's/.*peak RSS ([0-9.]+) MB.*/\1/')
    echo "| recompute $mode | $seconds | $rss MB |"
done
