//! The nsparse half of the peer benchmark (`bench/peers/run.sh` drives it).
//!
//! * `peer-bench synth --out DIR [--docs N] [--queries Q] [--seed S]` writes the realistic
//!   synthetic set from `nsparse_testkit::synth` (default `SynthParams`).
//! * `peer-bench import --out DIR --docs D.jsonl --queries Q.jsonl --tokenizer tokenizer.json`
//!   converts `nsparse encode` output (`{"_id", "vector": {token: weight}}`) to the same format.
//! * `peer-bench run --data DIR --work DIR --results DIR` indexes the set with `nsparse-index`
//!   and measures every nsparse configuration.
//!
//! Both preparation commands also compute the exact top-10 by brute force in f64, which every
//! engine's recall is scored against. The file format, shared by all engines' loaders, is
//! described in `bench/peers/README.md`: CSR matrices `docs.{indptr,indices,values}` and
//! `queries.{…}` (u64 / u32 / f32 little-endian), `truth.ids` (u32, 10 per query, `u32::MAX`
//! pads), `truth.scores` (f32) and `meta.json`. Row numbers are the document ids.

use std::collections::HashMap;
use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nsparse_index::{
    open_reader, CreateOptions, Document, Index, Query, SearchMode, SearchRequest, Searcher,
    WriterOptions, DEFAULT_VOCAB_SIZE,
};
use nsparse_testkit::synth::{Synth, SynthParams};
use serde_json::{json, Value};

type Res<T> = Result<T, Box<dyn Error>>;

/// Top-k of the benchmark.
const K: usize = 10;
/// Marks an empty slot in a ranked-id row.
const NO_DOC: u32 = u32::MAX;

/// Sparse rows in compressed-sparse-row layout; row `i` is `indptr[i]..indptr[i+1]`.
#[derive(Default)]
struct Csr {
    indptr: Vec<u64>,
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl Csr {
    fn new() -> Csr {
        Csr {
            indptr: vec![0],
            ..Csr::default()
        }
    }

    fn push(&mut self, row: &[(u32, f32)]) {
        self.indices.extend(row.iter().map(|p| p.0));
        self.values.extend(row.iter().map(|p| p.1));
        self.indptr.push(self.indices.len() as u64);
    }

    fn rows(&self) -> usize {
        self.indptr.len() - 1
    }

    fn row(&self, i: usize) -> Vec<(u32, f32)> {
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        self.indices[a..b]
            .iter()
            .copied()
            .zip(self.values[a..b].iter().copied())
            .collect()
    }

    fn write(&self, dir: &Path, stem: &str) -> Res<()> {
        write_le(&dir.join(format!("{stem}.indptr")), &self.indptr)?;
        write_le(&dir.join(format!("{stem}.indices")), &self.indices)?;
        write_le(&dir.join(format!("{stem}.values")), &self.values)?;
        Ok(())
    }

    fn read(dir: &Path, stem: &str) -> Res<Csr> {
        let csr = Csr {
            indptr: read_le(&dir.join(format!("{stem}.indptr")))?,
            indices: read_le(&dir.join(format!("{stem}.indices")))?,
            values: read_le(&dir.join(format!("{stem}.values")))?,
        };
        let nnz = csr.indices.len() as u64;
        if csr.indptr.first() != Some(&0)
            || csr.indptr.last() != Some(&nnz)
            || csr.values.len() as u64 != nnz
            || csr.indptr.windows(2).any(|w| w[0] > w[1])
        {
            return Err(format!(
                "{}/{stem}.*: inconsistent CSR files; regenerate the data directory",
                dir.display()
            )
            .into());
        }
        Ok(csr)
    }
}

/// Fixed-width little-endian numbers, for the raw files.
trait Le: Sized + Copy {
    const SIZE: usize;
    fn put(self, out: &mut Vec<u8>);
    fn get(b: &[u8]) -> Self;
}

macro_rules! le {
    ($t:ty) => {
        impl Le for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().expect("chunk of SIZE bytes"))
            }
        }
    };
}
le!(u64);
le!(u32);
le!(f32);

