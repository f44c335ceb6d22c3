//! The OpenSearch REST layer: one dispatcher ([`router`]) in front of the handlers of each
//! area.
//!
//! - `dispatch`: authentication (`auth`), body limit, timeouts, the blocking pool, rendering;
//! - `routes`: the routing table, paths and methods → handlers;
//! - `params`: query-string parameters, path segments, JSON bodies; `reply`: response shapes;
//! - handlers by area: `cluster` (`/`, `_cluster/health`, `_cat`), `indices` (create, delete,
//!   get, mapping, settings, refresh), `documents` (`_doc`, `_create`, `_update`, `_source`,
//!   `_mget`), `bulk`, `search` (`_search`, `_count`), `pipelines`.

mod app;
mod auth;
mod bulk;
mod cluster;
mod dispatch;
mod documents;
mod indices;
mod params;
mod pipelines;
mod reply;
mod routes;
mod search;

pub use app::App;
pub use cluster::OPENSEARCH_VERSION;
pub use dispatch::router;
