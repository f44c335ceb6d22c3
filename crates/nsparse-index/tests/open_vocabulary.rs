//! Open vocabularies: the index's own feature dictionary (any name, ids of any size), its
//! durability (WAL, commits, merges, bulk loads; SIGKILL is in `durability.rs`) and searches
//! by name that equal brute force.

use std::collections::{BTreeMap, HashMap, HashSet};

use nsparse_index::*;
use rand::{Rng, SeedableRng};

fn opts() -> WriterOptions {
    WriterOptions {
        flush_docs: 1_000_000,
        merge_factor: 3,
        ..Default::default()
    }
}

/// A 250,002-name vocabulary, as BGE-M3's sparse head has.
fn big_seed() -> Vec<String> {
    (0..250_002).map(|i| format!("▁tok{i}")).collect()
}

/// Names no seed has: CJK, punctuation, 40-byte names.
fn odd_name(i: usize) -> String {
    match i % 4 {
        0 => format!("brand:acme-{i}"),
        1 => format!("名前{i}"),
        2 => format!("{:0>40}", i),
        _ => format!("tok{i}"),
    }
}

type Named = Vec<(String, f32)>;

/// A document's features: names of the big seed (ids far above 65,535) and new names.
fn named_doc(rng: &mut rand::rngs::StdRng) -> Named {
    let mut m = BTreeMap::new();
    for _ in 0..rng.random_range(1..30) {
        let name = if rng.random_bool(0.7) {
            format!("▁tok{}", rng.random_range(0..250_002usize))
        } else {
            odd_name(rng.random_range(0..400))
        };
        m.insert(name, rng.random_range(0.01f32..3.0));
    }
    m.into_iter().collect()
}

fn to_document(idx: &mut Index, id: &str, named: &Named) -> Document {
    let ids = idx
        .feature_ids(named.iter().map(|(n, _)| n.as_str()))
        .unwrap();
    Document {
        id: id.to_string(),
        vector: ids.into_iter().zip(named.iter().map(|p| p.1)).collect(),
        tokens: None,
        source: id.as_bytes().to_vec(),
    }
}

/// Top-10 by the stored (f16) weights, scores summed in ascending id order as the index does.
fn brute_force(
    s: &Searcher,
    live: &HashMap<String, Named>,
    query: &[(String, f32)],
) -> Vec<(String, f32)> {
    let mut q: Vec<(u32, f32)> = query
        .iter()
        .filter_map(|(n, w)| s.feature_id(n).map(|id| (id, *w)))
        .collect();
    q.sort_by_key(|p| p.0);
    let mut scored: Vec<(String, f32)> = live
        .iter()
        .map(|(id, doc)| {
            let d: HashMap<u32, f32> = doc
                .iter()
                .map(|(n, w)| (s.feature_id(n).unwrap(), dequantize(quantize(*w))))
                .collect();
            let score = q
                .iter()
                .filter_map(|(t, w)| d.get(t).map(|dw| w * dw))
                .fold(0f32, |a, x| a + x);
            (id.clone(), score)
        })
        .filter(|p| p.1 > 0.0)
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(10);
    scored
}

fn check_queries(s: &Searcher, live: &HashMap<String, Named>, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for qi in 0..40 {
        let mut query = named_doc(&mut rng);
        query.push(("never-seen-name".into(), 2.0));
        let want = brute_force(s, live, &query);
        let resolved = s
            .resolve_features(query.iter().map(|(n, w)| (n.as_str(), *w)))
            .unwrap();
        assert!(resolved.len() < query.len(), "unknown names are dropped");
        for mode in [SearchMode::Exact, SearchMode::BruteForce] {
            let got: Vec<(String, f32)> = s
                .search(Query::Neural(&resolved), &SearchRequest::new(10).mode(mode))
                .unwrap()
                .into_iter()
                .map(|h| (h.id, h.score))
                .collect();
            // Ties (equal scores) may list in another order: compare scores, and ids where
            // scores differ from their neighbours.
            let scores = |v: &[(String, f32)]| v.iter().map(|p| p.1).collect::<Vec<_>>();
            assert_eq!(scores(&got), scores(&want), "query {qi} ({mode:?})");
            let ids = |v: &[(String, f32)]| v.iter().map(|p| p.0.clone()).collect::<HashSet<_>>();
            if want.windows(2).all(|w| w[0].1 != w[1].1) {
                assert_eq!(ids(&got), ids(&want), "query {qi} ({mode:?})");
            }
        }
    }
}

