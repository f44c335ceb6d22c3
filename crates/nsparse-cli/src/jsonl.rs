//! BEIR-style JSON-lines input (`corpus.jsonl`, `queries.jsonl`) and vector output.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::vector_json::{self, TokenWeights};

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
    // The text a model sees is BEIR's title + text, as `nsparse eval` builds it.
    let text = nsparse_eval::Record {
        id: String::new(),
        title: title.to_string(),
        text: text.to_string(),
    }
    .full_text();
    Ok(Record { id, text, source })
}

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
    file: BufReader<File>,
    line_no: usize,
    /// Bytes of the file read so far, line ends included (for progress).
    bytes_read: u64,
    /// Threads that parse a chunk's lines.
    threads: usize,
    /// The next chunk's lines, read while the previous chunk was parsed (or
    /// the error that stopped the reading, reported in its turn).
    ahead: Option<Result<Vec<(usize, String)>>>,
}

impl RecordReader {
    /// Opens a JSON-lines file; its lines are parsed on every core.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(RecordReader {
            path: path.to_path_buf(),
            // Lines of pre-encoded vectors are ~9 KB; a larger buffer halves the reads.
            file: BufReader::with_capacity(1 << 20, file),
            line_no: 0,
            bytes_read: 0,
            threads: default_threads(),
            ahead: None,
        })
    }

    /// Parses lines on at most `threads` threads (the global `--threads`; `None`: every core).
    pub fn with_threads(mut self, threads: Option<usize>) -> Self {
        self.threads = threads.map_or_else(default_threads, |t| t.max(1));
        self
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
        Ok(self
            .next_numbered_chunk_with(n, parse)?
            .into_iter()
            .map(|(_, t)| t)
            .collect())
    }

    /// [`RecordReader::next_chunk_with`], each result with its line number (from 1).
    pub fn next_numbered_chunk_with<T: Send>(
        &mut self,
        n: usize,
        parse: impl Fn(&str, &str) -> Result<T> + Sync,
    ) -> Result<Vec<(usize, T)>> {
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
        let threads = self.threads;
        let parse_chunk = || {
            par_map(&lines, threads, |(no, line)| {
                parse(line, &format!("{path}:{no}")).map(|t| (*no, t))
            })
        };
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
            let Some(line) = next_line(
                &mut self.file,
                &self.path,
                &mut self.line_no,
                &mut self.bytes_read,
            )?
            else {
                break;
            };
            if line.trim().is_empty() {
                continue;
            }
            lines.push((self.line_no, line));
        }
        Ok(lines)
    }
}

/// The next line of `file` without its line end (`\n` or `\r\n`), or `None`
/// at the end; counts the line in `line_no` and its bytes in `bytes_read`.
/// Bytes that are not UTF-8 are an error naming the file, the line and the
/// byte.
fn next_line(
    file: &mut impl BufRead,
    path: &Path,
    line_no: &mut usize,
    bytes_read: &mut u64,
) -> Result<Option<String>> {
    let mut buf = Vec::new();
    let read = file
        .read_until(b'\n', &mut buf)
        .with_context(|| format!("{}:{}: cannot read", path.display(), *line_no + 1))?;
    if read == 0 {
        return Ok(None);
    }
    let start = *bytes_read;
    *line_no += 1;
    *bytes_read += read as u64;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    match String::from_utf8(buf) {
        Ok(line) => Ok(Some(line)),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            bail!(
                "{}:{}: invalid UTF-8 at byte {} of the line (byte {} of the file); input files must be UTF-8 encoded",
                path.display(),
                *line_no,
                at + 1,
                start + at as u64
            )
        }
    }
}

/// One thread per core.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |c| c.get())
}

/// `items.iter().map(f).collect()`, on up to `threads` threads (order kept).
pub fn par_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let per = items.len().div_ceil(threads.max(1)).max(256);
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

/// Counts the non-blank lines of a file (for the progress bar's total);
/// bytes that are not UTF-8 are an error naming the line.
pub fn count_records(path: &Path) -> Result<u64> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut file = BufReader::with_capacity(1 << 20, file);
    let (mut line_no, mut bytes, mut n) = (0, 0, 0);
    while let Some(line) = next_line(&mut file, path, &mut line_no, &mut bytes)? {
        if !line.trim().is_empty() {
            n += 1;
        }
    }
    Ok(n)
}

