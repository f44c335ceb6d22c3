//! The process-wide dense-column budget: settable once before the first
//! search, never changing results. (Its own test binary, because the budget
//! is per process.)

use nsparse_index::synth::{Synth, SynthParams};
use nsparse_index::*;

#[test]
fn dense_column_budget_is_set_once_and_keeps_results_exact() {
    assert!(set_dense_columns_max_mb(0), "first setting applies");
    assert!(
        !set_dense_columns_max_mb(64),
        "the budget is fixed after the first setting"
    );

    // Large enough for a segment that would have dense columns by default.
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::create(
        dir.path(),
        &CreateOptions::new("m"),
        WriterOptions::default(),
    )
    .unwrap();
    let mut g = Synth::new(SynthParams::default(), 5);
    let docs = g.documents(20_000);
    index.bulk_upsert(&docs).unwrap();
    let s = index.searcher();
    for _ in 0..10 {
        let q = g.query();
        let tiled = s.search(&q, &SearchRequest::new(10)).unwrap();
        let plain = s
            .search(&q, &SearchRequest::new(10).mode(SearchMode::ExactTaat))
            .unwrap();
        let scores = |h: &[Hit]| h.iter().map(|x| x.score).collect::<Vec<_>>();
        assert_eq!(scores(&tiled), scores(&plain));
        assert!(!tiled.is_empty());
    }
}
