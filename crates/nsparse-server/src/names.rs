//! Name rules checked before anything is persisted: OpenSearch index names (also the
//! directory names of the data directory), field names of mappings and documents, and the
//! short directory names of the per-field BM25 indexes.

use axum::http::StatusCode;

use crate::error::{ApiError, ApiResult};

/// Longest index name in bytes (OpenSearch's limit, and a file name on every filesystem).
pub const MAX_INDEX_NAME_BYTES: usize = 255;

/// Longest field path in bytes (dotted, in mappings and documents). OpenSearch has no
/// default limit; this one keeps `meta.json`, error messages and filters sane.
pub const MAX_FIELD_NAME_BYTES: usize = 1024;

/// Metadata fields OpenSearch refuses as keys of a document body.
pub const METADATA_FIELDS: [&str; 12] = [
    "_id",
    "_index",
    "_source",
    "_routing",
    "_version",
    "_seq_no",
    "_primary_term",
    "_field_names",
    "_ignored",
    "_meta",
    "_type",
    "_doc_count",
];

/// Checks OpenSearch's index name rules: not empty, at most 255 bytes, lowercase, not `.` or
/// `..`, not starting with `_`, `-` or `+`, and none of `\ / * ? " < > | , # :`, space or
/// control characters. A valid name is also a safe directory name.
///
/// This is the one definition of the rules in the workspace; `nsparse export` uses it too.
/// The error is OpenSearch's 400 `invalid_index_name_exception`, naming the rule broken.
pub fn validate_index_name(name: &str) -> ApiResult<()> {
    let bad = |why: &str| {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_index_name_exception",
            format!("Invalid index name [{name}], {why}"),
        )
        .with("index", name)
        .with("index_uuid", "_na_"))
    };
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > MAX_INDEX_NAME_BYTES {
        return bad("index name is too long, (> 255)");
    }
    if name == "." || name == ".." {
        return bad("must not be '.' or '..'");
    }
    if name.starts_with(['_', '-', '+']) {
        return bad("must not start with '_', '-', or '+'");
    }
    if name.chars().any(|c| c.is_uppercase()) {
        return bad("must be lowercase");
    }
    if name.chars().any(is_forbidden_in_index_name) {
        return bad(
            "must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?, #, :]",
        );
    }
    Ok(())
}

/// A character OpenSearch refuses anywhere in an index name (`\ / * ? " < > | , # :`, a
/// space), or a control character.
pub fn is_forbidden_in_index_name(c: char) -> bool {
    matches!(
        c,
        '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
    ) || c.is_control()
}

/// Checks a dotted field path of a mapping or a document: not empty, no leading or trailing
/// dot, no empty segment (`a..b`), not only whitespace, at most [`MAX_FIELD_NAME_BYTES`].
/// 400 `mapper_parsing_exception` otherwise, as OpenSearch answers.
pub fn validate_field_name(path: &str) -> ApiResult<()> {
    if path.is_empty() {
        return Err(ApiError::mapper_parsing(
            "field name cannot be an empty string; give every field a name",
        ));
    }
    if path.len() > MAX_FIELD_NAME_BYTES {
        let shown: String = path.chars().take(64).collect();
        return Err(ApiError::mapper_parsing(format!(
            "field name [{shown}...] is {} bytes long; the limit is {MAX_FIELD_NAME_BYTES} bytes, use a shorter name",
            path.len()
        )));
    }
    if path.starts_with('.') || path.ends_with('.') {
        return Err(ApiError::mapper_parsing(format!(
            "object field starting or ending with a [.] makes object resolution ambiguous: [{path}]"
        )));
    }
    if path.split('.').any(|part| part.trim().is_empty()) {
        return Err(ApiError::mapper_parsing(format!(
            "object field cannot contain only whitespace: ['{path}'] (the field name has an empty path segment, e.g. [a..b]; remove the extra dot)"
        )));
    }
    Ok(())
}

/// The error for a metadata field (`_id`, `_source`, ...) used as a key of a document body.
pub fn metadata_field_in_document(field: &str) -> ApiError {
    ApiError::mapper_parsing(format!(
        "Field [{field}] is a metadata field and cannot be added inside a document. Use the index API request parameters."
    ))
}

/// The directory (under `fields/`) of the BM25 index of text field `path`.
///
/// Paths of up to 64 bytes keep the hex spelling of the path that earlier versions used
/// for every field, so existing data directories open unchanged; longer paths (whose hex
/// would exceed file-name limits) use `h` and a 128-bit FNV-1a hash of the path, 33 bytes.
/// Two fields of one index with the same directory are refused at mapping time.
pub fn field_dir_name(path: &str) -> String {
    if path.len() <= 64 {
        return path.bytes().map(|b| format!("{b:02x}")).collect();
    }
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let hash = path
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u128::from(b)).wrapping_mul(PRIME));
    format!("h{hash:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_follow_opensearch() {
        for ok in ["docs", ".hidden", "a-b_c+d", "ü", &"x".repeat(255)] {
            assert!(validate_index_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "_a",
            "-a",
            "+a",
            "A",
            "a b",
            "a,b",
            "a#b",
            "a:b",
            "a/b",
            "a\\b",
            "a*",
            "a?",
            "a\"",
            "a<",
            "a>",
            "a|",
            "a\nb",
            &"x".repeat(256),
        ] {
            let e = validate_index_name(bad).unwrap_err();
            assert_eq!(e.kind, "invalid_index_name_exception", "{bad:?}");
        }
    }

    #[test]
    fn field_names_are_checked() {
        for ok in ["a", "a.b", "a_b", "é", &"f".repeat(MAX_FIELD_NAME_BYTES)] {
            assert!(validate_field_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            " ",
            "a. .b",
            &"f".repeat(MAX_FIELD_NAME_BYTES + 1),
        ] {
            let e = validate_field_name(bad).unwrap_err();
            assert_eq!(e.kind, "mapper_parsing_exception", "{bad:?}");
        }
    }

    #[test]
    fn field_dirs_are_short_and_keep_the_old_hex_names() {
        assert_eq!(field_dir_name("text"), "74657874");
        let long = "t".repeat(300);
        let dir = field_dir_name(&long);
        assert_eq!(dir.len(), 33);
        assert_ne!(dir, field_dir_name(&"t".repeat(301)));
        // Hex names have an even length and hex digits only; hashed ones start with `h`.
        assert!(dir.starts_with('h'));
    }
}
