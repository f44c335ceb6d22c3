//! # nsparse-server
//!
//! The OpenSearch REST dialect of neural sparse search, served from one machine over
//! `nsparse-index` (storage and top-k) and `nsparse-model` (encoders). This crate owns the HTTP
//! layer, the mapping of OpenSearch indices, documents, ingest/search pipelines and the query DSL
//! onto those two crates, and the data directory that persists them. It owns no ranking or
//! encoding logic of its own: vectors come from `SparseEncoder`, scores from `Searcher`.
//!
//! Start it with `nsparse serve --data DIR` (see `crates/nsparse-cli`), or embed it with
//! [`App::open`], [`router`] and [`serve`].
//!
//! ## Supported endpoints
//! | endpoint | notes |
//! |---|---|
//! | `GET /`, `HEAD /` | cluster info; `version.distribution` is `opensearch`, `number` [`OPENSEARCH_VERSION`] |
//! | `GET /_cluster/health` | always `green` (one node, one shard per index) |
//! | `PUT /{index}` | `settings` (`index.sparse`, `index.default_pipeline`, `index.search.default_pipeline`, `index.refresh_interval`; others are stored and shown) and `mappings` |
//! | `DELETE /{index}`, `HEAD /{index}`, `GET /{index}`, `GET\|PUT /{index}/_settings` | `PUT` updates dynamic settings (not `number_of_shards`, `sparse`) |
//! | `GET /{index}/_mapping`, `PUT /{index}/_mapping` | adding fields only; changing a field's type is a 400 |
//! | `GET /_cat/indices[/{index}]` | text (`?v` for headers) or `?format=json` |
//! | `POST\|GET /{index}/_refresh`, `POST /_refresh` | |
//! | `GET\|POST /{index}/_count` | with an optional `query` |
//! | `PUT\|POST /{index}/_doc/{id}` (`?op_type=create`), `POST /{index}/_doc`, `PUT /{index}/_create/{id}` | `?pipeline=`, `?refresh=` |
//! | `GET\|HEAD\|DELETE /{index}/_doc/{id}`, `GET /{index}/_source/{id}` | GET is realtime |
//! | `GET\|POST /_mget`, `GET\|POST /{index}/_mget` | `docs` (`_index`, `_id`) or `ids`; realtime |
//! | `POST /{index}/_update/{id}` | `doc` (merged into the stored source), `doc_as_upsert` |
//! | `POST /_bulk`, `POST /{index}/_bulk` | `index`, `create`, `update` (`doc`, `doc_as_upsert`), `delete`; per-item `pipeline` |
//! | `PUT\|GET\|DELETE /_ingest/pipeline/{id}` | `sparse_encoding` processors only |
//! | `PUT\|GET\|DELETE /_search/pipeline/{id}` | `neural_sparse_two_phase_processor` only |
//! | `GET\|POST /{index}/_search` | body keys `query`, `size`, `from`, `_source`, `explain`, `sort` (`_score` only); `?search_pipeline=` |
//!
//! Queries: `neural_sparse` (`query_text` with `model_id` or `analyzer`, or `query_tokens`;
//! `method_parameters` `top_n`/`heap_factor`/`k` select approximate search), `match` (BM25),
//! `term`, `terms`, `range`, `exists`, `ids`, `match_all`, `match_none`, `constant_score`, and
//! `bool` (`must`, `should`, `filter`, `must_not`, integer `minimum_should_match`, `boost`).
//!
//! ## Differences from OpenSearch
//! - One shard, no replicas, no aliases, no wildcards or comma lists in index names, no
//!   aggregations, sorting only by `_score`, no `q=` query strings, no scripts.
//! - One sparse vector field per index (the nsparse index keeps one vector per document). Token
//!   strings of `rank_features` values and `query_tokens` are mapped through the
//!   bert-base-uncased WordPiece vocabulary; an unknown token in a document is a 400
//!   `mapper_parsing_exception` naming it, in a query it is ignored (it can match nothing).
//!   On a `sparse_vector` field (OpenSearch 3.3+, whose keys are token ids), all-digit keys are
//!   token ids (`{"2054": 1.2}`); other keys are token strings. The `sparse_encoding` processor
//!   writes token strings.
//! - BM25 (`match`): every mapped `text` field has its own BM25 data (a BM25-only nsparse index
//!   per field under `fields/`), so `match` on a field scores that field alone, with that
//!   field's document count and average length, as OpenSearch does. Text is split by the
//!   bert-base-uncased WordPiece tokenizer (OpenSearch uses the standard analyzer, so scores
//!   differ). `match` on an unmapped field searches all of the document's text (every text
//!   field and unmapped string, concatenated, kept in the main index). `match` on a keyword or
//!   numeric field is an exact `term`. Only `operator: or` is supported. A text field added by
//!   `PUT _mapping` is empty for documents written before.
//! - `term`/`terms`/`range` on a `text` field are refused (text is not kept for filters); they
//!   work on `_id`, `keyword`, numeric, `date` and `boolean` fields, on keyword sub-fields, and on
//!   unmapped values (`x.keyword` reads unmapped strings up to 256 bytes). Ranges compare
//!   numbers numerically and strings (ISO dates) lexicographically; no date math.
//!   In a scoring position these queries add a constant score (their boost), where OpenSearch
//!   gives `term` a BM25-like score.
//! - `neural_sparse` with `query_text` and no `model_id`/`analyzer` uses the built-in
//!   `bert-uncased` analyzer (tokenizer + idf.json, also reachable as model id `bert-uncased` or
//!   `opensearch-neural-sparse-tokenizer-v1`). A `model_id` of a loaded model encodes the query
//!   inference-free when the model folder has idf.json, with the network otherwise.
//! - Combined scoring: a query with one scoring clause (`neural_sparse` or `match`) and any
//!   filters is answered exactly by the index's filtered top-k (approximate when
//!   `method_parameters` or the two-phase pipeline ask for it). When several scoring clauses
//!   are summed (e.g. `bool.should` of `neural_sparse` and `match`), each retrieves its top
//!   `max(from + size, 100)` under the filters (deeper for counting, below), and the union is
//!   rescored exactly: a document outside every clause's window is missed.
//! - `hits.total` is exact up to `track_total_hits` (default 10,000; `true` = all), as in
//!   OpenSearch: exact clauses retrieve that deep to count. An approximate `neural_sparse`
//!   (`method_parameters`) counts only what it retrieved (`relation: gte` when its window is
//!   full). `_count` is exact.
//! - `_version` counts writes since the server started (a restart reports 1); `_seq_no` is a
//!   per-index write counter. `_primary_term` is always 1.
//! - Errors use OpenSearch's shape and types; an unknown path is a 400 `illegal_argument_exception`
//!   ("no handler found"), a request over `--request-timeout-secs` a 504 `timeout_exception`
//!   (a write still completes), a body that does not arrive within that time a 408, a body
//!   over `--max-body-bytes` a 413.
//!
//! ## Consistency and durability
//! A write is durable when acknowledged (the index WAL is fsynced). Searches see writes after a
//! refresh: `?refresh=true|wait_for`, `POST /{index}/_refresh`, or the periodic refresh every
//! `index.refresh_interval` (default 1 s, `-1` disables). `GET /{index}/_doc/{id}` is realtime.
//! Shutdown (SIGTERM/SIGINT) stops accepting connections, finishes in-flight requests and
//! commits every index.

