//! Profiling harness: generate N fitted synthetic docs, bulk-load them into a
//! fresh index and time the phases; then time exact queries.
//! `cargo run --release -p nsparse-index --example build_profile -- 1000000 /tmp/idx`
use std::time::Instant;

use nsparse_index::{
    open_reader, CreateOptions, Document, Index, Query, SearchMode, SearchRequest, WriterOptions,
};
use nsparse_testkit::synth::{Synth, SynthParams};

fn main() {
    // RUST_LOG=nsparse_index=debug shows the phases of the bulk load.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(1_000_000, |s| s.parse().expect("N"));
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/nsparse-prof".into()));
    let mut qg = Synth::new(SynthParams::default(), 2);
    let queries: Vec<Vec<(u32, f32)>> = (0..200).map(|_| qg.query()).collect();
    if !dir.exists() {
        let mut g = Synth::new(SynthParams::default(), 1);
        let t = Instant::now();
        let docs: Vec<Document> = g.documents(n);
        eprintln!("generated in {:?}", t.elapsed());
        let mut idx = Index::create(&dir, &CreateOptions::new("bench"), WriterOptions::default())
            .expect("create");
        let t = Instant::now();
        idx.bulk_upsert(&docs).expect("bulk");
        let s = t.elapsed().as_secs_f64();
        eprintln!("bulk_upsert {s:.2}s = {:.0} docs/s", n as f64 / s);
        // NSPARSE_PROFILE_BUILD_ONLY=1 stops here (to profile the build alone).
        if std::env::var_os("NSPARSE_PROFILE_BUILD_ONLY").is_some() {
            return;
        }
        drop(docs);
        // The new segment's postings load on the writer's first search.
        let t = Instant::now();
        let _ = idx
            .searcher()
            .search(Query::Neural(&queries[0]), &SearchRequest::new(10));
        eprintln!("writer's first search {:?}", t.elapsed());
    }
    let t = Instant::now();
    let s = open_reader(&dir).expect("open");
    eprintln!("open {:?}", t.elapsed());
    // NSPARSE_PROFILE_EXACT_ONLY=1 times Exact alone (for perf).
    let mut modes = vec![
        ("exact", SearchMode::Exact),
        ("taat", SearchMode::ExactTaat),
    ];
    if std::env::var_os("NSPARSE_PROFILE_EXACT_ONLY").is_some() {
        modes.truncate(1);
    }
    // NSPARSE_PROFILE_K sets the number of hits (default 10).
    let k: usize = std::env::var("NSPARSE_PROFILE_K")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut lat = vec![Vec::new(); modes.len()];
    // The first search builds the derived columns.
    let t = Instant::now();
    let _ = s.search(Query::Neural(&queries[0]), &SearchRequest::new(10));
    eprintln!("first search after open {:?}", t.elapsed());
    // Interleave the modes so machine noise hits both alike.
    let rounds: usize = std::env::var("NSPARSE_PROFILE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    // One untimed pass builds the bound columns the queries use.
    for q in &queries {
        let _ = s.search(Query::Neural(q), &SearchRequest::new(k));
    }
    for q in queries.iter().cycle().take(queries.len() * rounds) {
        for (m, (_, mode)) in modes.iter().enumerate() {
            let t = Instant::now();
            let h = s
                .search(Query::Neural(q), &SearchRequest::new(k).mode(*mode))
                .expect("search");
            lat[m].push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(h);
        }
    }
    for (m, (name, _)) in modes.iter().enumerate() {
        let l = &mut lat[m];
        if l.is_empty() {
            continue;
        }
        l.sort_by(f64::total_cmp);
        eprintln!(
            "{name} p50 {:.3} ms p99 {:.3} ms",
            l[l.len() / 2],
            l[l.len() * 99 / 100]
        );
    }
}
