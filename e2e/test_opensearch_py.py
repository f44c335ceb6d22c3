#!/usr/bin/env python3
"""End-to-end acceptance test of `nsparse serve`, driven by the real opensearch-py client.

The expectations are OpenSearch's documented behaviour (opensearch-py's API, OpenSearch's REST
responses), not whatever nsparse happens to do: when the server deviates, the check fails and the
server is what needs fixing. Expected values are computed independently here: document vectors
come from the `nsparse encode` CLI and from the documents' `_source`, and every neural score is
recomputed as a dot product in Python.

Run through `e2e/run.sh` (it makes the virtualenv with opensearch-py). Every check prints PASS or
FAIL with what was sent and what came back; the exit status is 1 when any check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import (
    ConflictError,
    ConnectionError as ClientConnectionError,
    NotFoundError,
    RequestError,
    TransportError,
)

REPO = Path(__file__).resolve().parent.parent
INDEX = "cranfield-e2e"
PIPELINE = "sparse-ingest"
SEARCH_PIPELINE = "two-phase"
VECTOR_FIELD = "embedding"
N_TEXT_DOCS = 150  # encoded on ingest by the sparse_encoding pipeline
N_VECTOR_DOCS = 150  # carry their own pre-encoded vector
PRUNE_RATIO = 0.1
CATEGORIES = ["aero", "heat", "struct"]
# OpenSearch stores rank_features with ~9 significant bits and nsparse stores f16 weights, so a
# score may differ from the exact dot product by a few parts per thousand.
SCORE_RTOL = 1e-2
SCORE_ATOL = 1e-5


class Checks:
    """Runs named checks, records PASS/FAIL, and keeps going after a failure."""

    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def case(self, name: str):
        started = time.monotonic()
        try:
            yield
        except Exception as exc:  # a failed check must not stop the others
            detail = describe(exc)
            self.failed.append((name, detail))
            print(f"FAIL {name}\n     {detail}", flush=True)
        else:
            self.passed.append(name)
            print(f"PASS {name} ({time.monotonic() - started:.2f} s)", flush=True)

    def summary(self) -> int:
        total = len(self.passed) + len(self.failed)
        print(f"\n{len(self.passed)}/{total} checks passed")
        for name, detail in self.failed:
            print(f"  FAILED: {name}: {detail.splitlines()[0][:300]}")
        return 1 if self.failed else 0


def describe(exc: BaseException) -> str:
    if isinstance(exc, TransportError):
        return f"{type(exc).__name__} status={exc.status_code} error={exc.error!r} info={str(exc.info)[:800]}"
    if isinstance(exc, AssertionError):
        return f"assertion: {exc}"
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "".join(tb[-3:]).strip()


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def expect_error(call, exc_type, status: int, error_type: str | None = None):
    """Runs `call`, which must raise `exc_type` with `status` and an OpenSearch error body."""
    try:
        result = call()
    except exc_type as exc:
        expect(
            exc.status_code == status, f"status {exc.status_code}, expected {status}: {exc.info}"
        )
        if error_type is not None:
            expect(
                isinstance(exc.info, dict), f"error body is not OpenSearch JSON: {exc.info!r}"
            )
            error = exc.info.get("error")
            expect(
                isinstance(error, dict),
                f"body has no error object (OpenSearch: {{error: {{root_cause, type, reason}}, status}}): {exc.info}",
            )
            expect(
                error.get("type") == error_type,
                f"error.type {error.get('type')!r}, expected {error_type!r}: {exc.info}",
            )
            expect(isinstance(error.get("reason"), str), f"error.reason missing: {exc.info}")
            expect(
                isinstance(error.get("root_cause"), list) and error["root_cause"],
                f"error.root_cause missing: {exc.info}",
            )
            expect(exc.info.get("status") == status, f"body status != {status}: {exc.info}")
        return exc
    raise AssertionError(f"expected {exc_type.__name__} ({status}), got a success: {result}")


# ---------------------------------------------------------------------------------------------
# Expected values, computed without the server.


def dot(query: dict[str, float], vector: dict[str, float]) -> float:
    return sum(w * vector.get(t, 0.0) for t, w in query.items())


def close(a: float, b: float) -> bool:
    return abs(a - b) <= SCORE_ATOL + SCORE_RTOL * max(abs(a), abs(b))


def expected_neural(query: dict[str, float], docs: dict[str, dict], accept=None) -> dict[str, float]:
    """Exact neural scores of the live documents `accept` admits; only positive scores match."""
    return expected_neural_field(query, docs, VECTOR_FIELD, accept)


def expected_neural_field(query: dict[str, float], docs: dict[str, dict], field: str, accept=None) -> dict[str, float]:
    out = {}
    for doc_id, source in docs.items():
        if accept is not None and not accept(source):
            continue
        score = dot(query, source.get(field, {}))
        if score > 0:
            out[doc_id] = score
    return out


def check_ranking(resp: dict, expected: dict[str, float], size: int, start: int = 0) -> list[str]:
    """The page [start, start+size) of the exact ranking `expected`, with scores and total.

    Near-ties may swap within the score tolerance; anything else out of place fails.
    """
    hits = resp["hits"]["hits"]
    ranked = sorted(expected.items(), key=lambda kv: -kv[1])
    want = ranked[start : start + size]
    ids = [h["_id"] for h in hits]
    expect(
        len(hits) == len(want),
        f"{len(hits)} hits, expected {len(want)} (from={start}, size={size}, {len(expected)} matching docs): {ids}",
    )
    for hit in hits:
        expect(hit["_id"] in expected, f"hit {hit['_id']} should not match at all (exact score 0)")
        expect(
            close(hit["_score"], expected[hit["_id"]]),
            f"hit {hit['_id']} _score {hit['_score']} but its exact dot product is {expected[hit['_id']]}",
        )
    scores = [h["_score"] for h in hits]
    expect(all(a >= b for a, b in zip(scores, scores[1:])), f"hits not sorted by _score: {scores}")
    for (want_id, want_score), hit in zip(want, hits):
        expect(
            hit["_id"] == want_id or close(hit["_score"], want_score),
            f"rank of {want_id} (score {want_score}) holds {hit['_id']} (score {hit['_score']}); expected order {[i for i, _ in want]}, got {ids}",
        )
    total = resp["hits"]["total"]
    expect(
        total == {"value": len(expected), "relation": "eq"},
        f"hits.total {total}, expected {{'value': {len(expected)}, 'relation': 'eq'}} (OpenSearch counts exactly up to 10,000)",
    )
    return ids


def vector_mismatch(want: dict[str, float], got: dict[str, float]) -> str | None:
    """Where `got` differs from `want` by more than 1e-4, ignoring tokens at the prune cut."""
    cut = PRUNE_RATIO * max(want.values(), default=0.0)
    for token in set(want) | set(got):
        a, b = want.get(token, 0.0), got.get(token, 0.0)
        if abs(a - b) > 1e-4 and abs(max(a, b) - cut) > 1e-4:
            return f"token {token!r}: expected {a}, got {b}"
    return None


def first_difference(sent, got, path: str = "_source") -> str | None:
    """Where `got` first differs from `sent` (OpenSearch returns the source exactly as sent)."""
    if isinstance(sent, dict) and isinstance(got, dict):
        for key in sorted(set(sent) | set(got)):
            if key not in got or key not in sent:
                return f"{path}.{key}: sent {sent.get(key, '<absent>')!r:.80}, got {got.get(key, '<absent>')!r:.80}"
            diff = first_difference(sent[key], got[key], f"{path}.{key}")
            if diff:
                return diff
        return None
    if sent != got or type(sent) is not type(got):
        return f"{path}: sent {sent!r:.80}, got {got!r:.80}"
    return None


def check_two_phase(resp: dict, query: dict, docs: dict, k: int, prune_ratio: float, expansion_rate: float):
    """OpenSearch's two-phase search: the tokens of weight >= prune_ratio x the largest select the
    top ceil(k x expansion_rate) documents; those are rescored with the whole query."""
    top_weight = max(query.values())
    high = {t: w for t, w in query.items() if w >= prune_ratio * top_weight}
    window = max(k, int(-(-k * expansion_rate // 1)))
    phase1 = sorted(expected_neural(high, docs).items(), key=lambda kv: -kv[1])
    cutoff = phase1[window - 1][1] if len(phase1) >= window else 0.0
    surely_in = {i for i, v in phase1 if v > cutoff and not close(v, cutoff)}
    maybe_in = {i for i, v in phase1 if v >= cutoff or close(v, cutoff)}
    full = expected_neural(query, docs)
    hits = resp["hits"]["hits"]
    expect(len(hits) == min(k, len(phase1)), f"{len(hits)} hits, expected {min(k, len(phase1))}")
    for h in hits:
        expect(h["_id"] in maybe_in, f"hit {h['_id']} is outside the phase-one window of {window}")
        expect(close(h["_score"], full[h["_id"]]), f"hit {h['_id']} score {h['_score']}, whole-query dot product {full[h['_id']]}")
    scores = [h["_score"] for h in hits]
    expect(all(a >= b for a, b in zip(scores, scores[1:])), f"hits not sorted: {scores}")
    if len(hits) == k:
        floor = scores[-1]
        returned = {h["_id"] for h in hits}
        missed = [i for i in surely_in if i not in returned and full[i] > floor and not close(full[i], floor)]
        expect(not missed, f"window docs {missed[:5]} score above the last hit ({floor}) but were not returned")


def words(text: str) -> set[str]:
    """The words OpenSearch's standard analyzer makes of plain ASCII English text."""
    return set(re.findall(r"[a-z0-9]+", text.lower()))


