//! The index object: `nsparse_index::Index` (the writer) and a cached `Searcher` snapshot.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use nsparse_index::{
    Bm25Params, CreateOptions, Document, Hit, Index, Query, SearchMode, SearchRequest, Searcher,
    Vocabulary, WriterOptions,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyTuple};
use rayon::prelude::*;

use crate::csr::{bytearray, f32s, u32s, CsrIn};
use crate::encoder::thread_pool;
use crate::errors::{index_err, value_err};

/// Batches of at least this many new documents are written as one segment (`bulk_upsert`)
/// instead of through the WAL; both are durable on return, the segment is faster to build.
const BULK_MIN_DOCS: usize = 10_000;

/// An index directory opened for writing (wrapped by `nsparse.Index`).
///
/// One writer per directory (the `LOCK` file): `close()` (or dropping the object) releases it.
/// Searches run on a snapshot taken after the last write, with the GIL released.
#[pyclass(module = "nsparse._nsparse", frozen)]
pub struct IndexCore {
    dir: PathBuf,
    writer: Mutex<Option<Index>>,
    /// The snapshot searches use; cleared by every write.
    snapshot: Mutex<Option<Searcher>>,
}

/// A search's `mode` and its parameters, as the Python side passes them.
#[derive(Clone, Copy)]
struct ModeArgs<'a> {
    mode: &'a str,
    top_n: Option<usize>,
    heap_factor: Option<f32>,
    prune_ratio: Option<f32>,
    expansion_rate: Option<f32>,
    max_window_size: Option<usize>,
}

impl ModeArgs<'_> {
    /// The index's search mode; parameters of another mode are refused, not ignored.
    fn resolve(&self) -> PyResult<SearchMode> {
        let approximate = self.top_n.is_some() || self.heap_factor.is_some();
        let two_phase = self.prune_ratio.is_some()
            || self.expansion_rate.is_some()
            || self.max_window_size.is_some();
        let refuse = |params: &str| {
            value_err(
                "search parameters",
                format!(
                    "{params} do not apply to mode {:?}; top_n and heap_factor belong to \"approximate\", prune_ratio, expansion_rate and max_window_size to \"two_phase\"",
                    self.mode
                ),
            )
        };
        match self.mode {
            "exact" | "brute_force" => {
                if approximate || two_phase {
                    return Err(refuse("mode parameters"));
                }
                Ok(if self.mode == "exact" {
                    SearchMode::Exact
                } else {
                    SearchMode::BruteForce
                })
            }
            "approximate" => {
                if two_phase {
                    return Err(refuse("prune_ratio, expansion_rate and max_window_size"));
                }
                let top_n = self.top_n.unwrap_or(10);
                if top_n == 0 {
                    return Err(value_err("top_n", "0; pass at least 1 query token"));
                }
                Ok(SearchMode::Approximate {
                    top_n,
                    heap_factor: self.heap_factor.unwrap_or(1.0),
                })
            }
            "two_phase" => {
                if approximate {
                    return Err(refuse("top_n and heap_factor"));
                }
                let SearchMode::TwoPhase {
                    prune_ratio,
                    expansion_rate,
                    max_window_size,
                } = SearchMode::two_phase()
                else {
                    unreachable!("two_phase() is TwoPhase")
                };
                Ok(SearchMode::TwoPhase {
                    prune_ratio: self.prune_ratio.unwrap_or(prune_ratio),
                    expansion_rate: self.expansion_rate.unwrap_or(expansion_rate),
                    max_window_size: self.max_window_size.unwrap_or(max_window_size),
                })
            }
            other => Err(value_err(
                "mode",
                format!("{other:?} is unknown; use \"exact\", \"approximate\", \"two_phase\" or \"brute_force\""),
            )),
        }
    }
}

/// Hits restricted to a set of `_id`s or to those a Python callable accepts.
enum Filter {
    Ids(HashSet<String>),
    Callable(Py<PyAny>),
}

