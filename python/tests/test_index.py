"""The index from numpy/scipy/torch: search and search_batch against numpy brute force,
deletes, reopening, sources, filters, explanations, text and dict queries."""

import numpy as np
import pytest
import scipy.sparse as sp

import nsparse
from nsparse import Index, SparseEncoder

V = 30522
K = 10


def random_vectors(rng, rows, nnz, vocab_tokens):
    """A CSR of `rows` vectors with `nnz` tokens each drawn Zipf-like from `vocab_tokens`
    (frequent tokens shared by many documents, as in real collections), weights in [0.05, 3]."""
    p = 1.0 / np.arange(1, len(vocab_tokens) + 1) ** 0.8
    p /= p.sum()
    indptr = np.arange(rows + 1, dtype=np.int64) * nnz
    indices = np.concatenate([np.sort(rng.choice(vocab_tokens, size=nnz, replace=False, p=p)) for _ in range(rows)])
    data = rng.uniform(0.05, 3.0, size=rows * nnz).astype(np.float32)
    return sp.csr_array((data, indices, indptr), shape=(rows, V))


def f16(m):
    """The index stores document weights as f16: brute force on the stored weights."""
    out = m.copy()
    out.data = out.data.astype(np.float16).astype(np.float32)
    return out


def brute_force(queries, docs, k):
    scores = (queries.astype(np.float64) @ f16(docs).astype(np.float64).T).toarray()
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, scores


def assert_top_k_equal(got_ids, got_scores, order, scores, ids):
    """Our top-k equals brute force's: same ids in the same order, except that two documents
    whose exact scores tie within f32 rounding may swap; every returned score is the document's
    brute-force score."""
    index_of = {d: i for i, d in enumerate(ids)}
    for q in range(order.shape[0]):
        want = [ids[i] for i in order[q] if scores[q, i] > 0]
        have = [d for d in got_ids[q] if d is not None]
        assert len(have) == len(want), f"query {q}: {len(have)} hits, brute force {len(want)}"
        for rank, (h, w) in enumerate(zip(have, want)):
            sh, sw = scores[q, index_of[h]], scores[q, index_of[w]]
            assert abs(sh - sw) <= 1e-5 * max(sw, 1e-9), f"query {q} rank {rank}: {h} ({sh}) vs brute force {w} ({sw})"
            assert abs(got_scores[q][rank] - sh) <= 1e-5 * sh, f"query {q} rank {rank}: score {got_scores[q][rank]} vs {sh}"
        exact = sum(h == w for h, w in zip(have, want))
        assert exact >= len(want) - 2, f"query {q}: only {exact} of {len(want)} ids in place"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    tokens = rng.choice(np.arange(1000, V), size=4000, replace=False)
    docs = random_vectors(rng, 6000, 60, tokens)
    queries = random_vectors(rng, 40, 15, tokens[:600])
    ids = [f"doc-{i}" for i in range(docs.shape[0])]
    return docs, queries, ids


def test_search_and_search_batch_equal_brute_force(tmp_path, data):
    docs, queries, ids = data
    with Index.create(tmp_path / "idx") as index:
        index.add(ids, docs)
        assert len(index) == docs.shape[0]
        order, scores = brute_force(queries, docs, K)
        got_ids, got_scores = index.search_batch(queries, k=K)
        assert got_ids.shape == (queries.shape[0], K) and got_scores.dtype == np.float32
        assert_top_k_equal(got_ids, got_scores, order, scores, ids)
        assert_top_k_equal(index.search_batch(queries, k=K, threads=1)[0], got_scores, order, scores, ids)
        per_query = [index.search(queries[[q]], k=K) for q in range(queries.shape[0])]
        assert_top_k_equal([[h.id for h in hits] for hits in per_query], [[h.score for h in hits] for hits in per_query], order, scores, ids)
        # The (token_ids, weights) pair and dict forms give the same hits.
        q = queries[[3]]
        pair = (q.indices.astype(np.int64), q.data)
        assert index.search(pair, k=K) == per_query[3]
        as_dict = dict(zip(index.encoder.tokenizer.convert_ids_to_tokens(q.indices), q.data.tolist()))
        assert [h.id for h in index.search(as_dict, k=K)] == [h.id for h in per_query[3]]
        # Brute force mode and exact mode agree bit for bit; committing changes nothing.
        index.commit()
        assert index.search(q, k=K, mode="brute_force") == per_query[3]
        assert index.search(q, k=K) == per_query[3]