fn write_le<T: Le>(path: &Path, v: &[T]) -> Res<()> {
    let mut out = Vec::with_capacity(v.len() * T::SIZE);
    for &x in v {
        x.put(&mut out);
    }
    std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn read_le<T: Le>(path: &Path) -> Res<Vec<T>> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "{}: {e}; prepare the data with `peer-bench synth` or `import`",
            path.display()
        )
    })?;
    if bytes.len() % T::SIZE != 0 {
        return Err(format!("{}: length not a multiple of {}", path.display(), T::SIZE).into());
    }
    Ok(bytes.chunks_exact(T::SIZE).map(T::get).collect())
}

/// `--name value` options after the subcommand.
struct Args(HashMap<String, String>);

impl Args {
    fn parse(raw: &[String]) -> Res<Args> {
        let mut map = HashMap::new();
        let mut it = raw.iter();
        while let Some(key) = it.next() {
            let name = key
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {key:?}; options are --name value"))?;
            let value = it
                .next()
                .ok_or_else(|| format!("option {key} needs a value"))?;
            map.insert(name.to_string(), value.clone());
        }
        Ok(Args(map))
    }

    fn path(&self, name: &str) -> Res<PathBuf> {
        self.0
            .get(name)
            .map(PathBuf::from)
            .ok_or_else(|| format!("missing --{name}").into())
    }

    fn number(&self, name: &str, default: usize) -> Res<usize> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v
                .replace('_', "")
                .parse()
                .map_err(|_| format!("--{name} {v:?}: expected a whole number").into()),
        }
    }
}

/// Exact top-k of every query by dot product in f64 over an in-memory inverted index;
/// ties go to the lower row. Only documents with a positive score are listed.
fn brute_force_top_k(docs: &Csr, queries: &Csr, vocab: usize) -> (Vec<u32>, Vec<f32>) {
    let mut counts = vec![0usize; vocab + 1];
    for &t in &docs.indices {
        counts[t as usize + 1] += 1;
    }
    for t in 0..vocab {
        counts[t + 1] += counts[t];
    }
    let starts = counts.clone();
    let mut post_doc = vec![0u32; docs.indices.len()];
    let mut post_w = vec![0f32; docs.indices.len()];
    for d in 0..docs.rows() {
        for (t, w) in docs.row(d) {
            let slot = &mut counts[t as usize];
            post_doc[*slot] = d as u32;
            post_w[*slot] = w;
            *slot += 1;
        }
    }
    let n = docs.rows();
    let nq = queries.rows();
    let mut ids = vec![NO_DOC; nq * K];
    let mut scores = vec![0f32; nq * K];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = nq.div_ceil(threads).max(1);
    let all_queries: Vec<usize> = (0..nq).collect();
    std::thread::scope(|s| {
        for ((qs, ids), scores) in all_queries
            .chunks(chunk)
            .zip(ids.chunks_mut(chunk * K))
            .zip(scores.chunks_mut(chunk * K))
        {
            let (starts, post_doc, post_w) = (&starts, &post_doc, &post_w);
            s.spawn(move || {
                let mut acc = vec![0f64; n];
                let mut touched = Vec::new();
                for (j, &q) in qs.iter().enumerate() {
                    for (t, qw) in queries.row(q) {
                        let t = t as usize;
                        if t >= vocab {
                            continue;
                        }
                        for p in starts[t]..starts[t + 1] {
                            let d = post_doc[p] as usize;
                            if acc[d] == 0.0 {
                                touched.push(d as u32);
                            }
                            acc[d] += qw as f64 * post_w[p] as f64;
                        }
                    }
                    let mut cand: Vec<(f64, u32)> = touched
                        .iter()
                        .map(|&d| (acc[d as usize], d))
                        .filter(|c| c.0 > 0.0)
                        .collect();
                    let by_rank =
                        |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
                    if cand.len() > K {
                        cand.select_nth_unstable_by(K - 1, by_rank);
                        cand.truncate(K);
                    }
                    cand.sort_by(by_rank);
                    for (r, (sc, d)) in cand.into_iter().enumerate() {
                        ids[j * K + r] = d;
                        scores[j * K + r] = sc as f32;
                    }
                    for &d in &touched {
                        acc[d as usize] = 0.0;
                    }
                    touched.clear();
                }
            });
        }
    });
    (ids, scores)
}

