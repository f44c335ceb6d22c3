//! Print synthetic documents and queries as JSON lines, for comparing the
//! generator with real vectors (`scripts/synth_fit.py compare`).
//!
//! `cargo run --release -p nsparse-index --example synth_dump -- DOCS QUERIES [SEED] > synth.jsonl`
//! prints `{"doc": [[id, w], ...]}` then `{"query": [[id, w], ...]}` lines.

use std::io::Write;

use nsparse_testkit::synth::{Synth, SynthParams};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (docs, queries, seed) = (arg(1, 5183), arg(2, 1109), arg(3, 1));
    let mut g = Synth::new(SynthParams::default(), seed);
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for _ in 0..docs {
        writeln!(out, "{}", serde_json::json!({ "doc": g.doc() }))?;
    }
    for _ in 0..queries {
        writeln!(out, "{}", serde_json::json!({ "query": g.query() }))?;
    }
    out.flush()
}