mod error;
mod http;
mod ingest;
mod mapping;
mod models;
mod query;
mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use error::{ApiError, ServerError};
pub use http::{router, App};
pub use models::{Models, BUILTIN_IDS};
pub use store::Store;

/// The OpenSearch version `GET /` reports.
pub const OPENSEARCH_VERSION: &str = "2.19.0";

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The data directory.
    pub data: PathBuf,
    /// Listen address.
    pub addr: SocketAddr,
    /// HTTP basic auth `(user, password)`; `None` = open.
    pub basic_auth: Option<(String, String)>,
    /// Largest request body (OpenSearch's `http.max_content_length`, 100 MiB).
    pub max_body_bytes: usize,
    /// Longest a request may take before a 504.
    pub request_timeout: Duration,
    /// `name` in `GET /`.
    pub node_name: String,
    /// `cluster_name` in `GET /`.
    pub cluster_name: String,
}

impl ServerConfig {
    /// Defaults: loopback port 9200, 100 MiB bodies, 60 s timeout, no auth.
    pub fn new(data: impl Into<PathBuf>) -> Self {
        ServerConfig {
            data: data.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 9200)),
            basic_auth: None,
            max_body_bytes: 100 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            node_name: "nsparse".into(),
            cluster_name: "nsparse".into(),
        }
    }
}

impl App {
    /// Opens the data directory with `models`.
    pub fn open(config: ServerConfig, models: Models) -> Result<Arc<App>, ServerError> {
        if config.max_body_bytes == 0 {
            return Err(ServerError::Config(
                "--max-body-bytes must be at least 1".into(),
            ));
        }
        let store = Store::open(&config.data, models)?;
        Ok(Arc::new(App {
            store: Arc::new(store),
            config,
        }))
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes in-flight requests and
/// commits every index. Runs the periodic refresh meanwhile.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let store = app.store.clone();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let refresher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(store::REFRESH_TICK);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let store = store.clone();
                    let _ = tokio::task::spawn_blocking(move || store.refresh_due()).await;
                }
                _ = stop_rx.changed() => break,
            }
        }
    });
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "serving");
    let result = axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| ServerError::io(app.config.data.clone(), e));
    let _ = stop_tx.send(true);
    let _ = refresher.await;
    let store = app.store.clone();
    let failures = tokio::task::spawn_blocking(move || store.commit_all())
        .await
        .unwrap_or_default();
    for (index, e) in &failures {
        tracing::error!(%index, error = %e, "commit at shutdown failed (the WAL still holds every acknowledged write)");
    }
    result
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
