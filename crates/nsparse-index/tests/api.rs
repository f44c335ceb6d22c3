//! Serving API: filtered BM25 and hybrid search, `documents()` export,
//! `contains`, and the thread-sharing guarantees of `Searcher`.
//! (Filtered sparse-vector search is checked against brute force in `exact.rs`.)

use std::collections::{HashMap, HashSet};

use nsparse_index::*;
use nsparse_testkit::synth;

fn opts() -> WriterOptions {
    WriterOptions {
        flush_docs: 1_000_000,
        merge_factor: 100,
        ..Default::default()
    }
}

/// 700 documents over three committed segments plus the uncommitted buffer,
/// with deletions and an upsert; every third document has no BM25 tokens.
fn build(dir: &std::path::Path) -> (Index, Vec<Document>) {
    let mut idx = Index::create(dir, &CreateOptions::new("m"), opts()).unwrap();
    let mut g = synth::Synth::new(
        synth::SynthParams {
            vocab: 300,
            ..synth::SynthParams::zipf()
        },
        7,
    );
    let mut docs: Vec<Document> = (0..700)
        .map(|i| Document {
            id: format!("doc-{i}"),
            vector: g.doc().into_iter().take(40).collect(),
            tokens: (i % 3 != 0).then(|| g.text(5 + i % 30)),
            source: format!("{{\"n\":{i}}}").into_bytes(),
        })
        .collect();
    for chunk in docs[..600].chunks(200) {
        idx.upsert_batch(chunk).unwrap();
        idx.commit().unwrap();
    }
    idx.upsert_batch(&docs[600..]).unwrap(); // stays in the buffer
    for i in (0..700).step_by(11) {
        assert!(idx.delete(&format!("doc-{i}")).unwrap());
    }
    // Replace one committed document (its old copy becomes a deleted slot).
    docs[5].vector = vec![(1, 2.0), (2, 0.3333)];
    docs[5].source = b"replaced".to_vec();
    idx.upsert(&docs[5]).unwrap();
    let live: Vec<Document> = docs
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 11 != 0)
        .map(|x| x.1)
        .collect();
    (idx, live)
}

#[test]
fn bm25_filtered_is_the_exact_top_k_of_accepted_documents() {
    let dir = tempfile::tempdir().unwrap();
    let (mut idx, live) = build(dir.path());
    let s = idx.searcher();
    let accept = |id: &str| id.len().is_multiple_of(2) || id.ends_with('7');
    let mut g = synth::Synth::new(
        synth::SynthParams {
            vocab: 300,
            ..synth::SynthParams::zipf()
        },
        99,
    );
    let mut nonempty = 0;
    for _ in 0..30 {
        let q = g.text(4);
        let all = s
            .search(Query::Bm25(&q), &SearchRequest::new(live.len()))
            .unwrap();
        let want: Vec<&Hit> = all.iter().filter(|h| accept(&h.id)).take(10).collect();
        let got = s
            .search(
                Query::Bm25(&q),
                &SearchRequest::new(10)
                    .explain(true)
                    .with_source(true)
                    .filter(&accept),
            )
            .unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((g.id.as_str(), g.score), (w.id.as_str(), w.score));
            assert!(g.explanation.is_some() && g.source.is_some());
        }
        nonempty += usize::from(!got.is_empty());
        let none = s
            .search(
                Query::Bm25(&q),
                &SearchRequest::new(10).filter(&|_: &str| false),
            )
            .unwrap();
        assert!(none.is_empty());
    }
    assert!(nonempty > 20, "queries should match something");
}

