//! The state shared by every handler.

use std::sync::Arc;

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::models::Models;
use crate::store::Store;

/// The shared state of the router.
pub struct App {
    /// Indices, pipelines, models.
    pub store: Arc<Store>,
    /// Limits and credentials.
    pub config: ServerConfig,
}

impl App {
    /// Opens the data directory with `models`.
    pub fn open(config: ServerConfig, models: Models) -> Result<Arc<App>, ServerError> {
        if config.max_body_bytes == 0 {
            return Err(ServerError::Config(
                "--max-body-bytes must be at least 1".into(),
            ));
        }
        if config.max_connections == 0 {
            return Err(ServerError::Config(
                "--max-connections must be at least 1".into(),
            ));
        }
        if config.header_read_timeout.is_zero() || config.request_timeout.is_zero() {
            return Err(ServerError::Config(
                "--header-timeout-secs and --request-timeout-secs must be at least 1".into(),
            ));
        }
        if let Some((_, password)) = &config.basic_auth {
            if password.is_empty() {
                return Err(ServerError::Config(
                    "the basic-auth password is empty; give a non-empty password (--password, --password-file or NSPARSE_PASSWORD)".into(),
                ));
            }
        }
        let store = Store::open(&config.data, models)?;
        Ok(Arc::new(App {
            store: Arc::new(store),
            config,
        }))
    }
}