/// Reads every line of `path` with `id_of(line, origin)` (which parses and
/// checks it as the run will, and returns its `_id`) on `threads` threads,
/// and checks the `_id`s are unique: the first bad line or repeated `_id` is
/// the error. Returns the number of records. Run before an index is touched,
/// so bad input anywhere leaves it as it was.
pub fn check_records(
    path: &Path,
    threads: Option<usize>,
    id_of: impl Fn(&str, &str) -> Result<String> + Sync,
) -> Result<u64> {
    let mut reader = RecordReader::open(path)?.with_threads(threads);
    let mut ids = UniqueIds::new(path);
    let mut n = 0;
    loop {
        let chunk = reader.next_numbered_chunk_with(4096, &id_of)?;
        if chunk.is_empty() {
            return Ok(n);
        }
        n += chunk.len() as u64;
        for (line, id) in &chunk {
            ids.insert(id, *line)?;
        }
    }
}

/// The `_id`s seen so far in one input file, to refuse a repeated one (it
/// would silently replace the earlier document).
///
/// Keeps a 64-bit hash and the line number per `_id` (16 bytes, not the
/// string); a hash seen before is confirmed by reading the earlier line
/// again, so a hash collision is never reported as a duplicate.
pub struct UniqueIds {
    path: PathBuf,
    hash: fn(&str) -> u64,
    lines: std::collections::HashMap<u64, usize>,
    /// `_id`s whose hash collided with another `_id`'s, with their line.
    collided: std::collections::HashMap<String, usize>,
}

impl UniqueIds {
    /// An empty set for the records of `path`.
    pub fn new(path: &Path) -> Self {
        UniqueIds {
            path: path.to_path_buf(),
            hash: |id| {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::hash::DefaultHasher::new();
                id.hash(&mut hasher);
                hasher.finish()
            },
            lines: Default::default(),
            collided: Default::default(),
        }
    }

    /// Records `id`, read at `line`; an `_id` seen before is an error naming it and both lines.
    pub fn insert(&mut self, id: &str, line: usize) -> Result<()> {
        let hash = (self.hash)(id);
        let Some(&first) = self.lines.get(&hash) else {
            self.lines.insert(hash, line);
            return Ok(());
        };
        let earlier = match self.collided.get(id) {
            Some(&earlier) => Some(earlier),
            None if id_at_line(&self.path, first)?.as_deref() == Some(id) => Some(first),
            None => None,
        };
        if let Some(earlier) = earlier {
            bail!(
                "{}:{line}: duplicate _id {id:?} (first at line {earlier}); every _id must be unique in the input (remove or rename one of them)",
                self.path.display()
            );
        }
        self.collided.insert(id.to_string(), line);
        Ok(())
    }
}

/// The `_id` of line `line` of `path` (as [`Record::id`] reads it), `None`
/// when it has none.
fn id_at_line(path: &Path, line: usize) -> Result<Option<String>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut file = BufReader::new(file);
    let (mut line_no, mut bytes) = (0, 0);
    while let Some(text) = next_line(&mut file, path, &mut line_no, &mut bytes)? {
        if line_no == line {
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Ok(match value.get("_id") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            });
        }
    }
    Ok(None)
}

/// An input path as given on the command line: a file, or `-` for standard input. Standard
/// input is copied to a private temporary file first (the readers pass over their input more
/// than once: counting, checking, then reading), removed when this is dropped.
pub struct InputFile {
    path: PathBuf,
    spool_dir: Option<PathBuf>,
}