#[test]
fn hybrid_filtered_fuses_filtered_sub_queries() {
    let dir = tempfile::tempdir().unwrap();
    let (mut idx, _) = build(dir.path());
    let s = idx.searcher();
    let accept = |id: &str| id.ends_with(['1', '2', '5']);
    let mut g = synth::Synth::new(
        synth::SynthParams {
            vocab: 300,
            ..synth::SynthParams::zipf()
        },
        5,
    );
    for combination in [
        HybridCombination::MinMax {
            weights: [0.3, 0.7],
        },
        HybridCombination::Rrf {
            rank_constant: 60.0,
        },
    ] {
        for _ in 0..10 {
            let (v, t) = (g.query(), g.text(4));
            let req = SearchRequest::new(10).fusion(Fusion {
                combination,
                window: Some(20),
            });
            let got = s
                .search(
                    Query::Hybrid {
                        vector: &v,
                        tokens: &t,
                    },
                    &req.filter(&accept),
                )
                .unwrap();
            assert!(!got.is_empty());
            assert!(got.iter().all(|h| accept(&h.id)));
            // Reference fusion over the filtered sub-queries.
            let neural = s
                .search(Query::Neural(&v), &SearchRequest::new(20).filter(&accept))
                .unwrap();
            let bm25 = s
                .search(Query::Bm25(&t), &SearchRequest::new(20).filter(&accept))
                .unwrap();
            let mut fused: HashMap<String, f32> = HashMap::new();
            for (hits, w) in [(&neural, 0.3f32), (&bm25, 0.7)] {
                let max = hits.iter().map(|h| h.score).fold(f32::MIN, f32::max);
                let min = hits.iter().map(|h| h.score).fold(f32::MAX, f32::min);
                for (r, h) in hits.iter().enumerate() {
                    let part = match combination {
                        HybridCombination::MinMax { .. } => {
                            w * if max > min {
                                (h.score - min) / (max - min)
                            } else {
                                1.0
                            }
                        }
                        HybridCombination::Rrf { rank_constant } => {
                            1.0 / (rank_constant + r as f32 + 1.0)
                        }
                    };
                    *fused.entry(h.id.clone()).or_default() += part;
                }
            }
            for h in &got {
                let want = fused[&h.id];
                assert!(
                    (h.score - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{}: {} vs {want}",
                    h.id,
                    h.score
                );
            }
            // Fused scores are descending and nothing better was left out.
            assert!(got.windows(2).all(|w| w[0].score >= w[1].score));
            let kth = got.last().unwrap().score;
            let better = fused.values().filter(|&&x| x > kth + 1e-5).count();
            assert!(better < got.len());
        }
    }
    // No filter equals the unfiltered call.
    let (v, t) = (g.query(), g.text(4));
    let req = SearchRequest::new(10);
    let hybrid = Query::Hybrid {
        vector: &v,
        tokens: &t,
    };
    assert_eq!(
        s.search(
            hybrid,
            &SearchRequest {
                filter: None,
                ..req
            }
        )
        .unwrap(),
        s.search(hybrid, &req).unwrap()
    );
}

#[test]
fn documents_returns_every_live_document_once_and_reindexes_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (mut idx, live) = build(dir.path());
    let s = idx.searcher();
    let exported: Vec<StoredDocument> = s.documents().collect::<Result<_>>().unwrap();
    assert_eq!(exported.len() as u64, s.num_docs());
    assert_eq!(exported.len(), live.len());
    let again: Vec<StoredDocument> = s.clone().documents().map(|d| d.unwrap()).collect();
    assert_eq!(exported, again, "order must be stable");
    let by_id: HashMap<&str, &StoredDocument> =
        exported.iter().map(|d| (d.id.as_str(), d)).collect();
    assert_eq!(by_id.len(), exported.len(), "no duplicates");
    for d in &live {
        let e = by_id[d.id.as_str()];
        assert!(s.contains(&d.id));
        assert_eq!(e.source, d.source);
        assert_eq!(Some(e.vector.clone()), s.vector(&d.id).unwrap());
        let mut want: Vec<(u32, f32)> = d
            .vector
            .iter()
            .filter(|p| quantize(p.1) != 0)
            .map(|&(t, w)| (t, dequantize(quantize(w))))
            .collect();
        want.sort_by_key(|p| p.0);
        assert_eq!(e.vector, want);
        let bag = d.tokens.clone().filter(|t| !t.is_empty()).map(|mut t| {
            t.sort_unstable();
            t
        });
        assert_eq!(e.tokens, bag, "{}", d.id);
    }
    assert!(!s.contains("doc-0") && !s.contains("doc-11") && !s.contains("nope"));

    // Re-index the export: identical neural and BM25 results.
    let dir2 = tempfile::tempdir().unwrap();
    let mut idx2 = Index::create(dir2.path(), &CreateOptions::new("m"), opts()).unwrap();
    let docs2: Vec<Document> = exported
        .iter()
        .map(|e| Document {
            id: e.id.clone(),
            vector: e.vector.clone(),
            tokens: e.tokens.clone(),
            source: e.source.clone(),
        })
        .collect();
    idx2.bulk_upsert(&docs2).unwrap();
    idx2.force_merge(1).unwrap();
    idx.force_merge(1).unwrap(); // same corpus statistics (deleted docs purged)
    let (s1, s2) = (idx.searcher(), idx2.searcher());
    let mut g = synth::Synth::new(
        synth::SynthParams {
            vocab: 300,
            ..synth::SynthParams::zipf()
        },
        3,
    );
    let key = |h: &[Hit]| -> Vec<(String, f32)> {
        let mut v: Vec<_> = h.iter().map(|h| (h.id.clone(), h.score)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    for _ in 0..10 {
        let (v, t) = (g.query(), g.text(3));
        let r = SearchRequest::new(700);
        assert_eq!(
            key(&s1.search(Query::Neural(&v), &r).unwrap()),
            key(&s2.search(Query::Neural(&v), &r).unwrap())
        );
        assert_eq!(
            key(&s1
                .search(Query::Bm25(&t), &SearchRequest::new(700))
                .unwrap()),
            key(&s2
                .search(Query::Bm25(&t), &SearchRequest::new(700))
                .unwrap())
        );
    }
}

#[test]
fn documents_of_an_empty_index_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut idx = Index::create(dir.path(), &CreateOptions::new("m"), opts()).unwrap();
    assert_eq!(idx.searcher().documents().count(), 0);
    idx.add(&Document {
        id: "x".into(),
        ..Default::default()
    })
    .unwrap();
    idx.delete("x").unwrap();
    idx.commit().unwrap();
    assert_eq!(idx.searcher().documents().count(), 0);
}

#[test]
fn searcher_is_shareable_across_threads() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<Searcher>();
    let dir = tempfile::tempdir().unwrap();
    let (mut idx, live) = build(dir.path());
    let s = idx.searcher();
    let wanted: HashSet<String> = live
        .iter()
        .filter(|d| d.id.ends_with('5'))
        .map(|d| d.id.clone())
        .collect();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let s = s.clone();
            let wanted = wanted.clone();
            std::thread::spawn(move || {
                let filter = |id: &str| wanted.contains(id);
                s.search(
                    Query::Neural(&[(1, 1.0)]),
                    &SearchRequest::new(5).filter(&filter),
                )
                .unwrap()
            })
        })
        .collect();
    let results: Vec<Vec<Hit>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results[0], results[1]);
    assert!(!results[0].is_empty());
    assert!(results[0].iter().all(|h| wanted.contains(&h.id)));
    let unfiltered = s
        .search(Query::Neural(&[(1, 1.0)]), &SearchRequest::new(700))
        .unwrap();
    let want: Vec<&str> = unfiltered
        .iter()
        .filter(|h| wanted.contains(&h.id))
        .take(5)
        .map(|h| h.id.as_str())
        .collect();
    let got: Vec<&str> = results[0].iter().map(|h| h.id.as_str()).collect();
    assert_eq!(got, want);
}

