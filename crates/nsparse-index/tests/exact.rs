//! Exact top-k equals brute force over the quantized vectors (same ids, same
//! order, same scores; ids may differ only among exactly tied scores).

use std::collections::HashMap;

use nsparse_index::*;
use nsparse_testkit::synth;
use proptest::prelude::*;

/// Independent reference: dot product over quantized weights, summed in token order.
fn reference(
    docs: &HashMap<String, Vec<(u32, f32)>>,
    q: &[(u32, f32)],
    k: usize,
) -> Vec<(String, f32)> {
    let mut qs: Vec<(u32, f32)> = q.to_vec();
    qs.sort_by_key(|p| p.0);
    let mut out: Vec<(String, f32)> = docs
        .iter()
        .map(|(id, v)| {
            let mut s = 0f32;
            for &(t, w) in &qs {
                if let Some(&(_, dw)) = v.iter().find(|p| p.0 == t) {
                    let qd = quantize(dw);
                    if qd != 0 && w > 0.0 {
                        s += w * dequantize(qd);
                    }
                }
            }
            (id.clone(), s)
        })
        .filter(|p| p.1 > 0.0)
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    let _ = k;
    out
}

/// `all` is the full reference ranking; ties are judged against all of it.
fn check(got: &[Hit], all: &[(String, f32)], k: usize, what: &str) {
    let want = &all[..k.min(all.len())];
    assert_eq!(got.len(), want.len(), "{what}: result count");
    for (i, (h, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(h.score, w.1, "{what}: score at rank {i}");
        let tied = all.iter().filter(|x| x.1 == w.1).count() > 1;
        if !tied {
            assert_eq!(h.id, w.0, "{what}: id at rank {i}");
        }
    }
    // Ids may only swap among equal scores: compare per-score multisets except the last tie group.
    let last = want.last().map(|w| w.1);
    let mut a: Vec<_> = got
        .iter()
        .filter(|h| Some(h.score) != last)
        .map(|h| h.id.clone())
        .collect();
    let mut b: Vec<_> = want
        .iter()
        .filter(|w| Some(w.1) != last)
        .map(|w| w.0.clone())
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "{what}: id sets");
}

fn modes(n_query_tokens: usize) -> Vec<(&'static str, SearchMode)> {
    vec![
        ("exact", SearchMode::Exact),
        ("block-max", SearchMode::ExactBlockMax),
        ("maxscore", SearchMode::ExactMaxScore),
        ("brute", SearchMode::BruteForce),
        (
            "approx-exact-params",
            SearchMode::Approximate {
                top_n: n_query_tokens.max(1),
                heap_factor: 1.0,
            },
        ),
        (
            "two-phase-no-prune",
            SearchMode::TwoPhase {
                prune_ratio: 0.0,
                expansion_rate: 5.0,
                max_window_size: 10_000,
            },
        ),
    ]
}

fn run_case(
    docs: Vec<Vec<(u32, f32)>>,
    deletes: Vec<usize>,
    queries: Vec<Vec<(u32, f32)>>,
    k: usize,
    commit_every: usize,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut idx = Index::create(
        dir.path(),
        &CreateOptions::new("m"),
        WriterOptions {
            flush_docs: 1_000_000,
            merge_factor: 4,
            ..Default::default()
        },
    )
    .unwrap();
    let mut live: HashMap<String, Vec<(u32, f32)>> = HashMap::new();
    for (i, chunk) in docs.chunks(commit_every.max(1)).enumerate() {
        let batch: Vec<Document> = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| Document {
                id: format!("d{}", i * commit_every + j),
                vector: v.clone(),
                ..Default::default()
            })
            .collect();
        idx.upsert_batch(&batch).unwrap();
        for d in batch {
            live.insert(d.id, d.vector);
        }
        idx.commit().unwrap();
    }
    for d in deletes {
        let id = format!("d{}", d % docs.len().max(1));
        idx.delete(&id).unwrap();
        live.remove(&id);
    }
    // Re-insert one doc so the uncommitted buffer segment is exercised too.
    if let Some(v) = docs.first() {
        idx.upsert(&Document {
            id: "d0".into(),
            vector: v.clone(),
            ..Default::default()
        })
        .unwrap();
        live.insert("d0".into(), v.clone());
    }
    let s = idx.searcher();
    // Filters: a selective one (about 1 in 7 documents) and a broad one.
    let accept_sparse = |id: &str| id.bytes().map(|b| b as u32).sum::<u32>() % 7 == 0;
    let accept_broad = |id: &str| !id.ends_with('3');
    for q in &queries {
        let want = reference(&live, q, k);
        for (name, mode) in modes(q.len()) {
            let got = s
                .search(Query::Neural(q), &SearchRequest::new(k).mode(mode))
                .unwrap();
            check(&got, &want, k, name);
            for (fname, f) in [
                ("sparse filter", &accept_sparse as DocFilter<'_>),
                ("broad filter", &accept_broad),
            ] {
                let want_f: Vec<(String, f32)> = want.iter().filter(|p| f(&p.0)).cloned().collect();
                let got = s
                    .search(
                        Query::Neural(q),
                        &SearchRequest::new(k).mode(mode).filter(f),
                    )
                    .unwrap();
                check(&got, &want_f, k, &format!("{name}, {fname}"));
            }
        }
    }
}

fn vec_strategy(vocab: u32, max_nnz: usize) -> impl Strategy<Value = Vec<(u32, f32)>> {
    prop::collection::btree_map(
        0..vocab,
        prop_oneof![0.0f32..3.0, Just(1.0f32), 1e-6f32..1e-3],
        0..max_nnz,
    )
    .prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn exact_equals_brute_force_random(
        docs in prop::collection::vec(vec_strategy(40, 12), 1..300),
        deletes in prop::collection::vec(0usize..300, 0..20),
        queries in prop::collection::vec(vec_strategy(40, 8), 1..6),
        k in 1usize..30,
        commit_every in 20usize..200,
    ) {
        run_case(docs, deletes, queries, k, commit_every);
    }
}

#[test]
fn exact_equals_brute_force_real_like() {
    let mut g = synth::Synth::new(synth::SynthParams::default(), 42);
    let docs: Vec<_> = (0..3000).map(|_| g.doc()).collect();
    let queries: Vec<_> = (0..40).map(|_| g.query()).collect();
    let deletes: Vec<usize> = (0..100).map(|i| i * 29).collect();
    run_case(docs.clone(), deletes.clone(), queries.clone(), 10, 1100);
    run_case(docs, deletes, queries, 100, 1100);
}
