#!/usr/bin/env bash
# Load run of `nsparse serve` (a benchmark, not a test): concurrent neural_sparse searches (wrk +
# bench/serve_load.lua) first alone, then while a bulk-ingest loop writes into the same index.
# Prints QPS, p50/p90/p99 latency and error counts for both phases and their ratios; non-2xx
# responses and failed bulk items must be zero (the script exits 1 otherwise).
#
# Corpus: the 1,400 Cranfield abstracts in data/cranfield, pre-encoded with the built-in
# inference-free weights (`nsparse encode queries`, ~100 tokens per document); 700 are loaded
# before the run, the bulk loop re-sends the other 700 in batches of 50 for the whole second
# phase. Searches: the 225 Cranfield queries as `neural_sparse` `query_text` with the
# `bert-uncased` analyzer (the server encodes them), size 10.
#
# Usage: bench/serve_load.sh [SECONDS per phase, default 30] [CONNECTIONS, default 8]
# Needs target/release/nsparse (cargo build --release -p nsparse-cli), wrk (Debian: apt-get
# install wrk), curl and python3. Writes only under target/serve-load.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
connections=${2:-8}
threads=2
binary=target/release/nsparse
work=target/serve-load
index=cranfield-load

[[ -x $binary ]] || { echo "missing $binary: cargo build --release -p nsparse-cli" >&2; exit 2; }
if ! command -v wrk >/dev/null; then
    echo "wrk is not installed: apt-get install -y wrk" >&2
    exit 2
fi
command -v curl >/dev/null || { echo "curl is not installed: apt-get install -y curl" >&2; exit 2; }

rm -rf "$work"
mkdir -p "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port

# --- data: vectors, the initial bulk body, the rotating bulk batches, the search bodies -------
"$binary" encode queries --input data/cranfield/corpus.jsonl --output "$work/vectors.jsonl" 2>/dev/null
python3 - "$work" "$index" <<'EOF'
import json, sys
work, index = sys.argv[1], sys.argv[2]
docs = [json.loads(l) for l in open("data/cranfield/corpus.jsonl")]
vectors = {v["_id"]: v["vector"] for v in map(json.loads, open(f"{work}/vectors.jsonl"))}
def pair(d):
    source = {"title": d["title"], "text": d["text"], "embedding": vectors[d["_id"]]}
    return json.dumps({"index": {"_index": index, "_id": d["_id"]}}) + "\n" + json.dumps(source) + "\n"
half = len(docs) // 2
with open(f"{work}/initial.ndjson", "w") as f:
    f.writelines(pair(d) for d in docs[:half])
rest = docs[half:]
for n, start in enumerate(range(0, len(rest), 50)):
    with open(f"{work}/batch-{n:03d}.ndjson", "w") as f:
        f.writelines(pair(d) for d in rest[start:start + 50])
with open(f"{work}/bodies.jsonl", "w") as f:
    for q in map(json.loads, open("data/cranfield/queries.jsonl")):
        body = {"size": 10, "query": {"neural_sparse": {"embedding": {"query_text": q["text"], "analyzer": "bert-uncased"}}}}
        f.write(json.dumps(body) + "\n")
EOF

# --- server -------------------------------------------------------------------------------------
"$binary" serve --data "$work/data" --addr "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 300); do
    curl -sf "$url/" >/dev/null && break
    kill -0 $server 2>/dev/null || { echo "nsparse serve exited:" >&2; cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done
curl -sf "$url/" >/dev/null || { echo "nsparse serve did not start" >&2; exit 1; }

curl -sf -XPUT "$url/$index" -H 'Content-Type: application/json' -d '{
  "mappings": {"properties": {"embedding": {"type": "rank_features"}, "title": {"type": "text"}, "text": {"type": "text"}}}
}' >/dev/null
out=$(curl -sS -XPOST "$url/_bulk" -H 'Content-Type: application/x-ndjson' --data-binary @"$work/initial.ndjson")
case $out in *'"errors":false'*) ;; *) echo "initial bulk failed: ${out:0:500}" >&2; exit 1 ;; esac
curl -sf -XPOST "$url/$index/_refresh" >/dev/null
count=$(curl -sf "$url/$index/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
echo "loaded $count documents; $(nproc) cores; load before: $(uptime | sed 's/.*load average: //')"

run_wrk() { # $1 = phase name
    NSPARSE_LOAD_INDEX=$index NSPARSE_LOAD_BODIES=$work/bodies.jsonl \
        wrk -t$threads -c"$connections" -d"${seconds}s" --timeout 10s -s bench/serve_load.lua "$url" \
        >"$work/wrk-$1.txt"
    grep '^RESULT' "$work/wrk-$1.txt" | sed "s/^RESULT/$1/"
}

# --- phase 1: searches alone --------------------------------------------------------------------
alone=$(run_wrk search-alone)
echo "$alone"

# --- phase 2: searches while bulk ingest runs ----------------------------------------------------
ingest() {
    local end=$((SECONDS + seconds)) n=0 failed=0
    : >"$work/bulk-times.txt"
    while ((SECONDS < end)); do
        for f in "$work"/batch-*.ndjson; do
            ((SECONDS < end)) || break
            res=$(curl -sS -o "$work/bulk-last.json" -w '%{http_code} %{time_total}' -XPOST "$url/_bulk" \
                -H 'Content-Type: application/x-ndjson' --data-binary @"$f") || res="000 0"
            echo "$res" >>"$work/bulk-times.txt"
            n=$((n + 1))
            if [[ ${res%% *} != 200 ]] || ! grep -q '"errors":false' "$work/bulk-last.json"; then
                failed=$((failed + 1))
                cp "$work/bulk-last.json" "$work/bulk-failed-$n.json" 2>/dev/null || true
            fi
        done
    done
    echo "$n $failed" >"$work/bulk-summary.txt"
}
ingest &
ingester=$!
busy=$(run_wrk search-with-ingest)
wait $ingester
echo "$busy"
read -r batches bulk_failed <"$work/bulk-summary.txt"
python3 - "$work/bulk-times.txt" "$batches" "$bulk_failed" "$seconds" <<'EOF'
import sys
times = sorted(float(l.split()[1]) * 1000 for l in open(sys.argv[1]) if l.strip())
codes = [l.split()[0] for l in open(sys.argv[1]) if l.strip()]
batches, failed, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
pct = lambda p: times[min(len(times) - 1, int(p / 100 * len(times)))] if times else float("nan")
print(f"bulk-ingest batches={batches} docs={batches * 50} docs_per_s={batches * 50 / seconds:.1f} "
      f"p50_ms={pct(50):.1f} p99_ms={pct(99):.1f} non200={sum(c != '200' for c in codes)} failed_batches={failed}")
EOF
echo "load after: $(uptime | sed 's/.*load average: //')"

status=0
python3 - "$alone" "$busy" <<'EOF' || status=1
import sys
def parse(line):
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
a, b = parse(sys.argv[1]), parse(sys.argv[2])
print(f"ratio with-ingest/alone: qps {b['qps'] / a['qps']:.2f}x, p50 {b['p50_ms'] / a['p50_ms']:.2f}x, p99 {b['p99_ms'] / a['p99_ms']:.2f}x")
bad = sum(d[k] for d in (a, b) for k in ("non2xx", "connect_errors", "read_errors", "write_errors", "timeouts"))
sys.exit(1 if bad else 0)
EOF
[[ $bulk_failed == 0 ]] || { echo "bulk failures: $bulk_failed (see $work/bulk-failed-*.json)" >&2; exit 1; }
exit $status
