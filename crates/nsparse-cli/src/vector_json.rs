//! A strict reader of the `"vector": {token: number, ...}` objects of
//! pre-encoded vector lines, the hot path of `nsparse index --vectors`.
//!
//! A vectors line is ~95 % vector. serde_json (a visitor of (token, f64)
//! pairs, then raw text re-read) took 150–200 ns per entry here; this reader
//! checks the object's grammar and converts it in one pass. The rest of the
//! line (`_id` and any other fields) still goes through serde_json, with the
//! vector replaced by `null`.

use std::borrow::Cow;

/// Token strings and weights of a `"vector"` object, borrowed from the line
/// where JSON allows it.
pub type TokenWeights<'a> = Vec<(Cow<'a, str>, f32)>;

const SHAPE: &str = "\"vector\" must be an object of token: number";

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b
        .get(i)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
    {
        i += 1;
    }
    i
}

/// The offset of the value of the top-level `"vector"` key of the JSON
/// object `line`, or `None` when the line has none or is not simple enough
/// to tell by a structural scan (escaped key names, malformed JSON): the
/// caller then parses the whole line with serde_json. Values before the
/// vector are skipped, not checked; serde_json checks them later.
pub fn locate_vector(line: &str) -> Option<usize> {
    let b = line.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (end, escaped) = string_end(b, i).ok()?;
        if escaped {
            return None;
        }
        let key = &b[i + 1..end];
        i = skip_ws(b, end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        if key == b"vector" {
            return Some(i);
        }
        i = skip_ws(b, skip_value(b, i)?);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            _ => return None,
        }
    }
}

/// The end of the JSON value at `i` (strings and nesting followed, nothing checked).
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *b.get(i)? {
            b'"' => i = string_end(b, i).ok()?.0 + 1,
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' if depth == 0 => return Some(i),
            b'}' | b']' => {
                depth -= 1;
                i += 1;
            }
            b',' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => return Some(i),
            _ => i += 1,
        }
    }
}

/// Reads the `{token: number, ...}` object at `at` in `text`, checking its
/// JSON grammar; returns the entries and the offset just after the object.
///
/// Tokens without escapes are borrowed, escaped ones decoded by serde_json.
/// Weights are parsed straight to `f32` (correctly rounded, as OpenSearch
/// parses a float). A repeated token is kept twice; the vector's own rules
/// decide.
pub fn read_vector_object(text: &str, at: usize) -> Result<(TokenWeights<'_>, usize), String> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, at);
    if b.get(i) != Some(&b'{') {
        return Err(SHAPE.to_string());
    }
    // An entry takes at least ~8 bytes of JSON; most take ~30.
    let mut out = Vec::with_capacity((text.len() - at) / 24);
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Ok((out, i + 1));
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return Err(SHAPE.to_string());
        }
        let start = i + 1;
        let (j, escaped) = string_end(b, i).map_err(|problem| format!("a token {problem}"))?;
        // `i` and `j` are at ASCII quotes, so both are char boundaries.
        let token = if escaped {
            let quoted = &text[i..=j];
            Cow::Owned(
                serde_json::from_str::<String>(quoted)
                    .map_err(|e| format!("bad token string {quoted} ({e})"))?,
            )
        } else {
            Cow::Borrowed(&text[start..j])
        };
        i = skip_ws(b, j + 1);
        if b.get(i) != Some(&b':') {
            return Err(SHAPE.to_string());
        }
        i = skip_ws(b, i + 1);
        let (weight, next) = read_number(text, i)
            .ok_or_else(|| format!("the weight of token {token:?} is not a number"))?;
        out.push((token, weight));
        i = skip_ws(b, next);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Ok((out, i + 1)),
            _ => return Err(SHAPE.to_string()),
        }
    }
}

