"""Bad input raises ValueError, file problems OSError, with messages that say what to do."""

import numpy as np
import pytest
import scipy.sparse as sp

from nsparse import Index, SparseEncoder


@pytest.fixture()
def index(tmp_path):
    with Index.create(tmp_path / "idx") as index:
        index.add(["a"], [{"weather": 1.0}])
        yield index


def test_missing_model_folder_is_an_os_error(tmp_path):
    with pytest.raises(OSError) as e:
        SparseEncoder(tmp_path / "no-such-model")
    assert "no-such-model" in str(e.value)
    # A Hub id offline (or unknown) is an OSError naming the download command.
    with pytest.raises(OSError):
        SparseEncoder(str(tmp_path / "no") + "/such")


def test_incomplete_model_folder_names_the_file(tmp_path, fixtures_dir):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text((fixtures_dir / "tiny-distilbert" / "config.json").read_text())
    with pytest.raises(OSError, match="tokenizer"):
        SparseEncoder(folder)


def test_bad_encoder_arguments():
    with pytest.raises(ValueError, match="precision"):
        SparseEncoder.__new__(SparseEncoder).__init__("x", precision="double")
    with pytest.raises(ValueError, match="threads"):
        SparseEncoder.builtin_query_model(threads=0)
    model = SparseEncoder.builtin_query_model()
    with pytest.raises(ValueError, match="query-only"):
        model.encode_document("a document")
    with pytest.raises(ValueError, match="not a str"):
        model.encode_query(["ok", 3])
    with pytest.raises(ValueError, match="output"):
        model.encode_query("x", output="tensorflow")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        model.similarity({"notatoken!!": 1.0}, {"ny": 1.0})
    with pytest.raises(ValueError, match="finite"):
        model.similarity({"ny": float("nan")}, {"ny": 1.0})
    with pytest.raises(ValueError, match="prune"):
        SparseEncoder.__new__(SparseEncoder).__init__("x", prune=("max_ratio",))


def test_bad_prune_ratio(fixtures_dir):
    with pytest.raises(ValueError, match="prune_ratio"):
        SparseEncoder(fixtures_dir / "tiny-distilbert", prune=("max_ratio", 1.5))


def test_wrong_shapes(index):
    with pytest.raises(ValueError, match="2 vectors for 3 ids"):
        index.add(["x", "y", "z"], sp.random_array((2, 30522), density=0.001, format="csr"))
    wide = sp.csr_array((np.array([1.0], dtype=np.float32), (np.array([0]), np.array([40000]))), shape=(1, 40001))
    with pytest.raises(ValueError, match="outside the index's vocabulary"):
        index.add(["x"], wide)
    with pytest.raises(ValueError, match="search_batch"):
        index.search(sp.random_array((2, 30522), density=0.001, format="csr"))
    with pytest.raises(ValueError, match="shape"):
        index.add(["x"], np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="text"):
        index.add(["x"], ["a text, not a vector"])
    with pytest.raises(ValueError, match="k"):
        index.search("weather", k=0)
    assert len(index) == 1


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_negative_and_nan_weights(index, bad):
    m = sp.csr_array((np.array([1.0, bad], dtype=np.float32), (np.array([0, 0]), np.array([5, 7]))), shape=(1, 30522))
    with pytest.raises(ValueError, match="finite and >= 0"):
        index.add(["x"], m)
    with pytest.raises(ValueError, match="finite and >= 0"):
        index.search(m)
    with pytest.raises(ValueError, match="finite and >= 0"):
        index.search_batch(m)
    with pytest.raises(ValueError, match="finite and >= 0"):
        index.search((np.array([5, 7]), np.array([1.0, bad])))
    with pytest.raises(ValueError):
        index.add(["x"], [{"weather": bad}])
    assert "x" not in index


def test_unknown_mode_and_parameters(index):
    with pytest.raises(ValueError, match="unknown"):
        index.search("weather", mode="fuzzy")
    with pytest.raises(ValueError, match="unknown"):
        index.search_batch(["weather"], mode="fuzzy")
    with pytest.raises(ValueError, match="approximate"):
        index.search("weather", top_n=3)
    with pytest.raises(ValueError, match="heap_factor"):
        index.search("weather", mode="approximate", heap_factor=-1.0)
    with pytest.raises(ValueError, match="two_phase"):
        index.search("weather", mode="approximate", prune_ratio=0.4)


def test_unknown_tokens_and_duplicates(index):
    with pytest.raises(ValueError, match="notatoken"):
        index.add(["x"], [{"notatoken!!": 1.0}])
    with pytest.raises(ValueError, match="already exists"):
        index.add(["a"], [{"weather": 1.0}])
    with pytest.raises(ValueError, match="already exists"):
        index.add(["x", "x"], [{"weather": 1.0}, {"now": 1.0}])
    with pytest.raises(ValueError, match="ids"):
        index.add([b"bytes-id"], [{"weather": 1.0}])
    with pytest.raises(ValueError, match="sources"):
        index.add(["x"], [{"weather": 1.0}], sources=[object()])
    assert len(index) == 1


def test_index_files(tmp_path, index):
    Index.create(tmp_path / "other").close()
    with pytest.raises(FileExistsError, match="already contains an index"):
        Index.create(tmp_path / "other")
    with pytest.raises(OSError, match="locked"):
        Index.open(index.path)
    with pytest.raises(FileNotFoundError, match="MANIFEST"):
        Index.open(tmp_path / "empty")
    with pytest.raises(TypeError):
        Index()
