//! The one dispatcher every request goes through: authentication, the body limit, the body and
//! request timeouts, the handler on the blocking pool, and the rendering of its reply (so every
//! error, including unknown paths and bad methods, has OpenSearch's JSON shape).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::app::App;
use super::auth::authorised;
use super::reply::{error_response, json_response, Reply};
use super::routes::handle;
use crate::error::ApiError;
use crate::limits::Cancel;

/// The axum router serving every endpoint (all paths go through one dispatcher so that every
/// error, including unknown paths and bad methods, has OpenSearch's JSON shape).
pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(dispatch).with_state(app)
}

async fn dispatch(State(app): State<Arc<App>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if let Some((user, password)) = &app.config.basic_auth {
        if !authorised(&parts.headers, user, password) {
            return error_response(&ApiError::new(
                StatusCode::UNAUTHORIZED,
                "security_exception",
                "missing or wrong credentials: send HTTP basic auth with the --user and --password of the server",
            ));
        }
    }
    let limit = app.config.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "content_too_long_exception",
            format!("request body is larger than the limit of [{limit}] bytes (--max-body-bytes); split the request"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return error_response(&too_large());
    }
    // A client that sends its body too slowly holds a connection, not a worker: bound it too.
    let bytes = match tokio::time::timeout(
        app.config.request_timeout,
        axum::body::to_bytes(body, limit),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return error_response(&too_large()),
        Err(_) => {
            return error_response(&ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout_exception",
                "the request body did not arrive within --request-timeout-secs",
            ))
        }
    };
    let method = parts.method.clone();
    let uri = parts.uri.clone();
    let is_head = method == Method::HEAD;
    let work_app = app.clone();
    let cancel = Cancel::default();
    let work_cancel = cancel.clone();
    let task = tokio::task::spawn_blocking(move || {
        let path = uri.path().to_string();
        let query = uri.query().unwrap_or("").to_string();
        handle(&work_app, &method, &path, &query, &bytes, &work_cancel)
    });
    let outcome = tokio::time::timeout(app.config.request_timeout, task).await;
    let reply = match outcome {
        Err(_) => {
            // Stop the work at its next check (see `Cancel`): nobody reads its answer.
            cancel.cancel();
            Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_exception",
                format!(
                    "the request did not finish within {} s (--request-timeout-secs); its remaining work is abandoned, but writes that reached the index complete (check with GET before retrying)",
                    app.config.request_timeout.as_secs_f64()
                ),
            ))
        }
        Ok(Err(join)) => {
            tracing::error!(error = %join, "request handler panicked");
            Err(ApiError::internal(
                "the request failed inside the server (a bug; see the server log)",
            ))
        }
        Ok(Ok(reply)) => reply,
    };
    let response = match reply {
        Ok(Reply::Json(status, value)) => json_response(status, &value),
        Ok(Reply::Text(status, text)) => {
            let mut r = (status, text).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=UTF-8"),
            );
            r
        }
        Ok(Reply::Empty(status)) => status.into_response(),
        Err(e) => error_response(&e),
    };
    if is_head {
        let (mut parts, _) = response.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    response
}
