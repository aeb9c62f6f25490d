#!/bin/bash
# Stages what scripts/gpu/a.sh and b.sh need on a lent GPU machine (the device tool of this
# workplace; see docs/MODEL.md, runs 9-12): one call carries at most 64 MiB with the working
# tree, so the stripped binary and the training data travel over two calls, xz-compressed
# (the device image has xz, not zstd). Run from the repository root after
#   cargo test --release --workspace --no-run
# then call the device with `bash .dev/a.sh` (carry .gl .dev) and, at once while it is warm,
# `bash .dev2/b.sh STEPS` (carry .dev2).
set -euo pipefail
D=${1:?usage: scripts/gpu/stage.sh CIFAR_DIR}
BIN=${CARGO_TARGET_DIR:-target}/release/rvq
printf '/.gl/\n/.dev/\n/.dev2/\n' >> .git/info/exclude
mkdir -p .gl .dev .dev2 /tmp/amd64/partial
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
apt-get $o update >/dev/null
(cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
strip -o /tmp/rvq-dev "$BIN"
xz -9 -T2 -c /tmp/rvq-dev > .dev/rvq.xz
# Call A: test images 0..999, then data_batch_1. Call B: data_batch_2 and data_batch_3
# (30,000 training images in all; a third batch would not fit in one call).
(head -c $((3073 * 1000)) "$D/test_batch.bin"; cat "$D/data_batch_1.bin") | xz -9 -T2 > .dev/a.xz
cat "$D/data_batch_2.bin" "$D/data_batch_3.bin" | xz -9 -T2 > .dev2/b.xz
cp scripts/gpu/a.sh .dev/ && cp scripts/gpu/b.sh .dev2/
du -sb .gl .dev .dev2
