//! Benchmark of nsparse-index on synthetic learned-sparse vectors.
//!
//! `cargo bench -p nsparse-index` (1M docs by default; set `NSPARSE_BENCH_DOCS`
//! for fewer, `NSPARSE_BENCH_QUERIES` for the query count). Single thread:
//! queries run on the calling thread and the build's target is measured with
//! `WriterOptions::build_threads = 1`; a second build on every core is
//! printed for information. Vector shape parameters:
//! `nsparse_testkit::synth::SynthParams`. `NSPARSE_BENCH_VOCAB=250002` spreads
//! the same vectors over a larger id space (a fixed vocabulary of that size,
//! ids mapped by `t → t × 7919 mod V`, which keeps them distinct), to
//! measure what a large model vocabulary costs.

use std::time::Instant;

use nsparse_index::*;
use nsparse_testkit::synth::{Synth, SynthParams};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn time_queries(
    s: &Searcher,
    qs: &[Vec<(u32, f32)>],
    req: SearchRequest,
) -> (Vec<Vec<Hit>>, f64, f64) {
    let mut lat = Vec::with_capacity(qs.len());
    let mut out = Vec::with_capacity(qs.len());
    for q in qs {
        let t = Instant::now();
        let r = s.search(Query::Neural(q), &req).expect("search");
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        out.push(r);
    }
    let p50 = pct(&mut lat, 0.5);
    let p99 = pct(&mut lat, 0.99);
    (out, p50, p99)
}

fn recall(exact: &[Vec<Hit>], got: &[Vec<Hit>]) -> f64 {
    let mut hit = 0usize;
    let mut tot = 0usize;
    for (e, g) in exact.iter().zip(got) {
        tot += e.len();
        hit += e.iter().filter(|h| g.iter().any(|x| x.id == h.id)).count();
    }
    if tot == 0 {
        1.0
    } else {
        hit as f64 / tot as f64
    }
}

