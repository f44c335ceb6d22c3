//! BEIR dataset folders: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{EvalError, Result};
use crate::run::Qrels;

/// One line of `corpus.jsonl` or `queries.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `_id` (a JSON number is kept as its decimal text, as BEIR's loader does).
    pub id: String,
    /// `title`, empty when absent (queries have none).
    pub title: String,
    /// `text`.
    pub text: String,
}

impl Record {
    /// The text a model sees: `title + " " + text` when the title is non-empty, as BEIR's
    /// sparse and dense model wrappers build it and `nsparse index` indexes it.
    pub fn full_text(&self) -> String {
        if self.title.is_empty() {
            self.text.clone()
        } else {
            format!("{} {}", self.title, self.text)
        }
    }
}

/// A BEIR dataset restricted to one split.
#[derive(Debug, Clone)]
pub struct BeirDataset {
    /// The dataset folder.
    pub dir: PathBuf,
    /// The split (`test`, `dev`, `train`).
    pub split: String,
    /// Every document of `corpus.jsonl`, in file order.
    pub corpus: Vec<Record>,
    /// The queries that have judgments in the split, in `queries.jsonl` order; as in BEIR's
    /// `GenericDataLoader`, unjudged queries are dropped.
    pub queries: Vec<Record>,
    /// The split's judgments.
    pub qrels: Qrels,
}

impl BeirDataset {
    /// Loads `dir` for `split`; every judged query must exist in `queries.jsonl`.
    pub fn load(dir: &Path, split: &str) -> Result<Self> {
        let corpus_path = dir.join("corpus.jsonl");
        let queries_path = dir.join("queries.jsonl");
        let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
        for path in [&corpus_path, &queries_path] {
            if !path.is_file() {
                return Err(EvalError::MissingFile {
                    path: path.clone(),
                    hint: String::new(),
                });
            }
        }
        if !qrels_path.is_file() {
            let mut splits: Vec<String> = std::fs::read_dir(dir.join("qrels"))
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok())
                        .filter_map(|e| {
                            e.file_name()
                                .to_str()
                                .and_then(|n| n.strip_suffix(".tsv"))
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
            splits.sort();
            let hint = if splits.is_empty() {
                String::new()
            } else {
                format!(
                    "; splits present: {} (pass one with --split)",
                    splits.join(", ")
                )
            };
            return Err(EvalError::MissingFile {
                path: qrels_path,
                hint,
            });
        }
        let qrels = Qrels::read(&qrels_path)?;
        let corpus = read_jsonl(&corpus_path)?;
        let all_queries = read_jsonl(&queries_path)?;
        let known: HashMap<&str, ()> = all_queries.iter().map(|q| (q.id.as_str(), ())).collect();
        if let Some(missing) = qrels.queries().find(|q| !known.contains_key(q)) {
            return Err(EvalError::UnknownQuery {
                qrels: qrels_path.clone(),
                line: qrels.line_of(missing),
                queries: queries_path,
                query: missing.to_string(),
            });
        }
        let queries = all_queries
            .into_iter()
            .filter(|q| qrels.get(&q.id).is_some())
            .collect();
        Ok(BeirDataset {
            dir: dir.to_path_buf(),
            split: split.to_string(),
            corpus,
            queries,
            qrels,
        })
    }
}

/// Reads a BEIR JSON-lines file (`corpus.jsonl` or `queries.jsonl`); ids must be unique.
pub fn read_jsonl(path: &Path) -> Result<Vec<Record>> {
    let file = std::fs::File::open(path).map_err(|e| EvalError::io(path, e))?;
    let mut records = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| EvalError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = parse_line(&line).map_err(|problem| EvalError::JsonLine {
            path: path.to_path_buf(),
            line: line_no,
            problem,
        })?;
        if let Some(&first) = seen.get(&record.id) {
            return Err(EvalError::DuplicateId {
                path: path.to_path_buf(),
                line: line_no,
                first,
                id: record.id,
            });
        }
        seen.insert(record.id.clone(), line_no);
        records.push(record);
    }
    Ok(records)
}

fn parse_line(line: &str) -> std::result::Result<Record, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON ({e})"))?;
    let obj = value.as_object().ok_or("not a JSON object")?;
    let id = match obj.get("_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("missing or empty \"_id\"".into()),
    };
    let field = |name: &str| match obj.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Ok(String::new()),
        Some(_) => Err(format!("\"{name}\" must be a string")),
    };
    if !obj.contains_key("text") {
        return Err("no \"text\" field".into());
    }
    Ok(Record {
        id,
        title: field("title")?,
        text: field("text")?,
    })
}
