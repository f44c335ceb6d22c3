use nsparse_index::*;
use nsparse_testkit::synth;

fn doc(id: &str, v: &[(u32, f32)]) -> Document {
    Document {
        id: id.into(),
        vector: v.to_vec(),
        tokens: None,
        source: format!("{{\"id\":\"{id}\"}}").into_bytes(),
    }
}

/// The (first) file in `dir` whose extension is `ext`.
fn file_with_extension(dir: &std::path::Path, ext: &str) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == ext))
        .unwrap_or_else(|| panic!("no .{ext} file in {}", dir.display()))
}

fn ids(h: &[Hit]) -> Vec<&str> {
    h.iter().map(|h| h.id.as_str()).collect()
}

fn small() -> WriterOptions {
    WriterOptions {
        flush_docs: 1000,
        merge_factor: 3,
        ..Default::default()
    }
}

#[test]
fn add_search_reopen_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = CreateOptions::new("model-a");
    o.metadata = serde_json::json!({"field": "text"});
    let mut idx = Index::create(dir.path(), &o, small()).unwrap();
    idx.add(&doc("a", &[(1, 1.0), (2, 2.0)])).unwrap();
    idx.add(&doc("b", &[(2, 0.5), (3, 3.0)])).unwrap();
    idx.add(&doc("c", &[(5, 1.0)])).unwrap();
    let q = [(2u32, 1.0f32), (3, 1.0)];
    let r = idx
        .searcher()
        .search(Query::Neural(&q), &SearchRequest::new(10).with_source(true))
        .unwrap();
    assert_eq!(ids(&r), ["b", "a"]);
    assert_eq!(r[0].score, 0.5 + 3.0);
    assert_eq!(r[0].source.as_deref(), Some(&b"{\"id\":\"b\"}"[..]));
    drop(idx);
    // Uncommitted writes come back from the WAL.
    let mut idx = Index::open(dir.path(), small()).unwrap();
    assert_eq!(idx.info().live_docs, 3);
    assert_eq!(idx.info().metadata["field"], "text");
    assert_eq!(
        ids(&idx
            .searcher()
            .search(Query::Neural(&q), &SearchRequest::new(10))
            .unwrap()),
        ["b", "a"]
    );
    idx.commit().unwrap();
    assert_eq!(idx.info().segments, 1);
    drop(idx);
    let s = open_reader(dir.path()).unwrap();
    assert_eq!(s.model(), "model-a");
    assert!(s.check_model("model-b").is_err());
    assert_eq!(
        ids(&s.search(Query::Neural(&q), &SearchRequest::new(1)).unwrap()),
        ["b"]
    );
    let rep = verify(dir.path()).unwrap();
    assert_eq!(rep.live_docs, 3);
    assert_eq!(rep.segments, 1);
}

#[test]
fn upsert_delete_visibility_and_merge() {
    let dir = tempfile::tempdir().unwrap();
    let mut idx = Index::create(dir.path(), &CreateOptions::new("m"), small()).unwrap();
    idx.add(&doc("a", &[(1, 1.0)])).unwrap();
    idx.add(&doc("b", &[(1, 2.0)])).unwrap();
    idx.add(&doc("c", &[(9, 2.0)])).unwrap();
    idx.commit().unwrap();
    assert!(matches!(
        idx.add(&doc("a", &[(1, 1.0)])),
        Err(Error::DuplicateId { .. })
    ));
    let before = idx.searcher();
    idx.upsert(&doc("a", &[(1, 5.0)])).unwrap();
    assert!(idx.delete("b").unwrap());
    assert!(!idx.delete("zzz").unwrap());
    let q = [(1u32, 1.0f32)];
    // Old snapshot is unaffected, new one sees the changes at once.
    assert_eq!(
        ids(&before
            .search(Query::Neural(&q), &SearchRequest::new(10))
            .unwrap()),
        ["b", "a"]
    );
    let now = idx
        .searcher()
        .search(Query::Neural(&q), &SearchRequest::new(10))
        .unwrap();
    assert_eq!(ids(&now), ["a"]);
    assert_eq!(now[0].score, 5.0);
    idx.commit().unwrap();
    drop(idx);
    let rep = verify(dir.path()).unwrap();
    assert_eq!((rep.live_docs, rep.deleted_docs), (2, 2));
    let mut idx = Index::open(dir.path(), small()).unwrap();
    assert_eq!(
        ids(&idx
            .searcher()
            .search(Query::Neural(&q), &SearchRequest::new(10))
            .unwrap()),
        ["a"]
    );
    idx.force_merge(1).unwrap();
    drop(idx);
    let rep = verify(dir.path()).unwrap();
    assert_eq!(
        (
            rep.live_docs,
            rep.deleted_docs,
            rep.segment_docs,
            rep.segments
        ),
        (2, 0, 2, 1)
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".seg")).count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".log")).count(),
        1,
        "{names:?}"
    );
}