def test_bulk_batches_equal_small_batches(tmp_path, data):
    docs, queries, ids = data
    big = sp.csr_array(sp.vstack([docs, docs]))  # 12,000 rows: written as one segment directly
    big_ids = ids + [f"copy-{i}" for i in range(docs.shape[0])]
    with Index.create(tmp_path / "bulk", build_threads=2) as index:
        index.add(big_ids, big)
        assert index.info()["segments"] == 1 and len(index) == 12000
        order, scores = brute_force(queries, big, K)
        got_ids, got_scores = index.search_batch(queries, k=K)
        assert_top_k_equal(got_ids, got_scores, order, scores, big_ids)
        with pytest.raises(ValueError, match="already exists"):
            index.add(big_ids[:10_000] + ["new-%d" % i for i in range(10)], big[:10_010])
        assert len(index) == 12000


def test_delete_and_reopen(tmp_path, data):
    docs, queries, ids = data
    path = tmp_path / "idx"
    index = Index.create(path, metadata={"collection": "random"})
    index.add(ids[:3000], docs[:3000], sources=[{"n": i} for i in range(3000)])
    index.commit()
    index.add(ids[3000:], docs[3000:])
    first_ids, _ = index.search_batch(queries, k=K)
    gone = sorted({d for d in first_ids[:, 0] if d is not None})
    assert index.delete(gone + ["no-such-id"]) == len(gone)
    assert gone[0] not in index and ids[0] not in gone or ids[0] in index
    index.close()
    assert index.closed
    with pytest.raises(ValueError, match="closed"):
        index.search(queries[[0]])

    index = Index.open(path)
    keep = np.array([i for i, d in enumerate(ids) if d not in set(gone)])
    kept_ids = [ids[i] for i in keep]
    assert len(index) == len(kept_ids)
    assert index.metadata["collection"] == "random" and index.metadata["model_spec"] == "builtin"
    order, scores = brute_force(queries, docs[keep], K)
    got_ids, got_scores = index.search_batch(queries, k=K)
    assert_top_k_equal(got_ids, got_scores, order, scores, kept_ids)
    assert not set(gone) & {d for d in got_ids.ravel() if d is not None}
    # Sources survive; documents added without one have none.
    assert index.get(ids[1] if ids[1] not in gone else ids[2])["n"] in (1, 2)
    assert index.get(ids[4000]) is None
    with pytest.raises(KeyError):
        index.get(gone[0])
    index.close()


def test_torch_sparse_input_gives_the_same_index(tmp_path, data):
    torch = pytest.importorskip("torch")
    docs, queries, ids = data
    coo = docs.tocoo()
    t = torch.sparse_coo_tensor(
        torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64)), torch.from_numpy(coo.data), docs.shape
    )
    with Index.create(tmp_path / "scipy") as a, Index.create(tmp_path / "torch") as b:
        a.add(ids, docs)
        b.add(ids, t)
        ia, sa = a.search_batch(queries, k=K)
        qt = torch.sparse_coo_tensor(
            torch.from_numpy(np.vstack([queries.tocoo().row, queries.tocoo().col]).astype(np.int64)),
            torch.from_numpy(queries.tocoo().data),
            queries.shape,
        )
        ib, sb = b.search_batch(qt, k=K)
        assert (ia == ib).all() and np.array_equal(sa, sb)
        assert a.vector(ids[5]) == b.vector(ids[5])
        # A torch CSR tensor, a 1-D sparse query and a dense one work too.
        ic, sc = b.search_batch(qt.to_sparse_csr(), k=K)
        assert (ic == ia).all() and np.array_equal(sc, sa)
        assert b.search(qt[0], k=K) == a.search(queries[[0]], k=K)
        assert b.search(qt[0].to_dense(), k=K) == a.search(queries[[0]], k=K)


