#!/usr/bin/env bash
# bf16 against fp32 on the demo's synthetic dataset (tiny random CLIP, 8 classes, 40 test images per
# class): the same training run in both precisions for seeds 1–3, test accuracies side by side, and the
# largest gap (issue 9 asks for at most 5 points). Training is kept short (EPOCHS, default 12) so the
# accuracies are not all 100%, where agreement would prove nothing.
#   tools/bf16_accuracy.sh [work dir]      (BIN, METHOD, EPOCHS, RANKS override the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release/cavpt-dist}
DIR=${1:-${TMPDIR:-/tmp}/cavpt-bf16-accuracy}
METHOD=${METHOD:-vlp_cavpt}
EPOCHS=${EPOCHS:-12}
RANKS=${RANKS:-1}
rm -rf "$DIR"
mkdir -p "$DIR/runs"
"$BIN" demo --dir "$DIR" --prepare-only --classes 8 --shots 16 --test-per-class 40 >/dev/null
launch=()
if [ "$RANKS" -gt 1 ]; then launch=(mpirun -np "$RANKS" --bind-to none -q --allow-run-as-root); fi
worst=0
for seed in 1 2 3; do
    declare -A accuracy
    for precision in fp32 bf16; do
        out="$DIR/runs/$precision-seed$seed"
        "${launch[@]}" "$BIN" train --dataset "$DIR/data/synthetic.yaml" --method "$METHOD" --data-root "$DIR/data" \
            --model "$DIR/model" --output "$out" --seed "$seed" --precision "$precision" \
            --set train.epochs="$EPOCHS" --set train.shots=16 --set train.batchSize=16 \
            --set optim.visual.warmupEpochs=1 --set optim.text.warmupEpochs=1 --set optim.text.lr=0.01 \
            --set checkpoint.every=0 --set eval.batchSize=20 --set train.logEvery=100 > "$out.log"
        accuracy[$precision]=$(python3 -c "import json,sys; print(100*json.load(open(sys.argv[1]))['accuracy'])" "$out/results.json")
    done
    gap=$(python3 -c "print(abs($(echo "${accuracy[fp32]} - ${accuracy[bf16]}")))")
    printf '%s seed %d: fp32 %.2f%%  bf16 %.2f%%  gap %.2f points\n' "$METHOD" "$seed" "${accuracy[fp32]}" "${accuracy[bf16]}" "$gap"
    worst=$(python3 -c "print(max($worst, $gap))")
done
verdict=$(python3 -c "print('within' if $worst <= 5 else 'NOT within')")
echo "largest gap $worst points ($verdict 5 points)"
