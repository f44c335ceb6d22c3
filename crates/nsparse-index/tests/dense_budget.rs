//! The bound-column memory budget, passed as a writer or reader option,
//! never changes results.

use nsparse_index::*;
use nsparse_testkit::synth::{Synth, SynthParams};

#[test]
fn dense_column_budget_is_an_option_and_keeps_results_exact() {
    // Large enough for a segment that would have dense columns by default.
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::create(
        dir.path(),
        &CreateOptions::new("m"),
        WriterOptions {
            dense_columns_max_mb: Some(0),
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let mut g = Synth::new(SynthParams::default(), 5);
    let docs = g.documents(20_000);
    index.bulk_upsert(&docs).unwrap();
    let queries: Vec<_> = (0..10).map(|_| g.query()).collect();
    let s = index.searcher();
    let scores = |h: &[Hit]| h.iter().map(|x| x.score).collect::<Vec<_>>();
    let mut want = Vec::new();
    for q in &queries {
        let tiled = s.search(Query::Neural(q), &SearchRequest::new(10)).unwrap();
        let plain = s
            .search(
                Query::Neural(q),
                &SearchRequest::new(10).mode(SearchMode::ExactTaat),
            )
            .unwrap();
        assert_eq!(scores(&tiled), scores(&plain));
        assert!(!tiled.is_empty());
        want.push(scores(&plain));
    }
    drop(s);
    drop(index);

    // Readers with no cap (columns for every frequent token), a small cap
    // and none at all return the same scores.
    for mb in [None, Some(1), Some(0)] {
        let reader = ReaderOptions {
            dense_columns_max_mb: mb,
        }
        .open(dir.path())
        .unwrap();
        for (q, want) in queries.iter().zip(&want) {
            let tiled = reader
                .search(Query::Neural(q), &SearchRequest::new(10))
                .unwrap();
            assert_eq!(&scores(&tiled), want, "cap {mb:?} MiB");
        }
    }
}