# ---------------------------------------------------------------------------------------------
# The server process.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary: Path, data: Path, model: Path, log: Path, extra: list[str]):
        self.binary, self.data, self.model, self.log, self.extra = binary, data, model, log, extra
        self.body_limit = 0
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> OpenSearch:
        self.port = free_port()
        cmd = [
            str(self.binary),
            "serve",
            "--data",
            str(self.data),
            "--addr",
            f"127.0.0.1:{self.port}",
            "--model",
            str(self.model),
            "--max-body-bytes",
            str(self.body_limit),
            *self.extra,
        ]
        print(f"starting: {' '.join(cmd)}", flush=True)
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        client = OpenSearch(
            hosts=[{"host": "127.0.0.1", "port": self.port}],
            timeout=120,
            max_retries=0,
            retry_on_timeout=False,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nsparse serve exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(Exception):
                if client.ping():
                    return client
            time.sleep(0.2)
        raise RuntimeError(f"nsparse serve did not answer GET / within 120 s:\n{self.tail()}")

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"nsparse serve ignored SIGTERM for {timeout} s (killed)")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def run_cli(binary: Path, *args: str) -> str:
    out = subprocess.run([str(binary), *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"nsparse {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def read_vectors(path: Path) -> dict[str, dict[str, float]]:
    with open(path) as f:
        return {line["_id"]: line["vector"] for line in map(json.loads, f)}


# ---------------------------------------------------------------------------------------------
# The test.


class E2E:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args = args
        self.work = work
        self.binary = args.nsparse
        self.model = args.model
        self.model_id = args.model_id or args.model.name
        self.checks = Checks()
        self.server = Server(self.binary, work / "data", self.model, work / "server.log", args.serve_arg)
        self.server.body_limit = args.body_limit_mb * 1024 * 1024
        self.client: OpenSearch | None = None
        self.live: dict[str, dict] = {}  # what the index must hold: _id -> _source
        self.corpus: list[dict] = []

    # -- data ---------------------------------------------------------------------------------

    def prepare_corpus(self) -> None:
        """300 Cranfield abstracts with keyword/numeric fields; vectors from the nsparse CLI."""
        with open(REPO / "data" / "cranfield" / "corpus.jsonl") as f:
            raw = [json.loads(line) for _, line in zip(range(N_TEXT_DOCS + N_VECTOR_DOCS), f)]
        texts = self.work / "texts.jsonl"
        with open(texts, "w") as f:
            for doc in raw:
                f.write(json.dumps({"_id": doc["_id"], "text": doc["text"]}) + "\n")
        # What the sparse_encoding processor must produce (same model, same pruning) ...
        run_cli(
            self.binary, "encode", "documents", "--model", str(self.model),
            "--prune-type", "max_ratio", "--prune-ratio", str(PRUNE_RATIO),
            "--input", str(texts), "--output", str(self.work / "doc-vectors.jsonl"),
        )  # fmt: skip
        # ... and the pre-encoded vectors: inference-free weights (idf of each distinct token).
        run_cli(
            self.binary, "encode", "queries",
            "--input", str(texts), "--output", str(self.work / "idf-vectors.jsonl"),
        )  # fmt: skip
        self.model_vectors = read_vectors(self.work / "doc-vectors.jsonl")
        idf_vectors = read_vectors(self.work / "idf-vectors.jsonl")
        for i, doc in enumerate(raw):
            source = {
                "title": doc["title"],
                "text": doc["text"],
                "category": CATEGORIES[i % 3],
                "year": 1950 + i % 20,
                "kind": "text" if i < N_TEXT_DOCS else "vector",
            }
            if i >= N_TEXT_DOCS:
                source[VECTOR_FIELD] = idf_vectors[doc["_id"]]
            self.corpus.append({"_id": doc["_id"], "_source": source})

    def query_vector(self, text: str, model: bool) -> dict[str, float]:
        """The query encoding of `text`: the index's model, or the built-in bert-uncased idf."""
        args = ["encode", "query"] + (["--model", str(self.model)] if model else []) + [text]
        return json.loads(run_cli(self.binary, *args))

    # -- run ----------------------------------------------------------------------------------

    def run(self) -> int:
        c = self.checks
        try:
            self.prepare_corpus()
            self.client = self.server.start()
        except Exception as exc:
            print(f"FAIL setup: {describe(exc)}")
            self.server.kill()
            return 1
        try:
            self.cluster_info()
            self.create_pipeline_and_index()
            self.bulk_ingest()
            self.pipeline_output()
            self.counts()
            self.neural_query_tokens()
            self.neural_query_text()
            self.match_queries()
            self.bool_queries()
            self.paging_and_source()
            self.two_phase()
            self.document_crud()
            self.bulk_actions()
            self.errors()
            self.exported_index()
            self.shutdown_and_restart()
        finally:
            self.server.kill()
            if c.failed:
                print(f"\nserver log tail ({self.server.log}):\n{self.server.tail()}")
        return c.summary()

    # -- checks -------------------------------------------------------------------------------

    def cluster_info(self) -> None:
        with self.checks.case("GET / returns the cluster-info shape"):
            info = self.client.info()
            expect(isinstance(info.get("version", {}).get("number"), str), f"no version.number: {info}")
            expect("cluster_name" in info, f"no cluster_name: {info}")

    def create_pipeline_and_index(self) -> None:
        c, cl = self.checks, self.client
        with c.case("PUT /_ingest/pipeline with sparse_encoding (field_map, prune_type, prune_ratio)"):
            resp = cl.ingest.put_pipeline(
                id=PIPELINE,
                body={
                    "description": "encode text with the tiny model",
                    "processors": [
                        {
                            "sparse_encoding": {
                                "model_id": self.model_id,
                                "prune_type": "max_ratio",
                                "prune_ratio": PRUNE_RATIO,
                                "field_map": {"text": VECTOR_FIELD},
                            }
                        }
                    ],
                },
            )
            expect(resp.get("acknowledged") is True, f"not acknowledged: {resp}")
            got = cl.ingest.get_pipeline(id=PIPELINE)
            expect(PIPELINE in got, f"GET pipeline does not return it: {got}")
        with c.case("PUT /{index} with rank_features + text + keyword + numeric and default_pipeline"):
            resp = cl.indices.create(
                index=INDEX,
                body={
                    "settings": {"index": {"default_pipeline": PIPELINE}},
                    "mappings": {
                        "properties": {
                            VECTOR_FIELD: {"type": "rank_features"},
                            "title": {"type": "text"},
                            "text": {"type": "text"},
                            "category": {"type": "keyword"},
                            "kind": {"type": "keyword"},
                            "year": {"type": "integer"},
                        }
                    },
                },
            )
            expect(
                resp.get("acknowledged") is True and resp.get("index") == INDEX,
                f"unexpected create response: {resp}",
            )
            expect(cl.indices.exists(index=INDEX) is True, "HEAD /{index} says it does not exist")

    def bulk_ingest(self) -> None:
        with self.checks.case(f"helpers.bulk {len(self.corpus)} docs (half via pipeline, half pre-encoded)"):
            actions = []
            for doc in self.corpus:
                action = {"_index": INDEX, "_id": doc["_id"], "_source": doc["_source"]}
                if VECTOR_FIELD in doc["_source"]:
                    action["pipeline"] = "_none"  # keep the document's own vector
                actions.append(action)
            ok, errors = helpers.bulk(self.client, actions, chunk_size=100, max_retries=0)
            expect(ok == len(actions) and not errors, f"bulk: {ok} ok, errors {errors[:3]}")
            for doc in self.corpus:
                self.live[doc["_id"]] = dict(doc["_source"])
            resp = self.client.indices.refresh(index=INDEX)
            expect("_shards" in resp, f"refresh response has no _shards: {resp}")

    def pipeline_output(self) -> None:
        """OpenSearch writes the processor's output into _source; it must be the model's vector."""
        with self.checks.case("sparse_encoding output in _source equals `nsparse encode documents` (1e-4)"):
            worst = (0.0, "")
            for doc in self.corpus[:N_TEXT_DOCS]:
                got = self.client.get(index=INDEX, id=doc["_id"])
                expect(got["found"] is True and got["_id"] == doc["_id"], f"GET {doc['_id']}: {got}")
                vector = got["_source"].get(VECTOR_FIELD)
                expect(isinstance(vector, dict) and vector, f"doc {doc['_id']}: no {VECTOR_FIELD} in _source: {list(got['_source'])}")
                want = self.model_vectors[doc["_id"]]
                mismatch = vector_mismatch(want, vector)
                expect(mismatch is None, f"doc {doc['_id']}: {mismatch}")
                worst = max(worst, max((abs(want.get(t, 0.0) - w), t) for t, w in vector.items()))
                self.live[doc["_id"]][VECTOR_FIELD] = vector
            print(f"     largest weight difference {worst[0]:.2e}")
        with self.checks.case("pre-encoded docs come back unchanged (pipeline=_none)"):
            for doc in self.corpus[N_TEXT_DOCS:]:
                got = self.client.get(index=INDEX, id=doc["_id"])["_source"]
                diff = first_difference(doc["_source"], got)
                expect(diff is None, f"doc {doc['_id']}: _source differs from what was sent: {diff}")

    def counts(self) -> None:
        c, cl = self.checks, self.client
        with c.case("_count: all docs, and with a term query"):
            got = cl.count(index=INDEX)
            expect(got["count"] == len(self.live), f"_count {got}, expected {len(self.live)}")
            got = cl.count(index=INDEX, body={"query": {"term": {"kind": "vector"}}})
            expect(got["count"] == N_VECTOR_DOCS, f"_count kind=vector {got}, expected {N_VECTOR_DOCS}")
        with c.case("_cat/indices lists the index with docs.count"):
            rows = cl.cat.indices(index=INDEX, format="json")
            row = next((r for r in rows if r.get("index") == INDEX), None)
            expect(row is not None, f"{INDEX} not in _cat/indices: {rows}")
            expect(str(row.get("docs.count")) == str(len(self.live)), f"docs.count {row}")

    def search(self, body: dict, **params) -> dict:
        return self.client.search(index=INDEX, body=body, params=params or None)

    def neural_query_tokens(self) -> None:
        c = self.checks
        probe = self.corpus[N_TEXT_DOCS + 7]["_id"]
        with c.case("neural_sparse query_tokens: exact top 10, scores = dot products, total"):
            query = dict(list(self.live[probe][VECTOR_FIELD].items())[:12])
            resp = self.search({"query": {"neural_sparse": {VECTOR_FIELD: {"query_tokens": query}}}, "size": 10})
            ids = check_ranking(resp, expected_neural(query, self.live), 10)
            expect(isinstance(resp.get("took"), int), f"no integer took: {resp.keys()}")
            expect("_source" in resp["hits"]["hits"][0], "hits carry no _source by default")
            print(f"     top ids {ids[:5]}")
        with c.case("neural_sparse query_tokens of a token no doc has: zero hits"):
            resp = self.search({"query": {"neural_sparse": {VECTOR_FIELD: {"query_tokens": {"helicopter": 2.0}}}}})
            expected = expected_neural({"helicopter": 2.0}, self.live)
            check_ranking(resp, expected, 10)

    def neural_query_text(self) -> None:
        c = self.checks
        for i in (N_TEXT_DOCS + 3, N_TEXT_DOCS + 60, N_TEXT_DOCS + 121):
            doc = self.corpus[i]
            text = doc["_source"]["text"]
            with c.case(f"neural_sparse query_text + analyzer bert-uncased: doc {doc['_id']}'s text finds it first"):
                query = self.query_vector(text, model=False)
                resp = self.search({
                    "query": {"neural_sparse": {VECTOR_FIELD: {"query_text": text, "analyzer": "bert-uncased"}}},
                    "size": 5,
                })  # fmt: skip
                ids = check_ranking(resp, expected_neural(query, self.live), 5)
                expect(ids[0] == doc["_id"], f"top hit {ids[0]}, expected {doc['_id']}")
        with c.case("neural_sparse query_text + model_id: ranking of the model's query vector"):
            text = "effect of propeller slipstream on wing lift"
            query = self.query_vector(text, model=True)
            resp = self.search({
                "query": {"neural_sparse": {VECTOR_FIELD: {"query_text": text, "model_id": self.model_id}}},
                "size": 10,
            })  # fmt: skip
            check_ranking(resp, expected_neural(query, self.live), 10)

    def match_queries(self) -> None:
        c = self.checks
        for word, field in (("flutter", "text"), ("propeller", "text"), ("flutter", "title")):
            with c.case(f"match {field}:{word}: exactly the docs containing the word"):
                resp = self.search({"query": {"match": {field: word}}, "size": 100})
                want = {i for i, s in self.live.items() if word in words(s[field])}
                got = {h["_id"] for h in resp["hits"]["hits"]}
                expect(got == want, f"hits {sorted(got)}, expected {sorted(want)}")
                expect(resp["hits"]["total"]["value"] == len(want), f"total {resp['hits']['total']}, expected {len(want)}")
                expect(all(h["_score"] > 0 for h in resp["hits"]["hits"]), "a BM25 hit has score <= 0")
        with c.case("match text:helicopter (absent word): no hits"):
            resp = self.search({"query": {"match": {"text": "helicopter"}}})
            expect(resp["hits"]["hits"] == [] and resp["hits"]["total"]["value"] == 0, f"{resp['hits']}")
        for i in (5, 77, 140):
            doc = self.corpus[i]
            with c.case(f"match with doc {doc['_id']}'s whole text: it is the top hit"):
                resp = self.search({"query": {"match": {"text": doc["_source"]["text"]}}, "size": 3})
                ids = [h["_id"] for h in resp["hits"]["hits"]]
                expect(ids and ids[0] == doc["_id"], f"top hits {ids}, expected {doc['_id']} first")

    def bool_queries(self) -> None:
        c = self.checks
        query = dict(list(self.live[self.corpus[N_TEXT_DOCS + 20]["_id"]][VECTOR_FIELD].items())[:15])
        neural = {"neural_sparse": {VECTOR_FIELD: {"query_tokens": query}}}
        with c.case("bool must neural_sparse + filter term + range: exact top 10 among filtered"):
            resp = self.search({
                "query": {"bool": {
                    "must": [neural],
                    "filter": [{"term": {"category": "heat"}}, {"range": {"year": {"gte": 1955, "lt": 1965}}}],
                }},
                "size": 10,
            })  # fmt: skip
            accept = lambda s: s["category"] == "heat" and 1955 <= s["year"] < 1965  # noqa: E731
            check_ranking(resp, expected_neural(query, self.live, accept), 10)
            unfiltered = expected_neural(query, self.live)
            excluded = [i for i in unfiltered if not accept(self.live[i])]
            expect(excluded, "test data: the filter should exclude some matching docs")
        with c.case("bool filter only (terms + range): hits.total = docs passing the filter"):
            resp = self.search({
                "query": {"bool": {"filter": [
                    {"terms": {"category": ["aero", "struct"]}}, {"range": {"year": {"lte": 1952}}},
                ]}},
                "size": 200,
            })  # fmt: skip
            want = {i for i, s in self.live.items() if s["category"] in ("aero", "struct") and s["year"] <= 1952}
            got = {h["_id"] for h in resp["hits"]["hits"]}
            expect(got == want, f"{len(got)} hits, expected {len(want)}: extra {sorted(got - want)[:5]}, missing {sorted(want - got)[:5]}")
            expect(resp["hits"]["total"]["value"] == len(want), f"total {resp['hits']['total']}, expected {len(want)}")
        with c.case("bool should of two neural_sparse clauses: scores add"):
            other = dict(list(self.live[self.corpus[N_TEXT_DOCS + 90]["_id"]][VECTOR_FIELD].items())[:10])
            resp = self.search({
                "query": {"bool": {"should": [neural, {"neural_sparse": {VECTOR_FIELD: {"query_tokens": other}}}]}},
                "size": 10,
            })  # fmt: skip
            a, b = expected_neural(query, self.live), expected_neural(other, self.live)
            both = {i: a.get(i, 0.0) + b.get(i, 0.0) for i in set(a) | set(b)}
            check_ranking(resp, both, 10)
        with c.case("bool must match + filter term kind: hits satisfy the filter"):
            resp = self.search({
                "query": {"bool": {"must": [{"match": {"text": "boundary layer"}}], "filter": [{"term": {"kind": "vector"}}]}},
                "size": 50,
            })  # fmt: skip
            hits = resp["hits"]["hits"]
            expect(hits, "no hits")
            expect(all(self.live[h["_id"]]["kind"] == "vector" for h in hits), "a hit fails the filter")
            want = {i for i, s in self.live.items() if s["kind"] == "vector" and words(s["text"]) & {"boundary", "layer"}}
            expect(resp["hits"]["total"]["value"] == len(want), f"total {resp['hits']['total']}, expected {len(want)}")

    def paging_and_source(self) -> None:
        c = self.checks
        query = dict(list(self.live[self.corpus[N_TEXT_DOCS + 33]["_id"]][VECTOR_FIELD].items())[:12])
        neural = {"neural_sparse": {VECTOR_FIELD: {"query_tokens": query}}}
        expected = expected_neural(query, self.live)
        with c.case("from/size: from=5,size=5 is ranks 5..9 of size=10"):
            first = self.search({"query": neural, "size": 10})
            page = self.search({"query": neural, "from": 5, "size": 5})
            check_ranking(page, expected, 5, start=5)
            expect(
                [h["_id"] for h in page["hits"]["hits"]] == [h["_id"] for h in first["hits"]["hits"]][5:],
                "page 2 differs from ranks 5..9",
            )
        with c.case("_source includes, excludes and false"):
            resp = self.search({"query": neural, "size": 5, "_source": {"includes": ["title", "year"]}})
            for h in resp["hits"]["hits"]:
                expect(set(h["_source"]) == {"title", "year"}, f"includes: _source keys {set(h['_source'])}")
                expect(h["_source"]["title"] == self.live[h["_id"]]["title"], "includes: wrong title")
            resp = self.search({"query": neural, "size": 5, "_source": {"excludes": [VECTOR_FIELD, "text"]}})
            for h in resp["hits"]["hits"]:
                expect(set(h["_source"]) == {"title", "category", "year", "kind"}, f"excludes: keys {set(h['_source'])}")
            resp = self.search({"query": neural, "size": 5, "_source": False})
            expect(all("_source" not in h for h in resp["hits"]["hits"]), "_source: false still returns _source")
            resp = self.search({"query": neural, "size": 3}, _source_includes="category")
            for h in resp["hits"]["hits"]:
                expect(set(h["_source"]) == {"category"}, f"?_source_includes: keys {set(h['_source'])}")
        with c.case("explain: each hit's _explanation.value equals its _score"):
            resp = self.search({"query": neural, "size": 3, "explain": True})
            for h in resp["hits"]["hits"]:
                e = h.get("_explanation")
                expect(isinstance(e, dict) and "description" in e and "details" in e, f"no _explanation: {h.keys()}")
                expect(close(e["value"], h["_score"]), f"_explanation.value {e['value']} != _score {h['_score']}")

    def two_phase(self) -> None:
        c, cl = self.checks, self.client
        with c.case("search pipeline neural_sparse_two_phase_processor: same top hits, exact scores"):
            resp = cl.transport.perform_request(
                "PUT",
                f"/_search/pipeline/{SEARCH_PIPELINE}",
                body={
                    "request_processors": [
                        {
                            "neural_sparse_two_phase_processor": {
                                "tag": "neural-sparse",
                                "enabled": True,
                                "two_phase_parameter": {
                                    "prune_ratio": 0.4,
                                    "expansion_rate": 5.0,
                                    "max_window_size": 10000,
                                },
                            }
                        }
                    ]
                },
            )
            expect(resp.get("acknowledged") is True, f"not acknowledged: {resp}")
            # A long model query: many low-weight tokens, which phase one skips.
            query = self.query_vector("supersonic flow over a flat plate with heat transfer", model=True)
            body = {"query": {"neural_sparse": {VECTOR_FIELD: {"query_tokens": query}}}, "size": 10}
            phased = self.search(body, search_pipeline=SEARCH_PIPELINE)
            check_two_phase(phased, query, self.live, k=10, prune_ratio=0.4, expansion_rate=5.0)
            exact = self.search(body)
            check_ranking(exact, expected_neural(query, self.live), 10)
            top = lambda r: [h["_id"] for h in r["hits"]["hits"]]  # noqa: E731
            print(f"     two-phase top 3 {top(phased)[:3]}, exact top 3 {top(exact)[:3]}")

    def document_crud(self) -> None:
        c, cl = self.checks, self.client
        victim = self.corpus[N_TEXT_DOCS + 7]["_id"]
        victim_query = dict(list(self.live[victim][VECTOR_FIELD].items())[:12])
        with c.case(f"DELETE /{{index}}/_doc/{victim}: gone from GET, _count and search"):
            resp = cl.delete(index=INDEX, id=victim)
            expect(resp.get("result") == "deleted" and resp.get("_id") == victim, f"delete response {resp}")
            del self.live[victim]
            exc = expect_error(lambda: cl.get(index=INDEX, id=victim), NotFoundError, 404)
            expect(exc.info.get("found") is False, f"GET deleted doc body {exc.info}")
            cl.indices.refresh(index=INDEX)
            expect(cl.count(index=INDEX)["count"] == len(self.live), "count did not drop by one")
            resp = self.search({"query": {"neural_sparse": {VECTOR_FIELD: {"query_tokens": victim_query}}}, "size": 10})
            expect(victim not in [h["_id"] for h in resp["hits"]["hits"]], "deleted doc still a hit")
            check_ranking(resp, expected_neural(victim_query, self.live), 10)
        with c.case("DELETE of a missing doc: 404 with result not_found"):
            exc = expect_error(lambda: cl.delete(index=INDEX, id=victim), NotFoundError, 404)
            expect(exc.info.get("result") == "not_found", f"body {exc.info}")
        with c.case("POST /{index}/_doc (auto id) runs the default pipeline; PUT again is an update"):
            resp = cl.index(index=INDEX, body={"title": "new", "text": "a wing in a propeller slipstream", "category": "aero", "year": 1999, "kind": "text"})
            new_id = resp.get("_id")
            expect(resp.get("result") == "created" and isinstance(new_id, str) and new_id, f"index response {resp}")
            got = cl.get(index=INDEX, id=new_id)
            vector = got["_source"].get(VECTOR_FIELD)
            want = self.query_vector_doc("a wing in a propeller slipstream")
            expect(isinstance(vector, dict), f"auto-id doc not encoded by the pipeline: {got['_source']}")
            mismatch = vector_mismatch(want, vector)
            expect(mismatch is None, f"auto-id doc's vector: {mismatch}")
            self.live[new_id] = got["_source"]
            resp = cl.index(index=INDEX, id=new_id, body=dict(got["_source"], year=2001), params={"pipeline": "_none"})
            expect(resp.get("result") == "updated" and resp.get("_version") == 2, f"re-index response {resp}")
            self.live[new_id]["year"] = 2001
            expect(cl.get(index=INDEX, id=new_id)["_source"]["year"] == 2001, "re-indexed doc not changed")

    def query_vector_doc(self, text: str) -> dict[str, float]:
        out = run_cli(
            self.binary, "encode", "document", "--model", str(self.model),
            "--prune-type", "max_ratio", "--prune-ratio", str(PRUNE_RATIO), text,
        )  # fmt: skip
        return json.loads(out)

    def bulk_actions(self) -> None:
        c, cl = self.checks, self.client
        target = self.corpus[N_TEXT_DOCS + 11]["_id"]
        gone = self.corpus[N_TEXT_DOCS + 12]["_id"]
        with c.case("helpers.bulk update (doc) and delete actions"):
            ok, errors = helpers.bulk(
                cl,
                [
                    {"_op_type": "update", "_index": INDEX, "_id": target, "doc": {"year": 1900}},
                    {"_op_type": "delete", "_index": INDEX, "_id": gone},
                ],
                max_retries=0,
            )
            expect(ok == 2 and not errors, f"bulk: {ok} ok, errors {errors}")
            src = cl.get(index=INDEX, id=target)["_source"]
            expect(src["year"] == 1900 and src["title"] == self.live[target]["title"], f"update: {src}")
            self.live[target]["year"] = 1900
            del self.live[gone]
            expect_error(lambda: cl.get(index=INDEX, id=gone), NotFoundError, 404)
        with c.case("bulk create of an existing _id: item status 409 version_conflict_engine_exception"):
            ok, errors = helpers.bulk(
                cl,
                [{"_op_type": "create", "_index": INDEX, "_id": target, "_source": {"title": "dup"}, "pipeline": "_none"}],
                raise_on_error=False,
                max_retries=0,
            )
            expect(ok == 0 and len(errors) == 1, f"{ok} ok, errors {errors}")
            item = errors[0].get("create", {})
            expect(item.get("status") == 409, f"item {item}")
            expect(item.get("error", {}).get("type") == "version_conflict_engine_exception", f"item {item}")
        with c.case("raw _bulk: per-item results shaped like OpenSearch's"):
            body = "\n".join(json.dumps(x) for x in [
                {"index": {"_index": INDEX, "_id": "bulk-a", "pipeline": "_none"}},
                {"title": "a", "category": "aero", "year": 1960, "kind": "vector", VECTOR_FIELD: {"wing": 1.5}},
                {"delete": {"_index": INDEX, "_id": "no-such-doc"}},
            ]) + "\n"  # fmt: skip
            resp = cl.bulk(body=body)
            expect(resp.get("errors") is False, f"errors flag {resp.get('errors')} (a delete of a missing doc is not an error): {resp}")
            items = resp["items"]
            expect(len(items) == 2, f"items {items}")
            expect(items[0]["index"]["status"] == 201 and items[0]["index"]["result"] == "created", f"{items[0]}")
            expect(items[1]["delete"]["status"] == 404 and items[1]["delete"]["result"] == "not_found", f"{items[1]}")
            self.live["bulk-a"] = {"title": "a", "category": "aero", "year": 1960, "kind": "vector", VECTOR_FIELD: {"wing": 1.5}}
            cl.indices.refresh(index=INDEX)

    def errors(self) -> None:
        c, cl = self.checks, self.client
        with c.case("malformed JSON body: 400 RequestError with an OpenSearch error body"):
            exc = expect_error(
                lambda: cl.transport.perform_request(
                    "POST", f"/{INDEX}/_search", body='{"query": {"match_all": {}', headers={"content-type": "application/json"}
                ),
                RequestError,
                400,
            )
            expect(isinstance(exc.info, dict) and "error" in exc.info and exc.info.get("status") == 400, f"body {exc.info}")
        with c.case("unknown query type: 400 parsing_exception"):
            expect_error(lambda: self.search({"query": {"no_such_query": {}}}), RequestError, 400, "parsing_exception")
        with c.case("unknown field type in a mapping: 400 mapper_parsing_exception"):
            expect_error(
                lambda: cl.indices.create(index="bad-mapping", body={"mappings": {"properties": {"x": {"type": "no_such_type"}}}}),
                RequestError,
                400,
                "mapper_parsing_exception",
            )
            expect(cl.indices.exists(index="bad-mapping") is False, "a rejected index was created anyway")
        with c.case("PUT an existing index: 400 resource_already_exists_exception"):
            expect_error(lambda: cl.indices.create(index=INDEX), RequestError, 400, "resource_already_exists_exception")
        with c.case("missing index: search/get/count raise NotFoundError index_not_found_exception"):
            expect_error(lambda: cl.search(index="no-such-index", body={"query": {"match_all": {}}}), NotFoundError, 404, "index_not_found_exception")
            expect_error(lambda: cl.get(index="no-such-index", id="1"), NotFoundError, 404, "index_not_found_exception")
            expect_error(lambda: cl.count(index="no-such-index"), NotFoundError, 404, "index_not_found_exception")
        with c.case("create (op_type=create) of an existing _id: 409 ConflictError"):
            existing = next(iter(self.live))
            expect_error(
                lambda: cl.create(index=INDEX, id=existing, body={"title": "dup"}, params={"pipeline": "_none"}),
                ConflictError,
                409,
                "version_conflict_engine_exception",
            )
        with c.case("neural_sparse on a field that is not rank_features: 400"):
            expect_error(
                lambda: self.search({"query": {"neural_sparse": {"title": {"query_tokens": {"wing": 1.0}}}}}),
                RequestError,
                400,
            )
        with c.case("DELETE /{index} of a scratch index, then 404"):
            cl.indices.create(index="scratch", body={"mappings": {"properties": {"v": {"type": "rank_features"}}}})
            resp = cl.indices.delete(index="scratch")
            expect(resp.get("acknowledged") is True, f"{resp}")
            expect(cl.indices.exists(index="scratch") is False, "deleted index still exists")
            expect_error(lambda: cl.indices.delete(index="scratch"), NotFoundError, 404, "index_not_found_exception")
        with c.case(f"oversized body ({self.args.body_limit_mb} MB + 1 byte): 413"):
            size = self.args.body_limit_mb * 1024 * 1024 + 1
            doc = '{"title": "' + "x" * (size - 13) + '"}'
            try:
                cl.transport.perform_request("PUT", f"/{INDEX}/_doc/huge", body=doc, headers={"content-type": "application/json"})
            except ClientConnectionError as exc:  # a TransportError subclass: test it first
                raise AssertionError(f"connection dropped instead of a 413 response: {exc}")
            except TransportError as exc:
                expect(exc.status_code == 413, f"status {exc.status_code}, expected 413: {str(exc.info)[:300]}")
            else:
                raise AssertionError("an oversized body was accepted")
            expect_error(lambda: cl.get(index=INDEX, id="huge"), NotFoundError, 404)

    def exported_index(self) -> None:
        """`nsparse export --format opensearch-bulk` loads into the server (the scale-out path,
        testable here only against nsparse serve itself, not a real OpenSearch cluster)."""
        c, cl = self.checks, self.client
        corpus = self.work / "export-corpus.jsonl"
        with open(REPO / "data" / "cranfield" / "corpus.jsonl") as f, open(corpus, "w") as out:
            out.writelines(line for _, line in zip(range(120), f))
        originals = {d["_id"]: d for d in map(json.loads, open(corpus))}
        cli_index = self.work / "cli-index"
        export_dir = self.work / "export"
        try:
            run_cli(self.binary, "index", "--model", str(self.model), "--corpus", str(corpus), "--index", str(cli_index))
            run_cli(
                self.binary, "export", "--index", str(cli_index), "--format", "opensearch-bulk",
                "--index-name", "exported", "--output", str(export_dir), "--max-file-bytes", "200000",
            )  # fmt: skip
        except RuntimeError as exc:
            with c.case("nsparse export of a CLI-built index"):
                raise exc
            return
        vectors = self.work / "export-vectors.jsonl"
        run_cli(self.binary, "encode", "documents", "--model", str(self.model), "--input", str(corpus), "--output", str(vectors))
        encoded = read_vectors(vectors)
        with c.case("export loads through the client: PUT mapping.json, POST each bulk file"):
            mapping = json.loads((export_dir / "mapping.json").read_text())
            resp = cl.indices.create(index="exported", body=mapping)
            expect(resp.get("acknowledged") is True, f"{resp}")
            files = sorted(export_dir.glob("bulk-*.ndjson"))
            expect(len(files) > 1, f"expected several bulk files at 200 kB each, got {len(files)}")
            for path in files:
                resp = cl.bulk(body=path.read_text())
                expect(resp.get("errors") is False, f"{path.name}: {[i for i in resp['items'] if 'error' in next(iter(i.values()))][:2]}")
            cl.indices.refresh(index="exported")
            expect(cl.count(index="exported")["count"] == len(originals), "count differs from the exported index")
            docs = {}
            for doc_id, original in originals.items():
                source = cl.get(index="exported", id=doc_id)["_source"]
                for key in ("title", "text", "metadata"):
                    expect(source.get(key) == original.get(key), f"doc {doc_id}: {key} changed")
                vector = source.get("embedding", {})
                for token, w in vector.items():
                    want = encoded[doc_id].get(token)
                    expect(want is not None and abs(w - want) <= abs(want) * 2**-11 + 3.1e-5, f"doc {doc_id} {token}: {w} vs {want}")
                docs[doc_id] = source
            query = dict(sorted(encoded["17"].items(), key=lambda kv: -kv[1])[:12])
            resp = cl.search(index="exported", body={"query": {"neural_sparse": {"embedding": {"query_tokens": query}}}, "size": 10})
            check_ranking(resp, {i: v for i, v in expected_neural_field(query, docs, "embedding").items()}, 10)
        curl = shutil.which("curl")
        with c.case("export/load.sh (curl) loads into the server"):
            if curl is None:
                print("     skipped: curl is not installed")
            else:
                renamed = self.work / "export-load-sh"
                run_cli(
                    self.binary, "export", "--index", str(cli_index), "--format", "opensearch-bulk",
                    "--index-name", "exported-by-script", "--output", str(renamed),
                )  # fmt: skip
                env = dict(os.environ, OPENSEARCH_URL=f"http://127.0.0.1:{self.server.port}")
                out = subprocess.run(["sh", str(renamed / "load.sh")], env=env, capture_output=True, text=True)
                expect(out.returncode == 0, f"load.sh failed: {out.stdout[-500:]} {out.stderr[-500:]}")
                expect(cl.count(index="exported-by-script")["count"] == len(originals), "count after load.sh")

    def shutdown_and_restart(self) -> None:
        c = self.checks
        cl = self.client
        late = {"title": "late", "text": "written just before SIGTERM", "category": "heat", "year": 1970, "kind": "vector", VECTOR_FIELD: {"rocket": 3.0}}
        with c.case("SIGTERM: clean exit (status 0) after an acknowledged write"):
            resp = cl.index(index=INDEX, id="late", body=late, params={"pipeline": "_none"})
            expect(resp.get("result") == "created", f"{resp}")
            self.live["late"] = late
            code = self.server.terminate()
            expect(code == 0, f"exit status {code}")
        with c.case("restart on the same --data: docs, pipeline and searches survive"):
            self.client = cl = self.server.start()
            expect(cl.count(index=INDEX)["count"] == len(self.live), f"count after restart {cl.count(index=INDEX)} vs {len(self.live)}")
            expect(cl.get(index=INDEX, id="late")["_source"] == late, "the last acknowledged write was lost")
            probe = self.corpus[5]["_id"]
            expect(cl.get(index=INDEX, id=probe)["_source"] == self.live[probe], "a doc changed across restart")
            query = dict(list(self.live[self.corpus[N_TEXT_DOCS + 40]["_id"]][VECTOR_FIELD].items())[:12])
            resp = self.search({"query": {"neural_sparse": {VECTOR_FIELD: {"query_tokens": query}}}, "size": 10})
            check_ranking(resp, expected_neural(query, self.live), 10)
            expect(PIPELINE in cl.ingest.get_pipeline(id=PIPELINE), "ingest pipeline lost")
            resp = cl.index(index=INDEX, id="after", body={"title": "after", "text": "wing flutter", "category": "aero", "year": 1980, "kind": "text"}, refresh=True)
            got = cl.get(index=INDEX, id="after")["_source"]
            expect(VECTOR_FIELD in got, "default_pipeline no longer applies after restart")
        with c.case("SIGTERM after restart: clean exit"):
            expect(self.server.terminate() == 0, "exit status not 0")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsparse", type=Path, default=REPO / "target" / "release" / "nsparse")
    parser.add_argument(
        "--model", type=Path, default=REPO / "crates" / "nsparse-model" / "tests" / "fixtures" / "tiny-distilbert"
    )
    parser.add_argument("--model-id", help="model_id the server gives --model (default: folder name)")
    parser.add_argument(
        "--body-limit-mb", type=int, default=16, help="request body limit given to the server (--max-body-bytes)"
    )
    parser.add_argument("--serve-arg", action="append", default=[], help="extra `nsparse serve` argument")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args()
    if not args.nsparse.is_file():
        print(f"error: {args.nsparse} does not exist; build it with `cargo build --release -p nsparse-cli`")
        return 2
    work = Path(tempfile.mkdtemp(prefix="nsparse-e2e-"))
    try:
        return E2E(args, work).run()
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    sys.exit(main())
