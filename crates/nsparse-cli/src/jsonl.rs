//! BEIR-style JSON-lines input (`corpus.jsonl`, `queries.jsonl`) and vector output.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use std::borrow::Cow;

use anyhow::{bail, Context, Result};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::vector_json;

/// One line of a BEIR corpus or queries file.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The `_id` field (numbers are accepted and kept as their decimal text).
    pub id: String,
    /// The text to encode: `title + " " + text` when a non-empty title exists, else `text`.
    pub text: String,
    /// The line as given, for stored sources.
    pub source: Value,
}

/// Parses one JSON line; `origin` is `file:line` for messages.
pub fn parse_record(line: &str, origin: &str) -> Result<Record> {
    let source: Value = serde_json::from_str(line).with_context(|| {
        format!("{origin}: not a JSON object; each line must be {{\"_id\": ..., \"text\": ...}}")
    })?;
    record_from_object(source, origin, true)
}

/// The `Record` of a parsed line; `require_text` rejects lines with neither
/// `text` nor `title` (corpus lines must have text, vector lines need not).
fn record_from_object(source: Value, origin: &str, require_text: bool) -> Result<Record> {
    let obj = source
        .as_object()
        .with_context(|| format!("{origin}: not a JSON object"))?;
    let id = match obj.get("_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => bail!("{origin}: missing or empty \"_id\" (a string)"),
    };
    let text = match obj.get("text") {
        Some(Value::String(s)) => s.as_str(),
        None | Some(Value::Null) => "",
        Some(_) => bail!("{origin}: \"text\" must be a string"),
    };
    let title = match obj.get("title") {
        Some(Value::String(s)) => s.as_str(),
        None | Some(Value::Null) => "",
        Some(_) => bail!("{origin}: \"title\" must be a string"),
    };
    if require_text && title.is_empty() && text.is_empty() && !obj.contains_key("text") {
        bail!("{origin}: no \"text\" field");
    }
    let text = if title.is_empty() {
        text.to_string()
    } else {
        format!("{title} {text}")
    };
    Ok(Record { id, text, source })
}

/// Token strings and weights of a `"vector"` object, borrowed from the line
/// where JSON allows it.
pub type TokenWeights<'a> = Vec<(Cow<'a, str>, f32)>;

/// Parses one line of pre-encoded vectors, `{"_id": ..., "vector": {token:
/// weight, ...}, ...}`: the record (its source without the vector; `text` is
/// optional and only feeds BM25) and the vector's entries.
///
/// The vector is read by [`crate::vector_json`] in one checked pass, and the
/// rest of the line, with the vector replaced by `null`, by serde_json. A
/// line that scan cannot take apart (or that fails) is parsed whole by
/// serde_json, whose message then names the problem's true position.
pub fn parse_vector_line<'a>(line: &'a str, origin: &str) -> Result<(Record, TokenWeights<'a>)> {
    if let Some(at) = vector_json::locate_vector(line) {
        if let Ok((entries, end)) = vector_json::read_vector_object(line, at) {
            let rest = format!("{}null{}", &line[..at], &line[end..]);
            if let Ok(parsed) = serde_json::from_str::<VectorLine<'_>>(&rest) {
                if parsed.vector.is_some_and(|v| v.get() == "null") {
                    let record = record_from_object(Value::Object(parsed.fields), origin, false)?;
                    return Ok((record, entries));
                }
            }
        }
    }
    let parsed: VectorLine<'a> = serde_json::from_str(line).with_context(|| {
        format!(
            "{origin}: not a vector line; each line must be {{\"_id\": ..., \"vector\": {{token: weight, ...}}}}"
        )
    })?;
    let Some(vector) = parsed.vector else {
        bail!("{origin}: no \"vector\" object; lines must be {{\"_id\": ..., \"vector\": {{token: weight}}}}");
    };
    let raw = vector.get();
    let (entries, end) = vector_json::read_vector_object(raw, 0)
        .map_err(|problem| anyhow::anyhow!("{origin}: not a vector line: {problem}"))?;
    if !raw[end..].trim().is_empty() {
        bail!("{origin}: not a vector line: \"vector\" must be an object of token: number");
    }
    Ok((
        record_from_object(Value::Object(parsed.fields), origin, false)?,
        entries,
    ))
}

/// A vector line: every field but `vector` as JSON values, and the vector's
/// raw JSON text.
struct VectorLine<'a> {
    fields: serde_json::Map<String, Value>,
    vector: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for VectorLine<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct LineVisitor;
        impl<'de> Visitor<'de> for LineVisitor {
            type Value = VectorLine<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut fields = serde_json::Map::new();
                let mut vector = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "vector" {
                        vector = Some(map.next_value::<&'de RawValue>()?);
                    } else {
                        let value: Value = map.next_value()?;
                        fields.insert(key, value);
                    }
                }
                Ok(VectorLine { fields, vector })
            }
        }
        d.deserialize_map(LineVisitor)
    }
}

