//! `_source` filtering of returned documents (search hits, GET, `_mget`).

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// `_source` filtering: `true`/`false`, a pattern, a list, or `{includes, excludes}`.
#[derive(Debug, Clone, Default)]
pub struct SourceFilter {
    /// `_source: false`.
    disabled: bool,
    /// Patterns to keep (empty = all).
    includes: Vec<String>,
    /// Patterns to drop.
    excludes: Vec<String>,
}

impl SourceFilter {
    /// The filter of the URL parameters `_source` (`true`, `false` or a comma list of
    /// includes), `_source_includes` and `_source_excludes`; `None` when none is given.
    pub fn from_params(
        source: Option<&str>,
        includes: Option<&str>,
        excludes: Option<&str>,
    ) -> Option<Self> {
        let split = |s: &str| -> Vec<String> {
            s.split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        };
        let mut filter = match source {
            None => None,
            Some("true") | Some("") => Some(SourceFilter::default()),
            Some("false") => Some(SourceFilter {
                disabled: true,
                ..Default::default()
            }),
            Some(list) => Some(SourceFilter {
                includes: split(list),
                ..Default::default()
            }),
        };
        if let Some(inc) = includes {
            filter.get_or_insert_with(SourceFilter::default).includes = split(inc);
        }
        if let Some(exc) = excludes {
            filter.get_or_insert_with(SourceFilter::default).excludes = split(exc);
        }
        filter
    }

    /// Whether no source is returned at all (`_source: false`).
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// Parses the `_source` value of a search body.
    pub fn parse(value: &Value) -> ApiResult<Self> {
        let list = |v: &Value| -> ApiResult<Vec<String>> {
            match v {
                Value::String(s) => Ok(vec![s.clone()]),
                Value::Array(items) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| ApiError::parsing("[_source] patterns must be strings"))
                    })
                    .collect(),
                Value::Null => Ok(Vec::new()),
                _ => Err(ApiError::parsing("[_source] patterns must be strings")),
            }
        };
        Ok(match value {
            Value::Bool(b) => SourceFilter {
                disabled: !b,
                ..Default::default()
            },
            Value::String(_) | Value::Array(_) => SourceFilter {
                includes: list(value)?,
                ..Default::default()
            },
            Value::Object(o) => SourceFilter {
                disabled: false,
                includes: list(
                    o.get("includes")
                        .or_else(|| o.get("include"))
                        .unwrap_or(&Value::Null),
                )?,
                excludes: list(
                    o.get("excludes")
                        .or_else(|| o.get("exclude"))
                        .unwrap_or(&Value::Null),
                )?,
            },
            _ => {
                return Err(ApiError::parsing(
                    "[_source] must be a boolean, a string, an array or an object",
                ))
            }
        })
    }

    /// Applies the filter to a source.
    pub fn apply(&self, source: Value) -> Option<Value> {
        if self.disabled {
            return None;
        }
        if self.includes.is_empty() && self.excludes.is_empty() {
            return Some(source);
        }
        Some(filter_object(source, "", self))
    }
}

fn filter_object(value: Value, prefix: &str, f: &SourceFilter) -> Value {
    let Value::Object(obj) = value else {
        return value;
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if f.excludes.iter().any(|p| glob(p, &path)) {
            continue;
        }
        let included = f.includes.is_empty() || f.includes.iter().any(|p| glob(p, &path));
        if included {
            // Excludes may still reach inside.
            let v = if v.is_object() && !f.excludes.is_empty() {
                filter_object(
                    v,
                    &path,
                    &SourceFilter {
                        includes: Vec::new(),
                        ..f.clone()
                    },
                )
            } else {
                v
            };
            out.insert(k, v);
        } else if v.is_object()
            && f.includes
                .iter()
                .any(|p| p.starts_with(&format!("{path}.")))
        {
            let inner = filter_object(v, &path, f);
            if inner.as_object().is_some_and(|o| !o.is_empty()) {
                out.insert(k, inner);
            }
        }
    }
    Value::Object(out)
}

/// `*` wildcard match.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(mut remaining) = text.strip_prefix(head) else {
                return false;
            };
            let parts: Vec<&str> = rest.split('*').collect();
            for (i, part) in parts.iter().enumerate() {
                if i == parts.len() - 1 {
                    return remaining.ends_with(part);
                }
                match remaining.find(part) {
                    Some(pos) => remaining = &remaining[pos + part.len()..],
                    None => return false,
                }
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn glob_patterns() {
        assert!(glob("a*", "abc"));
        assert!(glob("*c", "abc"));
        assert!(glob("a*c", "abc"));
        assert!(!glob("a*d", "abc"));
        assert!(glob("meta.*", "meta.year"));
    }

    #[test]
    fn source_filter_includes_and_excludes() {
        let src = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4});
        let f = SourceFilter::parse(&json!({"includes": ["b.c", "a"]})).unwrap();
        assert_eq!(
            f.apply(src.clone()).unwrap(),
            json!({"a": 1, "b": {"c": 2}})
        );
        let f = SourceFilter::parse(&json!({"excludes": ["b.d", "e"]})).unwrap();
        assert_eq!(
            f.apply(src.clone()).unwrap(),
            json!({"a": 1, "b": {"c": 2}})
        );
        assert!(SourceFilter::parse(&json!(false))
            .unwrap()
            .apply(src)
            .is_none());
    }
}
