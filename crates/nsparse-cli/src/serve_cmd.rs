//! `nsparse serve`: the OpenSearch-compatible neural sparse search service (`nsparse-server`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use nsparse_model::SparseEncoder;
use nsparse_server::{App, Models, ServerConfig};

use crate::model_args::EncoderArgs;

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
    #[command(flatten)]
    encoder: EncoderArgs,
    /// HTTP basic auth user (with a password from --password-file, NSPARSE_PASSWORD or
    /// --password).
    #[arg(long)]
    user: Option<String>,
    /// HTTP basic auth password (requires --user). Visible to other users in `ps`: prefer
    /// --password-file or the NSPARSE_PASSWORD environment variable.
    #[arg(long, requires = "user", conflicts_with = "password_file")]
    password: Option<String>,
    /// File holding the basic auth password (its first line; requires --user).
    #[arg(long, requires = "user")]
    password_file: Option<PathBuf>,
    /// Largest request body in bytes (OpenSearch's http.max_content_length).
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Requests taking longer are answered with 504 (and their remaining work is abandoned).
    #[arg(long, default_value_t = 60)]
    request_timeout_secs: u64,
    /// Longest a client may take to send a request's headers; also how long an idle
    /// keep-alive connection is kept open.
    #[arg(long, default_value_t = 10)]
    header_timeout_secs: u64,
    /// Connections served at once (lowered to fit the open-file limit); more wait until one
    /// closes.
    #[arg(long, default_value_t = 8192)]
    max_connections: usize,
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

/// The environment variable holding the basic auth password.
const PASSWORD_ENV: &str = "NSPARSE_PASSWORD";

/// The basic auth credentials from `--user` and one of `--password-file`, `--password` or
/// `NSPARSE_PASSWORD` (in that order); `None` when no `--user` is given.
fn credentials(args: &ServeArgs, env_password: Option<String>) -> Result<Option<(String, String)>> {
    let Some(user) = &args.user else {
        if env_password.is_some() {
            eprintln!(
                "warning: {PASSWORD_ENV} is set but --user is not; serving without authentication"
            );
        }
        return Ok(None);
    };
    let password = if let Some(file) = &args.password_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading --password-file {}", file.display()))?;
        let first = text.lines().next().unwrap_or("").to_string();
        if first.is_empty() {
            bail!(
                "--password-file {}: the file is empty or its first line is; write the password on its first line",
                file.display()
            );
        }
        first
    } else if let Some(p) = &args.password {
        p.clone()
    } else if let Some(p) = env_password {
        p
    } else {
        bail!("--user {user} needs a password: --password-file FILE, the {PASSWORD_ENV} environment variable, or --password");
    };
    if password.is_empty() {
        bail!("the password for --user {user} is empty; an empty password protects nothing, give a non-empty one");
    }
    if user.is_empty() {
        bail!("--user is empty; give a user name");
    }
    Ok(Some((user.clone(), password)))
}

/// Runs `nsparse serve` until SIGTERM/SIGINT.
pub fn run(args: ServeArgs) -> Result<()> {
    anyhow::ensure!(
        args.request_timeout_secs > 0,
        "--request-timeout-secs must be at least 1"
    );
    anyhow::ensure!(
        args.header_timeout_secs > 0,
        "--header-timeout-secs must be at least 1"
    );
    anyhow::ensure!(
        args.max_connections > 0,
        "--max-connections must be at least 1"
    );
    let basic_auth = credentials(&args, std::env::var(PASSWORD_ENV).ok())?;
    if let Some(mb) = args.dense_columns_max_mb {
        // The server reads the cap from the environment when it opens an
        // index; the flag overrides it. Set here, before any thread starts.
        std::env::set_var(nsparse_index::DENSE_COLUMNS_MAX_MB_ENV, mb.to_string());
    }
    let mut models = Models::new();
    for spec in &args.models {
        let (name, dir) = model_spec(spec)?;
        let encoder = SparseEncoder::load(&dir, args.encoder.options())
            .with_context(|| format!("loading --model {spec}"))?;
        if !encoder.can_encode_documents() {
            bail!("--model {spec}: {dir} has no network weights, so it cannot encode documents");
        }
        eprintln!("model {name}: {dir} ({:?} queries)", encoder.query_mode());
        models.insert(name, encoder);
    }
    let mut config = ServerConfig::new(&args.data);
    config.addr = args.addr;
    config.basic_auth = basic_auth;
    config.max_body_bytes = args.max_body_bytes;
    config.request_timeout = Duration::from_secs(args.request_timeout_secs);
    config.header_read_timeout = Duration::from_secs(args.header_timeout_secs);
    config.max_connections = args.max_connections;
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

    fn args(extra: &[&str]) -> ServeArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let mut argv = vec!["nsparse", "--data", "/tmp/d"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().serve
    }

    #[test]
    fn password_sources_and_empty_passwords() {
        assert_eq!(credentials(&args(&[]), None).unwrap(), None);
        assert_eq!(
            credentials(&args(&["--user", "u", "--password", "p"]), None).unwrap(),
            Some(("u".into(), "p".into()))
        );
        assert_eq!(
            credentials(&args(&["--user", "u"]), Some("env".into())).unwrap(),
            Some(("u".into(), "env".into()))
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "secret\n").unwrap();
        let f = file.to_str().unwrap();
        assert_eq!(
            credentials(
                &args(&["--user", "u", "--password-file", f]),
                Some("env".into())
            )
            .unwrap(),
            Some(("u".into(), "secret".into()))
        );
        std::fs::write(&file, "\n").unwrap();
        let e = credentials(&args(&["--user", "u", "--password-file", f]), None).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = credentials(&args(&["--user", "u", "--password", ""]), None).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = credentials(&args(&["--user", "u"]), None).unwrap_err();
        assert!(e.to_string().contains("NSPARSE_PASSWORD"), "{e}");
        let e = credentials(&args(&["--user", "u"]), Some(String::new())).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }
}