#[test]
fn names_of_a_large_vocabulary_search_like_brute_force_across_commits_merges_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let seed = big_seed();
    let mut idx = Index::create(
        dir.path(),
        &CreateOptions::new("m").with_vocabulary(Vocabulary::Open { seed }),
        opts(),
    )
    .unwrap();
    assert!(idx.info().open_vocabulary);
    assert_eq!(idx.info().vocab_size, 250_002);
    assert_eq!(idx.feature_id("▁tok250001"), Some(250_001));
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut live: HashMap<String, Named> = HashMap::new();
    for round in 0..5 {
        let named: Vec<(String, Named)> = (0..150)
            .map(|i| (format!("r{round}-d{i}"), named_doc(&mut rng)))
            .collect();
        let docs: Vec<Document> = named
            .iter()
            .map(|(id, n)| to_document(&mut idx, id, n))
            .collect();
        if round == 2 {
            idx.bulk_upsert(&docs).unwrap();
        } else {
            idx.upsert_batch(&docs).unwrap();
        }
        live.extend(named);
        for i in (0..150).step_by(7) {
            let id = format!("r{round}-d{i}");
            assert!(idx.delete(&id).unwrap());
            live.remove(&id);
        }
        if round % 2 == 0 {
            idx.commit().unwrap();
        }
    }
    let grown = idx.info().vocab_size;
    assert!(grown > 250_002, "new names were added");
    check_queries(&idx.searcher(), &live, 1);

    // Reopen with the last round only in the WAL: its new names come back from it.
    drop(idx);
    let mut idx = Index::open(dir.path(), opts()).unwrap();
    assert_eq!(idx.info().vocab_size, grown);
    check_queries(&idx.searcher(), &live, 1);
    check_queries(&open_reader(dir.path()).unwrap(), &live, 2);

    // Merge everything; the dictionary file of the last commit holds every name.
    idx.force_merge(1).unwrap();
    drop(idx);
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".dict")).count(),
        1,
        "{files:?}"
    );
    verify(dir.path()).unwrap();
    let s = open_reader(dir.path()).unwrap();
    assert_eq!(s.vocab_size(), grown);
    check_queries(&s, &live, 3);
    // Stored vectors map back to their names.
    let (id, named) = live.iter().next().unwrap();
    let back: Vec<(String, f32)> = s
        .vector(id)
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|(t, w)| (s.feature_name(t).unwrap().to_string(), w))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let want: Vec<(String, f32)> = named
        .iter()
        .map(|(n, w)| (n.clone(), dequantize(quantize(*w))))
        .collect();
    assert_eq!(back, want);
}

#[test]
fn an_unseeded_open_vocabulary_starts_empty_and_grows() {
    let dir = tempfile::tempdir().unwrap();
    let mut idx = Index::create(
        dir.path(),
        &CreateOptions::new("m").with_vocabulary(Vocabulary::open()),
        opts(),
    )
    .unwrap();
    assert_eq!(idx.info().vocab_size, 0);
    // A document with no features at all is fine.
    idx.add(&Document {
        id: "empty".into(),
        ..Default::default()
    })
    .unwrap();
    idx.commit().unwrap();
    let named: Named = vec![("tok1".into(), 1.0), ("brand:acme".into(), 0.5)];
    let d = to_document(&mut idx, "a", &named);
    assert_eq!(d.vector.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 1]);
    idx.add(&d).unwrap();
    // Id 2 has no name yet: refused, like any id outside the vocabulary.
    let bad = Document {
        id: "b".into(),
        vector: vec![(2, 1.0)],
        ..Default::default()
    };
    assert!(matches!(idx.add(&bad), Err(Error::InvalidInput { .. })));
    let hits = idx
        .searcher()
        .search(
            Query::Neural(
                &idx.searcher()
                    .resolve_features([("brand:acme", 2.0)])
                    .unwrap(),
            ),
            &SearchRequest::new(10),
        )
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].score, 1.0);
}