/// Writes the data set, its exact top-k and `meta.json`.
fn finish_dataset(out: &Path, docs: &Csr, queries: &Csr, mut meta: Value) -> Res<()> {
    std::fs::create_dir_all(out)?;
    docs.write(out, "docs")?;
    queries.write(out, "queries")?;
    let vocab = DEFAULT_VOCAB_SIZE as usize;
    let t = Instant::now();
    let (ids, scores) = brute_force_top_k(docs, queries, vocab);
    eprintln!(
        "exact top-{K} of {} queries over {} docs in {:.1}s",
        queries.rows(),
        docs.rows(),
        t.elapsed().as_secs_f64()
    );
    write_le(&out.join("truth.ids"), &ids)?;
    write_le(&out.join("truth.scores"), &scores)?;
    let obj = meta.as_object_mut().ok_or("meta is an object")?;
    obj.insert("docs".into(), json!(docs.rows()));
    obj.insert("queries".into(), json!(queries.rows()));
    obj.insert("vocab".into(), json!(vocab));
    obj.insert("k".into(), json!(K));
    obj.insert(
        "doc_nnz_mean".into(),
        json!(docs.indices.len() as f64 / docs.rows().max(1) as f64),
    );
    obj.insert(
        "query_nnz_mean".into(),
        json!(queries.indices.len() as f64 / queries.rows().max(1) as f64),
    );
    std::fs::write(out.join("meta.json"), serde_json::to_string_pretty(&meta)?)?;
    eprintln!("wrote {}: {meta}", out.display());
    Ok(())
}

fn cmd_synth(a: &Args) -> Res<()> {
    let out = a.path("out")?;
    let n = a.number("docs", 100_000)?;
    let nq = a.number("queries", 300)?;
    let seed = a.number("seed", 1)? as u64;
    let params = SynthParams::default();
    let t = Instant::now();
    let mut gen = Synth::new(params.clone(), seed);
    let mut docs = Csr::new();
    for _ in 0..n {
        docs.push(&gen.doc());
    }
    let mut queries = Csr::new();
    for _ in 0..nq {
        queries.push(&gen.query());
    }
    eprintln!("generated {n} docs in {:.1}s", t.elapsed().as_secs_f64());
    let meta = json!({
        "name": format!("synth-{n}"),
        "source": format!("nsparse_testkit::synth, SynthParams::default(), seed {seed}: {params:?}"),
    });
    finish_dataset(&out, &docs, &queries, meta)
}

/// Token string → id from a Hugging Face `tokenizer.json` (WordPiece `model.vocab`).
fn load_vocab(path: &Path) -> Res<HashMap<String, u32>> {
    let v: Value = serde_json::from_reader(BufReader::new(
        std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?,
    ))?;
    let vocab = v["model"]["vocab"].as_object().ok_or_else(|| {
        format!(
            "{}: no model.vocab object (not a WordPiece tokenizer.json)",
            path.display()
        )
    })?;
    vocab
        .iter()
        .map(|(k, id)| {
            id.as_u64().map(|id| (k.clone(), id as u32)).ok_or_else(|| {
                format!("{}: vocab id of {k:?} is not a number", path.display()).into()
            })
        })
        .collect()
}

/// Reads `nsparse encode` output: one `{"_id", "vector": {token: weight}}` per line.
fn read_encoded(path: &Path, vocab: &HashMap<String, u32>) -> Res<(Csr, Vec<String>)> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut csr = Csr::new();
    let mut ids = Vec::new();
    for (no, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), no + 1);
        let v: Value = serde_json::from_str(&line).map_err(|e| format!("{}: {e}", at()))?;
        let vector = v["vector"]
            .as_object()
            .ok_or_else(|| format!("{}: no \"vector\" object", at()))?;
        let mut row = Vec::with_capacity(vector.len());
        for (tok, w) in vector {
            let id = *vocab.get(tok).ok_or_else(|| {
                format!("{}: token {tok:?} is not in the tokenizer vocabulary", at())
            })?;
            let w = w
                .as_f64()
                .ok_or_else(|| format!("{}: weight of {tok:?} is not a number", at()))?;
            if w > 0.0 {
                row.push((id, w as f32));
            }
        }
        row.sort_by_key(|p| p.0);
        csr.push(&row);
        ids.push(v["_id"].as_str().unwrap_or_default().to_string());
    }
    Ok((csr, ids))
}

