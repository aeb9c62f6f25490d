#!/usr/bin/env bash
# The project's tests, all of them: the Rust workspace (cargo), then the Python package built
# from this checkout into a virtual environment and its tests, the Ray jobs' among them
# (pytest, on a local two-node Ray cluster). The README's test command; `.ci/run` runs it.
#
# The wheel is built by maturin in the same cargo build folder and profile as the tests, with
# the same features on every crate burn shares, so it compiles no burn crate again.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo test --release --workspace

venv="${RVQ_VENV:-$CARGO_TARGET_DIR/python-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check numpy pillow pytest "ray>=2.40"
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps ./python
RVQ_BIN="$CARGO_TARGET_DIR/release/rvq" RAY_AUTH_MODE=disabled \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests
