#!/usr/bin/env python3
"""End-to-end round trip of `rank_features` fields with arbitrary feature names, driven by opensearch-py.

An index with two `rank_features` fields whose feature names no WordPiece vocabulary has
(`tok1`, `brand:acme`, CJK strings, 40-byte names, dotted and empty names), thousands of
documents through `helpers.bulk`, `neural_sparse` with `query_tokens` on each field and on both in
a `bool.should`: every top 10 must equal a brute force computed here from the documents sent.
Then deletes, a restart (SIGTERM) and a SIGKILL, and the same results; and refused values get a
400 `mapper_parsing_exception` naming the feature, per item in `_bulk`, with nothing written.

Prints PASS/FAIL per check and `N passed, M failed`; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import RequestError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import Checks  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
INDEX = "names"
N_DOCS = 3000


def f16(x: float) -> float:
    """The weight as nsparse stores it (half precision, round to nearest even)."""
    return struct.unpack("<e", struct.pack("<e", x))[0]


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def feature_name(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return f"tok{rng.randrange(200)}"
    if kind == 1:
        return f"brand:acme-{rng.randrange(40)}" if rng.random() < 0.9 else "brand:acme"
    if kind == 2:
        return "検索" + "語彙名前"[rng.randrange(4)] + str(rng.randrange(30))
    if kind == 3:
        return f"{rng.randrange(60):x>40}"  # 40 bytes
    if kind == 4:
        return f"dotted.name.{rng.randrange(20)}"
    if kind == 5:
        return ["hello", "world", "ocean", "sparse"][rng.randrange(4)]
    if kind == 6:
        return "" if rng.random() < 0.2 else f"émoji-{rng.randrange(25)}🙂"
    return f"Mixed Case {rng.randrange(30)}"


def features(rng: random.Random) -> dict[str, float]:
    # Weights with few significant bits: exact in f16, so the brute force's sums are exact.
    return {feature_name(rng): rng.randrange(1, 64) / 8 for _ in range(rng.randrange(0, 9))}


def brute_force(docs: dict[str, dict], queries: dict[str, dict[str, float]]) -> list[tuple[str, float]]:
    """Every match of sum over fields of query·doc, best first (float32 sums like the server)."""
    out = []
    for doc_id, doc in docs.items():
        score = 0.0
        for field, query in queries.items():
            vector = doc.get(field) or {}
            s = 0.0
            for name, w in query.items():
                if name in vector:
                    s = f32(s + f32(w * f16(vector[name])))
            score = f32(score + s)
        if score > 0:
            out.append((doc_id, score))
    out.sort(key=lambda p: (-p[1], p[0]))
    return out


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def check_top10(
    client: OpenSearch, query: dict, everything: list[tuple[str, float]], what: str, index: str = INDEX
) -> None:
    resp = client.search(index=index, body={"query": query, "size": 10, "_source": False})
    got = [(h["_id"], h["_score"]) for h in resp["hits"]["hits"]]
    want = everything[:10]
    expect(len(got) == len(want), f"{what}: {len(got)} hits, brute force {len(want)}: {got} vs {want}")
    for i, ((gid, gs), (wid, ws)) in enumerate(zip(got, want)):
        expect(abs(gs - ws) <= 1e-4 * max(1.0, ws), f"{what}: rank {i + 1} score {gs} != {ws}: {got} vs {want}")
        tied = (i > 0 and everything[i - 1][1] == ws) or (i + 1 < len(everything) and everything[i + 1][1] == ws)
        if not tied:
            expect(gid == wid, f"{what}: rank {i + 1} is {gid}, brute force {wid}: {got} vs {want}")


def check_all_queries(client: OpenSearch, docs: dict[str, dict], seed: int, when: str, index: str = INDEX) -> None:
    client.indices.refresh(index=index)
    count = client.count(index=index)["count"]
    expect(count == len(docs), f"{when}: _count {count} != {len(docs)}")
    rng = random.Random(seed)
    for q in range(25):
        qa, qb = features(rng) or {"tok1": 1.0}, features(rng) or {"brand:acme": 1.0}
        qa["a name no document has"] = 2.0
        check_top10(client, {"neural_sparse": {"a": {"query_tokens": qa}}}, brute_force(docs, {"a": qa}), f"{when} a#{q}", index)
        check_top10(client, {"neural_sparse": {"b": {"query_tokens": qb}}}, brute_force(docs, {"b": qb}), f"{when} b#{q}", index)
        both = {"bool": {"should": [{"neural_sparse": {"a": {"query_tokens": qa}}}, {"neural_sparse": {"b": {"query_tokens": qb}}}]}}
        check_top10(client, both, brute_force(docs, {"a": qa, "b": qb}), f"{when} bool#{q}", index)
    resp = client.search(index=index, body={"query": {"neural_sparse": {"a": {"query_tokens": {"nobody has this": 1.0}}}}})
    expect(resp["hits"]["hits"] == [], f"{when}: an unknown name matched {resp['hits']['hits'][:3]}")


class Server:
    def __init__(self, binary: Path, data: Path, log: Path):
        self.binary, self.data, self.log = binary, data, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> OpenSearch:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [str(self.binary), "serve", "--data", str(self.data), "--addr", f"127.0.0.1:{port}"]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        client = OpenSearch(hosts=[{"host": "127.0.0.1", "port": port}], timeout=120)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nsparse serve exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(Exception):
                client.info()
                return client
            time.sleep(0.1)
        raise RuntimeError("nsparse serve did not answer within 120 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsparse", type=Path, default=REPO / "target" / "release" / "nsparse")
    args = parser.parse_args()
    checks = Checks()
    work = Path(tempfile.mkdtemp(prefix="nsparse-sparse-fields-"))
    server = Server(args.nsparse, work / "data", work / "serve.log")
    docs: dict[str, dict] = {}
    try:
        client = server.start()
        with checks.case("two rank_features fields: create, helpers.bulk of arbitrary names"):
            client.indices.create(index=INDEX, body={"mappings": {"properties": {
                "a": {"type": "rank_features"}, "b": {"type": "rank_features"}, "title": {"type": "text"}}}})
            rng = random.Random(7)
            actions = []
            for i in range(N_DOCS):
                doc = {"a": features(rng), "b": features(rng), "title": f"document {i}"}
                docs[f"d{i}"] = doc
                actions.append({"_index": INDEX, "_id": f"d{i}", "_source": doc})
            ok, errors = helpers.bulk(client, actions, chunk_size=500, raise_on_error=False)
            expect(ok == N_DOCS and not errors, f"{ok} written, errors {errors[:3]}")
        with checks.case("_mapping and GET _doc show both fields as sent"):
            mapping = client.indices.get_mapping(index=INDEX)[INDEX]["mappings"]["properties"]
            expect(mapping["a"]["type"] == "rank_features" and mapping["b"]["type"] == "rank_features", str(mapping))
            for doc_id in ["d0", "d1", "d17", "d2999"]:
                got = client.get(index=INDEX, id=doc_id)["_source"]
                expect(got == docs[doc_id], f"{doc_id}: {got} != {docs[doc_id]}")
        with checks.case("neural_sparse on a, on b and on both (bool.should): top 10 = brute force"):
            check_all_queries(client, docs, 1, "after bulk")
        with checks.case("deletes: gone from every field"):
            for i in range(0, N_DOCS, 7):
                client.delete(index=INDEX, id=f"d{i}")
                docs.pop(f"d{i}")
            check_all_queries(client, docs, 2, "after deletes")
        with checks.case("refused values: 400 mapper_parsing_exception naming the feature, nothing written"):
            bad = [
                ("zero", {"a": {"fresh-zero": 1.0, "z": 0}}, "for feature z on field a"),
                ("negative", {"b": {"neg": -1.5}, "a": {"fresh-neg": 1.0}}, "got: -1.5 for feature neg on field b"),
                ("huge", {"a": {"fresh-huge": 1.0, "h": 1e39}}, "must be finite, got: Infinity for feature h"),
                ("text", {"a": {"fresh-text": 1.0, "t": "many"}}, 'For input string: "many"'),
                ("array", {"a": [{"x": 1.0}, {"x": 2.0}]}, "multiple values for the same rank feature [a.x]"),
            ]
            for doc_id, source, cause in bad:
                try:
                    client.index(index=INDEX, id=doc_id, body=source)
                except RequestError as exc:
                    error = exc.info["error"]
                    expect(exc.status_code == 400 and error["type"] == "mapper_parsing_exception", str(exc.info))
                    expect(cause in error["caused_by"]["reason"], f"{doc_id}: {error}")
                else:
                    raise AssertionError(f"{doc_id}: {source} was accepted")
                expect(not client.exists(index=INDEX, id=doc_id), f"{doc_id} was written")
            results = helpers.bulk(client, [{"_index": INDEX, "_id": d, "_source": s} for d, s, _ in bad], raise_on_error=False)
            expect(results[0] == 0 and len(results[1]) == len(bad), f"bulk: {results}")
            for item in results[1]:
                expect(item["index"]["status"] == 400 and item["index"]["error"]["type"] == "mapper_parsing_exception", str(item))
            for fresh in ["fresh-zero", "fresh-neg", "fresh-huge", "fresh-text"]:
                resp = client.search(index=INDEX, body={"query": {"neural_sparse": {"a": {"query_tokens": {fresh: 1.0}}}}})
                expect(resp["hits"]["hits"] == [], f"{fresh} of a refused document is searchable")
        with checks.case("after a clean restart: the same results"):
            server.stop()
            client = server.start()
            check_all_queries(client, docs, 2, "after restart")
        with checks.case("after SIGKILL during new names: every acknowledged document and name"):
            rng = random.Random(99)
            for i in range(N_DOCS, N_DOCS + 300):
                doc = {"a": {f"new-after-restart-{i}": 1.0 + i % 5, **features(rng)}, "b": features(rng)}
                client.index(index=INDEX, id=f"d{i}", body=doc)
                docs[f"d{i}"] = doc
            server.kill()
            client = server.start()
            check_all_queries(client, docs, 3, "after SIGKILL")
            for i in range(N_DOCS, N_DOCS + 300, 37):
                resp = client.search(index=INDEX, body={"query": {"neural_sparse": {"a": {"query_tokens": {f"new-after-restart-{i}": 1.0}}}}})
                expect([h["_id"] for h in resp["hits"]["hits"]] == [f"d{i}"], f"new-after-restart-{i}: {resp['hits']['hits']}")
        with checks.case("nsparse export writes both fields; loaded back, the same results"):
            out = work / "export"
            subprocess.run(
                [str(args.nsparse), "export", "--index", str(work / "data" / "indices" / INDEX / "index"),
                 "--format", "opensearch-bulk", "--index-name", "names-exported", "--output", str(out)],
                check=True, capture_output=True,
            )
            mapping = json.loads((out / "mapping.json").read_text())
            props = mapping["mappings"]["properties"]
            expect(props["a"]["type"] == "rank_features" and props["b"]["type"] == "rank_features", str(props))
            expect("embedding" not in props, f"an extra vector field: {props}")
            client.indices.create(index="names-exported", body=mapping)
            for bulk in sorted(out.glob("bulk-*.ndjson")):
                resp = client.bulk(body=bulk.read_text())
                expect(not resp["errors"], f"{bulk.name}: {str(resp)[:500]}")
            check_all_queries(client, docs, 4, "exported and loaded", "names-exported")
            for doc_id in ["d1", "d2", "d2999"]:
                got = client.get(index="names-exported", id=doc_id)["_source"]
                expect(got == docs[doc_id], f"{doc_id}: {got} != {docs[doc_id]}")
            client.indices.delete(index="names-exported")
        with checks.case("delete the index"):
            client.indices.delete(index=INDEX)
            expect(not client.indices.exists(index=INDEX), "index still exists")
    except Exception as exc:  # a failure to start: report it as a failed check
        with checks.case("server runs"):
            raise exc
    finally:
        server.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(f"sparse fields: {checks.passed} passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
