"""The encoder through Python: the model card's golden check, PyTorch parity on the committed
fixture models, and the sentence-transformers output forms."""

import json

import numpy as np
import pytest
import scipy.sparse as sp

import nsparse
from nsparse import SparseEncoder

CARD_QUERY = "What's the weather in ny now?"
# The model card's document weights (opensearch-neural-sparse-encoding-doc-v2-distill) of the
# matched tokens, as in crates/nsparse-model/tests/golden_query.rs.
CARD_DOCUMENT = {"ny": 1.4109, "weather": 1.4673, "now": 0.7473}


def test_model_card_snippet_with_only_the_import_changed(capsys):
    # The card's snippet, `from sentence_transformers.sparse_encoder import SparseEncoder`
    # replaced; the document model is on the Hub (unreachable here), so its vector is the
    # card's published weights.
    from nsparse.sparse_encoder import SparseEncoder

    model = SparseEncoder.builtin_query_model()
    query_embed = model.encode_query(CARD_QUERY)
    document_embed = CARD_DOCUMENT

    sim = model.similarity(query_embed, document_embed)
    print(f"Similarity: {sim}")
    assert sim.shape == (1, 1)
    assert abs(float(sim[0, 0]) - 17.5307) < 1e-3

    decoded_query = model.decode(query_embed)
    decoded_document = model.decode(document_embed)
    for i in range(len(decoded_query)):
        query_token, query_score = decoded_query[i]
        doc_score = next((score for token, score in decoded_document if token == query_token), 0)
        if doc_score != 0:
            print(f"Token: {query_token}, Query score: {query_score:.4f}, Document score: {doc_score:.4f}")
    out = capsys.readouterr().out
    assert "Token: ny, Query score: 5.7729, Document score: 1.4109" in out
    assert "Token: weather, Query score: 4.5684, Document score: 1.4673" in out
    assert "Token: now, Query score: 3.5895, Document score: 0.7473" in out


def test_query_weights_equal_idf_json():
    model = SparseEncoder.builtin_query_model()
    q = model.encode_query(CARD_QUERY)
    assert isinstance(q, sp.csr_array) and q.shape == (1, model.vocab_size) and q.dtype == np.float32
    weights = dict(model.decode(q))
    for token, expected in [("ny", 5.7729), ("weather", 4.5684), ("now", 3.5895)]:
        assert abs(weights[token] - expected) < 1e-4, token
    # Every distinct token once, no special tokens; sorted by weight.
    assert sorted(weights) == sorted(["what", "'", "s", "the", "weather", "in", "ny", "now", "?"])
    decoded = model.decode(q)
    assert [w for _, w in decoded] == sorted((w for _, w in decoded), reverse=True)
    assert model.decode(q, top_k=2) == decoded[:2]
    assert model.encode_query(CARD_QUERY, output="dict") == pytest.approx(weights)
    # A list gives one row per text, in order.
    many = model.encode_query(["weather", CARD_QUERY, ""])
    assert many.shape == (3, model.vocab_size)
    assert (many[[1]] != q).nnz == 0 and many[[2]].nnz == 0
    assert len(model.decode(many)) == 3


def test_tokenizer_maps_tokens_and_ids():
    model = SparseEncoder.builtin_query_model()
    tok = model.tokenizer
    assert len(tok) == model.vocab_size == 30522
    assert model.max_seq_length == 512
    ny = tok.convert_tokens_to_ids("ny")
    assert tok.convert_ids_to_tokens(ny) == "ny"
    assert tok.convert_tokens_to_ids(["weather", "not-a-token!!"])[1] is None
    assert tok.get_vocab()["[CLS]"] == 101
    assert tok.tokenize("New York") == ["new", "york"]
    assert tok.encode("New York") == [101, tok.convert_tokens_to_ids("new"), tok.convert_tokens_to_ids("york"), 102]


