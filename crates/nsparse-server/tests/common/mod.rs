//! The REST API in-process for the integration tests: the router driven with
//! `tower::ServiceExt::oneshot` over a data directory in a temporary folder.

#![allow(dead_code)] // Each test file uses its own part.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use nsparse_server::{router, App, Models, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

/// A server over a temporary data directory, with the models `models()` loads.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub app: Arc<App>,
    models: fn() -> Models,
}

impl Harness {
    /// A new data directory, no models but the built-in analyzer.
    pub fn new() -> Self {
        Self::with_models(Models::new)
    }

    /// A new data directory with these models.
    pub fn with_models(models: fn() -> Models) -> Self {
        Self::open(tempfile::tempdir().unwrap(), models)
    }

    /// A new data directory, no models, and the configuration `edit` makes.
    pub fn with_config(edit: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path());
        edit(&mut config);
        Self::with(dir, config, Models::new)
    }

    /// The data directory `dir` with these models.
    pub fn open(dir: tempfile::TempDir, models: fn() -> Models) -> Self {
        let config = ServerConfig::new(dir.path());
        Self::with(dir, config, models)
    }

    /// The data directory `dir` served with `config` and these models.
    pub fn with(dir: tempfile::TempDir, config: ServerConfig, models: fn() -> Models) -> Self {
        let app = App::open(config, models()).unwrap();
        Harness { dir, app, models }
    }

    /// Drops the server state without a clean shutdown (as a crash would: the index locks are
    /// released) and opens the data directory again with the same configuration.
    pub fn restart(self) -> Self {
        let Harness { dir, app, models } = self;
        let config = app.config.clone();
        drop(app);
        Self::with(dir, config, models)
    }

    /// Commits every index and leaves the clean-shutdown markers, as `serve` does at exit.
    pub fn clean_shutdown(self) -> (tempfile::TempDir, ServerConfig) {
        assert!(self.app.store.commit_all().is_empty());
        let config = self.app.config.clone();
        (self.dir, config)
    }

    /// The data directory.
    pub fn data(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// One request; the status and the body as JSON (or as a string when it is not JSON).
    pub async fn call(&self, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = router(self.app.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// [`Harness::call`] with a JSON body.
    pub async fn json(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(method, path, &body.to_string()).await
    }

    /// The top 10 `(_id, _score)` of `query` on `index`.
    pub async fn hits(&self, index: &str, query: Value) -> Vec<(String, f32)> {
        let (status, value) = self
            .json(
                "POST",
                &format!("/{index}/_search"),
                json!({"query": query, "size": 10, "_source": false}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{value}");
        value["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["_id"].as_str().unwrap().to_string(),
                    h["_score"].as_f64().unwrap() as f32,
                )
            })
            .collect()
    }
}
