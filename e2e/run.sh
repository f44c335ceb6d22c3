#!/usr/bin/env bash
# Runs the end-to-end tests of `nsparse serve`: the opensearch-py client test
# (e2e/test_opensearch_py.py), arbitrary feature names in several sparse fields
# (e2e/sparse_fields.py), durability under a full disk and SIGKILL (e2e/durability.py), and
# hostile clients (e2e/adversarial.py).
#
# Needs python3 with the venv module and pip access to PyPI (for opensearch-py, pinned in
# e2e/requirements.txt); the virtualenv lives in target/e2e-venv and is reused. Needs the release
# binary: `cargo build --release --locked -p nsparse-cli` (CI builds it before calling this).
# Arguments are passed to the test (e.g. --keep, --body-limit-mb N, --serve-arg=--flag).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/e2e-venv
binary=target/release/nsparse
if [[ ! -x $binary ]]; then
    echo "e2e: $binary is missing; run: cargo build --release --locked -p nsparse-cli" >&2
    exit 2
fi
if [[ ! -x $venv/bin/python ]] || ! cmp -s e2e/requirements.txt "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv" || {
        echo "e2e: cannot create a virtualenv; install python3 with the venv module (Debian: apt-get install python3-venv)" >&2
        exit 2
    }
    if ! "$venv/bin/pip" install --quiet --disable-pip-version-check -r e2e/requirements.txt; then
        echo "e2e: pip could not install e2e/requirements.txt (opensearch-py) from PyPI." >&2
        echo "e2e: this test needs PyPI (or PIP_INDEX_URL pointing at a mirror); it did NOT pass." >&2
        rm -rf "$venv"
        exit 2
    fi
    cp e2e/requirements.txt "$venv/requirements.txt"
fi
status=0
"$venv/bin/python" e2e/test_opensearch_py.py --nsparse "$binary" "$@" || status=1
# Two rank_features fields with arbitrary feature names: brute force, deletes, restarts, refusals.
"$venv/bin/python" e2e/sparse_fields.py --nsparse "$binary" || status=1
# Durability under a full disk (a tmpfs: needs root, skipped with a message otherwise) and
# SIGKILL with per-field BM25 data; hostile requests and slow clients.
"$venv/bin/python" e2e/durability.py --nsparse "$binary" || status=1
"$venv/bin/python" e2e/adversarial.py --nsparse "$binary" || status=1
exit $status