fn main() {
    // RUST_LOG=nsparse_index=debug shows the phases of the build.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let n = env("NSPARSE_BENCH_DOCS", 1_000_000);
    let nq = env("NSPARSE_BENCH_QUERIES", 300);
    let params = SynthParams::default();
    println!("nsparse-index bench: {n} docs, {nq} queries, params {params:?}");
    let t = Instant::now();
    let mut g = Synth::new(params, 1);
    let mut docs: Vec<Document> = g.documents(n);
    let mut queries: Vec<Vec<(u32, f32)>> = (0..nq).map(|_| g.query()).collect();
    let vocab = env("NSPARSE_BENCH_VOCAB", DEFAULT_VOCAB_SIZE as usize) as u32;
    if vocab != DEFAULT_VOCAB_SIZE {
        assert!(vocab > DEFAULT_VOCAB_SIZE && !vocab.is_multiple_of(7919));
        let spread = |v: &mut Vec<(u32, f32)>| {
            for p in v.iter_mut() {
                p.0 = ((u64::from(p.0) * 7919) % u64::from(vocab)) as u32;
            }
            v.sort_unstable_by_key(|p| p.0);
        };
        docs.iter_mut().for_each(|d| spread(&mut d.vector));
        queries.iter_mut().for_each(spread);
        println!("ids spread over a vocabulary of {vocab}");
    }
    let raw_postings: usize = docs.iter().map(|d| d.vector.len()).sum();
    println!(
        "generated in {:.1}s: {raw_postings} postings ({:.1} nnz/doc), mean query nnz {:.1}",
        t.elapsed().as_secs_f64(),
        raw_postings as f64 / n as f64,
        queries.iter().map(|q| q.len()).sum::<usize>() as f64 / nq as f64
    );

    // Quantization error of scores: f32 dot vs dot over f16-quantized doc weights.
    let (mut max_rel, mut sum_rel, mut pairs) = (0f64, 0f64, 0usize);
    for (i, q) in queries.iter().enumerate() {
        for d in docs
            .iter()
            .skip(i)
            .step_by(docs.len().div_ceil(200).max(1))
            .take(200)
        {
            let (mut exact, mut quant) = (0f64, 0f64);
            for &(t, w) in q {
                if let Ok(j) = d.vector.binary_search_by_key(&t, |p| p.0) {
                    let dw = d.vector[j].1;
                    exact += w as f64 * dw as f64;
                    quant += w as f64 * dequantize(quantize(dw)) as f64;
                }
            }
            if exact > 0.0 {
                let rel = ((quant - exact) / exact).abs();
                max_rel = max_rel.max(rel);
                sum_rel += rel;
                pairs += 1;
            }
        }
    }
    println!(
        "f16 weight quantization, score relative error over {pairs} matching (query, doc) pairs: mean {:.2e}, max {:.2e}",
        sum_rel / pairs.max(1) as f64,
        max_rel
    );

    // Every core first (for information), then the single-thread build the
    // target is about; the second index is the one searched.
    let build_on = |threads: usize| {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = WriterOptions {
            build_threads: threads,
            ..WriterOptions::default()
        };
        let create = CreateOptions::new("bench").with_vocabulary(Vocabulary::fixed(vocab));
        let mut idx = Index::create(dir.path(), &create, opts).expect("create");
        let t = Instant::now();
        idx.bulk_upsert(&docs).expect("bulk");
        (dir, t.elapsed().as_secs_f64(), idx)
    };
    let (all_dir, build_all, all_idx) = build_on(0);
    drop(all_idx);
    drop(all_dir);
    let (dir, build, mut idx) = build_on(1);
    drop(docs);
    // The new segment's postings stay on disk until first used: the
    // writer's first search loads them (what `open` below also does).
    let t = Instant::now();
    idx.searcher()
        .search(Query::Neural(&queries[0]), &SearchRequest::new(10))
        .expect("first search");
    let first_search = t.elapsed().as_secs_f64();
    drop(idx);
    let build_rate = n as f64 / build;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let bytes: u64 = std::fs::read_dir(dir.path())
        .expect("readdir")
        .map(|e| e.expect("entry").metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    let t = Instant::now();
    let s = open_reader(dir.path()).expect("open");
    let open_s = t.elapsed().as_secs_f64();
    let postings = s.num_postings();
    let raw_bytes = postings * 5;
    let per_posting = bytes as f64 / postings as f64;

    // A first pass builds the bound columns the queries use (each on first
    // use) and warms the caches; it is reported, the second pass is timed.
    let (_, cold50, cold99) = time_queries(&s, &queries, SearchRequest::new(10));
    let (exact, e50, e99) = time_queries(&s, &queries, SearchRequest::new(10));
    let (taat, t50, t99) = time_queries(
        &s,
        &queries,
        SearchRequest::new(10).mode(SearchMode::ExactTaat),
    );
    let scores = |r: &[Vec<Hit>]| {
        r.iter()
            .map(|h| h.iter().map(|x| x.score).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    assert_eq!(scores(&exact), scores(&taat), "exact algorithms disagree");
    // Larger k: more candidates to rescore, and above k = 512 frequent
    // tokens are scattered from their postings instead of bound columns.
    let mut larger_k = Vec::new();
    for k in [100, 1000] {
        let (e, e50k, e99k) = time_queries(&s, &queries, SearchRequest::new(k));
        let (t, t50k, _) = time_queries(
            &s,
            &queries,
            SearchRequest::new(k).mode(SearchMode::ExactTaat),
        );
        assert_eq!(scores(&e), scores(&t), "exact algorithms disagree at k {k}");
        larger_k.push((k, e50k, e99k, t50k));
    }
    let all = std::env::var("NSPARSE_BENCH_ALL").is_ok_and(|v| v == "1");
    let mut others = Vec::new();
    if all {
        for (name, mode) in [
            ("block-max (ExactBlockMax)", SearchMode::ExactBlockMax),
            ("MaxScore-TAAT (ExactMaxScore)", SearchMode::ExactMaxScore),
        ] {
            let (r, p50, p99) = time_queries(&s, &queries, SearchRequest::new(10).mode(mode));
            assert_eq!(scores(&exact), scores(&r), "exact algorithms disagree");
            others.push((name, p50, p99));
        }
    }

    println!();
    println!("== build / size ==");
    println!("build (bulk_upsert, 1 segment, fsynced, 1 thread): {build:.2}s = {build_rate:.0} docs/s   target ≥ 200000 docs/s: ratio {:.2}", build_rate / 200_000.0);
    println!(
        "build on every core ({cores}, for information): {build_all:.2}s = {:.0} docs/s ({:.2}x the 1-thread build)",
        n as f64 / build_all,
        build / build_all
    );
    println!("writer's first search after the build (loads the postings): {first_search:.2}s");
    println!("open+verify from disk: {open_s:.2}s");
    println!(
        "index bytes {bytes} / {postings} postings = {per_posting:.2} B/posting; raw (u32 id + u8 w) = 5 B -> {:.2}x raw   target ≤ 1.2x: ratio {:.2}",
        bytes as f64 / raw_bytes as f64,
        (bytes as f64 / raw_bytes as f64) / 1.2
    );
    println!();
    println!("== exact top-10 (single thread) ==");
    println!("first pass over the queries (builds the bound columns they use, for information): p50 {cold50:.3} ms  p99 {cold99:.3} ms");
    println!("tiled exact with bound columns (default Exact): p50 {e50:.3} ms  p99 {e99:.3} ms   target p50 ≤ 2 ms: ratio {:.2}", e50 / 2.0);
    println!("plain term-at-a-time baseline (ExactTaat): p50 {t50:.3} ms  p99 {t99:.3} ms   speed-up of Exact: {:.2}x", t50 / e50);
    for (name, p50, p99) in others {
        println!("{name}: p50 {p50:.3} ms  p99 {p99:.3} ms");
    }
    if !all {
        println!("(NSPARSE_BENCH_ALL=1 also times ExactBlockMax and ExactMaxScore)");
    }
    println!();
    println!("== exact top-k at larger k (for information) ==");
    for (k, e50k, e99k, t50k) in larger_k {
        println!("k {k}: Exact p50 {e50k:.3} ms  p99 {e99k:.3} ms   ExactTaat p50 {t50k:.3} ms   speed-up of Exact: {:.2}x", t50k / e50k);
    }
    println!();
    println!("== approximate top-10: recall@10 vs exact ==");
    for (top_n, hf) in [
        (100, 1.0f32),
        (16, 1.0),
        (16, 0.9),
        (12, 1.0),
        (12, 0.9),
        (8, 1.0),
        (8, 0.9),
        (8, 0.8),
        (5, 0.8),
    ] {
        let (r, p50, p99) = time_queries(
            &s,
            &queries,
            SearchRequest::new(10).mode(SearchMode::Approximate {
                top_n,
                heap_factor: hf,
            }),
        );
        println!("top_n {top_n:>3} heap_factor {hf:.1}: recall@10 {:.4}  p50 {p50:.3} ms  p99 {p99:.3} ms  speed-up vs Exact {:.2}x", recall(&exact, &r), e50 / p50);
    }
    println!();
    println!("== two-phase top-10 ==");
    for (pr, er) in [(0.4f32, 5.0f32), (0.2, 5.0), (0.4, 10.0)] {
        let (r, p50, p99) = time_queries(
            &s,
            &queries,
            SearchRequest::new(10).mode(SearchMode::TwoPhase {
                prune_ratio: pr,
                expansion_rate: er,
                max_window_size: 10_000,
            }),
        );
        println!("prune_ratio {pr} expansion_rate {er}: recall@10 {:.4}  p50 {p50:.3} ms  p99 {p99:.3} ms", recall(&exact, &r));
    }
}