/// Reads JSON lines in chunks, so corpora larger than memory stream through.
pub struct RecordReader {
    path: PathBuf,
    lines: std::io::Lines<BufReader<File>>,
    line_no: usize,
    /// Bytes of the file read so far, line ends included (for progress).
    bytes_read: u64,
    /// The next chunk's lines, read while the previous chunk was parsed (or
    /// the error that stopped the reading, reported in its turn).
    ahead: Option<Result<Vec<(usize, String)>>>,
}

impl RecordReader {
    /// Opens a JSON-lines file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(RecordReader {
            path: path.to_path_buf(),
            // Lines of pre-encoded vectors are ~9 KB; a larger buffer halves the reads.
            lines: BufReader::with_capacity(1 << 20, file).lines(),
            line_no: 0,
            bytes_read: 0,
            ahead: None,
        })
    }

    /// The next up to `n` records; empty at the end. Blank lines are skipped.
    pub fn next_chunk(&mut self, n: usize) -> Result<Vec<Record>> {
        self.next_chunk_with(n, parse_record)
    }

    /// The next up to `n` non-blank lines, each parsed by `parse(line,
    /// origin)`; empty at the end. Lines are parsed on all cores (JSON parsing
    /// is most of the cost of indexing pre-encoded vectors) while the next
    /// `n` lines are read, so reading the file is off the critical path.
    pub fn next_chunk_with<T: Send>(
        &mut self,
        n: usize,
        parse: impl Fn(&str, &str) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        let mut lines = match self.ahead.take() {
            Some(lines) => lines?,
            None => self.read_lines(n)?,
        };
        if lines.len() > n {
            // (The caller asked for fewer than last time.)
            self.ahead = Some(Ok(lines.split_off(n)));
        }
        if lines.is_empty() {
            return Ok(Vec::new());
        }
        let path = self.path.display().to_string();
        let parse_chunk = || par_map(&lines, |(no, line)| parse(line, &format!("{path}:{no}")));
        let parsed = if self.ahead.is_some() {
            parse_chunk()
        } else {
            let (parsed, ahead) = std::thread::scope(|sc| {
                let reading = sc.spawn(|| self.read_lines(n));
                let parsed = parse_chunk();
                let ahead = reading
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                (parsed, ahead)
            });
            self.ahead = Some(ahead);
            parsed
        };
        parsed.into_iter().collect()
    }

    /// Bytes of the file read so far, line ends included (lines read ahead too).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next up to `n` non-blank lines with their line numbers.
    fn read_lines(&mut self, n: usize) -> Result<Vec<(usize, String)>> {
        let mut lines = Vec::with_capacity(n);
        while lines.len() < n {
            let Some(line) = self.lines.next() else { break };
            self.line_no += 1;
            let line = line.with_context(|| {
                format!("{}:{}: cannot read", self.path.display(), self.line_no)
            })?;
            // (A CRLF line end counts one byte short; this is for progress only.)
            self.bytes_read += line.len() as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            lines.push((self.line_no, line));
        }
        Ok(lines)
    }
}

/// `items.iter().map(f).collect()`, on up to one thread per core (order kept).
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |c| c.get());
    let per = items.len().div_ceil(threads).max(256);
    if items.len() <= per {
        return items.iter().map(f).collect();
    }
    std::thread::scope(|sc| {
        let f = &f;
        let parts: Vec<_> = items
            .chunks(per)
            .map(|part| sc.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Counts the non-blank lines of a file (for the progress bar's total).
pub fn count_records(path: &Path) -> Result<u64> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut n = 0;
    for line in BufReader::new(file).lines() {
        if !line
            .with_context(|| format!("cannot read {}", path.display()))?
            .trim()
            .is_empty()
        {
            n += 1;
        }
    }
    Ok(n)
}

/// A file written under a temporary name and renamed into place only when complete, so a failed
/// run never leaves a half-written output that looks finished.
pub struct AtomicOutput {
    tmp: PathBuf,
    path: PathBuf,
    /// The buffered writer.
    pub writer: BufWriter<File>,
}

impl AtomicOutput {
    /// Creates `path.partial` next to `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let file =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(AtomicOutput {
            tmp,
            path: path.to_path_buf(),
            writer: BufWriter::new(file),
        })
    }

    /// Flushes, syncs and renames into place.
    pub fn commit(self) -> Result<()> {
        let file = self
            .writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", self.tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("cannot sync {}", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("cannot rename into {}", self.path.display()))?;
        Ok(())
    }
}

