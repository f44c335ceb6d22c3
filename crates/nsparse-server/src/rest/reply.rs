//! Response bodies and their HTTP rendering: JSON with OpenSearch's content type, text for
//! `_cat`, empty for `HEAD`, and errors in OpenSearch's JSON shape.

use std::collections::BTreeMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::error::ApiError;

/// A response body.
pub(super) enum Reply {
    /// A JSON body.
    Json(StatusCode, Value),
    /// A `text/plain` body (`_cat`).
    Text(StatusCode, String),
    /// No body.
    Empty(StatusCode),
}

impl Reply {
    /// `200 OK` with a JSON body.
    pub(super) fn ok(value: Value) -> Self {
        Reply::Json(StatusCode::OK, value)
    }
}

/// A JSON response with OpenSearch's content type.
pub(super) fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}

/// An error in OpenSearch's JSON shape (with the basic-auth challenge on a 401).
pub(super) fn error_response(e: &ApiError) -> Response {
    let mut response = json_response(e.status, &e.body());
    if e.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"nsparse\" charset=\"UTF-8\""),
        );
    }
    response
}

/// A map as a JSON object.
pub(super) fn to_object(map: BTreeMap<String, Value>) -> Value {
    Value::Object(map.into_iter().collect())
}

/// The `_shards` summary of `n` shards, all successful.
pub(super) fn shards_summary(n: usize) -> Value {
    json!({"_shards": {"total": n, "successful": n, "failed": 0}})
}

/// `{"acknowledged": true}`.
pub(super) fn acknowledged() -> Reply {
    Reply::ok(json!({"acknowledged": true}))
}
