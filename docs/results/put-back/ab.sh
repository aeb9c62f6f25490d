#!/usr/bin/env bash
# The stake rule as landed, against the build before it: two binaries (OLD: 3fac7ce, which
# always puts back and decodes a third time; NEW: a build with the rule) on the development
# photographs as one archive at qualities 30-90 (bytes and PSNR averaged per image, 8-bit
# RGB), then their encode times at qualities 90 and 70, alternating, ROUNDS rounds.
#
#   PY=python-with-pillow-and-numpy docs/results/put-back/ab.sh OLD/rvq NEW/rvq photos/dev OUT [ROUNDS]
set -euo pipefail
py="${PY:-python3}"
old="$1" new="$2" dev="$3" out="$4" rounds="${5:-3}"
mkdir -p "$out"
for q in 30 50 70 90; do
    for build in old new; do
        if [ "$build" = old ]; then rvq="$old"; else rvq="$new"; fi
        a="$out/dev-q$q-$build.rvq"
        "$rvq" encode --backend cpu --quality "$q" --force -o "$a" "$dev" 2>/dev/null
        rm -rf "$out/d" && "$rvq" decode --backend cpu -o "$out/d" "$a" 2>/dev/null
        printf 'q %s %s: ' "$q" "$build"
        "$py" "$(dirname "$0")/psnr.py" "$a" "$dev" "$out/d"
    done
done
rm -rf "$out/d"
for r in $(seq "$rounds"); do
    for q in 90 70; do
        for build in old new; do
            if [ "$build" = old ]; then rvq="$old"; else rvq="$new"; fi
            /usr/bin/time -f '%e %U' -o "$out/t" "$rvq" encode --backend cpu \
                --quality "$q" --force -o "$out/a.rvq" "$dev" 2>/dev/null
            echo "round $r q $q $build: $(cat "$out/t") s"
        done
    done
done
rm -f "$out/t" "$out/a.rvq"
