#!/usr/bin/env bash
# Wall time of a 16-job sweep (2 datasets × 2 methods × 4 seeds on the demo's synthetic data and tiny
# random CLIP) three ways: the jobs one after another (`train` each), `cavpt-dist sweep` with groups
# of 1 rank and with groups of 2 ranks, all under one mpirun of 2 ranks (this machine has 2 cores).
#   tools/sweep_timing.sh [EPOCHS]      (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${CAVPT_DIST_BINARY:-.build/release/cavpt-dist}
epochs=${1:-20}
work=$(mktemp -d /tmp/cavpt-sweep-timing.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$binary" demo --dir "$work/a" --prepare-only --classes 4 --shots 8 --test-per-class 4 >/dev/null
"$binary" demo --dir "$work/b" --prepare-only --classes 6 --shots 8 --test-per-class 4 >/dev/null
mkdir -p "$work/data"
cp -r "$work/a/data/synthetic" "$work/data/four"; cp -r "$work/b/data/synthetic" "$work/data/six"
sed 's/name: synthetic/name: four/; s/folder: synthetic/folder: four/' "$work/a/data/synthetic.yaml" > "$work/four.yaml"
sed 's/name: synthetic/name: six/; s/folder: synthetic/folder: six/' "$work/b/data/synthetic.yaml" > "$work/six.yaml"
common=(--data-root "$work/data" --model "$work/a/model" --set train.epochs="$epochs" --set train.batchSize=8 --set train.workers=1)
"$binary" bench gemm --seconds 0.05 --threads 1 2>/dev/null | head -1
start=$(date +%s.%N)
for dataset in four six; do for method in vpt_deep coop; do for seed in 1 2 3 4; do
    CAVPT_DIST_BLAS_THREADS=2 "$binary" train --dataset "$work/$dataset.yaml" --method "$method" --seed "$seed" \
        --output "$work/seq/$dataset/$method/seed$seed" --set train.shots=16 "${common[@]}" >/dev/null
done; done; done
sequential=$(echo "$(date +%s.%N) - $start" | bc)
for group in 1 2; do
    start=$(date +%s.%N)
    CAVPT_DIST_BLAS_THREADS=1 mpirun -np 2 --bind-to none -q "$binary" sweep --datasets "$work/four.yaml,$work/six.yaml" \
        --methods vpt_deep,coop --seeds 1,2,3,4 --ranks-per-job "$group" --output "$work/sweep$group" "${common[@]}" >/dev/null
    eval "sweep$group=$(echo "$(date +%s.%N) - $start" | bc)"
done
printf '16 jobs × %d epochs: one after another %.1f s; sweep, 2 groups of 1 rank %.1f s (%.2f×); sweep, 1 group of 2 ranks %.1f s (%.2f×)\n' \
    "$epochs" "$sequential" "$sweep1" "$(echo "$sequential / $sweep1" | bc -l)" "$sweep2" "$(echo "$sequential / $sweep2" | bc -l)"
