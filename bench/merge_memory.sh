#!/usr/bin/env bash
# Peak memory of merging many archives: `rvq merge` of COPIES parts (each the same nameless
# archive of 1,024 32×32 images, hard-linked, so the parts take no disk), and with PY (a
# Python with the rvq package) the package's two merges of the same parts: in memory
# (`rvq.merge(parts)`, then written) and into a file (`rvq.merge(parts, out)`).
# A benchmark, not a test: it prints GNU time's peak resident set size of each.
#
#   RVQ=target/release/rvq [PY=python] bench/merge_memory.sh WORK [COPIES]
set -euo pipefail
work=${1:?usage: RVQ=… [PY=…] bench/merge_memory.sh WORK [COPIES]}
copies=${2:-2000}
rvq=${RVQ:?set RVQ to the rvq binary}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work/images" "$work/parts"
rm -f "$work"/parts/* "$work"/merged*.rvq
# 1,024 images: the 32×32 samples over and over (their names are not stored).
i=0
while [ $i -lt 1024 ]; do
  for f in "$here"/samples/*-32.png; do
    [ $i -lt 1024 ] && ln -sf "$f" "$work/images/$(printf %04d $i).png"
    i=$((i + 1))
  done
done
"$rvq" encode --backend cpu --no-names --force -o "$work/part.rvq" "$work/images"
for n in $(seq -w 1 "$copies"); do ln "$work/part.rvq" "$work/parts/p$n.rvq"; done
part=$(stat -c %s "$work/part.rvq")
echo "$copies parts of $part bytes ($((copies * part)) in all)"
# Peak RSS (KB) and seconds of a command, which must succeed.
peak() {
  local line
  line=$(/usr/bin/time -f '%M %e %x' "$@" 2>&1 >/dev/null | tail -1)
  [ "${line##* }" = 0 ] || { echo "failed: $* ($line)" >&2; exit 1; }
  echo "${line% *}"
}
read -r kb s < <(peak "$rvq" merge -o "$work/merged.rvq" "$work"/parts/*.rvq)
echo "rvq merge: peak RSS $((kb / 1024)) MB, $s s, $(stat -c %s "$work/merged.rvq") bytes"
if [ -n "${PY:-}" ]; then
  for how in memory file; do
    read -r kb s < <(peak "$PY" -c '
import glob, sys, rvq
parts = sorted(glob.glob(sys.argv[1] + "/parts/*.rvq"))
if sys.argv[2] == "memory":
    open(sys.argv[1] + "/merged-py.rvq", "wb").write(rvq.merge(parts))
else:
    rvq.merge(parts, sys.argv[1] + "/merged-py.rvq", force=True)
' "$work" "$how")
    cmp "$work/merged.rvq" "$work/merged-py.rvq"
    echo "rvq.merge ($how): peak RSS $((kb / 1024)) MB, $s s, the same bytes"
  done
fi