def test_text_queries_explain_filters_and_modes(tmp_path):
    model = SparseEncoder.builtin_query_model()
    texts = ["the weather in new york is rainy", "hypersonic heat transfer", "new york city weather now"]
    # Documents as {token: weight} dicts (what a document model would produce).
    vectors = [{t: 1.0 + i * 0.1 for i, t in enumerate(model.tokenizer.tokenize(x))} for x in texts]
    with Index.create(tmp_path / "idx") as index:
        index.add(["a", "b", "c"], vectors, sources=[{"text": t} for t in texts])
        hits = index.search("What's the weather in ny now?", k=3, explain=True)
        assert [h.id for h in hits] == ["c", "a"]
        assert hits[0].source == {"text": texts[2]}
        q = model.encode_query("What's the weather in ny now?", output="dict")
        doc = index.vector("c")
        expected = sum(q[t] * w for t, w in doc.items() if t in q)
        assert abs(hits[0].score - expected) < 1e-4 * expected
        tokens = {c.token for c in hits[0].explanation}
        assert {"weather", "now"} <= tokens
        assert abs(sum(c.contribution for c in hits[0].explanation) - hits[0].score) < 1e-4
        assert [h.id for h in index.search("weather", filter={"a"})] == ["a"]
        assert [h.id for h in index.search("weather", filter=lambda i: i != "c")] == ["a"]
        assert index.search("weather", source=False)[0].source is None
        exact = index.search("weather new york")
        assert [h.id for h in exact] == ["a", "c"]
        assert index.search("weather new york", mode="approximate", top_n=3, heap_factor=1.0) == exact
        assert index.search("weather new york", mode="two_phase", prune_ratio=0.0) == exact
        ids, scores = index.search_batch(["weather", "hypersonic", "zzzz"], k=2)
        assert list(ids[0]) == ["c", "a"] and list(ids[1]) == ["b", None] and list(ids[2]) == [None, None]
        assert np.isnan(scores[1, 1]) and np.isnan(scores[2]).all()

        def boom(_id):
            raise RuntimeError("filter failed")

        with pytest.raises(RuntimeError, match="filter failed"):
            index.search("weather", filter=boom)
        index.upsert("a", [{"heat": 5.0}])
        assert index.search("heat")[0].id == "a" and len(index) == 3


def test_index_of_a_document_model_encodes_text_queries_with_it(tmp_path, fixtures_dir):
    model = SparseEncoder(fixtures_dir / "tiny-distilbert")
    texts = ["Currently New York is rainy.", "Boundary layers on swept wings.", "Heat transfer at hypersonic speeds."]
    with Index.create(tmp_path / "idx", model) as index:
        index.add(["0", "1", "2"], model.encode_document(texts), sources=texts)
        hits = index.search("rain in new york", k=3)
        expected = model.similarity(model.encode_query("rain in new york"), model.encode_document(texts))[0]
        order = np.argsort(-expected)
        assert [h.id for h in hits] == [str(i) for i in order if expected[i] > 0]
        assert hits[0].source == texts[int(order[0])]
    # Reopened, the recorded model folder encodes the queries again.
    with Index.open(tmp_path / "idx") as index:
        assert index.encoder.fingerprint == model.fingerprint
        assert index.search("rain in new york", k=3) == hits
    with pytest.raises(ValueError, match="built with model"):
        Index.open(tmp_path / "idx", model=SparseEncoder.builtin_query_model())
    # The failed open released the lock.
    Index.open(tmp_path / "idx").close()