impl Filter {
    fn from_py(filter: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Filter>> {
        let Some(filter) = filter else {
            return Ok(None);
        };
        if filter.is_callable() {
            return Ok(Some(Filter::Callable(filter.clone().unbind())));
        }
        let mut ids = HashSet::new();
        for item in filter.try_iter().map_err(|_| {
            value_err(
                "filter",
                "neither callable nor iterable; pass a set of _ids or a function of an _id returning bool",
            )
        })? {
            let item = item?;
            let id: String = item.extract().map_err(|_| {
                value_err(
                    "filter",
                    format!("{item:?} is not a str; a filter collection holds document _ids"),
                )
            })?;
            ids.insert(id);
        }
        Ok(Some(Filter::Ids(ids)))
    }

    /// Runs `f` with this filter as the index's predicate; a Python exception raised by a
    /// callable filter rejects that document and is raised once the search returns.
    fn with<R>(
        filter: Option<&Filter>,
        f: impl FnOnce(Option<nsparse_index::DocFilter<'_>>) -> R,
    ) -> PyResult<R> {
        match filter {
            None => Ok(f(None)),
            Some(Filter::Ids(ids)) => {
                let accept = |id: &str| ids.contains(id);
                Ok(f(Some(&accept)))
            }
            Some(Filter::Callable(callable)) => {
                let error: Mutex<Option<PyErr>> = Mutex::new(None);
                let accept = |id: &str| {
                    Python::attach(|py| {
                        match callable.bind(py).call1((id,)).and_then(|r| r.is_truthy()) {
                            Ok(yes) => yes,
                            Err(e) => {
                                lock(&error).get_or_insert(e);
                                false
                            }
                        }
                    })
                };
                let out = f(Some(&accept));
                match error.into_inner().unwrap_or_else(|p| p.into_inner()) {
                    Some(e) => Err(e),
                    None => Ok(out),
                }
            }
        }
    }
}

/// Locks a mutex, recovering from a panic in another holder (the data stays consistent: every
/// critical section here is a single call into the index).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A rayon pool per requested thread count, created once.
fn pool(threads: usize) -> PyResult<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = lock(POOLS.get_or_init(Default::default));
    if let Some(p) = pools.get(&threads) {
        return Ok(p.clone());
    }
    let p = Arc::new(thread_pool("threads", threads)?);
    pools.insert(threads, p.clone());
    Ok(p)
}

fn writer_options(
    build_threads: Option<usize>,
    dense_columns_max_mb: Option<u64>,
) -> WriterOptions {
    WriterOptions {
        build_threads: build_threads.unwrap_or(0),
        dense_columns_max_mb,
        ..WriterOptions::default()
    }
}

/// A hit as the Python tuple `(id, score, source bytes | None, explanation | None)`, the
/// explanation as `[(token id, query weight, doc weight, contribution), …]`.
fn hit_to_py<'py>(py: Python<'py>, hit: Hit) -> PyResult<Bound<'py, PyTuple>> {
    let source = hit.source.map(|s| PyBytes::new(py, &s));
    let explanation = hit.explanation.map(|e| {
        e.into_iter()
            .map(|c| (c.token, c.query_weight, c.doc_weight, c.contribution))
            .collect::<Vec<_>>()
    });
    (hit.id, hit.score, source, explanation).into_pyobject(py)
}

impl IndexCore {
    fn wrap(dir: PathBuf, index: Index) -> Self {
        IndexCore {
            dir,
            writer: Mutex::new(Some(index)),
            snapshot: Mutex::new(None),
        }
    }

    /// Runs `f` on the open writer; the snapshot is dropped when `writes`.
    fn with_writer<R>(
        &self,
        writes: bool,
        f: impl FnOnce(&mut Index) -> nsparse_index::Result<R>,
    ) -> PyResult<R> {
        let mut guard = lock(&self.writer);
        let index = guard.as_mut().ok_or_else(|| self.closed_err())?;
        if writes {
            *lock(&self.snapshot) = None;
        }
        f(index).map_err(index_err)
    }