/// The closing quote of the JSON string that opens at `open`, and whether
/// the string holds escapes (they are skipped, not checked: serde_json
/// decodes or rejects them); an error names what is wrong.
fn string_end(b: &[u8], open: usize) -> Result<(usize, bool), &'static str> {
    let mut i = open + 1;
    let mut escaped = false;
    loop {
        match b.get(i) {
            Some(b'"') => return Ok((i, escaped)),
            Some(b'\\') => {
                escaped = true;
                i += 2;
            }
            Some(&c) if c < 0x20 => return Err("contains an unescaped control character"),
            Some(_) => i += 1,
            None => return Err("string is not closed"),
        }
    }
}

/// The JSON number at `i` as `f32` and the offset after it; `None` when the
/// text there is not a JSON number (`-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`).
fn read_number(text: &str, at: usize) -> Option<(f32, usize)> {
    let b = text.as_bytes();
    let digits = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = at;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let after = digits(i + 1);
        if after == i + 1 {
            return None;
        }
        i = after;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let after = digits(i);
        if after == i {
            return None;
        }
        i = after;
    }
    // JSON's number grammar is a subset of what `f32::from_str` accepts.
    let weight: f32 = text[at..i].parse().ok()?;
    if weight.is_infinite() && text[at..i].parse::<f64>().ok()?.is_infinite() {
        // Beyond f64's range: serde_json refuses it ("number out of range"), and so do we.
        return None;
    }
    Some((weight, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_beyond_f64_are_refused_as_serde_json_refuses_them() {
        assert!(read_number("0.006557137705e85685", 0).is_none());
        assert!(read_number("-1e309", 0).is_none());
        assert!(serde_json::from_str::<f64>("1e309").is_err());
        // Beyond f32 but inside f64: accepted, as infinity (the index refuses it later).
        assert_eq!(read_number("1e39", 0), Some((f32::INFINITY, 4)));
    }

    #[test]
    fn numbers_follow_the_json_grammar() {
        for (text, want) in [
            ("0", Some(0.0)),
            ("-0", Some(-0.0)),
            ("12", Some(12.0)),
            ("1.5", Some(1.5)),
            ("-2.5e-1", Some(-0.25)),
            ("3E+2", Some(300.0)),
            ("0.1", Some(0.1f32)),
        ] {
            assert_eq!(read_number(text, 0).map(|(w, _)| w), want, "{text}");
            assert_eq!(read_number(text, 0).unwrap().1, text.len(), "{text}");
        }
        for text in [
            "", "-", "+1", ".5", "1.", "1e", "1e+", "-x", "NaN", "inf", "\"1\"",
        ] {
            assert_eq!(read_number(text, 0), None, "{text}");
        }
        // Leading zeros end the number; the caller then finds no separator.
        assert_eq!(read_number("01", 0), Some((0.0, 1)));
        // Beyond f32's range is infinite; the vector's check rejects it.
        assert_eq!(read_number("1e39", 0).unwrap().0, f32::INFINITY);
    }

    #[test]
    fn the_vector_is_found_after_other_fields_of_any_shape() {
        let line = r#"{"_id": "a,}", "meta": {"x": [1, {"y": "}"}], "s": "\"{"}, "n": -1.5e3, "t": true, "vector" :{"ny": 1}}"#;
        let at = locate_vector(line).unwrap();
        assert!(line[at..].starts_with("{\"ny\""));
        let (entries, end) = read_vector_object(line, at).unwrap();
        assert_eq!(entries, vec![(Cow::Borrowed("ny"), 1.0)]);
        assert_eq!(&line[end..], "}");
        for line in [
            r#"{"_id": "a"}"#,
            r#"{"vec\u0074or": {"ny": 1}}"#,
            r#"["vector"]"#,
            r#"{"_id": "a" "vector": {}}"#,
            r#"{"_id": "#,
        ] {
            assert_eq!(locate_vector(line), None, "{line}");
        }
    }

    #[test]
    fn bad_objects_are_errors_not_panics() {
        for text in [
            "",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":1",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "{\"a\":1]",
            "{\"a\":\"1\"}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"\\u12\":1}",
            "{\"\\",
            "{\"a\u{1}\":1}",
            "[1]",
            "null",
        ] {
            assert!(read_vector_object(text, 0).is_err(), "{text:?}");
        }
    }
}
