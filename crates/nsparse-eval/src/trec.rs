//! TREC run files: `qid Q0 docid rank score tag`, one retrieved document a line.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::error::{EvalError, Result};
use crate::run::Run;

/// Writes `run` in TREC format: queries in ascending id order, documents in trec_eval's order
/// (so the rank column agrees with how trec_eval reads the scores), ranks from 1, scores in
/// Rust's shortest round-trip form so re-reading yields the same ranking.
pub fn write_run(out: &mut impl Write, run: &Run, tag: &str) -> std::io::Result<()> {
    let tag = if tag.is_empty() { "nsparse" } else { tag };
    // trec_eval splits on whitespace, so a tag with spaces would shift the columns.
    let tag: String = tag
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    for query in run.queries() {
        for (rank, (doc, score)) in run.ranked(query).into_iter().enumerate() {
            writeln!(out, "{query} Q0 {doc} {} {score} {tag}", rank + 1)?;
        }
    }
    Ok(())
}

/// Writes `run` to the file `path` (see [`write_run`]).
pub fn write_run_file(path: &Path, run: &Run, tag: &str) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| EvalError::io(path, e))?;
    let mut out = std::io::BufWriter::new(file);
    write_run(&mut out, run, tag).map_err(|e| EvalError::io(path, e))?;
    out.flush().map_err(|e| EvalError::io(path, e))
}

/// Reads a TREC run file; the rank and tag columns are ignored, as trec_eval ignores them.
/// A document listed twice for one query is an error (trec_eval refuses such runs too).
pub fn read_run(path: &Path) -> Result<Run> {
    let file = std::fs::File::open(path).map_err(|e| EvalError::io(path, e))?;
    let mut run = Run::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| EvalError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |problem: String| EvalError::RunLine {
            path: path.to_path_buf(),
            line: i + 1,
            problem,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [query, _, doc, _, score, _] = fields.as_slice() else {
            return Err(bad(format!("{} fields where 6 are expected", fields.len())));
        };
        let score: f64 = score
            .parse()
            .map_err(|_| bad(format!("score {score:?} is not a number")))?;
        if run.get(query).is_some_and(|docs| docs.contains_key(*doc)) {
            return Err(bad(format!(
                "document {doc:?} is listed twice for query {query:?}"
            )));
        }
        run.insert(*query, *doc, score);
    }
    Ok(run)
}
