#!/usr/bin/env bash
# What the rvq binary's bytes are: builds it once without stripping (a separate target folder,
# a full release build) and sums the sizes of its code and data symbols by the crate their
# demangled name starts with. Usage: scripts/binary_size.sh [TARGET_DIR]  (docs/BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-/tmp/rvq-unstripped}"
cargo build --release --locked --config 'profile.release.strip=false' --target-dir "$target" >&2
bin="$target/release/rvq"
echo "unstripped: $(stat -c %s "$bin") bytes; text section: $(size -A "$bin" | awk '$1==".text"{print $2}') bytes"
nm -S --size-sort -C "$bin" | python3 -c '
import re, sys, collections
sizes = collections.Counter()
total = 0
for line in sys.stdin:
    parts = line.split(None, 3)
    if len(parts) < 4:
        continue
    size = int(parts[1], 16)
    name = parts[3].strip()
    total += size
    # "<impl Trait for crate::Type>::f" and "<crate::Type as Trait>::f" count for the type'"'"'s crate.
    m = re.match(r"^<*(?:impl [^ ]+ for )?&?(?:mut )?([A-Za-z_][A-Za-z0-9_]*)::", name)
    crate = m.group(1) if m else "(other: C, std internals, unnamed)"
    sizes[crate] += size
print(f"symbols: {total} bytes")
print("| crate (first path segment) | bytes | share |")
print("|---|---|---|")
for crate, size in sizes.most_common(25):
    print(f"| {crate} | {size:,} | {100 * size / total:.1f}% |")
'