@pytest.mark.parametrize("name", ["tiny-distilbert", "tiny-bert"])
def test_documents_equal_pytorch_fixtures(fixtures_dir, name):
    fixture = json.loads((fixtures_dir / f"{name}.expected.json").read_text())
    model = SparseEncoder(fixtures_dir / name)
    texts = [t["text"] for t in fixture["texts"]]
    # batch_size 7: several batches, reassembled in input order.
    with pytest.warns(UserWarning, match="truncated") if any(t["truncated"] for t in fixture["texts"]) else _no_warning():
        got = model.encode_document(texts, batch_size=7)
    assert got.shape == (len(texts), model.vocab_size)
    worst = 0.0
    for row, t in enumerate(fixture["texts"]):
        expected = np.zeros(model.vocab_size, dtype=np.float64)
        expected[t["ids"]] = t["weights"]
        ours = got[[row]].toarray()[0].astype(np.float64)
        worst = max(worst, float(np.abs(ours - expected).max()))
        # Same non-zero ids, except weights below 1e-4 (the parity invariant).
        differ = (ours > 0) != (expected > 0)
        assert np.all(np.maximum(ours, expected)[differ] < 1e-4), f"{name} text {row}: non-zero ids differ"
    assert worst < 1e-4, f"{name}: max abs weight error {worst}"
    # One text at a time gives the same vectors.
    single = model.encode_document(texts[3])
    assert single.shape == (1, model.vocab_size)
    assert np.abs((single - got[[3]]).toarray()).max() < 1e-6


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_encode_is_documents_for_document_models_and_pruning_applies(fixtures_dir):
    model = SparseEncoder(fixtures_dir / "tiny-distilbert")
    text = "Hypersonic heat transfer near a blunt body."
    assert (model.encode(text) != model.encode_document(text)).nnz == 0
    pruned = SparseEncoder(fixtures_dir / "tiny-distilbert", prune=("top_k", 5)).encode_document(text)
    full = model.encode_document(text)
    assert pruned.nnz == 5
    assert dict(model.decode(pruned)) == dict(model.decode(full)[:5])
    fast = SparseEncoder(fixtures_dir / "tiny-distilbert", precision="fast", threads=1)
    assert fast.precision == "fast"
    assert np.abs((fast.encode_document(text) - full).toarray()).max() < 2e-2


def test_similarity_accepts_every_input_form(fixtures_dir):
    model = SparseEncoder(fixtures_dir / "tiny-distilbert")
    docs = model.encode_document(["Currently New York is rainy.", "Boundary layers on swept wings.", "hello"])
    queries = model.encode_query(["rain in new york", "wings"])
    expected = (queries.astype(np.float64) @ docs.astype(np.float64).T).toarray()
    sim = model.similarity(queries, docs)
    assert sim.shape == (2, 3) and sim.dtype == np.float32
    np.testing.assert_allclose(sim, expected, rtol=1e-6)
    as_dicts = [dict(model.decode(docs[[i]])) for i in range(3)]
    np.testing.assert_allclose(model.similarity(queries, as_dicts), expected, rtol=1e-5)
    np.testing.assert_allclose(model.similarity(queries[[0]], docs.toarray()), expected[:1], rtol=1e-6)


def test_torch_output_and_input():
    torch = pytest.importorskip("torch")
    model = SparseEncoder.builtin_query_model()
    one = model.encode_query(CARD_QUERY, output="torch")
    assert one.is_sparse and one.dim() == 1 and one.shape[0] == model.vocab_size
    two = model.encode_query([CARD_QUERY, "weather"], output="torch")
    assert two.is_sparse and tuple(two.shape) == (2, model.vocab_size)
    assert abs(float(model.similarity(one, CARD_DOCUMENT)[0, 0]) - 17.5307) < 1e-3
    # decode follows sentence-transformers: flat for 1-D, a list per row for 2-D.
    assert model.decode(one)[0][0] == "ny"
    assert [d[0][0] for d in model.decode(two)] == ["ny", "weather"]
    dense = two.to_dense()
    np.testing.assert_allclose(model.similarity(dense, two), model.similarity(two, two), rtol=1e-6)
    assert torch.allclose(one.to_dense(), two.to_dense()[0])