/// `bulk_upsert` (documents read in place, one segment) must index exactly
/// what the write-ahead-log path indexes: unsorted vectors, weights that
/// quantize to zero, duplicate `_id`s in the batch (the last wins), documents
/// replacing live ones, BM25 tokens and sources. A bad document rejects the
/// whole batch and leaves the index as it was.
#[test]
fn bulk_upsert_equals_the_logged_path_and_rejects_bad_batches_whole() {
    let mut g = synth::Synth::new(
        synth::SynthParams {
            vocab: 500,
            ..synth::SynthParams::zipf()
        },
        21,
    );
    let docs: Vec<Document> = (0..400)
        .map(|i| {
            let mut vector = g.doc();
            if i % 5 == 0 {
                vector.reverse(); // not in token order
            }
            if i % 7 == 0 {
                // At the edge of quantization: -0.0, 1e-9 and the float
                // just below MIN_WEIGHT / 2 are dropped, MIN_WEIGHT / 2 is kept.
                let half = nsparse_index::MIN_WEIGHT / 2.0;
                vector.push((29_996, -0.0));
                vector.push((29_997, f32::from_bits(half.to_bits() - 1)));
                vector.push((29_998, half));
                vector.push((29_999, 1e-9));
                if i % 5 != 0 {
                    vector.sort_by_key(|p| p.0);
                }
            }
            Document {
                id: format!("d{}", i % 350), // ids 0..50 appear twice: the later wins
                vector,
                tokens: (i % 2 == 0).then(|| g.text(4 + i % 9)),
                source: format!("{{\"i\":{i}}}").into_bytes(),
            }
        })
        .collect();
    let existing: Vec<Document> = (0..30)
        .map(|i| Document {
            id: format!("d{}", i * 10), // replaced by the batch
            vector: vec![(1, 1.0)],
            tokens: None,
            source: b"old".to_vec(),
        })
        .chain((0..5).map(|i| Document {
            id: format!("keep{i}"),
            vector: vec![(2, 0.5), (3, 0.25)],
            tokens: None,
            source: b"kept".to_vec(),
        }))
        .collect();

    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut bulk = Index::create(da.path(), &CreateOptions::new("m"), opts()).unwrap();
    let mut logged = Index::create(db.path(), &CreateOptions::new("m"), opts()).unwrap();
    bulk.upsert_batch(&existing).unwrap();
    logged.upsert_batch(&existing).unwrap();
    bulk.bulk_upsert(&docs).unwrap();
    logged.upsert_batch(&docs).unwrap();
    logged.commit().unwrap();
    let (sa, sb) = (bulk.searcher(), logged.searcher());
    assert_eq!(sa.num_docs(), 355);
    assert_eq!(sa.num_docs(), sb.num_docs());
    for i in 0..350 {
        let id = format!("d{i}");
        assert_eq!(sa.get(&id).unwrap(), sb.get(&id).unwrap(), "{id}");
        assert_eq!(sa.vector(&id).unwrap(), sb.vector(&id).unwrap(), "{id}");
    }
    let edge: Vec<u32> = sa
        .vector("d7")
        .unwrap()
        .unwrap()
        .iter()
        .map(|p| p.0)
        .filter(|&t| t >= 29_996)
        .collect();
    assert_eq!(edge, [29_998], "only MIN_WEIGHT / 2 survives quantization");
    assert_eq!(sa.get("d60").unwrap().unwrap(), b"{\"i\":60}");
    assert_eq!(sa.get("d10").unwrap().unwrap(), b"{\"i\":360}");
    assert_eq!(sa.get("keep3").unwrap().unwrap(), b"kept");
    let key = |h: &[Hit]| {
        h.iter()
            .map(|h| (h.id.clone(), h.score))
            .collect::<Vec<_>>()
    };
    for _ in 0..10 {
        let (v, t) = (g.query(), g.text(3));
        let r = SearchRequest::new(50);
        assert_eq!(
            key(&sa.search(Query::Neural(&v), &r).unwrap()),
            key(&sb.search(Query::Neural(&v), &r).unwrap())
        );
        assert_eq!(
            key(&sa.search(Query::Bm25(&t), &SearchRequest::new(50)).unwrap()),
            key(&sb.search(Query::Bm25(&t), &SearchRequest::new(50)).unwrap())
        );
    }

    // Bad batches: each error names the document and nothing is written.
    let files = |p: &std::path::Path| {
        let mut f: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        f.sort();
        f
    };
    let before = files(da.path());
    let good = Document {
        id: "new-good".into(),
        vector: vec![(5, 1.0)],
        ..Default::default()
    };
    let bad = [
        (vec![(7u32, 1.0f32), (7, 2.0)], "appears twice"),
        (vec![(40_000, 1.0)], "outside the vocabulary"),
        (vec![(3, f32::NAN)], "must be finite"),
        (vec![(9, 1.0), (3, -1.0)], "must be finite and in"),
    ];
    for (vector, want) in bad {
        let batch = vec![
            good.clone(),
            Document {
                id: "bad".into(),
                vector,
                ..Default::default()
            },
        ];
        let err = bulk.bulk_upsert(&batch).unwrap_err().to_string();
        assert!(err.contains("\"bad\"") && err.contains(want), "{err}");
    }
    let err = bulk
        .bulk_upsert(&[good.clone(), Document::default()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty _id"), "{err}");
    assert_eq!(files(da.path()), before);
    let s = bulk.searcher();
    assert!(!s.contains("new-good") && s.contains("keep0"));
    assert_eq!(s.num_docs(), 355);
}

#[test]
fn bulk_upsert_of_unique_ids_finds_updates_and_deletes_each_of_them() {
    // A batch without repeated `_id`s hands its `_id` index to the new
    // segment: every id must resolve to its own document, before and after
    // reopening.
    let mut g = synth::Synth::new(
        synth::SynthParams {
            vocab: 300,
            ..synth::SynthParams::zipf()
        },
        5,
    );
    let docs: Vec<Document> = (0..300)
        .map(|i| Document {
            id: format!("u{i}"),
            vector: g.doc(),
            tokens: None,
            source: format!("{{\"n\":{i}}}").into_bytes(),
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut idx = Index::create(dir.path(), &CreateOptions::new("m"), opts()).unwrap();
    idx.bulk_upsert(&docs).unwrap();
    let check = |s: &Searcher, gone: &[&str]| {
        for (i, d) in docs.iter().enumerate() {
            let got = s.get(&d.id).unwrap();
            if gone.contains(&d.id.as_str()) {
                assert_eq!(got, None, "{}", d.id);
            } else {
                assert_eq!(got.unwrap(), format!("{{\"n\":{i}}}").into_bytes());
            }
        }
        assert_eq!(s.get("u300").unwrap(), None);
    };
    check(&idx.searcher(), &[]);
    assert!(idx.delete("u17").unwrap());
    assert!(!idx.delete("u17").unwrap());
    idx.upsert(&Document {
        id: "u42".into(),
        vector: vec![(1, 1.0)],
        tokens: None,
        source: b"{\"n\":42}".to_vec(),
    })
    .unwrap();
    idx.commit().unwrap();
    check(&idx.searcher(), &["u17"]);
    assert_eq!(idx.searcher().num_docs(), 299);
    drop(idx);
    check(&open_reader(dir.path()).unwrap(), &["u17"]);
}