#[test]
fn lock_and_create_errors() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::create(dir.path(), &CreateOptions::new("m"), small()).unwrap();
    assert!(matches!(
        Index::open(dir.path(), small()),
        Err(Error::Locked { .. })
    ));
    drop(idx);
    assert!(matches!(
        Index::create(dir.path(), &CreateOptions::new("m"), small()),
        Err(Error::AlreadyExists { .. })
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Index::open(empty.path(), small()),
        Err(Error::NotAnIndex { .. })
    ));
    // A reader works while the writer holds the lock.
    let _w = Index::open(dir.path(), small()).unwrap();
    assert!(open_reader(dir.path()).is_ok());
}

#[test]
fn invalid_input_is_rejected_with_context() {
    let dir = tempfile::tempdir().unwrap();
    let mut idx = Index::create(dir.path(), &CreateOptions::new("m"), small()).unwrap();
    for bad in [
        doc("x", &[(30_522, 1.0)]),
        doc("x", &[(1, -1.0)]),
        doc("x", &[(1, f32::NAN)]),
        doc("x", &[(1, 1e6)]),
        doc("x", &[(1, 1.0), (1, 2.0)]),
        doc("", &[(1, 1.0)]),
    ] {
        let e = idx.add(&bad).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    }
    let e = idx
        .searcher()
        .search(Query::Neural(&[(40_000, 1.0)]), &SearchRequest::new(1))
        .unwrap_err();
    assert!(e.to_string().contains("40000"));
    assert_eq!(idx.info().live_docs, 0);
}

#[test]
fn merge_policy_bounds_segment_count() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WriterOptions {
        flush_docs: 5,
        merge_factor: 3,
        ..Default::default()
    };
    let mut idx = Index::create(dir.path(), &CreateOptions::new("m"), opts).unwrap();
    for i in 0..150u32 {
        idx.add(&doc(&format!("d{i}"), &[(i % 50, 1.0 + (i % 7) as f32)]))
            .unwrap();
        // Tiers: 5, 15, 45, 135, ... each holds < 3 segments.
        assert!(idx.info().segments <= 2 * 5, "{:?}", idx.info());
    }
    idx.commit().unwrap();
    let s = idx.searcher();
    assert_eq!(s.num_docs(), 150);
    let r = s
        .search(Query::Neural(&[(3, 1.0)]), &SearchRequest::new(100))
        .unwrap();
    assert_eq!(r.len(), 3);
}

