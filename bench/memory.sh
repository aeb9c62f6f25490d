#!/usr/bin/env bash
# Peak memory (maximum resident set size, GNU time) of rvq on large inputs, under its default
# memory budget or the one given as MEMORY (e.g. MEMORY=512M):
#  1. the forged archive of issue 26: COUNT images of SIDE×SIDE at one codebook, all indices 0,
#     range-coded (64 × 8192² by default: 256 KB claiming 4.3 gigapixels), decoded;
#  2. a 4032×3024 (12-megapixel) image encoded at the defaults and decoded again.
# Usage: RVQ=target/release/rvq [ENCODE_DECODED=1] [HALF=1] [ENCODE_FLAGS="--psnr 30"] bench/memory.sh [COUNT] [SIDE]
# ENCODE_FLAGS are passed to the 12-megapixel image's encode (default: the shipped defaults).
# With HALF=1 the forged images are coded at half size (format version 4): a quarter of the
# indices for the same pixels, which the decoder upsamples.
# With ENCODE_DECODED=1 the first decoded image is encoded again at the defaults (COUNT=1
# SIDE=8192 measures a 64-megapixel image's decode and encode).
# Each decode of a 64-megapixel image takes minutes on 2 cores: COUNT=2 measures the same
# peak (the decoder holds one image's pass at a time) in a fraction of the time.
set -euo pipefail
cd "$(dirname "$0")/.."
rvq=${RVQ:-target/release/rvq}
count=${1:-64}
side=${2:-8192}
mem=()
[ -n "${MEMORY:-}" ] && mem=(--memory "$MEMORY")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
peak() { grep "Maximum resident" "$1" | awk '{printf "%.0f MB", $NF/1024}'; }

fp=$(sha256sum models/default/model.bpk | cut -c1-32)
half=()
[ -n "${HALF:-}" ] && half=(half)
cargo run -q --release -p rvq-archive --example forge_large -- "$work/bomb.rvq" "$fp" "$count" "$side" "${half[@]}"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "forged archive: $count images of ${side}x${side}${HALF:+ at half size}, $(stat -c %s "$work/bomb.rvq") bytes"
start=$(date +%s)
/usr/bin/time -v "$rvq" decode --backend cpu "${mem[@]}" -o "$work/bomb" "$work/bomb.rvq" 2>"$work/t1" \
  || { tail -3 "$work/t1"; exit 1; }
echo "  decode: $(ls "$work/bomb" | wc -l) images written, peak RSS $(peak "$work/t1"), $(( $(date +%s) - start )) s"
if [ -n "${ENCODE_DECODED:-}" ]; then
  # The first decoded image (SIDE×SIDE, flat) encoded again at the defaults: a SIDE² PNG's
  # encode (8192: 64 megapixels, about 15 minutes on 2 cores).
  start=$(date +%s)
  /usr/bin/time -v "$rvq" encode --backend cpu "${mem[@]}" -o "$work/big.rvq" "$work/bomb/image-000000.png" 2>"$work/t4" \
    || { tail -3 "$work/t4"; exit 1; }
  echo "  encode of the first decoded image: peak RSS $(peak "$work/t4"), $(( $(date +%s) - start )) s"
fi
rm -rf "$work/bomb"

python3 - "$work/photo.png" <<'PY'
# A 4032×3024 test image: smooth gradients, edges and noise, written as a plain PNG.
import random, struct, sys, zlib
w, h = 4032, 3024
rnd = random.Random(1)
noise = bytes(rnd.randrange(0, 24) for _ in range(w * 3 + 7))
rows = []
for y in range(h):
    base = bytearray(w * 3)
    for x in range(0, w * 3, 3):
        px = x // 3
        base[x] = (px * 255 // w + (40 if (px // 97 + y // 89) % 2 else 0)) & 255
        base[x + 1] = (y * 255 // h) & 255
        base[x + 2] = ((px + y) * 255 // (w + h)) & 255
    o = y % 7
    rows.append(b"\0" + bytes((b + n) & 255 for b, n in zip(base, noise[o:o + w * 3])))
raw = zlib.compress(b"".join(rows), 6)
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
start=$(date +%s)
# shellcheck disable=SC2086 # ENCODE_FLAGS is a list of flags
/usr/bin/time -v "$rvq" encode --backend cpu "${mem[@]}" ${ENCODE_FLAGS:-} -o "$work/photo.rvq" "$work/photo.png" 2>"$work/t2" \
  || { tail -3 "$work/t2"; exit 1; }
echo "12 MP encode${ENCODE_FLAGS:+ ($ENCODE_FLAGS)}: peak RSS $(peak "$work/t2"), $(( $(date +%s) - start )) s, $(stat -c %s "$work/photo.rvq") bytes"
start=$(date +%s)
/usr/bin/time -v "$rvq" decode --backend cpu "${mem[@]}" -o "$work/photo" "$work/photo.rvq" 2>"$work/t3" \
  || { tail -3 "$work/t3"; exit 1; }
echo "12 MP decode: peak RSS $(peak "$work/t3"), $(( $(date +%s) - start )) s"
