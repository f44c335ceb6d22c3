#!/usr/bin/env bash
# Python-side peer benchmark: nsparse's Python package against Seismic (pyseismic-lsr), BMP (bmp)
# and Qdrant Edge (qdrant-edge-py) from PyPI, on the shared vector files of bench/peers.
#
# usage: python/bench/run.sh [--docs N] [--queries Q] [--repeats R] [--engines "nsparse seismic bmp qdrant"]
#                            [--data DIR]   (an existing peer-bench data directory instead of synth)
# Installs into its own venv (target/python-bench/venv): numpy, scipy, the three peers and
# ./python (built with cargo). Generates the synthetic set with peer-bench (release build of
# nsparse-eval --features peer-bench) unless --data is given. Every engine runs in its own
# process; each measurement is repeated R times (default 3) and the table shows medians.
# Output: target/python-bench/results/<set>/<engine>.json and table.md.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
docs=100000
queries=300
repeats=3
engines="nsparse seismic bmp qdrant"
data=""
while [ $# -gt 0 ]; do
  case "$1" in
    --docs) docs=$2; shift 2 ;;
    --queries) queries=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --engines) engines=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

out=$root/target/python-bench
venv=$out/venv
py=$venv/bin/python
mkdir -p "$out"
if [ ! -x "$py" ]; then
  python3 -m venv "$venv"
fi
echo "== installing numpy, scipy, pyseismic-lsr, bmp, qdrant-edge-py and ./python into $venv"
"$venv/bin/pip" install -q --disable-pip-version-check numpy scipy
for pkg in pyseismic-lsr bmp qdrant-edge-py; do
  "$venv/bin/pip" install -q --disable-pip-version-check "$pkg" || echo "   pip install $pkg failed (its rows will say why)"
done
CARGO_TARGET_DIR=${NSPARSE_PY_TARGET:-$root/target/python} "$venv/bin/pip" install -q --disable-pip-version-check "$root/python"

if [ -z "$data" ]; then
  data=$out/data/synth-$docs-q$queries
  if [ ! -f "$data/meta.json" ]; then
    echo "== generating $docs synthetic documents with peer-bench"
    (cd "$root" && cargo build --release -q -p nsparse-eval --features peer-bench --bin peer-bench)
    "$root/target/release/peer-bench" synth --out "$data" --docs "$docs" --queries "$queries"
  fi
fi
res=$out/results/$(basename "$data")
mkdir -p "$res"
echo "== $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load: $(uptime | sed 's/.*load average: //')"
for engine in $engines; do
  echo "== $engine ($(date -u +%H:%M:%S))"
  rm -rf "$out/work/$engine"
  "$py" "$root/python/bench/search_peers.py" --engine "$engine" --data "$data" --work "$out/work/$engine" \
    --out "$res/$engine.json" --repeats "$repeats" || echo "   $engine failed (see above)"
  rm -rf "$out/work/$engine"
done
"$py" "$root/python/bench/table.py" "$res"/*.json | tee "$res/table.md"
