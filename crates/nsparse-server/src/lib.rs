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
//! - Sparse fields: any number of `rank_features` and `sparse_vector` fields per index, each
//!   with its own nsparse index and feature dictionary (see the data directory layout in
//!   `store/`), each searchable by `neural_sparse` on its own and combinable in `bool`.
//!   Values follow OpenSearch's rules (`RankFeaturesFieldMapper`, Lucene's `FeatureField`,
//!   neural-search's `SparseVectorFieldMapper`): a feature name is any string (empty, dotted,
//!   CJK, ...) of at most 32,766 UTF-8 bytes (Lucene's longest term); a value is an object
//!   (or an array of objects) of feature → weight; a weight is a JSON number or a numeric
//!   string read as a 32-bit float that must be finite and at least the smallest positive
//!   normal float (zero, negative, subnormal and infinite weights are refused), `null` skips
//!   the feature, and a feature given twice is refused. `sparse_vector` keys must be
//!   non-negative 32-bit integers (`"007"` is token 7). A refusal is a 400
//!   `mapper_parsing_exception` whose `caused_by` carries OpenSearch's message naming the
//!   feature (per item in `_bulk`), and nothing of the document is written. Differences:
//!   weights above 65,504 are refused (nsparse stores half-precision weights) and weights
//!   below 2⁻¹⁵ are stored as 0 (dropped); a JSON object with a repeated key keeps its last
//!   value (OpenSearch refuses the document); a name longer than 32,766 bytes is a 400
//!   `illegal_argument_exception` (OpenSearch's "immense term").
//! - `query_tokens` names that no document has match nothing. On a `sparse_vector` field its
//!   keys are token ids (a key that is not one is a 400), as are the ids of `query_text`
//!   encoded by the model (the built-in one by default); on a `rank_features` field
//!   `query_text` is encoded by the model and its token strings looked up in the field's
//!   dictionary. The `sparse_encoding` processor writes token strings (of its model).
//! - An index created by an earlier nsparse release keeps its one sparse field in the main
//!   index, whose fixed vocabulary is bert-base-uncased WordPiece: there, a document feature
//!   that is not a WordPiece token is a 400 naming it (reindex into a new index to use any
//!   name); sparse fields added to such an index by `PUT _mapping` get their own index.
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
//!   (its remaining work is abandoned at the next check, see [`Cancel`]; a write that reached
//!   the index completes), a body that does not arrive within that time a 408, a body over
//!   `--max-body-bytes` a 413.
//! - A full disk (ENOSPC, EDQUOT) answers 429 `cluster_block_exception` with OpenSearch's
//!   flood-stage reason (per item in `_bulk`); nothing of the refused write is stored, and
//!   writes resume by themselves once space is freed (there is no block to reset).
//! - An index that fails to open at start (corrupt file, unreadable `meta.json`) is logged and
//!   served as unavailable: requests to it get a 500 `index_closed_exception` naming the
//!   problem and the fix, `_cat/indices` shows it `red`/`close`, `DELETE` removes it; the
//!   other indices are served normally.
//! - Index names follow OpenSearch's rules ([`validate_index_name`]); field names in mappings
//!   and documents must be non-empty, without a leading, trailing or doubled dot, and at
//!   most [`MAX_FIELD_NAME_BYTES`]; metadata fields (`_id`, `_source`, ...) cannot be keys of
//!   a document; integer types refuse values outside their range. All of it is checked before
//!   anything is written, and an index is created whole (built aside, renamed into place).
//!
//! ## Limits
//! - `--header-timeout-secs` (30 s): the time a client has to send a request's headers, and
//!   how long an idle keep-alive connection stays open.
//! - `--max-connections` (512): connections served at once; more wait in the accept queue, so
//!   a flood of silent connections delays others by at most the header timeout.
//! - Memory per request stays proportional to its body: a `query_text` (and a document text of
//!   a truncating `sparse_encoding` model) is tokenized only as far as the 512 tokens the model
//!   reads, and BM25 text is tokenized in 64 KiB pieces (4 bytes per token kept).
//!
//! ## Security
//! HTTP basic auth: `--user` with `--password-file FILE`, the `NSPARSE_PASSWORD` environment
//! variable, or `--password` (visible in `ps`); an empty password is refused. Binding a
//! non-loopback address without auth logs a warning. nsparse speaks plain HTTP: for TLS, put
//! a reverse proxy in front (nginx, Caddy, HAProxy, Envoy) that terminates TLS and forwards to
//! nsparse on loopback, e.g. with Caddy `reverse_proxy 127.0.0.1:9200`, and keep `--addr` on
//! `127.0.0.1` so only the proxy can reach it.
//!
//! ## Consistency and durability
//! A write is durable when acknowledged (the index WAL is fsynced). Searches see writes after a
//! refresh: `?refresh=true|wait_for`, `POST /{index}/_refresh`, or the periodic refresh every
//! `index.refresh_interval` (default 1 s, `-1` disables). `GET /{index}/_doc/{id}` is realtime.
//! Shutdown (SIGTERM/SIGINT) stops accepting connections, finishes in-flight requests and
//! commits every index. Each sparse field's own index is written (and its WAL fsynced) before
//! the main index, so an acknowledged document's vectors and every new feature name it brought
//! are durable; after a crash, field documents of the write in flight are rewritten from the
//! main index's `_source` at start. The per-field BM25 indexes of `match` are derived state:
//! after any stop other than a clean shutdown they are rebuilt from the main index at start,
//! so they always agree with `_count`/`_mget`.

mod config;
mod durable;
mod error;
mod field_indexes;
mod ingest;
mod limits;
mod mapping;
mod models;
mod names;
mod query;
mod rest;
mod sparse_fields;
mod store;

use std::future::Future;
use std::sync::Arc;

pub use config::ServerConfig;
pub use error::{ApiError, ServerError};
pub use field_indexes::CLEAN_SHUTDOWN_MARKER;
pub use limits::Cancel;
pub use models::{Models, BUILTIN_IDS};
pub use names::{
    field_dir_name, is_forbidden_in_index_name, validate_field_name, validate_index_name,
    MAX_FIELD_NAME_BYTES, MAX_INDEX_NAME_BYTES,
};
pub use rest::{router, App, OPENSEARCH_VERSION};
pub use store::Store;

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
    if app.config.basic_auth.is_none() && addr.is_some_and(|a| !a.ip().is_loopback()) {
        tracing::warn!(
            ?addr,
            "serving a non-loopback address without authentication: anyone who can reach it can read, write and delete every index; set --user with --password-file (or NSPARSE_PASSWORD), or put an authenticating reverse proxy in front"
        );
    }
    let max_connections = limits::connections_within_file_limit(app.config.max_connections);
    limits::accept_loop(
        listener,
        router(app.clone()),
        app.config.header_read_timeout,
        max_connections,
        shutdown,
    )
    .await;
    let result = Ok(());
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
