//! `nsparse serve`: the OpenSearch-compatible neural sparse search service (`nsparse-server`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use nsparse_model::{EncoderOptions, SparseEncoder};
use nsparse_server::{App, Models, ServerConfig};

/// Arguments of `nsparse serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Data directory holding the indices and pipelines (created if missing).
    #[arg(long)]
    data: PathBuf,
    /// Listen address (loopback by default; bind 0.0.0.0 only behind --user/--password or a firewall).
    #[arg(long, default_value = "127.0.0.1:9200")]
    addr: SocketAddr,
    /// A document encoder for ingest pipelines and queries: NAME=DIR (model id NAME) or DIR
    /// (model id = the folder name). Repeatable.
    #[arg(long = "model")]
    models: Vec<String>,
    /// HTTP basic auth user (requires --password).
    #[arg(long, requires = "password")]
    user: Option<String>,
    /// HTTP basic auth password (requires --user).
    #[arg(long, requires = "user")]
    password: Option<String>,
    /// Largest request body in bytes (OpenSearch's http.max_content_length).
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Requests taking longer are answered with 504.
    #[arg(long, default_value_t = 60)]
    request_timeout_secs: u64,
    /// Memory cap (MiB per segment) of the bound columns that speed up exact search
    /// (a byte per document per frequent token plus 4 bytes per 64 documents; most frequent
    /// kept first, 0 = none).
    /// Default: no cap, or NSPARSE_DENSE_COLUMNS_MAX_MB. Results never change.
    #[arg(long)]
    dense_columns_max_mb: Option<u64>,
}

/// Splits `NAME=DIR` or `DIR` into (model id, folder).
fn model_spec(spec: &str) -> Result<(String, String)> {
    if let Some((name, dir)) = spec.split_once('=') {
        if name.is_empty() || dir.is_empty() {
            bail!("--model {spec}: expected NAME=DIR or DIR");
        }
        return Ok((name.to_string(), dir.to_string()));
    }
    let name = std::path::Path::new(spec.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| {
            format!("--model {spec}: cannot take a model id from this path; use NAME=DIR")
        })?;
    Ok((name, spec.to_string()))
}

/// Runs `nsparse serve` until SIGTERM/SIGINT.
pub fn run(args: ServeArgs) -> Result<()> {
    anyhow::ensure!(
        args.request_timeout_secs > 0,
        "--request-timeout-secs must be at least 1"
    );
    if let Some(mb) = args.dense_columns_max_mb {
        nsparse_index::set_dense_columns_max_mb(mb);
    }
    let mut models = Models::new();
    for spec in &args.models {
        let (name, dir) = model_spec(spec)?;
        let encoder = SparseEncoder::load(&dir, EncoderOptions::default())
            .with_context(|| format!("loading --model {spec}"))?;
        if !encoder.can_encode_documents() {
            bail!("--model {spec}: {dir} has no network weights, so it cannot encode documents");
        }
        eprintln!("model {name}: {dir} ({:?} queries)", encoder.query_mode());
        models.insert(name, encoder);
    }
    let mut config = ServerConfig::new(&args.data);
    config.addr = args.addr;
    config.basic_auth = args.user.clone().zip(args.password.clone());
    config.max_body_bytes = args.max_body_bytes;
    config.request_timeout = Duration::from_secs(args.request_timeout_secs);
    let app = App::open(config, models)
        .with_context(|| format!("opening data directory {}", args.data.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        eprintln!(
            "nsparse serving the OpenSearch API on http://{} (data {})",
            listener.local_addr().unwrap_or(args.addr),
            args.data.display()
        );
        nsparse_server::serve(listener, app, nsparse_server::shutdown_signal()).await?;
        eprintln!("nsparse stopped; every index committed");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_spec_forms() {
        assert_eq!(
            model_spec("doc=/m/x").unwrap(),
            ("doc".into(), "/m/x".into())
        );
        assert_eq!(
            model_spec("/m/tiny/").unwrap(),
            ("tiny".into(), "/m/tiny/".into())
        );
        assert!(model_spec("=x").is_err());
    }
}