impl InputFile {
    /// `path`, or a copy of standard input when `path` is `-`.
    pub fn resolve(path: &Path) -> Result<Self> {
        if path != Path::new("-") {
            return Ok(InputFile {
                path: path.to_path_buf(),
                spool_dir: None,
            });
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("nsparse-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir)
            .with_context(|| format!("cannot create {} to hold standard input", dir.display()))?;
        let input = InputFile {
            path: dir.join("stdin.jsonl"),
            spool_dir: Some(dir),
        };
        let mut file = File::create(&input.path)
            .with_context(|| format!("cannot create {}", input.path.display()))?;
        std::io::copy(&mut std::io::stdin().lock(), &mut file).with_context(|| {
            format!(
                "cannot copy standard input to {} (is the disk full?)",
                input.path.display()
            )
        })?;
        Ok(input)
    }

    /// The file to read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InputFile {
    fn drop(&mut self) {
        if let Some(dir) = &self.spool_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Where output lines go: a file written under a temporary name and renamed into place only
/// when complete, so a failed run never leaves a half-written output that looks finished; or
/// standard output for `-`.
pub struct AtomicOutput {
    /// `(temporary name, final name, the file)` when writing a file.
    file: Option<(PathBuf, PathBuf, File)>,
    /// The buffered writer.
    pub writer: BufWriter<Box<dyn Write>>,
}

impl AtomicOutput {
    /// Creates `path.partial` next to `path`, or writes to standard output for `-`.
    pub fn create(path: &Path) -> Result<Self> {
        if path == Path::new("-") {
            return Ok(AtomicOutput {
                file: None,
                writer: BufWriter::new(Box::new(std::io::stdout())),
            });
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let file =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let handle = file
            .try_clone()
            .with_context(|| format!("cannot open {} twice", tmp.display()))?;
        Ok(AtomicOutput {
            file: Some((tmp, path.to_path_buf(), handle)),
            writer: BufWriter::new(Box::new(file)),
        })
    }

    /// Flushes; for a file also syncs and renames it into place.
    pub fn commit(self) -> Result<()> {
        let shown = self.file.as_ref().map_or_else(
            || "standard output".to_string(),
            |f| f.0.display().to_string(),
        );
        self.writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {shown}"))?;
        if let Some((tmp, path, file)) = self.file {
            file.sync_all()
                .with_context(|| format!("cannot sync {}", tmp.display()))?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot rename into {}", path.display()))?;
        }
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
    use std::borrow::Cow;

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
        assert_eq!(par_map(&[1, 2, 3], 2, |x| x * 2), vec![2, 4, 6]);
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

/// Property-based fuzzing of the input readers: generated and mutated lines and files never
/// panic; valid input round-trips; the one-pass vector reader agrees with serde_json. Cases per
/// property: 256, or `NSPARSE_FUZZ_CASES`; failures are kept in `proptest-regressions/`.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Map};

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: std::env::var("NSPARSE_FUZZ_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
            ..ProptestConfig::default()
        }
    }

    /// Token strings: plain, JSON-special, escaped-on-output, non-ASCII.
    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z#]{1,8}",
            prop::sample::select(vec![
                "\"", "\\", "\n", "\u{0}", "\u{1f}", "\u{7f}", "café", "日本", "a b", "[CLS]",
                "vector", "}", "{\"", "\\u0041", "",
            ])
            .prop_map(String::from),
            any::<String>(),
        ]
    }

    fn weight() -> impl Strategy<Value = f32> {
        prop_oneof![
            (0u32..0x7f80_0000).prop_map(f32::from_bits),
            (0u32..1000).prop_map(|x| x as f32),
            prop::sample::select(vec![0.0f32, -0.0, -1.5, f32::MAX, f32::MIN_POSITIVE, 1e-45]),
        ]
    }

    /// Any JSON value, nested a few levels.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(|x| json!(x)),
            token().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((token(), inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn id() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => token().prop_map(Value::String),
            1 => any::<u32>().prop_map(|n| json!(n)),
            1 => any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| json!(x)),
            1 => value(),
        ]
    }

    /// Whitespace JSON allows between tokens.
    fn spaced(compact: &str, seed: u64) -> String {
        let mut state = seed | 1;
        let mut out = String::new();
        let mut in_string = false;
        let mut escaped = false;
        for c in compact.chars() {
            out.push(c);
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            if c == '"' {
                in_string = true;
                continue;
            }
            if matches!(c, '{' | '[' | ':' | ',') {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                out.push_str([" ", "", "\t", "  ", "\r\n"][(state % 5) as usize]);
            }
        }
        out
    }

    /// The reference reading of a vector line with serde_json: the entries in order, or `None`
    /// when it is not one (not an object, no vector object, a non-number weight, no usable _id).
    fn reference(line: &str) -> Option<(String, Vec<(String, f64)>)> {
        let v: Value = serde_json::from_str(line).ok()?;
        let obj = v.as_object()?;
        let id = match obj.get("_id")? {
            Value::String(s) if !s.is_empty() => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        let text_ok = matches!(
            obj.get("text"),
            None | Some(Value::Null) | Some(Value::String(_))
        ) && matches!(
            obj.get("title"),
            None | Some(Value::Null) | Some(Value::String(_))
        );
        let vector = obj.get("vector")?.as_object()?;
        let mut entries = Vec::new();
        for (t, w) in vector {
            entries.push((t.clone(), w.as_f64()?));
        }
        text_ok.then_some((id, entries))
    }

    fn close(w: f32, exact: f64) -> bool {
        // f32::MAX plus half an ulp and beyond round to infinity.
        if exact.abs() >= f32::MAX as f64 + 2f64.powi(103) {
            return w.is_infinite();
        }
        ((w as f64) - exact).abs() <= exact.abs() * 6e-8 + 1e-45
    }

    /// Checks a line that parsed: serde_json reads it alike.
    fn agrees(line: &str, record: &Record, entries: &TokenWeights<'_>) {
        let (id, want) = reference(line)
            .unwrap_or_else(|| panic!("accepted a line serde_json refuses: {line:?}"));
        assert_eq!(record.id, id, "{line:?}");
        let mut unique: Vec<&str> = entries.iter().map(|(t, _)| t.as_ref()).collect();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() == entries.len() {
            assert_eq!(entries.len(), want.len(), "{line:?}");
            for ((t, w), (rt, rw)) in entries.iter().zip(&want) {
                assert_eq!(t.as_ref(), rt, "{line:?}");
                assert!(close(*w, *rw), "{line:?}: {t}: {w} vs {rw}");
            }
        }
        assert!(record.source.get("vector").is_none(), "{line:?}");
    }

    /// Small edits that keep the text UTF-8: JSON punctuation, digits, escapes and any char
    /// inserted, chars removed or replaced, the line cut.
    #[derive(Debug, Clone)]
    enum Edit {
        Insert(prop::sample::Index, char),
        Remove(prop::sample::Index),
        Replace(prop::sample::Index, char),
        Cut(prop::sample::Index),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let c = prop_oneof![
            prop::sample::select(
                "{}[]\":,\\ 0123456789eE.-+ntrufalsu\u{0}\u{7f}é"
                    .chars()
                    .collect::<Vec<_>>()
            ),
            any::<char>(),
        ];
        prop_oneof![
            (any::<prop::sample::Index>(), c.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
            any::<prop::sample::Index>().prop_map(Edit::Remove),
            (any::<prop::sample::Index>(), c).prop_map(|(i, c)| Edit::Replace(i, c)),
            any::<prop::sample::Index>().prop_map(Edit::Cut),
        ]
    }

    fn apply(line: &str, edits: &[Edit]) -> String {
        let mut chars: Vec<char> = line.chars().collect();
        for e in edits {
            let n = chars.len();
            match e {
                Edit::Insert(i, c) => chars.insert(i.index(n + 1), *c),
                Edit::Remove(i) if n > 0 => {
                    chars.remove(i.index(n));
                }
                Edit::Replace(i, c) if n > 0 => chars[i.index(n)] = *c,
                Edit::Cut(i) => chars.truncate(i.index(n + 1)),
                _ => {}
            }
        }
        chars.into_iter().collect()
    }

    /// A generated vector line, its vector's entries and its other fields.
    type VectorLine = (Value, Vec<(String, f32)>, Vec<(String, Value)>);

    fn vector_line() -> impl Strategy<Value = VectorLine> {
        (
            id(),
            prop::collection::vec((token(), weight()), 0..12),
            prop::collection::vec(("[a-z_]{1,6}", value()), 0..3),
            any::<bool>(),
        )
            .prop_map(|(id, mut vector, mut others, vector_first)| {
                vector.sort_by(|a, b| a.0.cmp(&b.0));
                vector.dedup_by(|a, b| a.0 == b.0);
                others.retain(|(k, _)| k != "vector" && k != "_id");
                // A repeated key keeps its last value.
                let mut seen = std::collections::HashSet::new();
                others.reverse();
                others.retain(|(k, _)| seen.insert(k.clone()));
                others.reverse();
                let mut fields = Map::new();
                let vmap: Map<String, Value> =
                    vector.iter().map(|(t, w)| (t.clone(), json!(w))).collect();
                if vector_first {
                    fields.insert("vector".into(), Value::Object(vmap.clone()));
                }
                fields.insert("_id".into(), id);
                for (k, v) in &others {
                    fields.insert(k.clone(), v.clone());
                }
                if !vector_first {
                    fields.insert("vector".into(), Value::Object(vmap));
                }
                (Value::Object(fields), vector, others)
            })
    }

    proptest! {
        #![proptest_config(config())]

        /// Generated vector lines, compact or spaced, read back exactly (f32 weights bit for
        /// bit), with the other fields kept as the source.
        #[test]
        fn vector_lines_round_trip((line, vector, others) in vector_line(), seed in any::<u64>()) {
            let compact = line.to_string();
            for text in [compact.clone(), spaced(&compact, seed)] {
                match parse_vector_line(&text, "v:1") {
                    Ok((record, entries)) => {
                        agrees(&text, &record, &entries);
                        let got: Vec<(String, u32)> =
                            entries.iter().map(|(t, w)| (t.to_string(), w.to_bits())).collect();
                        let want: Vec<(String, u32)> =
                            vector.iter().map(|(t, w)| (t.clone(), w.to_bits())).collect();
                        prop_assert_eq!(got, want, "{}", text);
                        for (k, v) in &others {
                            prop_assert_eq!(record.source.get(k), Some(v), "{}", text);
                        }
                    }
                    Err(e) => {
                        // Only a bad `_id`, `text` or `title` is refused.
                        prop_assert!(reference(&text).is_none(), "{}: {:#}", text, e);
                        let msg = format!("{e:#}");
                        prop_assert!(msg.starts_with("v:1: "), "{msg}");
                    }
                }
            }
        }

        /// Mutated vector lines never panic; what is accepted is what serde_json reads, and
        /// what is refused names the line.
        #[test]
        fn mutated_vector_lines_are_read_as_serde_json_reads_them(
            (line, _, _) in vector_line(),
            edits in prop::collection::vec(edit(), 1..5),
        ) {
            let text = apply(&line.to_string(), &edits);
            match parse_vector_line(&text, "f.jsonl:7") {
                Ok((record, entries)) => agrees(&text, &record, &entries),
                Err(e) => {
                    let msg = format!("{e:#}");
                    prop_assert!(msg.starts_with("f.jsonl:7: "), "{msg}");
                }
            }
            match parse_record(&text, "f.jsonl:7") {
                Ok(r) => prop_assert!(serde_json::from_str::<Value>(&text).is_ok() && !r.id.is_empty()),
                Err(e) => {
                    let msg = format!("{e:#}");
                    prop_assert!(msg.starts_with("f.jsonl:7: "), "{}", msg);
                }
            }
        }

        /// Arbitrary text, at any offset, never panics the vector reader or locator.
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>(), at in any::<prop::sample::Index>()) {
            let _ = parse_vector_line(&text, "x:1");
            let _ = parse_record(&text, "x:1");
            if let Some(at) = vector_json::locate_vector(&text) {
                prop_assert!(at <= text.len());
                let _ = vector_json::read_vector_object(&text, at);
            }
            let bounds: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
            let at = bounds[at.index(bounds.len())];
            if let Ok((entries, end)) = vector_json::read_vector_object(&text, at) {
                prop_assert!(end <= text.len() && end > at);
                let object: Value = serde_json::from_str(&text[at..end]).expect("a checked object");
                prop_assert!(object.is_object());
                prop_assert!(entries.len() >= object.as_object().unwrap().len());
            }
        }

        /// Arbitrary bytes as a JSON-lines file: no panic; bytes that are not UTF-8 are an error
        /// naming the file and the first such line; otherwise every non-blank line comes back
        /// with its number, whatever the chunk sizes.
        #[test]
        fn files_of_any_bytes_read_by_line(
            lines in prop::collection::vec(
                prop_oneof![
                    4 => "[a-z0-9 ]{0,12}".prop_map(|s| format!("{{\"_id\":\"{s}\",\"text\":\"t\"}}").into_bytes()),
                    1 => Just(Vec::new()),
                    1 => Just(b"  \r".to_vec()),
                    1 => prop::collection::vec(any::<u8>(), 0..20)
                        .prop_map(|mut b| { b.retain(|&c| c != b'\n'); b }),
                ],
                0..40,
            ),
            crlf in any::<bool>(),
            last_newline in any::<bool>(),
            chunks in prop::collection::vec(1usize..9, 1..4),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("in.jsonl");
            let end: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            let mut body = Vec::new();
            for (i, l) in lines.iter().enumerate() {
                body.extend_from_slice(l);
                if i + 1 < lines.len() || last_newline {
                    body.extend_from_slice(end);
                }
            }
            std::fs::write(&path, &body).unwrap();
            let first_bad = lines.iter().position(|l| std::str::from_utf8(l).is_err());
            let mut reader = RecordReader::open(&path).unwrap().with_threads(Some(2));
            let mut seen = Vec::new();
            let mut outcome = Ok(());
            for n in chunks.iter().cycle() {
                match reader.next_numbered_chunk_with(*n, |line, _| Ok(line.to_string())) {
                    Ok(chunk) if chunk.is_empty() => break,
                    Ok(chunk) => seen.extend(chunk),
                    Err(e) => {
                        outcome = Err(format!("{e:#}"));
                        break;
                    }
                }
            }
            let counted = count_records(&path).map_err(|e| format!("{e:#}"));
            match first_bad {
                Some(i) => {
                    let want = format!("{}:{}: invalid UTF-8", path.display(), i + 1);
                    let e = outcome.unwrap_err();
                    prop_assert!(e.contains(&want), "{e} lacks {want}");
                    prop_assert!(counted.unwrap_err().contains(&want));
                }
                None => {
                    prop_assert!(outcome.is_ok());
                    let want: Vec<(usize, String)> = lines
                        .iter()
                        .enumerate()
                        .map(|(i, l)| {
                            let mut l = String::from_utf8(l.clone()).unwrap();
                            // `\n` as the line end takes a `\r` before it along.
                            if (i + 1 < lines.len() || last_newline) && !crlf && l.ends_with('\r') {
                                l.pop();
                            }
                            (i + 1, l)
                        })
                        .filter(|(_, l)| !l.trim().is_empty())
                        .collect();
                    prop_assert_eq!(counted.unwrap(), want.len() as u64);
                    prop_assert_eq!(seen, want);
                    prop_assert_eq!(reader.bytes_read(), body.len() as u64);
                }
            }
        }

        /// The duplicate check finds the first repeated `_id` and both of its lines, also when
        /// every hash collides (confirmed by rereading the earlier line).
        #[test]
        fn duplicate_ids_are_found_with_both_lines(
            ids in prop::collection::vec(prop_oneof![Just("a".to_string()), "[a-e]{1,2}", any::<u16>().prop_map(|n| n.to_string())], 0..30),
            numeric in any::<bool>(),
            collide in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c.jsonl");
            let body: String = ids
                .iter()
                .map(|id| match id.parse::<u16>() {
                    Ok(n) if numeric => format!("{{\"_id\":{n},\"text\":\"x\"}}\n"),
                    _ => format!("{{\"_id\":{id:?},\"text\":\"x\"}}\n"),
                })
                .collect();
            std::fs::write(&path, body).unwrap();
            let mut first = std::collections::HashMap::new();
            let mut want = None;
            for (i, id) in ids.iter().enumerate() {
                if let Some(&j) = first.get(id) {
                    want = Some((id.clone(), j + 1, i + 1));
                    break;
                }
                first.insert(id.clone(), i);
            }
            let checked = if collide {
                let mut set = UniqueIds::new(&path);
                set.hash = |id| id.len() as u64 % 2;
                ids.iter().enumerate().try_for_each(|(i, id)| set.insert(id, i + 1))
                    .map(|()| ids.len() as u64)
            } else {
                check_records(&path, Some(3), |line, origin| Ok(parse_record(line, origin)?.id))
            };
            match want {
                None => prop_assert_eq!(checked.unwrap(), ids.len() as u64),
                Some((id, a, b)) => {
                    let e = format!("{:#}", checked.unwrap_err());
                    let needle = format!("{}:{b}: duplicate _id {id:?} (first at line {a})", path.display());
                    prop_assert!(e.contains(&needle), "{e} lacks {needle}");
                }
            }
        }
    }
}
