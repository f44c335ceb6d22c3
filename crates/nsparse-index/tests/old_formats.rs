//! Indexes written in older segment formats still open, search and merge:
//! version 1 (token-major delta-varint postings) in `tests/fixtures/index-v1`
//! and version 2 (token-major, bit-packed gaps) in `tests/fixtures/index-v2`,
//! each written by the build of its time from the documents [`fixture_docs`]
//! regenerates (with `doc-7` deleted afterwards).

use nsparse_index::*;
use nsparse_testkit::synth::{Synth, SynthParams};

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
        out.push(key(s
            .search(Query::Neural(&q), &SearchRequest::new(10))
            .unwrap()));
        out.push(key(s
            .search(
                Query::Neural(&q),
                &SearchRequest::new(10).mode(SearchMode::ExactTaat),
            )
            .unwrap()));
        let text = &d.tokens.as_ref().unwrap()[..3];
        out.push(key(s
            .search(Query::Bm25(text), &SearchRequest::new(10))
            .unwrap()));
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

// ---------------------------------------------------------------------------
// Version 3: `tests/fixtures/index-v3` holds an index written by this format's
// first build (two segments, deletion bitmaps, an uncommitted WAL tail with
// adds, an upsert and deletes; BM25 tokens and sources), and
// `tests/fixtures/index-v3-results.json` the queries and the hits that build
// returned (ids, sources and scores as exact f32 bits) for every search mode.
// Later builds must reproduce them bit for bit.

/// A query of the version-3 fixture: (neural vector, BM25 tokens).
type V3Query = (Vec<(u32, f32)>, Vec<u32>);

const V3: &str = "index-v3";
const V3_RESULTS: &str = "index-v3-results.json";

fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn v3_doc(g: &mut Synth, i: usize, tag: &str) -> Document {
    Document {
        id: format!("doc-{i}"),
        vector: g.doc(),
        tokens: (i % 9 != 4).then(|| g.text(4 + i % 11)),
        source: format!("{{\"n\":{i},\"v\":\"{tag}\"}}").into_bytes(),
    }
}

/// The queries of the version-3 fixture: (neural vector, BM25 tokens).
fn v3_queries(g: &mut Synth) -> Vec<V3Query> {
    (0..16)
        .map(|i| {
            let mut q = g.query();
            if i % 4 == 3 {
                q.truncate(2);
            }
            (q, g.text(2 + i % 4))
        })
        .collect()
}

fn v3_filter(id: &str) -> bool {
    !id.ends_with('3') && !id.ends_with('8')
}

fn hit_list(hits: &[Hit]) -> serde_json::Value {
    serde_json::Value::Array(
        hits.iter()
            .map(|h| {
                let mut v = vec![
                    serde_json::json!(h.id),
                    serde_json::json!(h.score.to_bits()),
                ];
                if let Some(s) = &h.source {
                    v.push(serde_json::json!(String::from_utf8(s.clone()).unwrap()));
                }
                serde_json::Value::Array(v)
            })
            .collect(),
    )
}

/// Every result the fixture records, for the given queries.
fn v3_results(s: &Searcher, queries: &[V3Query]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    let approximate = SearchMode::Approximate {
        top_n: 3,
        heap_factor: 1.3,
    };
    let rrf = SearchRequest::new(7)
        .mode(SearchMode::two_phase())
        .fusion(Fusion {
            combination: HybridCombination::Rrf {
                rank_constant: 60.0,
            },
            window: Some(20),
        });
    let mut push = |name: &str, hits: Vec<Hit>| {
        out.entry(name)
            .or_insert_with(|| serde_json::json!([]))
            .as_array_mut()
            .unwrap()
            .push(hit_list(&hits));
    };
    let filter: DocFilter<'_> = &v3_filter;
    for (q, text) in queries {
        let exact = SearchRequest::new(10).with_source(true);
        push("exact", s.search(Query::Neural(q), &exact).unwrap());
        push(
            "exact_filtered",
            s.search(Query::Neural(q), &SearchRequest::new(10).filter(filter))
                .unwrap(),
        );
        push(
            "approximate",
            s.search(Query::Neural(q), &SearchRequest::new(10).mode(approximate))
                .unwrap(),
        );
        push(
            "two_phase",
            s.search(
                Query::Neural(q),
                &SearchRequest::new(5).mode(SearchMode::two_phase()),
            )
            .unwrap(),
        );
        push(
            "bm25",
            s.search(Query::Bm25(text), &SearchRequest::new(10).with_source(true))
                .unwrap(),
        );
        push(
            "bm25_filtered",
            s.search(Query::Bm25(text), &SearchRequest::new(10).filter(filter))
                .unwrap(),
        );
        push(
            "hybrid_minmax",
            s.search(
                Query::Hybrid {
                    vector: q,
                    tokens: text,
                },
                &SearchRequest::new(10),
            )
            .unwrap(),
        );
        push(
            "hybrid_rrf_filtered",
            s.search(
                Query::Hybrid {
                    vector: q,
                    tokens: text,
                },
                &rrf.filter(filter),
            )
            .unwrap(),
        );
    }
    out.insert("num_docs".into(), serde_json::json!(s.num_docs()));
    serde_json::Value::Object(out)
}

