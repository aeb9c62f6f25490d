#!/usr/bin/env bash
# Refinement's third decode by its stake: the same binary with the rule (RVQ_STAKE unset: put
# back and decode a third time only where the cells that decoded worse hold over 1% of the
# image's error) and without it (RVQ_STAKE=0: always, as before). Build with
# `git apply docs/results/put-back/stake-rule.patch` first. Prints, per setting, the archive's
# bytes and the PSNR averaged per image (8-bit RGB), and each image's; then 1,000 CIFAR-10
# test images through rvq eval.
#
#   RVQ=target/release/rvq PY=python-with-pillow-and-numpy docs/results/put-back/quality.sh \
#     photos/dev ../shared/data/cifar-10-batches-bin OUT
set -euo pipefail
rvq="${RVQ:-rvq}" py="${PY:-python3}"
dev="$1" cifar="$2" out="$3"
mkdir -p "$out"
for q in 30 50 70 90; do
    for stake in 0 default; do
        a="$out/dev-q$q-$stake.rvq"
        if [ "$stake" = default ]; then
            RVQ_STAKE_LOG=1 "$rvq" encode --backend cpu --quality "$q" --force -o "$a" "$dev" 2> "$out/stakes-q$q.txt"
        else
            RVQ_STAKE=0 "$rvq" encode --backend cpu --quality "$q" --force -o "$a" "$dev" 2>/dev/null
        fi
        rm -rf "$out/d" && "$rvq" decode --backend cpu -o "$out/d" "$a" 2>/dev/null
        printf 'q %s stake %s: ' "$q" "$stake"
        "$py" "$(dirname "$0")/psnr.py" "$a" "$dev" "$out/d" --each
    done
    # The log has a line for each image the moves improved (of each size tried below quality
    # 60): its stake, the share of its error in the cells that decoded worse.
    stakes="$(grep '^stake' "$out/stakes-q$q.txt" | awk '{print $2}' | sort -g)"
    echo "  stakes of the images the moves improved: $(echo $stakes);" \
        "$(echo "$stakes" | awk '$1 > 0.01' | wc -l) of $(echo "$stakes" | wc -l) over 0.01 (decoded a third time)"
done
rm -rf "$out/d"
for stake in 0 default; do
    if [ "$stake" = default ]; then env=(); else env=(RVQ_STAKE=0); fi
    env "${env[@]}" "$rvq" eval --backend cpu --data "$cifar" --limit 1000 --codebooks 8 \
        --qualities 30,60,90 --jpeg-qualities 50 --webp-qualities 50 \
        --json "$out/cifar-$stake.json" > "$out/cifar-$stake.md" 2>/dev/null
    printf 'cifar stake %s: ' "$stake"
    "$py" -c "import json,sys; print('; '.join(f\"{r['setting']} {r['file_bytes_per_image']:.2f} B {r['psnr']:.4f} dB\" for r in json.load(open(sys.argv[1])) if r['codec']=='rvq'))" "$out/cifar-$stake.json"
done