#[test]
fn a_failed_write_keeps_none_of_its_new_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut idx = Index::create(
        dir.path(),
        &CreateOptions::new("m").with_vocabulary(Vocabulary::open()),
        opts(),
    )
    .unwrap();
    let ids = idx.feature_ids(["kept"]).unwrap();
    idx.add(&Document {
        id: "a".into(),
        vector: vec![(ids[0], 1.0)],
        ..Default::default()
    })
    .unwrap();
    let ids = idx.feature_ids(["fresh", "kept"]).unwrap();
    assert_eq!(ids, vec![1, 0]);
    let bad = Document {
        id: "b".into(),
        vector: vec![(ids[0], f32::NAN)],
        ..Default::default()
    };
    assert!(idx.add(&bad).is_err());
    assert_eq!(idx.feature_id("fresh"), None);
    assert_eq!(idx.info().vocab_size, 1);
    // A bulk load that fails validation drops its names too.
    let ids = idx.feature_ids(["bulk-name"]).unwrap();
    assert!(idx
        .bulk_upsert(&[Document {
            id: "c".into(),
            vector: vec![(ids[0], -1.0)],
            ..Default::default()
        }])
        .is_err());
    assert_eq!(idx.feature_id("bulk-name"), None);
    // Bad names are refused whole.
    let long = "x".repeat(MAX_FEATURE_NAME_BYTES + 1);
    let e = idx.feature_ids(["ok", ""]).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    assert!(idx.feature_ids([long.as_str()]).is_err());
    assert_eq!(idx.feature_id("ok"), None);
    drop(idx);
    let idx = Index::open(dir.path(), opts()).unwrap();
    assert_eq!(idx.info().vocab_size, 1);
    assert_eq!(idx.feature_name(0).as_deref(), Some("kept"));
}

#[test]
fn fixed_vocabularies_refuse_names_and_take_large_model_vocabularies() {
    let dir = tempfile::tempdir().unwrap();
    let mut idx = Index::create(
        dir.path(),
        &CreateOptions::new("m").with_vocabulary(Vocabulary::fixed(250_002)),
        opts(),
    )
    .unwrap();
    let e = idx.feature_ids(["a"]).unwrap_err();
    assert!(e.to_string().contains("fixed vocabulary"), "{e}");
    idx.add(&Document {
        id: "a".into(),
        vector: vec![(70_000, 1.0), (250_001, 2.0)],
        ..Default::default()
    })
    .unwrap();
    idx.commit().unwrap();
    let s = idx.searcher();
    assert!(!s.has_open_vocabulary());
    assert!(s.resolve_features([("a", 1.0)]).is_err());
    let hits = s
        .search(Query::Neural(&[(250_001, 1.0)]), &SearchRequest::new(3))
        .unwrap();
    assert_eq!(hits[0].score, 2.0);
    assert!(s
        .search(Query::Neural(&[(250_002, 1.0)]), &SearchRequest::new(3))
        .is_err());
    let e = Index::create(
        tempfile::tempdir().unwrap().path(),
        &CreateOptions::new("m").with_vocabulary(Vocabulary::fixed(0)),
        opts(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("open vocabulary"), "{e}");
    let e = Index::create(
        tempfile::tempdir().unwrap().path(),
        &CreateOptions::new("m").with_vocabulary(Vocabulary::Open {
            seed: vec!["a".into(), "a".into()],
        }),
        opts(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
}