    fn closed_err(&self) -> PyErr {
        PyValueError::new_err(format!(
            "the index {} is closed; open it again with nsparse.Index.open",
            self.dir.display()
        ))
    }

    /// The snapshot of every acknowledged write.
    fn searcher(&self) -> PyResult<Searcher> {
        if let Some(s) = lock(&self.snapshot).as_ref() {
            return Ok(s.clone());
        }
        let searcher = {
            let mut guard = lock(&self.writer);
            guard.as_mut().ok_or_else(|| self.closed_err())?.searcher()
        };
        *lock(&self.snapshot) = Some(searcher.clone());
        Ok(searcher)
    }
}

#[pymethods]
impl IndexCore {
    /// Creates an index in `path` (created if missing; must not hold an index yet).
    #[staticmethod]
    #[pyo3(signature = (path, model, metadata_json, vocab_size, bm25_k1, bm25_b, build_threads=None, dense_columns_max_mb=None))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        py: Python<'_>,
        path: PathBuf,
        model: String,
        metadata_json: &str,
        vocab_size: u32,
        bm25_k1: f32,
        bm25_b: f32,
        build_threads: Option<usize>,
        dense_columns_max_mb: Option<u64>,
    ) -> PyResult<Self> {
        let metadata: serde_json::Value = serde_json::from_str(metadata_json)
            .map_err(|e| value_err("metadata", format!("not JSON ({e})")))?;
        let mut options = CreateOptions::new(model);
        options.metadata = metadata;
        options.vocabulary = Vocabulary::fixed(vocab_size);
        options.bm25 = Bm25Params {
            k1: bm25_k1,
            b: bm25_b,
        };
        let writer = writer_options(build_threads, dense_columns_max_mb);
        let index = py
            .detach(|| Index::create(&path, &options, writer))
            .map_err(index_err)?;
        Ok(Self::wrap(path, index))
    }

    /// Opens an existing index for writing (verifies every file, replays the WAL).
    #[staticmethod]
    #[pyo3(signature = (path, build_threads=None, dense_columns_max_mb=None))]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        build_threads: Option<usize>,
        dense_columns_max_mb: Option<u64>,
    ) -> PyResult<Self> {
        let writer = writer_options(build_threads, dense_columns_max_mb);
        let index = py
            .detach(|| Index::open(&path, writer))
            .map_err(index_err)?;
        Ok(Self::wrap(path, index))
    }

    /// Adds (or with `upsert`, inserts or replaces) the CSR rows as documents `ids`, with
    /// optional stored sources. All-or-nothing, durable on return.
    #[pyo3(signature = (ids, indptr, indices, data, sources=None, upsert=false))]
    #[allow(clippy::too_many_arguments)]
    fn add(
        &self,
        py: Python<'_>,
        ids: Vec<String>,
        indptr: &Bound<'_, PyBytes>,
        indices: &Bound<'_, PyBytes>,
        data: &Bound<'_, PyBytes>,
        sources: Option<Vec<Vec<u8>>>,
        upsert: bool,
    ) -> PyResult<()> {
        let (indptr, indices, data) = (indptr.as_bytes(), indices.as_bytes(), data.as_bytes());
        if let Some(s) = &sources {
            if s.len() != ids.len() {
                return Err(value_err(
                    "sources",
                    format!(
                        "{} sources for {} ids; pass one per document (or None)",
                        s.len(),
                        ids.len()
                    ),
                ));
            }
        }
        py.detach(|| {
            let csr = CsrIn::from_bytes("vectors", indptr, indices, data)?;
            if csr.rows() != ids.len() {
                return Err(value_err(
                    "vectors",
                    format!(
                        "{} rows for {} ids; pass one vector per id",
                        csr.rows(),
                        ids.len()
                    ),
                ));
            }
            let mut sources = sources.map(Vec::into_iter);
            let docs: Vec<Document> = ids
                .into_iter()
                .enumerate()
                .map(|(row, id)| Document {
                    id,
                    vector: csr.row_pairs(row),
                    tokens: None,
                    source: sources
                        .as_mut()
                        .and_then(Iterator::next)
                        .unwrap_or_default(),
                })
                .collect();
            drop(csr);
            self.with_writer(true, |index| {
                if upsert {
                    if docs.len() >= BULK_MIN_DOCS {
                        index.bulk_upsert(&docs)
                    } else {
                        index.upsert_batch(&docs)
                    }
                } else {
                    // `add` refuses a live `_id` or a repeated one; when there is none, the bulk
                    // path (one new segment) has the same effect.
                    let mut seen = HashSet::with_capacity(docs.len());
                    let fresh = docs
                        .iter()
                        .all(|d| seen.insert(d.id.as_str()) && !index.contains(&d.id));
                    if fresh && docs.len() >= BULK_MIN_DOCS {
                        index.bulk_upsert(&docs)
                    } else {
                        index.add_batch(&docs)
                    }
                }
            })
        })
    }

    /// Deletes documents by `_id`; returns how many existed.
    fn delete(&self, py: Python<'_>, ids: Vec<String>) -> PyResult<usize> {
        py.detach(|| {
            self.with_writer(true, |index| {
                let mut n = 0;
                for id in &ids {
                    n += usize::from(index.delete(id)?);
                }
                Ok(n)
            })
        })
    }

    /// Moves buffered documents into a segment (writes are durable without it).
    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.with_writer(true, Index::commit))
    }

    /// Releases the writer lock; the object is unusable afterwards. Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            lock(&self.writer).take();
            lock(&self.snapshot).take();
        })
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.writer).is_none()
    }

    /// The index directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.dir.clone()
    }

    /// `(model identity, metadata JSON, vocab_size, segments, live, deleted, buffered)`.
    fn info(&self) -> PyResult<(String, String, u32, usize, u64, u64, u64)> {
        self.with_writer(false, |index| {
            let info = index.info();
            Ok((
                info.model,
                info.metadata.to_string(),
                info.vocab_size,
                info.segments,
                info.live_docs,
                info.deleted_docs,
                info.buffered_docs,
            ))
        })
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.searcher()?.num_docs() as usize)
    }

    fn __contains__(&self, id: &str) -> PyResult<bool> {
        Ok(self.searcher()?.contains(id))
    }

    /// The stored source of `id`, or `None` when no live document has that `_id`.
    fn get<'py>(&self, py: Python<'py>, id: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let searcher = self.searcher()?;
        let source = py.detach(|| searcher.get(id)).map_err(index_err)?;
        Ok(source.map(|s| PyBytes::new(py, &s)))
    }

    /// The stored vector of `id` as `(token ids, weights)` (f16-rounded weights), or `None`.
    #[allow(clippy::type_complexity)]
    fn vector<'py>(
        &self,
        py: Python<'py>,
        id: &str,
    ) -> PyResult<Option<(Bound<'py, PyByteArray>, Bound<'py, PyByteArray>)>> {
        let searcher = self.searcher()?;
        let vector = py.detach(|| searcher.vector(id)).map_err(index_err)?;
        vector
            .map(|v| {
                let ids: Vec<u32> = v.iter().map(|p| p.0).collect();
                let weights: Vec<f32> = v.iter().map(|p| p.1).collect();
                Ok((
                    bytearray(py, &ids, u32::to_le_bytes)?,
                    bytearray(py, &weights, f32::to_le_bytes)?,
                ))
            })
            .transpose()
    }

    /// Top-`k` hits of one query vector (`indices` u32, `data` f32 bytes) as
    /// `[(id, score, source | None, explanation | None), …]`.
    #[pyo3(signature = (indices, data, k, mode="exact", top_n=None, heap_factor=None,
                        prune_ratio=None, expansion_rate=None, max_window_size=None,
                        explain=false, filter=None, with_source=true))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        indices: &Bound<'_, PyBytes>,
        data: &Bound<'_, PyBytes>,
        k: usize,
        mode: &str,
        top_n: Option<usize>,
        heap_factor: Option<f32>,
        prune_ratio: Option<f32>,
        expansion_rate: Option<f32>,
        max_window_size: Option<usize>,
        explain: bool,
        filter: Option<&Bound<'_, PyAny>>,
        with_source: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let mode = ModeArgs {
            mode,
            top_n,
            heap_factor,
            prune_ratio,
            expansion_rate,
            max_window_size,
        }
        .resolve()?;
        let (indices, data) = (indices.as_bytes(), data.as_bytes());
        if !indices.len().is_multiple_of(4) || indices.len() != data.len() {
            return Err(value_err(
                "query",
                "token ids and weights differ in length; pass one weight per token",
            ));
        }
        let filter = Filter::from_py(filter)?;
        let searcher = self.searcher()?;
        let hits = py.detach(|| {
            let query: Vec<(u32, f32)> = u32s(indices).into_iter().zip(f32s(data)).collect();
            Filter::with(filter.as_ref(), |filter| {
                let mut request = SearchRequest::new(k)
                    .mode(mode)
                    .explain(explain)
                    .with_source(with_source);
                request.filter = filter;
                searcher.search(Query::Neural(&query), &request)
            })
        })?;
        let hits = hits.map_err(index_err)?;
        let out = PyList::empty(py);
        for hit in hits {
            out.append(hit_to_py(py, hit)?)?;
        }
        Ok(out)
    }

    /// Top-`k` of every CSR row, in parallel (`threads` rayon workers; `None`: one per core).
    /// Returns `(ids, scores)`: `rows × k` `_id`s (`None` past a row's last hit) and f32
    /// scores (NaN there) as bytes.
    #[pyo3(signature = (indptr, indices, data, k, mode="exact", top_n=None, heap_factor=None,
                        prune_ratio=None, expansion_rate=None, max_window_size=None, threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn search_batch<'py>(
        &self,
        py: Python<'py>,
        indptr: &Bound<'_, PyBytes>,
        indices: &Bound<'_, PyBytes>,
        data: &Bound<'_, PyBytes>,
        k: usize,
        mode: &str,
        top_n: Option<usize>,
        heap_factor: Option<f32>,
        prune_ratio: Option<f32>,
        expansion_rate: Option<f32>,
        max_window_size: Option<usize>,
        threads: Option<usize>,
    ) -> PyResult<(Vec<Option<String>>, Bound<'py, PyByteArray>)> {
        let mode = ModeArgs {
            mode,
            top_n,
            heap_factor,
            prune_ratio,
            expansion_rate,
            max_window_size,
        }
        .resolve()?;
        let pool = threads.map(pool).transpose()?;
        let searcher = self.searcher()?;
        let (indptr, indices, data) = (indptr.as_bytes(), indices.as_bytes(), data.as_bytes());
        let rows = py.detach(|| -> PyResult<Vec<Vec<Hit>>> {
            let csr = CsrIn::from_bytes("queries", indptr, indices, data)?;
            let request = SearchRequest::new(k).mode(mode);
            let run = || {
                (0..csr.rows())
                    .into_par_iter()
                    .map(|row| searcher.search(Query::Neural(&csr.row_pairs(row)), &request))
                    .collect::<nsparse_index::Result<Vec<_>>>()
            };
            match &pool {
                Some(p) => p.install(run),
                None => run(),
            }
            .map_err(index_err)
        })?;
        let mut ids = Vec::with_capacity(rows.len() * k);
        let mut scores = Vec::with_capacity(rows.len() * k);
        for hits in rows {
            let n = hits.len();
            for hit in hits {
                ids.push(Some(hit.id));
                scores.push(hit.score);
            }
            ids.extend(std::iter::repeat_n(None, k - n));
            scores.extend(std::iter::repeat_n(f32::NAN, k - n));
        }
        Ok((ids, bytearray(py, &scores, f32::to_le_bytes)?))
    }

    fn __repr__(&self) -> String {
        format!("Index({:?})", self.dir.display().to_string())
    }
}