fn v3_query_json(queries: &[V3Query]) -> serde_json::Value {
    queries
        .iter()
        .map(|(q, t)| {
            serde_json::json!({
                "vector": q.iter().map(|&(t, w)| (t, w.to_bits())).collect::<Vec<_>>(),
                "tokens": t,
            })
        })
        .collect()
}

fn v3_queries_from_json(v: &serde_json::Value) -> Vec<V3Query> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let vector = q["vector"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_u64().unwrap() as u32,
                        f32::from_bits(p[1].as_u64().unwrap() as u32),
                    )
                })
                .collect();
            let tokens = q["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect();
            (vector, tokens)
        })
        .collect()
}

/// Regenerates the version-3 fixture and its recorded results. Run only
/// with the build that defines the format's reference results:
/// `cargo test -p nsparse-index --test old_formats -- --ignored regenerate`.
#[test]
#[ignore]
fn regenerate_version_3_fixture() {
    let out = fixtures_dir().join(V3);
    let _ = std::fs::remove_dir_all(&out);
    let mut g = Synth::new(
        SynthParams {
            vocab: 2000,
            ..SynthParams::zipf()
        },
        2024,
    );
    let mut idx = Index::create(
        &out,
        &CreateOptions::new("fixture-v3"),
        WriterOptions {
            flush_docs: 1_000_000,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    // Segment 1: a bulk load.
    let first: Vec<Document> = (0..200).map(|i| v3_doc(&mut g, i, "a")).collect();
    idx.bulk_upsert(&first).unwrap();
    // Segment 2: buffered writes, a re-upsert of a committed document and
    // deletes in both, committed (deletion bitmaps).
    let second: Vec<Document> = (200..320).map(|i| v3_doc(&mut g, i, "b")).collect();
    idx.add_batch(&second).unwrap();
    idx.upsert(&v3_doc(&mut g, 10, "b")).unwrap();
    for id in ["doc-3", "doc-77", "doc-250", "doc-301"] {
        assert!(idx.delete(id).unwrap());
    }
    idx.commit().unwrap();
    // Uncommitted WAL tail: adds, an upsert of a committed document, deletes.
    let tail: Vec<Document> = (320..360).map(|i| v3_doc(&mut g, i, "c")).collect();
    idx.add_batch(&tail).unwrap();
    idx.upsert(&v3_doc(&mut g, 42, "c")).unwrap();
    for id in ["doc-5", "doc-260", "doc-333"] {
        assert!(idx.delete(id).unwrap());
    }
    drop(idx);
    std::fs::remove_file(out.join("LOCK")).unwrap();

    let queries = v3_queries(&mut g);
    let reader = open_reader(&out).unwrap();
    let mut results = v3_results(&reader, &queries);
    results
        .as_object_mut()
        .unwrap()
        .insert("queries".into(), v3_query_json(&queries));
    std::fs::write(
        fixtures_dir().join(V3_RESULTS),
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .unwrap();
}

#[test]
fn a_version_3_index_reproduces_its_recorded_results_bit_for_bit() {
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures_dir().join(V3_RESULTS)).unwrap()).unwrap();
    let queries = v3_queries_from_json(&want["queries"]);
    let dir = copy_fixture(V3);
    assert_eq!(segment_versions(dir.path()), [3, 3]);
    let mut want = want;
    want.as_object_mut().unwrap().remove("queries");

    // Read-only, with the WAL tail replayed in memory.
    let reader = open_reader(dir.path()).unwrap();
    assert_eq!(v3_results(&reader, &queries), want, "reader");
    // A writer replays the same tail.
    let mut w = Index::open(dir.path(), WriterOptions::default()).unwrap();
    assert_eq!(v3_results(&w.searcher(), &queries), want, "writer");
    assert!(verify(dir.path()).unwrap().wal_ops > 0);
}

/// An open-vocabulary index as this build writes it (manifest version 2, a feature
/// dictionary file, a version-2 WAL with feature-name records), kept so later builds prove
/// they still read it.
const OPEN: &str = "index-open-vocabulary";
const OPEN_RESULTS: &str = "index-open-vocabulary-results.json";

fn open_doc(i: usize) -> (String, Vec<(String, f32)>) {
    let names = [
        "tok1",
        "brand:acme",
        "名前",
        "0123456789012345678901234567890123456789",
        "##ing",
    ];
    let features = (0..6)
        .map(|j| {
            let k = (i * 7 + j * 3) % 40;
            let name = if k < names.len() {
                names[k].to_string()
            } else {
                format!("feature-{k}")
            };
            (name, 0.25 + ((i + j) % 9) as f32 * 0.5)
        })
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    (format!("doc-{i}"), features)
}

fn open_queries() -> Vec<Vec<(String, f32)>> {
    vec![
        vec![("tok1".into(), 1.0), ("brand:acme".into(), 2.0)],
        vec![
            ("名前".into(), 1.5),
            ("feature-12".into(), 0.5),
            ("unknown".into(), 9.0),
        ],
        vec![
            ("0123456789012345678901234567890123456789".into(), 1.0),
            ("##ing".into(), 1.0),
            ("feature-33".into(), 3.0),
        ],
    ]
}

fn open_results(s: &Searcher) -> serde_json::Value {
    let per_query: Vec<serde_json::Value> = open_queries()
        .iter()
        .map(|q| {
            let q = s
                .resolve_features(q.iter().map(|(n, w)| (n.as_str(), *w)))
                .unwrap();
            hit_list(
                &s.search(Query::Neural(&q), &SearchRequest::new(10))
                    .unwrap(),
            )
        })
        .collect();
    let names: Vec<String> = (0..s.vocab_size())
        .map(|id| s.feature_name(id).unwrap().to_string())
        .collect();
    serde_json::json!({ "names": names, "docs": s.num_docs(), "hits": per_query })
}

/// Regenerates the open-vocabulary fixture:
/// `cargo test -p nsparse-index --test old_formats -- --ignored regenerate_open`.
#[test]
#[ignore]
fn regenerate_open_vocabulary_fixture() {
    let out = fixtures_dir().join(OPEN);
    let _ = std::fs::remove_dir_all(&out);
    let mut idx = Index::create(
        &out,
        &CreateOptions::new("fixture-open").with_vocabulary(Vocabulary::Open {
            seed: vec!["[PAD]".into(), "the".into()],
        }),
        WriterOptions {
            flush_docs: 1_000_000,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let write = |idx: &mut Index, range: std::ops::Range<usize>| {
        for i in range {
            let (id, named) = open_doc(i);
            let ids = idx.feature_ids(named.iter().map(|p| p.0.as_str())).unwrap();
            idx.upsert(&Document {
                id,
                vector: ids.into_iter().zip(named.iter().map(|p| p.1)).collect(),
                tokens: None,
                source: format!("{{\"i\":{i}}}").into_bytes(),
            })
            .unwrap();
        }
    };
    write(&mut idx, 0..60);
    assert!(idx.delete("doc-3").unwrap());
    idx.commit().unwrap();
    // The WAL tail adds names the dictionary file does not have yet.
    write(&mut idx, 60..90);
    let ids = idx.feature_ids(["only-in-the-wal"]).unwrap();
    idx.upsert(&Document {
        id: "doc-wal".into(),
        vector: vec![(ids[0], 1.0)],
        tokens: None,
        source: b"{}".to_vec(),
    })
    .unwrap();
    drop(idx);
    std::fs::remove_file(out.join("LOCK")).unwrap();
    let results = open_results(&open_reader(&out).unwrap());
    std::fs::write(
        fixtures_dir().join(OPEN_RESULTS),
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .unwrap();
}

#[test]
fn an_open_vocabulary_index_reproduces_its_recorded_names_and_results() {
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures_dir().join(OPEN_RESULTS)).unwrap()).unwrap();
    let dir = copy_fixture(OPEN);
    let reader = open_reader(dir.path()).unwrap();
    assert!(reader.has_open_vocabulary());
    assert_eq!(open_results(&reader), want, "reader");
    let mut w = Index::open(dir.path(), WriterOptions::default()).unwrap();
    assert_eq!(open_results(&w.searcher()), want, "writer");
    assert_eq!(
        w.feature_id("only-in-the-wal"),
        Some(reader.vocab_size() - 1)
    );
    assert!(verify(dir.path()).unwrap().wal_ops > 0);
}
