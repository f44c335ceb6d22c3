//! Request hygiene: the connection-level limits of the listener (header-read and keep-alive
//! timeout, connection cap) and the cancellation of work whose request timed out.
//!
//! The listener is hyper's HTTP/1 connection builder in a small accept loop (axum's own
//! `serve` exposes no hyper settings):
//! - a connection gets at most `header_read_timeout` to send a request's headers, and an idle
//!   keep-alive connection is closed after the same time (hyper starts the header timer when
//!   it waits for the next request), so slow or silent clients cannot hold connections;
//! - at most `max_connections` connections are served at once; further ones wait in the
//!   kernel's accept queue until a slot frees up (a silent connection frees its slot after
//!   `header_read_timeout`), so a flood of idle sockets delays, but cannot starve, real clients;
//! - shutdown stops accepting, closes idle connections, lets in-flight requests finish.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};

/// A flag set when a request's deadline passed (its client already has a 504): long-running
/// work checks it between steps and stops, instead of burning CPU for an answer nobody reads.
///
/// What checks it: ingest pipelines (between batches of 64 documents to encode), bulk
/// requests (between parsing, pipelines, per-index document preparation and writes of each
/// index), and searches (before the query runs and before hits are rendered). Work already
/// handed to the index (a WAL append, one top-k search) is not interrupted, so a write that
/// reached the index completes.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Marks the work cancelled.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// True once [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(504)` once cancelled (the client already got its 504; this only stops the work).
    pub fn check(&self) -> crate::error::ApiResult<()> {
        if self.is_cancelled() {
            return Err(crate::error::ApiError::new(
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                "timeout_exception",
                "the request timed out (--request-timeout-secs); its remaining work was abandoned",
            ));
        }
        Ok(())
    }
}

/// Accepts connections on `listener` and serves each with `router` under the limits above,
/// until `shutdown` resolves; then waits for open connections to finish their requests.
pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_read_timeout: Duration,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        // Take a slot before accepting: beyond the cap, clients wait in the accept queue.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Per-connection failures (reset before accept) are harmless; running out
                    // of file descriptors is not: back off instead of spinning.
                    if !is_connection_error(&e) {
                        tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Descriptors kept free of connections, for index files, the listener and the runtime.
const RESERVED_FILES: u64 = 256;

/// `wanted` connections, or fewer if the process cannot open that many files: raises the
/// soft open-file limit to the hard one first (a flood of idle sockets must exhaust the
/// connection cap, which times them out, rather than the descriptors, which would stop
/// the server from opening index files).
pub(crate) fn connections_within_file_limit(wanted: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer, which
    // lives on this stack frame for the duration of the calls.
    let files = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return wanted;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        limit.rlim_cur
    };
    let room = files.saturating_sub(RESERVED_FILES).max(16);
    let allowed = (wanted as u64).min(room) as usize;
    if allowed < wanted {
        tracing::warn!(
            wanted,
            allowed,
            open_file_limit = files,
            "--max-connections lowered to fit the open-file limit (raise it with ulimit -n)"
        );
    }
    allowed
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_connection_cap_fits_the_open_file_limit() {
        let allowed = super::connections_within_file_limit(usize::MAX);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes only the struct passed by pointer.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert!(allowed as u64 <= limit.rlim_cur.saturating_sub(super::RESERVED_FILES).max(16));
        assert!(allowed >= 16);
        assert_eq!(super::connections_within_file_limit(20), 20.min(allowed));
    }
}
