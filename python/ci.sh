#!/usr/bin/env bash
# CI of the Python package: rustfmt and clippy of the binding crate (its own Cargo workspace,
# with its own Cargo.lock), then a fresh venv, `pip install ./python` (maturin builds the Rust
# extension with this machine's cargo), and the pytest suite against the installed wheel.
#
# usage: python/ci.sh            (from anywhere in a checkout; needs python3 >= 3.9, cargo, PyPI)
# env:   NSPARSE_PY_TARGET       cargo target dir of the extension (default target/python, kept
#                                between runs so a rerun only rebuilds what changed)
#        NSPARSE_PY_TORCH=1      also install torch from PyPI (large) so the torch tests run instead of skipping
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${NSPARSE_PY_TARGET:-$root/target/python}
venv=$root/target/python-ci-venv
pip_q=(-q --disable-pip-version-check)

echo "== python/ci.sh: rustfmt + clippy of the binding crate"
cargo fmt --manifest-path "$root/python/Cargo.toml" --check
cargo clippy --manifest-path "$root/python/Cargo.toml" --locked --all-targets -q -- -D warnings

echo "== fresh venv $venv"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install "${pip_q[@]}" --upgrade pip
"$venv/bin/pip" install "${pip_q[@]}" numpy scipy pytest
if [ "${NSPARSE_PY_TORCH:-0}" = 1 ]; then
  "$venv/bin/pip" install "${pip_q[@]}" torch
fi

echo "== pip install ./python (builds the extension in release mode; the first build takes a few minutes)"
started=$SECONDS
"$venv/bin/pip" install "${pip_q[@]}" "$root/python"
echo "   built and installed in $((SECONDS - started)) s"

echo "== pytest"
# From outside python/, so `import nsparse` is the installed wheel, not the source folder.
cd "$root/target"
"$venv/bin/python" -c 'import nsparse, sys; print("   nsparse", nsparse.__version__, "from", nsparse.__file__, "on Python", sys.version.split()[0])'
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$root/python/tests"
