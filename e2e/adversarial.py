#!/usr/bin/env python3
"""Hostile clients against `nsparse serve`: generated adversarial requests and slow clients.

While a well-behaved client searches and writes a small index every 50 ms, this sends
10,000 generated adversarial requests from 8 threads (fuzzed JSON and NDJSON bodies on every
endpoint family, random methods and paths, deep nesting, huge numbers, long strings, invalid
UTF-8, wrong content types, bodies over the limit) and holds 1,000 connections that never
finish their headers. It checks:

- no 5xx except the documented server faults (none are expected here), no panic in the log,
  the server alive at the end;
- the well-behaved client never fails; its longest wait between two answers is printed
  (a gap over 10 s, i.e. a stall, fails the check; it is a hang guard, not a speed target);
- the server's peak RSS (VmHWM) is printed and must stay under `--rss-limit-mb`.

Prints PASS/FAIL per check and `N passed, M failed`; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import random
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import Checks  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
WORDS = "time year people way day man thing woman life child world school state family student group".split()
GOOD = "good"


def start_server(binary: Path, data: Path, log: Path, body_limit: int) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        str(binary), "serve", "--data", str(data), "--addr", f"127.0.0.1:{port}",
        "--max-body-bytes", str(body_limit), "--request-timeout-secs", "30",
    ]
    proc = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nsparse serve exited with {proc.returncode}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if request(port, "GET", "/")[0] == 200:
                return proc, port
        time.sleep(0.1)
    raise RuntimeError("nsparse serve did not start")


def request(port: int, method: str, path: str, body: bytes | None = None,
            ctype: str = "application/json", timeout: float = 60) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Generators of hostile input.


def rand_scalar(rng: random.Random):
    return rng.choice([
        None, True, False, 0, -1, 2**31, 2**40, 2**63, -(2**64), 1e308, -1e-308, 0.5,
        "", "x", "ny", "weather", "é", "\u0000", "a" * rng.randint(1, 5000), "1e400", "NaN",
        "-Infinity", "2019-01-01", "a..b", ".a", "_id", "*", "?", "\\", "../../etc/passwd",
        "名前", "🙂" * 50,
    ])


def rand_json(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth > 4 or r < 0.35:
        return rand_scalar(rng)
    if r < 0.6:
        return [rand_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = [
        "query", "neural_sparse", "bool", "must", "should", "filter", "must_not", "match", "term",
        "terms", "range", "ids", "values", "match_all", "query_text", "query_tokens", "model_id",
        "analyzer", "method_parameters", "top_n", "heap_factor", "k", "size", "from", "sort",
        "_source", "explain", "settings", "mappings", "properties", "type", "index", "doc",
        "doc_as_upsert", "docs", "number_of_shards", "title", "emb", "gte", "lte", "boost",
        "minimum_should_match", "track_total_hits", "processors", "sparse_encoding", "field_map",
    ]
    return {rng.choice(keys + [str(rand_scalar(rng))[:40]]): rand_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def structured_search(rng: random.Random):
    leaf = rng.choice([
        {"neural_sparse": {rng.choice(["emb", "title", "nope", ""]): {"query_tokens": {rng.choice(WORDS): rand_scalar(rng)}}}},
        {"neural_sparse": {"emb": {"query_text": rng.choice(["", "weather in ny", "x" * rng.randint(1, 300_000)]),
                                   "method_parameters": {"top_n": rand_scalar(rng), "heap_factor": rand_scalar(rng)}}}},
        {"match": {rng.choice(["title", "emb", "nope"]): rand_scalar(rng)}},
        {"range": {"n": {rng.choice(["gte", "lt", "weird"]): rand_scalar(rng)}}},
        {"ids": {"values": [rand_scalar(rng) for _ in range(rng.randint(0, 5))]}},
    ])
    query = leaf
    for _ in range(rng.randint(0, 3)):
        query = {"bool": {rng.choice(["must", "should", "filter", "must_not"]): [query, rand_json(rng)]}}
    return {"query": query, "size": rand_scalar(rng) if rng.random() < 0.3 else 10, "from": rng.choice([0, -1, 10**9, "x"])}


def deep(n: int) -> bytes:
    return ("[" * n + "]" * n).encode() if n % 2 else ('{"a":' * n + "1" + "}" * n).encode()


def hostile_request(rng: random.Random, body_limit: int) -> tuple[str, str, bytes | None, str]:
    """One adversarial (method, path, body, content type)."""
    index = rng.choice(["fz", "fz2", "Bad", "_all", "a" * 300, "%2e%2e", "fz/../good2", "fz,fz2", "*", ".."])
    kind = rng.randrange(12)
    if kind == 0:
        return "POST", f"/{index}/_search", json.dumps(structured_search(rng)).encode(), "application/json"
    if kind == 1:
        lines = []
        for _ in range(rng.randint(1, 30)):
            op = rng.choice(["index", "create", "update", "delete", "bogus", ""])
            meta = {op: {"_id": rand_scalar(rng), "_index": rng.choice(["fz", index, None])}}
            lines.append(json.dumps(meta))
            if rng.random() < 0.8:
                lines.append(json.dumps(rand_json(rng) if rng.random() < 0.5 else
                                        {"title": " ".join(rng.choices(WORDS, k=20)), "emb": {rng.choice(WORDS): rand_scalar(rng)},
                                         "n": rand_scalar(rng), "_id": "x" if rng.random() < 0.1 else None}))
        body = "\n".join(lines)
        if rng.random() < 0.2:
            body = body[: rng.randrange(len(body) + 1)]
        return "POST", rng.choice(["/_bulk", f"/{index}/_bulk"]), body.encode(), "application/x-ndjson"
    if kind == 2:
        mapping = {"settings": rand_json(rng) if rng.random() < 0.3 else {"number_of_shards": rand_scalar(rng)},
                   "mappings": {"properties": {
                       rng.choice(["title", "", "a..b", ".x", "t" * 300, "名前", "emb"]): {
                           "type": rng.choice(["text", "keyword", "integer", "rank_features", "sparse_vector", "join", 5])}}}}
        return "PUT", f"/{index}", json.dumps(mapping).encode(), "application/json"
    if kind == 3:
        doc = {"title": rand_scalar(rng), "emb": rand_json(rng), "n": rand_scalar(rng)}
        if rng.random() < 0.3:
            doc[rng.choice(["_id", "_source", "_index"])] = 1
        method = rng.choice(["PUT", "POST", "GET", "DELETE", "HEAD"])
        return method, f"/{index}/_doc/{rng.choice(['1', '%00', 'x' * 600, '..', ''])}", json.dumps(doc).encode(), "application/json"
    if kind == 4:
        return "POST", f"/{index}/_mget", json.dumps(rand_json(rng)).encode(), "application/json"
    if kind == 5:
        return "POST", f"/{index}/_search", deep(rng.choice([100, 1000, 5001, 20001])), "application/json"
    if kind == 6:
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 2000)))
        return rng.choice(["POST", "PUT"]), rng.choice([f"/{index}/_search", "/_bulk", f"/{index}"]), junk, rng.choice(["application/json", "text/plain", ""])
    if kind == 7:
        return "POST", f"/{index}/_search", b"x" * (body_limit + rng.randint(1, 1000)), "application/json"
    if kind == 8:
        path = "/" + "/".join(rng.choice(["_cat", "indices", "_refresh", "_count", "_mapping", "_settings",
                                          "_ingest", "pipeline", "_search", "%ff", "..", "a" * 200, "_update", "1"])
                              for _ in range(rng.randint(0, 5)))
        return rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]), path + rng.choice(["", "?pretty", "?refresh=wait_for", "?size=-1", "?%zz"]), None, "application/json"
    if kind == 9:
        body = {"processors": [{"sparse_encoding": {"model_id": rand_scalar(rng), "field_map": rand_json(rng)}}]}
        return "PUT", f"/_ingest/pipeline/{rng.choice(['p', 'p' * 300, '%2F'])}", json.dumps(body).encode(), "application/json"
    if kind == 10:
        text = "weather " * rng.randint(1, 400_000)
        return "POST", f"/{GOOD}/_search", json.dumps({"query": {"neural_sparse": {"emb": {"query_text": text}}}, "size": 3}).encode(), "application/json"
    return "POST", f"/{index}/_update/{rng.randint(0, 5)}", json.dumps({"doc": rand_json(rng), "doc_as_upsert": rand_scalar(rng)}).encode(), "application/json"


# ---------------------------------------------------------------------------------------------


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsparse", type=Path, default=REPO / "target" / "release" / "nsparse")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--slow-clients", type=int, default=1_000)
    parser.add_argument("--body-limit-mb", type=int, default=8)
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.slow_clients + 512)), hard))

    checks = Checks()
    work = Path(tempfile.mkdtemp(prefix="nsparse-adversarial-"))
    log = work / "serve.log"
    body_limit = args.body_limit_mb << 20
    proc, port = start_server(args.nsparse, work / "data", log, body_limit)
    try:
        with checks.case("setup: a small index for the well-behaved client"):
            mapping = {"mappings": {"properties": {"title": {"type": "text"}, "emb": {"type": "rank_features"}, "n": {"type": "integer"}}}}
            status, body = request(port, "PUT", f"/{GOOD}", json.dumps(mapping).encode())
            assert status == 200, (status, body[:300])
            rng = random.Random(1)
            lines = []
            for i in range(500):
                lines.append(json.dumps({"index": {"_id": str(i)}}))
                words = rng.sample(WORDS, 6)
                lines.append(json.dumps({"title": " ".join(words), "emb": {w: rng.uniform(0.1, 2) for w in words}, "n": i}))
            status, body = request(port, "POST", f"/{GOOD}/_bulk?refresh=true", ("\n".join(lines) + "\n").encode(), "application/x-ndjson")
            assert status == 200 and not json.loads(body)["errors"], body[:300]

        stop = threading.Event()
        good_failures: list[str] = []
        gaps: list[float] = []

        def well_behaved() -> None:
            rng = random.Random(5)
            last = time.monotonic()
            n = 0
            while not stop.is_set():
                n += 1
                word = rng.choice(WORDS)
                try:
                    if n % 5 == 0:
                        status, body = request(port, "PUT", f"/{GOOD}/_doc/w{n}", json.dumps({"title": word, "emb": {word: 1.0}, "n": n}).encode(), timeout=30)
                        ok = status in (200, 201)
                    else:
                        q = {"query": {"neural_sparse": {"emb": {"query_tokens": {word: 1.0}}}}, "size": 5}
                        status, body = request(port, "POST", f"/{GOOD}/_search", json.dumps(q).encode(), timeout=30)
                        ok = status == 200 and json.loads(body)["hits"]["hits"]
                    if not ok:
                        good_failures.append(f"{status} {body[:200]!r}")
                except (OSError, http.client.HTTPException) as e:
                    good_failures.append(repr(e))
                now = time.monotonic()
                gaps.append(now - last)
                last = now
                time.sleep(0.05)

        slow_socks: list[socket.socket] = []
        slow_closed = [0]

        def slow_clients() -> None:
            for _ in range(args.slow_clients):
                if stop.is_set():
                    return
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=5)
                    s.sendall(b"POST /_bulk HTTP/1.1\r\nHost: x\r\nContent-Le")  # never finished
                    slow_socks.append(s)
                except OSError:
                    slow_closed[0] += 1

        statuses: dict[int, int] = {}
        five_xx: list[str] = []
        transport_errors: list[str] = []
        lock = threading.Lock()

        def attacker(worker: int, count: int) -> None:
            rng = random.Random(args.seed * 100 + worker)
            for _ in range(count):
                method, path, body, ctype = hostile_request(rng, body_limit)
                try:
                    status, reply = request(port, method, path, body, ctype, timeout=60)
                except (OSError, http.client.HTTPException) as e:
                    # The server may answer 413 and close before a body over the limit is sent.
                    if len(body or b"") <= body_limit:
                        with lock:
                            transport_errors.append(f"{method} {path[:80]}: {e!r}")
                    continue
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status >= 500:
                        five_xx.append(f"{status} {method} {path[:80]} body={(body or b'')[:200]!r} -> {reply[:300]!r}")

        good = threading.Thread(target=well_behaved)
        good.start()
        slow = threading.Thread(target=slow_clients)
        slow.start()
        started = time.monotonic()
        workers = [threading.Thread(target=attacker, args=(w, args.requests // 8)) for w in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        slow.join()
        elapsed = time.monotonic() - started
        # The slow clients are still holding their sockets: the server must still serve.
        time.sleep(2)
        stop.set()
        good.join()
        still_open = 0
        for s in slow_socks:
            with contextlib.suppress(OSError):
                s.setblocking(False)
                try:
                    still_open += s.recv(1) != b""
                except BlockingIOError:
                    still_open += 1
            s.close()

        print(f"     {sum(statuses.values())} answered in {elapsed:.1f} s; statuses {dict(sorted(statuses.items()))}; "
              f"{len(transport_errors)} connections closed early; slow clients: {len(slow_socks)} connected, "
              f"{still_open} still open at the end, {slow_closed[0]} refused", flush=True)
        with checks.case(f"{args.requests} adversarial requests: no 5xx"):
            assert not five_xx, f"{len(five_xx)} 5xx answers, e.g.:\n       " + "\n       ".join(five_xx[:8])
        with checks.case("adversarial requests: almost every request got an HTTP answer"):
            assert len(transport_errors) <= args.requests // 100, f"{len(transport_errors)} transport errors, e.g. {transport_errors[:5]}"
        with checks.case("no panic, and the server is alive"):
            text = log.read_text(errors="replace")
            assert "panicked" not in text, [l for l in text.splitlines() if "panicked" in l][:5]
            assert proc.poll() is None, f"nsparse serve exited with {proc.returncode}"
            assert request(port, "GET", "/")[0] == 200
        longest = max(gaps) if gaps else float("nan")
        print(f"     well-behaved client: {len(gaps)} requests, longest wait between answers {longest:.2f} s, "
              f"p99 {sorted(gaps)[int(len(gaps) * 0.99)] if gaps else float('nan'):.2f} s", flush=True)
        with checks.case("the well-behaved client was always served"):
            assert not good_failures, f"{len(good_failures)} failures, e.g. {good_failures[:5]}"
            assert gaps and longest < 10, f"a stall of {longest:.1f} s"
        peak = vm_hwm_mb(proc.pid)
        print(f"     server peak RSS (VmHWM) {peak:.0f} MB (limit {args.rss_limit_mb} MB, body limit {args.body_limit_mb} MB)", flush=True)
        with checks.case(f"server peak RSS under {args.rss_limit_mb} MB"):
            assert peak < args.rss_limit_mb, f"{peak:.0f} MB"
    finally:
        proc.kill()
        proc.wait()
        subprocess.run(["rm", "-rf", str(work)])
    print(f"adversarial: {checks.passed} passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
