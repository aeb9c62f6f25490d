#!/usr/bin/env bash
# Peak memory of `rvq info` and `rvq truncate` on a forged archive (bench/memory.sh's bomb:
# COUNT images of SIDE×SIDE at one codebook, every index 0, range-coded), for each binary given,
# and whether their truncated archives are the same bytes.
#
#   docs/results/info-memory/run.sh OUT OLD_RVQ NEW_RVQ [COUNT] [SIDE]
set -euo pipefail
out="$1" old="$2" new="$3" count="${4:-128}" side="${5:-8192}"
here="$(cd "$(dirname "$0")/../../.." && pwd)"
mkdir -p "$out"
"$new" encode --backend cpu --force -o "$out/fp.rvq" "$here/samples/astronaut-32.png" >/dev/null
fp=$("$new" info --json "$out/fp.rvq" | python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])')
(cd "$here" && cargo run -q --release -p rvq-archive --example forge_large -- "$out/bomb.rvq" "$fp" "$count" "$side")
echo "forged archive: $count images of ${side}x${side}, $(stat -c %s "$out/bomb.rvq") bytes"
for b in "$old" "$new"; do
    tag=$(basename "$b")
    /usr/bin/time -f "$tag info: %M KB peak, %e s" "$b" info "$out/bomb.rvq" >/dev/null
    /usr/bin/time -f "$tag truncate --codebooks 1: %M KB peak, %e s" \
        "$b" truncate --force --codebooks 1 "$out/bomb.rvq" "$out/t-$tag.rvq"
done
cmp "$out/t-$(basename "$old").rvq" "$out/t-$(basename "$new").rvq" && echo "truncated archives identical"
