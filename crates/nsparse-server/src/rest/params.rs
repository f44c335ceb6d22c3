//! Request parameters: the query string, the decoded path, and JSON bodies.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::query::SourceFilter;

/// Query-string parameters.
pub(super) struct Params(HashMap<String, String>);

impl Params {
    /// Parses a URL query string.
    pub(super) fn parse(query: &str) -> Self {
        Params(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }
    /// The raw value of `key`.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    /// A boolean flag: absent or `false` is false, empty or `true` is true.
    pub(super) fn flag(&self, key: &str) -> ApiResult<bool> {
        match self.get(key) {
            None | Some("false") => Ok(false),
            Some("") | Some("true") => Ok(true),
            Some(other) => Err(ApiError::illegal_argument(format!(
                "Failed to parse value [{other}] as only [true] or [false] are allowed for [{key}]"
            ))),
        }
    }
    /// A non-negative integer.
    pub(super) fn usize(&self, key: &str) -> ApiResult<Option<usize>> {
        self.get(key)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    ApiError::illegal_argument(format!(
                        "Failed to parse int parameter [{key}] with value [{v}]"
                    ))
                })
            })
            .transpose()
    }
    /// `refresh`: `true`/empty/`wait_for` refresh before answering.
    pub(super) fn refresh(&self) -> ApiResult<bool> {
        match self.get("refresh") {
            None | Some("false") => Ok(false),
            Some("") | Some("true") | Some("wait_for") => Ok(true),
            Some(other) => Err(ApiError::illegal_argument(format!(
                "Unknown value for refresh: [{other}]; use true, false or wait_for"
            ))),
        }
    }

    /// The `_source`, `_source_includes` and `_source_excludes` filter; `None` when absent.
    pub(super) fn source_filter(&self) -> Option<SourceFilter> {
        SourceFilter::from_params(
            self.get("_source"),
            self.get("_source_includes"),
            self.get("_source_excludes"),
        )
    }
}

/// The percent-decoded, non-empty segments of a path.
pub(super) fn decode_segments(path: &str) -> ApiResult<Vec<String>> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| {
                    ApiError::illegal_argument(format!(
                        "path segment [{s}] is not valid percent-encoded UTF-8"
                    ))
                })
        })
        .collect()
}

/// The JSON body; `Null` when empty.
pub(super) fn parse_body(bytes: &[u8]) -> ApiResult<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::parsing(format!(
            "request body is not valid JSON: {e} (send one JSON object)"
        ))
    })
}

/// The JSON object body `what` requires.
pub(super) fn require_body(bytes: &[u8], what: &str) -> ApiResult<Value> {
    match parse_body(bytes)? {
        Value::Null => Err(ApiError::parsing(format!("{what} requires a request body"))),
        Value::Object(o) => Ok(Value::Object(o)),
        _ => Err(ApiError::parsing(format!(
            "{what}: the body must be a JSON object"
        ))),
    }
}

/// A non-negative integer body value (a number or a numeric string).
pub(super) fn non_negative(value: &Value, key: &str) -> ApiResult<usize> {
    value
        .as_u64()
        .map(|v| v as usize)
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| {
            ApiError::x_content(format!(
                "[{key}] must be a non-negative integer, found {value}"
            ))
        })
}
