//! Indexes written in older segment formats still open, search and merge:
//! version 1 (token-major delta-varint postings) in `tests/fixtures/index-v1`
//! and version 2 (token-major, bit-packed gaps) in `tests/fixtures/index-v2`,
//! each written by the build of its time from the documents [`fixture_docs`]
//! regenerates (with `doc-7` deleted afterwards).

use nsparse_index::synth::{Synth, SynthParams};
use nsparse_index::*;

fn fixture_docs() -> Vec<Document> {
    let mut g = Synth::new(
        SynthParams {
            vocab: 2000,
            ..SynthParams::zipf()
        },
        77,
    );
    (0..80)
        .map(|i| Document {
            id: format!("doc-{i}"),
            vector: g.doc(),
            tokens: Some(g.text(5 + i % 7)),
            source: format!("{{\"n\":{i}}}").into_bytes(),
        })
        .collect()
}

fn copy_fixture(name: &str) -> tempfile::TempDir {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

fn segment_versions(dir: &std::path::Path) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .map(|p| {
            let b = std::fs::read(p).unwrap();
            u32::from_le_bytes(b[8..12].try_into().unwrap())
        })
        .collect();
    v.sort();
    v
}

/// Every hit list a test compares: neural exact and approximate, BM25.
fn results(s: &Searcher, docs: &[Document]) -> Vec<Vec<(String, f32)>> {
    let key = |h: Vec<Hit>| h.into_iter().map(|h| (h.id, h.score)).collect::<Vec<_>>();
    let mut out = Vec::new();
    for d in docs.iter().step_by(7) {
        let q: Vec<(u32, f32)> = d.vector.iter().step_by(3).copied().collect();
        out.push(key(s.search(&q, &SearchRequest::new(10)).unwrap()));
        out.push(key(s
            .search(&q, &SearchRequest::new(10).mode(SearchMode::ExactTaat))
            .unwrap()));
        let text = &d.tokens.as_ref().unwrap()[..3];
        out.push(key(s.search_bm25(text, 10, false, false).unwrap()));
    }
    out
}

/// The segment format this build writes.
const CURRENT: u32 = 3;

#[test]
fn a_version_1_index_reads_like_a_fresh_one_and_is_rewritten_in_the_current_format() {
    reads_like_a_fresh_index_and_is_rewritten("index-v1", 1);
}

#[test]
fn a_version_2_index_reads_like_a_fresh_one_and_is_rewritten_in_the_current_format() {
    reads_like_a_fresh_index_and_is_rewritten("index-v2", 2);
}

fn reads_like_a_fresh_index_and_is_rewritten(fixture: &str, version: u32) {
    let docs = fixture_docs();
    let old = copy_fixture(fixture);
    assert_eq!(segment_versions(old.path()), [version]);

    // The same documents (and the same deletion) in a fresh index.
    let fresh = tempfile::tempdir().unwrap();
    let mut idx = Index::create(
        fresh.path(),
        &CreateOptions::new("fixture-v1"),
        WriterOptions::default(),
    )
    .unwrap();
    idx.bulk_upsert(&docs).unwrap();
    idx.delete("doc-7").unwrap();
    idx.commit().unwrap();
    assert_eq!(segment_versions(fresh.path()), [CURRENT]);
    let want = results(&idx.searcher(), &docs);
    assert_eq!(
        results(&open_reader(fresh.path()).unwrap(), &docs),
        want,
        "reopened fresh"
    );
    assert!(want.iter().all(|r| !r.is_empty()));

    let reader = open_reader(old.path()).unwrap();
    assert_eq!(reader.num_docs(), 79);
    assert_eq!(results(&reader, &docs), want);
    for (i, d) in docs.iter().enumerate() {
        let got = reader.get(&d.id).unwrap();
        if i == 7 {
            assert_eq!(got, None);
        } else {
            assert_eq!(got.unwrap(), d.source);
            assert_eq!(
                reader.vector(&d.id).unwrap(),
                idx.searcher().vector(&d.id).unwrap()
            );
        }
    }

    // A merge rewrites the old segment in the current format (and
    // purges the deleted document, which changes BM25's statistics: compare
    // with the fresh index merged alike).
    let mut w = Index::open(old.path(), WriterOptions::default()).unwrap();
    w.force_merge(1).unwrap();
    drop(w);
    idx.force_merge(1).unwrap();
    assert_eq!(segment_versions(old.path()), [CURRENT]);
    assert_eq!(
        results(&open_reader(old.path()).unwrap(), &docs),
        results(&idx.searcher(), &docs)
    );
}
