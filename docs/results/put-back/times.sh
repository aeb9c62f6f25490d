#!/usr/bin/env bash
# Encode times with and without the stake rule, the same binary alternating (build with
# `git apply docs/results/put-back/stake-rule.patch`; RVQ_STAKE=0 puts back and decodes a third
# time wherever a cell decoded worse, as before): the development photographs as one archive at
# qualities 90 and 70, ROUNDS rounds (default 3). Wall seconds, then user seconds.
#
#   RVQ=target/release/rvq docs/results/put-back/times.sh photos/dev [ROUNDS]
set -euo pipefail
rvq="${RVQ:-rvq}"
dev="$1" rounds="${2:-3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$rounds"); do
    for q in 90 70; do
        for stake in 0 default; do
            if [ "$stake" = default ]; then env=(); else env=(RVQ_STAKE=0); fi
            /usr/bin/time -f '%e %U' -o "$tmp/t" env "${env[@]}" "$rvq" encode --backend cpu \
                --quality "$q" --force -o "$tmp/a.rvq" "$dev" 2>/dev/null
            echo "round $r q $q stake $stake: $(cat "$tmp/t") s"
        done
    done
done
