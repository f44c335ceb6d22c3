//! Document-encoding benchmark: nsparse against PyTorch and ONNX Runtime, in one run.
//!
//! `cargo bench -p nsparse-model --bench encode [-- --limit N] [-- --no-python]`
//!
//! Builds (once, under `target/`) a random-weight model with the doc-v2-distill shape (DistilBERT,
//! 6 layers, dim 768, 12 heads, FFN 3072, vocab 30,522) and 256 documents of ~250 tokens from the
//! Cranfield abstracts shipped in `data/`, then encodes them with every engine on 2 threads, each
//! in its own process so peak RSS is per engine, and prints docs/s, tokens/s, peak RSS and the
//! ratios to PyTorch fp32 and ONNX Runtime. The Python engines need `pip install numpy torch
//! transformers safetensors onnxruntime onnx`; missing ones are reported, not fatal.
//! Also prints the accuracy cost of the fast mode (max abs weight error against exact).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use nsparse_model::{EncoderOptions, Precision, SparseEncoder};
use serde_json::{json, Value};

const THREADS: usize = 2;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn main() {
    if let Ok(mode) = std::env::var("NSPARSE_BENCH_CHILD") {
        child(&mode);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let limit: usize = args
        .iter()
        .position(|a| a == "--limit")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let python = !args.iter().any(|a| a == "--no-python");
    let root = repo_root();
    let model = root.join("target/bench-model");
    let docs = root.join("target/bench-docs.jsonl");
    prepare(&root, &model, &docs);

    let mut results: Vec<Value> = Vec::new();
    if python {
        for engine in ["torch-fp32", "torch-bf16", "onnxruntime"] {
            // Without native bf16 (Zen 3, AVX2) PyTorch's bf16 autocast is several times slower
            // than fp32; 16 documents measure its rate without dominating the run.
            let limit = if engine == "torch-bf16" {
                limit.min(16)
            } else {
                limit
            };
            eprintln!("running {engine} on {limit} documents ...");
            let out = Command::new("python3")
                .arg(root.join("bench/encode_bench.py"))
                .args([
                    "--model",
                    model.to_str().unwrap(),
                    "--docs",
                    docs.to_str().unwrap(),
                ])
                .args(["--threads", &THREADS.to_string(), "--engine", engine])
                .args(["--limit", &limit.to_string()])
                .output();
            match out {
                Ok(o) if o.status.success() => {
                    let line = String::from_utf8_lossy(&o.stdout);
                    match line
                        .lines()
                        .last()
                        .and_then(|l| serde_json::from_str::<Value>(l).ok())
                    {
                        Some(v) => results.push(v),
                        None => eprintln!("{engine}: unreadable output: {line}"),
                    }
                }
                Ok(o) => eprintln!(
                    "{engine}: unavailable ({})",
                    String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                ),
                Err(e) => eprintln!("{engine}: unavailable ({e})"),
            }
        }
    }
    for mode in ["exact", "fast", "exact-batch1", "fast-batch1"] {
        eprintln!("running nsparse {mode} ...");
        let out = Command::new(std::env::current_exe().unwrap())
            .env("NSPARSE_BENCH_CHILD", mode)
            .env("NSPARSE_BENCH_LIMIT", limit.to_string())
            .output()
            .expect("re-run the bench binary");
        assert!(
            out.status.success(),
            "nsparse {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout);
        results.push(serde_json::from_str(line.lines().last().unwrap()).unwrap());
    }
    print_table(&results);
    accuracy(&model, &docs);
}

/// Builds the random model and the documents with the Python helpers when absent.
fn prepare(root: &Path, model: &Path, docs: &Path) {
    let run = |script: &str, out: &Path| {
        let status = Command::new("python3")
            .arg(root.join(script))
            .arg(out)
            .status()
            .expect("python3 must be installed to build the bench model and documents");
        assert!(
            status.success(),
            "{script} failed; see bench/README.md for its dependencies"
        );
    };
    if !model.join("model.safetensors").is_file() {
        run("bench/make_bench_model.py", model);
    }
    if !docs.is_file() {
        run("bench/make_bench_docs.py", docs);
    }
}

fn read_docs(path: &Path, limit: usize) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .take(limit)
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn load(model: &Path, precision: Precision) -> SparseEncoder {
    let options = EncoderOptions {
        precision,
        ..EncoderOptions::default()
    };
    SparseEncoder::load(model.to_str().unwrap(), options).unwrap()
}

/// One engine of nsparse, timed like the Python side: 3 warm-up documents, then all of them.
fn child(mode: &str) {
    nsparse_model::init_thread_pool(THREADS).unwrap();
    let limit = std::env::var("NSPARSE_BENCH_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let root = repo_root();
    let precision = if mode.starts_with("fast") {
        Precision::Fast
    } else {
        Precision::Exact
    };
    let encoder = load(&root.join("target/bench-model"), precision);
    let docs = read_docs(&root.join("target/bench-docs.jsonl"), limit);
    let texts: Vec<&str> = docs.iter().map(String::as_str).collect();
    encoder
        .encode_documents(&texts[..3.min(texts.len())], |_| {})
        .unwrap();
    let started = Instant::now();
    let tokens = if mode.ends_with("batch1") {
        texts
            .iter()
            .map(|t| encoder.encode_documents(&[t], |_| {}).unwrap().tokens)
            .sum::<usize>()
    } else {
        encoder.encode_documents(&texts, |_| {}).unwrap().tokens
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"engine": format!("nsparse-{mode}"), "docs": texts.len(), "seconds": secs,
               "docs_per_s": texts.len() as f64 / secs, "tokens_per_s": tokens as f64 / secs,
               "peak_rss_mb": peak_rss_mb(), "threads": THREADS})
    );
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn print_table(results: &[Value]) {
    let rate = |name: &str| {
        results
            .iter()
            .find(|r| r["engine"] == name)
            .and_then(|r| r["docs_per_s"].as_f64())
    };
    let (torch, ort) = (rate("torch-fp32"), rate("onnxruntime"));
    println!(
        "\n{:<22} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "engine", "docs/s", "tokens/s", "peak MB", "×torch32", "×ORT"
    );
    for r in results {
        let dps = r["docs_per_s"].as_f64().unwrap_or(f64::NAN);
        let ratio = |base: Option<f64>| base.map_or("-".to_string(), |b| format!("{:.2}", dps / b));
        println!(
            "{:<22} {:>8.2} {:>10.0} {:>10.0} {:>10} {:>10}",
            r["engine"].as_str().unwrap_or("?"),
            dps,
            r["tokens_per_s"].as_f64().unwrap_or(f64::NAN),
            r["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
            ratio(torch),
            ratio(ort)
        );
    }
}

/// The accuracy cost of the fast mode on the benchmark documents.
fn accuracy(model: &Path, docs: &Path) {
    let docs = read_docs(docs, 16);
    let texts: Vec<&str> = docs.iter().map(String::as_str).collect();
    let exact = load(model, Precision::Exact)
        .encode_documents(&texts, |_| {})
        .unwrap()
        .vectors;
    let fast = load(model, Precision::Fast)
        .encode_documents(&texts, |_| {})
        .unwrap()
        .vectors;
    let mut max_err = 0.0f32;
    let mut sum_err = 0.0f64;
    let mut n = 0usize;
    for (e, f) in exact.iter().zip(&fast) {
        for (id, w) in e.iter() {
            let err = (w - f.get(id)).abs();
            max_err = max_err.max(err);
            sum_err += f64::from(err);
            n += 1;
        }
        for (id, w) in f.iter() {
            if e.get(id) == 0.0 {
                max_err = max_err.max(w);
            }
        }
    }
    println!(
        "\nfast vs exact on 16 bench documents: max abs weight error {max_err:.2e}, mean {:.2e} over {n} weights",
        sum_err / n.max(1) as f64
    );
}