#[test]
fn explain_two_phase_approx() {
    let dir = tempfile::tempdir().unwrap();
    let mut idx = Index::create(dir.path(), &CreateOptions::new("m"), small()).unwrap();
    let mut g = synth::Synth::new(synth::SynthParams::default(), 7);
    for i in 0..500 {
        idx.add(&Document {
            id: format!("d{i}"),
            vector: g.doc(),
            ..Default::default()
        })
        .unwrap();
    }
    idx.commit().unwrap();
    let s = idx.searcher();
    for _ in 0..20 {
        let q = g.query();
        let exact = s
            .search(Query::Neural(&q), &SearchRequest::new(10).explain(true))
            .unwrap();
        for h in &exact {
            let e = h.explanation.as_ref().unwrap();
            let sum: f32 = e.iter().map(|c| c.contribution).sum();
            assert!((sum - h.score).abs() <= 1e-4 * h.score.max(1.0));
            let (score, _) = s.explain(&q, &h.id).unwrap().unwrap();
            assert_eq!(score, h.score);
        }
        let tp = s
            .search(
                Query::Neural(&q),
                &SearchRequest::new(10).mode(SearchMode::TwoPhase {
                    prune_ratio: 0.0,
                    expansion_rate: 5.0,
                    max_window_size: 10_000,
                }),
            )
            .unwrap();
        let strip = |v: &[Hit]| {
            v.iter()
                .map(|h| (h.id.clone(), h.score))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&tp), strip(&exact));
        let ap = s
            .search(
                Query::Neural(&q),
                &SearchRequest::new(10).mode(SearchMode::Approximate {
                    top_n: 100,
                    heap_factor: 1.0,
                }),
            )
            .unwrap();
        assert_eq!(ids(&ap), ids(&exact));
        // Two-phase with defaults returns correctly scored hits.
        for h in s
            .search(
                Query::Neural(&q),
                &SearchRequest::new(10).mode(SearchMode::two_phase()),
            )
            .unwrap()
        {
            assert_eq!(s.explain(&q, &h.id).unwrap().unwrap().0, h.score);
        }
    }
}

#[test]
fn bm25_and_hybrid() {
    let dir = tempfile::tempdir().unwrap();
    let mut idx = Index::create(dir.path(), &CreateOptions::new("m"), small()).unwrap();
    let texts: [&[u32]; 4] = [&[1, 2, 3], &[1, 1, 4, 5, 6, 7], &[2, 2, 2], &[8]];
    for (i, t) in texts.iter().enumerate() {
        idx.add(&Document {
            id: format!("t{i}"),
            vector: vec![(t[0], 1.0 + i as f32)],
            tokens: Some(t.to_vec()),
            source: vec![],
        })
        .unwrap();
    }
    idx.commit().unwrap();
    let s = idx.searcher();
    let r = s
        .search(Query::Bm25(&[1]), &SearchRequest::new(10).explain(true))
        .unwrap();
    // N = 4, df(1) = 2, avglen = 13/4.
    let idf = (1.0f64 + (4.0 - 2.0 + 0.5) / (2.0 + 0.5)).ln();
    let bm = |tf: f64, len: f64| idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / 3.25));
    assert_eq!(ids(&r), ["t1", "t0"]);
    assert!((r[0].score as f64 - bm(2.0, 6.0)).abs() < 1e-5);
    assert!((r[1].score as f64 - bm(1.0, 3.0)).abs() < 1e-5);
    let e = &r[0].explanation.as_ref().unwrap()[0];
    assert_eq!(e.token, 1);
    let hy = s
        .search(
            Query::Hybrid {
                vector: &[(1, 1.0), (8, 1.0)],
                tokens: &[1],
            },
            &SearchRequest::new(10),
        )
        .unwrap();
    // Neural: t3 (4.0) > t1 (2.0) > t0 (1.0); BM25: t1 > t0.
    assert_eq!(ids(&hy), ["t1", "t3", "t0"]);
    assert!((hy[0].score - (0.5 * (1.0 / 3.0) + 0.5)).abs() < 1e-6);
    let rq = SearchRequest::new(10).fusion(Fusion {
        combination: HybridCombination::Rrf {
            rank_constant: 60.0,
        },
        ..Fusion::default()
    });
    let hy = s
        .search(
            Query::Hybrid {
                vector: &[(1, 1.0), (8, 1.0)],
                tokens: &[1],
            },
            &rq,
        )
        .unwrap();
    assert_eq!(ids(&hy), ["t1", "t0", "t3"]);
    assert!((hy[0].score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-7);
}

