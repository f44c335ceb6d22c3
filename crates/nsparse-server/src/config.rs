//! Server settings: address, auth, limits and names.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Longest a client may take to send a request's headers; also how long an idle
    /// keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the accept queue.
    pub max_connections: usize,
}

impl ServerConfig {
    /// Defaults: loopback port 9200, 100 MiB bodies, 60 s request timeout, 10 s header-read
    /// and keep-alive timeout, 8,192 connections (fewer if the open-file limit is lower), no
    /// auth.
    pub fn new(data: impl Into<PathBuf>) -> Self {
        ServerConfig {
            data: data.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 9200)),
            basic_auth: None,
            max_body_bytes: 100 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            node_name: "nsparse".into(),
            cluster_name: "nsparse".into(),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 8192,
        }
    }
}