/// Writes one line followed by a newline.
pub fn write_line(out: &mut impl Write, line: &str) -> std::io::Result<()> {
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_parse_in_parallel_in_file_order_and_name_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut body: String = (0..3000)
            .map(|i| format!("{{\"_id\":\"d{i}\",\"text\":\"t{i}\"}}\n\n"))
            .collect();
        body.push_str("{broken\n");
        std::fs::write(&path, body).unwrap();
        let mut reader = RecordReader::open(&path).unwrap();
        let chunk = reader.next_chunk(2500).unwrap();
        let ids: Vec<String> = chunk.iter().map(|r| r.id.clone()).collect();
        let want: Vec<String> = (0..2500).map(|i| format!("d{i}")).collect();
        assert_eq!(ids, want);
        // The rest holds the broken line: 3000 records and their blank lines, then line 6001.
        let err = reader.next_chunk(2500).unwrap_err().to_string();
        assert!(err.contains(":6001: not a JSON object"), "{err}");
        assert_eq!(par_map(&[1, 2, 3], |x| x * 2), vec![2, 4, 6]);
    }

    #[test]
    fn lines_read_ahead_come_in_order_whatever_the_chunk_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let body: String = (0..1000)
            .map(|i| format!("{{\"_id\":\"d{i}\",\"text\":\"t\"}}\n \n"))
            .collect();
        std::fs::write(&path, body).unwrap();
        let mut reader = RecordReader::open(&path).unwrap();
        let mut ids = Vec::new();
        for n in [300, 7, 1, 500, 300, 300, 5].into_iter().cycle() {
            let chunk = reader.next_chunk(n).unwrap();
            assert!(chunk.len() <= n, "{} > {n}", chunk.len());
            if chunk.is_empty() {
                break;
            }
            ids.extend(chunk.into_iter().map(|r| r.id));
        }
        let want: Vec<String> = (0..1000).map(|i| format!("d{i}")).collect();
        assert_eq!(ids, want);
        assert!(reader.next_chunk(10).unwrap().is_empty());
        assert_eq!(reader.bytes_read(), std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn vector_lines_need_no_text_and_keep_their_other_fields() {
        let line = r#"{"_id":7,"vector":{"\"":1.5,"caf\u00e9":0.25,"ny":2},"year":2020}"#;
        let (r, entries) = parse_vector_line(line, "v:1").unwrap();
        assert_eq!((r.id.as_str(), r.text.as_str()), ("7", ""));
        assert_eq!(r.source, serde_json::json!({"_id": 7, "year": 2020}));
        let got: Vec<(&str, f32)> = entries.iter().map(|(t, w)| (t.as_ref(), *w)).collect();
        assert_eq!(got, vec![("\"", 1.5), ("café", 0.25), ("ny", 2.0)]);
        // Plain tokens are borrowed from the line, escaped ones decoded.
        assert!(matches!(entries[2].0, Cow::Borrowed(_)));
        assert!(matches!(entries[0].0, Cow::Owned(_)));
        let (r, _) = parse_vector_line(r#"{"_id":"a","text":"t","vector":{}}"#, "v:2").unwrap();
        assert_eq!(r.text, "t");
        // The one-pass reader and serde_json's whole-line parse (taken for an
        // escaped key name) agree, wherever the vector is.
        for line in [
            r#"{"vector": {"ny": 2, "caf\u00e9": 0.25}, "_id": "x", "n": [1, {"vector": 3}]}"#,
            r#"{"_id": "x", "n": [1, {"vector": 3}], "vec\u0074or": {"ny": 2, "caf\u00e9": 0.25}}"#,
        ] {
            let (r, entries) = parse_vector_line(line, "v:2").unwrap();
            assert_eq!(
                r.source,
                serde_json::json!({"_id": "x", "n": [1, {"vector": 3}]})
            );
            let got: Vec<(&str, f32)> = entries.iter().map(|(t, w)| (t.as_ref(), *w)).collect();
            assert_eq!(got, vec![("ny", 2.0), ("café", 0.25)], "{line}");
        }
        // With two vectors the last one counts, as in serde_json.
        let (_, entries) =
            parse_vector_line(r#"{"_id":"x","vector":{"a":1},"vector":{"b":2}}"#, "v:2").unwrap();
        assert_eq!(entries, vec![(Cow::Borrowed("b"), 2.0)]);
        for (line, needle) in [
            (r#"{"_id":"d"}"#, "v:3: no \"vector\" object"),
            (
                r#"{"_id":"d","vector":{"a":"x"}}"#,
                "v:3: not a vector line",
            ),
            (r#"{"_id":"d","vector":[1]}"#, "v:3: not a vector line"),
            (
                r#"{"_id":"d","vector":{"a":null}}"#,
                "token \"a\" is not a number",
            ),
            (
                r#"{"_id":"d","vector":{"a":{"b":1}}}"#,
                "token \"a\" is not a number",
            ),
            (
                r#"{"_id":"d","vector":{"a":true}}"#,
                "token \"a\" is not a number",
            ),
            (r#"{"_id":"d","vector":{"a":1,}}"#, "v:3: not a vector line"),
            (r#"{"_id":"d","vector":{"a":1}"#, "v:3: not a vector line"),
            (
                r#"{"_id":"d","vector":"a"}"#,
                "must be an object of token: number",
            ),
            (r#"{"_id":"d","vector":{"a":01}}"#, "v:3: not a vector line"),
            (r#"{"vector":{"a":1}}"#, "v:3: missing or empty \"_id\""),
            ("[1]", "v:3: not a vector line"),
        ] {
            let e = format!("{:#}", parse_vector_line(line, "v:3").unwrap_err());
            assert!(e.contains(needle), "{line}: {e}");
        }
    }

    #[test]
    fn vector_entries_equal_serde_json_on_varied_lines() {
        use serde_json::json;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let tokens = [
            "ny", "##s", "café", "\"", "\\", "a b", "日本", "\n", "[CLS]", "x\u{7f}",
        ];
        for n in 0..300 {
            let mut vector = serde_json::Map::new();
            for _ in 0..(next() % 12) {
                let token = tokens[(next() % tokens.len() as u64) as usize];
                let weight = match next() % 4 {
                    // Encoder output: f32 values as serde_json prints them.
                    0 => json!(f32::from_bits(0x3000_0000 + (next() % 0x1800_0000) as u32)),
                    1 => json!((next() % 100) as u32),
                    2 => json!(-((next() % 1000) as f64) / 7.0),
                    _ => json!(f64::from_bits(0x3f00_0000_0000_0000 + next() % (1 << 58))),
                };
                vector.insert(token.to_string(), weight);
            }
            let value = json!({"_id": format!("d{n}"), "vector": vector});
            let compact = value.to_string();
            // The same line with spaces around every separator.
            let spaced = compact
                .replace("\":", "\" :  ")
                .replace(",\"", " ,\t\"")
                .replace("{\"", "{ \"");
            for line in [&compact, &spaced] {
                let (_, entries) = parse_vector_line(line, "v:1").unwrap();
                let want: Vec<(String, f32)> = vector
                    .iter()
                    .map(|(t, w)| (t.clone(), w.to_string().parse::<f32>().unwrap()))
                    .collect();
                let got: Vec<(String, f32)> =
                    entries.iter().map(|(t, w)| (t.to_string(), *w)).collect();
                assert_eq!(got, want, "{line}");
                for ((t, w), (_, v)) in got.iter().zip(&vector) {
                    // Within f32 rounding of serde_json's own f64.
                    let exact = v.as_f64().unwrap();
                    assert!(
                        ((*w as f64) - exact).abs() <= exact.abs() * 6e-8,
                        "{t}: {w} vs {exact}"
                    );
                }
            }
        }
        // f32 weights as the encoder writes them come back bit for bit.
        for bits in (0x3400_0000u32..0x4100_0000).step_by(999_983) {
            let w = f32::from_bits(bits);
            let line = json!({"_id": "x", "vector": {"ny": w}}).to_string();
            let (_, entries) = parse_vector_line(&line, "v:1").unwrap();
            assert_eq!(entries[0].1.to_bits(), bits, "{line}");
        }
    }

    #[test]
    fn title_and_text_are_joined() {
        let r = parse_record(r#"{"_id":"7","title":"Wings","text":"lift."}"#, "x:1").unwrap();
        assert_eq!((r.id.as_str(), r.text.as_str()), ("7", "Wings lift."));
        let r = parse_record(r#"{"_id":8,"title":"","text":"only text"}"#, "x:2").unwrap();
        assert_eq!((r.id.as_str(), r.text.as_str()), ("8", "only text"));
    }

    #[test]
    fn bad_lines_name_their_origin() {
        for (line, needle) in [
            ("{not json", "x:3: not a JSON object"),
            (r#"{"text":"no id"}"#, "\"_id\""),
            (r#"{"_id":"1","text":5}"#, "\"text\" must be a string"),
            (r#"{"_id":"1"}"#, "no \"text\""),
        ] {
            let e = format!("{:#}", parse_record(line, "x:3").unwrap_err());
            assert!(e.contains(needle), "{line}: {e}");
        }
    }
}