fn cmd_import(a: &Args) -> Res<()> {
    let out = a.path("out")?;
    let vocab = load_vocab(&a.path("tokenizer")?)?;
    let (docs, doc_ids) = read_encoded(&a.path("docs")?, &vocab)?;
    let (queries, _) = read_encoded(&a.path("queries")?, &vocab)?;
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("docs.ids.txt"), doc_ids.join("\n") + "\n")?;
    let name =
        a.0.get("name")
            .cloned()
            .unwrap_or_else(|| "imported".into());
    let meta = json!({
        "name": name,
        "source": format!("{} + {}", a.path("docs")?.display(), a.path("queries")?.display()),
    });
    finish_dataset(&out, &docs, &queries, meta)
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn top_rows(s: &Searcher, q: &[(u32, f32)], req: &SearchRequest) -> Vec<u32> {
    s.search(Query::Neural(q), req)
        .expect("search")
        .iter()
        .map(|h| h.id.parse().unwrap_or(NO_DOC))
        .collect()
}

/// Warm-up pass (its rankings are the run), per-query latency pass, then QPS with 2 threads
/// that split the queries and repeat them for at least ~3 s of work.
fn measure(s: &Searcher, queries: &[Vec<(u32, f32)>], req: &SearchRequest) -> (Vec<u32>, Value) {
    let mut run = Vec::with_capacity(queries.len() * K);
    for q in queries {
        let mut ids = top_rows(s, q, req);
        ids.resize(K, NO_DOC);
        run.extend(ids);
    }
    let mut lat: Vec<f64> = queries
        .iter()
        .map(|q| {
            let t = Instant::now();
            std::hint::black_box(top_rows(s, q, req));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let one_pass_s = lat.iter().sum::<f64>() / 1e3;
    let rounds = ((3.0 / one_pass_s.max(1e-6)).ceil() as usize).clamp(1, 100);
    let t = Instant::now();
    std::thread::scope(|sc| {
        for part in 0..2 {
            sc.spawn(move || {
                for _ in 0..rounds {
                    for q in queries.iter().skip(part).step_by(2) {
                        std::hint::black_box(top_rows(s, q, req));
                    }
                }
            });
        }
    });
    let qps = (rounds * queries.len()) as f64 / t.elapsed().as_secs_f64();
    let stats = json!({
        "p50_ms": percentile(&lat, 0.5),
        "p99_ms": percentile(&lat, 0.99),
        "qps_2t": qps,
        "qps_note": "2 Rust threads sharing one Searcher",
    });
    (run, stats)
}

fn cmd_run(a: &Args) -> Res<()> {
    let data = a.path("data")?;
    let work = a.path("work")?;
    let results = a.path("results")?;
    std::fs::create_dir_all(&results)?;
    let docs = Csr::read(&data, "docs")?;
    let qcsr = Csr::read(&data, "queries")?;
    let queries: Vec<Vec<(u32, f32)>> = (0..qcsr.rows()).map(|i| qcsr.row(i)).collect();
    let documents: Vec<Document> = (0..docs.rows())
        .map(|i| Document {
            id: i.to_string(),
            vector: docs.row(i),
            tokens: None,
            source: Vec::new(),
        })
        .collect();
    drop(docs);
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    let t = Instant::now();
    let mut index = Index::create(
        &work,
        &CreateOptions::new("peer-bench"),
        WriterOptions::default(),
    )?;
    index.bulk_upsert(&documents)?;
    drop(index);
    let build_s = t.elapsed().as_secs_f64();
    drop(documents);
    let index_bytes = dir_bytes(&work);
    let searcher = open_reader(&work)?;
    eprintln!(
        "nsparse: built in {build_s:.1}s, {index_bytes} bytes, {} segment(s)",
        searcher.num_segments()
    );
    let configs: [(&str, &str, SearchMode); 5] = [
        ("exact", "Exact (term-at-a-time)", SearchMode::Exact),
        (
            "approx-n100-h1.2",
            "Approximate top_n 100, heap_factor 1.2",
            SearchMode::Approximate {
                top_n: 100,
                heap_factor: 1.2,
            },
        ),
        (
            "approx-n6-h1.0",
            "Approximate top_n 6, heap_factor 1.0",
            SearchMode::Approximate {
                top_n: 6,
                heap_factor: 1.0,
            },
        ),
        (
            "approx-n100-h1.5",
            "Approximate top_n 100, heap_factor 1.5",
            SearchMode::Approximate {
                top_n: 100,
                heap_factor: 1.5,
            },
        ),
        (
            "two-phase",
            "TwoPhase 0.4 / 5.0 / 10000 (OpenSearch defaults)",
            SearchMode::two_phase(),
        ),
    ];
    for (slug, config, mode) in configs {
        let req = SearchRequest::new(K).mode(mode);
        let (run, mut stats) = measure(&searcher, &queries, &req);
        let run_file = results.join(format!("nsparse-{slug}.ids"));
        write_le(&run_file, &run)?;
        let obj = stats.as_object_mut().ok_or("stats object")?;
        obj.insert("engine".into(), json!("nsparse"));
        obj.insert("config".into(), json!(config));
        obj.insert(
            "params".into(),
            json!(format!("SearchRequest::new(10).mode({mode:?})")),
        );
        obj.insert("build_s".into(), json!(build_s));
        obj.insert("index_bytes".into(), json!(index_bytes));
        obj.insert("index_kind".into(), json!("disk (index directory)"));
        obj.insert("run_file".into(), json!(run_file));
        eprintln!("nsparse {config}: {stats}");
        std::fs::write(
            results.join(format!("nsparse-{slug}.json")),
            serde_json::to_string_pretty(&stats)?,
        )?;
    }
    Ok(())
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let result = match raw.first().map(String::as_str) {
        Some(cmd @ ("synth" | "import" | "run")) => Args::parse(&raw[1..]).and_then(|a| match cmd {
            "synth" => cmd_synth(&a),
            "import" => cmd_import(&a),
            _ => cmd_run(&a),
        }),
        _ => Err("usage: peer-bench synth|import|run --option value ... (see the crate docs of src/bin/peer_bench.rs)".into()),
    };
    if let Err(e) = result {
        eprintln!("peer-bench: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_files_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = Csr::new();
        m.push(&[(1, 0.5), (7, 2.0)]);
        m.push(&[]);
        m.push(&[(3, 1.25)]);
        m.write(dir.path(), "docs").expect("write");
        let back = Csr::read(dir.path(), "docs").expect("read");
        assert_eq!(back.rows(), 3);
        assert_eq!(back.row(0), vec![(1, 0.5), (7, 2.0)]);
        assert!(back.row(1).is_empty());
        assert_eq!(back.row(2), vec![(3, 1.25)]);
        std::fs::write(dir.path().join("docs.values"), [0u8; 4]).expect("truncate");
        let err = Csr::read(dir.path(), "docs")
            .err()
            .expect("inconsistent files are refused");
        assert!(err.to_string().contains("inconsistent CSR"), "{err}");
    }

    #[test]
    fn brute_force_matches_naive_dot_products_with_ties_to_lower_rows() {
        let mut gen = Synth::new(SynthParams::default(), 7);
        let mut docs = Csr::new();
        for _ in 0..300 {
            docs.push(&gen.doc());
        }
        // Rows 300 and 301 duplicate row 5, so they tie with it and must follow it.
        for _ in 0..2 {
            docs.push(&docs.row(5));
        }
        let mut queries = Csr::new();
        for _ in 0..20 {
            queries.push(&gen.query());
        }
        queries.push(&docs.row(5));
        let (ids, scores) = brute_force_top_k(&docs, &queries, DEFAULT_VOCAB_SIZE as usize);
        for q in 0..queries.rows() {
            let qv: HashMap<u32, f64> = queries
                .row(q)
                .into_iter()
                .map(|(t, w)| (t, w as f64))
                .collect();
            let mut all: Vec<(f64, u32)> = (0..docs.rows())
                .map(|d| {
                    let s = docs
                        .row(d)
                        .iter()
                        .map(|&(t, w)| qv.get(&t).map_or(0.0, |q| q * w as f64))
                        .sum();
                    (s, d as u32)
                })
                .filter(|p| p.0 > 0.0)
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            all.truncate(K);
            let got: Vec<u32> = ids[q * K..(q + 1) * K]
                .iter()
                .copied()
                .filter(|&d| d != NO_DOC)
                .collect();
            assert_eq!(
                got,
                all.iter().map(|p| p.1).collect::<Vec<_>>(),
                "query {q}"
            );
            for (r, p) in all.iter().enumerate() {
                assert!((scores[q * K + r] as f64 - p.0).abs() <= 1e-5 * p.0.max(1.0));
            }
        }
        let last = queries.rows() - 1;
        assert_eq!(&ids[last * K..last * K + 3], &[5, 300, 301]);
    }
}