#[test]
fn concurrent_reader_sees_consistent_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut idx = Index::create(
        dir.path(),
        &CreateOptions::new("m"),
        WriterOptions {
            flush_docs: 50,
            merge_factor: 3,
            ..Default::default()
        },
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Searcher>();
    let reader = std::thread::spawn(move || {
        let mut seen = 0;
        for s in rx {
            // Every doc has token 1 with weight 1: the snapshot's count must be exact.
            let n = s.num_docs() as usize;
            let r = s
                .search(Query::Neural(&[(1, 1.0)]), &SearchRequest::new(10_000))
                .unwrap();
            assert_eq!(r.len(), n);
            seen += 1;
        }
        seen
    });
    for i in 0..300 {
        idx.add(&doc(&format!("d{i}"), &[(1, 1.0)])).unwrap();
        if i % 10 == 0 {
            idx.delete(&format!("d{}", i / 2)).unwrap();
            tx.send(idx.searcher()).unwrap();
        }
    }
    drop(tx);
    assert_eq!(reader.join().unwrap(), 30);
}

#[test]
fn torn_wal_tail_is_dropped() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut idx = Index::create(dir.path(), &CreateOptions::new("m"), small()).unwrap();
    idx.add(&doc("a", &[(1, 1.0)])).unwrap();
    idx.add(&doc("b", &[(1, 1.0)])).unwrap();
    drop(idx);
    let wal = file_with_extension(dir.path(), "log");
    let full = std::fs::read(&wal).unwrap();
    // Cut the last record in half: "b" was never acknowledged.
    let len = full.len();
    for cut in [len - 1, len - 5, len - 20] {
        std::fs::write(&wal, &full[..cut]).unwrap();
        let rep = verify(dir.path()).unwrap();
        assert_eq!(rep.live_docs, 1);
        assert!(rep.wal_torn_bytes > 0);
    }
    let mut idx = Index::open(dir.path(), small()).unwrap();
    assert!(idx.contains("a") && !idx.contains("b"));
    idx.add(&doc("c", &[(1, 1.0)])).unwrap();
    drop(idx);
    let rep = verify(dir.path()).unwrap();
    assert_eq!((rep.live_docs, rep.wal_torn_bytes), (2, 0));
    // Garbage after a good record is corruption, not a torn tail.
    let mut f = std::fs::OpenOptions::new().append(true).open(&wal).unwrap();
    f.write_all(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
        .unwrap();
    assert!(verify(dir.path()).unwrap_err().is_corruption());
}

#[test]
fn unknown_version_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    drop(Index::create(dir.path(), &CreateOptions::new("m"), small()).unwrap());
    set_container_version(&dir.path().join("MANIFEST"), 99);
    let e = verify(dir.path()).unwrap_err();
    assert!(
        matches!(e, Error::UnsupportedVersion { found: 99, .. }),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("MANIFEST") && msg.contains("version 99, this build reads versions 1 to 2 "),
        "{msg}"
    );

    // A segment of an unknown version names the versions segments are read in.
    let dir = tempfile::tempdir().unwrap();
    let mut idx = Index::create(dir.path(), &CreateOptions::new("m"), small()).unwrap();
    idx.upsert(&doc("a", &[(1, 1.0)])).unwrap();
    idx.commit().unwrap();
    drop(idx);
    let seg = file_with_extension(dir.path(), "seg");
    set_container_version(&seg, 4);
    let msg = verify(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains(".seg") && msg.contains("version 4, this build reads versions 1 to 3"),
        "{msg}"
    );
}

/// Rewrite a container file's format version, recomputing the header
/// checksum so only the version is "wrong".
fn set_container_version(path: &std::path::Path, version: u8) {
    let mut b = std::fs::read(path).unwrap();
    b[8] = version;
    let n = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    let end = 16 + n * 24;
    let c = crc32fast_hash(&b[..end]);
    b[end..end + 4].copy_from_slice(&c.to_le_bytes());
    std::fs::write(path, &b).unwrap();
}

fn crc32fast_hash(b: &[u8]) -> u32 {
    // Bitwise CRC-32 (IEEE), to avoid a dev-dependency just for this test.
    let mut c = !0u32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}
