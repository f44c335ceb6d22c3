use std::path::PathBuf;
use std::sync::Arc;

use crate::quantize::{dequantize, quantize};
use crate::schema::Bm25Params;
use crate::search::request::DocFilter;
use crate::search::snapshot::{SnapInfo, SnapSeg, Snapshot};
use crate::search::tiled::{gallop_below, tiled_segment, Scratch, TileParams, BOUND_COLUMNS_MAX_K};
use crate::search::top_k::{Cand, TopK};
use crate::search::Searcher;
use crate::segment::bound_columns::DenseColumns;
use crate::segment::deletes::Bitset;
use crate::segment::{DocRecord, Segment};
use nsparse_testkit::synth::{Synth, SynthParams};

fn snapshot(segs: Vec<Vec<Vec<(u32, f32)>>>, deleted_every: u32) -> Searcher {
    let mut out = Vec::new();
    for (si, docs) in segs.into_iter().enumerate() {
        let recs: Vec<DocRecord> = docs
            .into_iter()
            .enumerate()
            .map(|(i, v)| DocRecord {
                id: format!("s{si}-d{i}"),
                vec: v
                    .iter()
                    .map(|&(t, w)| (t, quantize(w)))
                    .filter(|p| p.1 != 0)
                    .collect(),
                tf: Vec::new(),
                len: 0,
                source: Vec::new(),
            })
            .collect();
        let seg = Segment::build(&recs[..], 30_522);
        let mut del = Bitset::new(seg.n_docs());
        for d in (0..seg.n_docs()).step_by(deleted_every as usize) {
            del.set(d);
        }
        out.push(SnapSeg {
            seg: Arc::new(seg),
            del: Some(Arc::new(del)),
            path: PathBuf::from(format!("seg{si}")),
        });
    }

    Searcher::new(Snapshot {
        segs: out,
        info: Arc::new(SnapInfo {
            model: "m".into(),
            metadata: serde_json::Value::Null,
            vocab: 30_522,
            features: None,
            bm25: Bm25Params::default(),
            dense_max_bytes: u64::MAX,
        }),
    })
}

fn tiled(
    s: &Searcher,
    q: &[(u32, f32)],
    k: usize,
    shift: u32,
    f: Option<DocFilter<'_>>,
) -> Vec<Cand> {
    let gen = vec![true; q.len()];
    let mut top = TopK::new(k);
    let mut sc = Scratch::default();
    for (si, ss) in s.snap.segs.iter().enumerate() {
        let p = TileParams {
            q,
            gen: &gen,
            heap_factor: 1.0,
            filter: f,
            tile_shift: shift,
            bound_columns: k <= BOUND_COLUMNS_MAX_K,
            dense_max_bytes: u64::MAX,
        };
        tiled_segment(ss, si as u32, &p, &mut top, &mut sc);
    }

    top.into_sorted()
}

/// Results as (score bits, segment, doc): equal keys mean bit-identical results.
fn key(c: &[Cand]) -> Vec<(u32, u32, u32)> {
    c.iter()
        .map(|c| (c.score.to_bits(), c.seg, c.doc))
        .collect()
}

/// Tiled search at every tile width in `shifts` and every k in `ks`, with
/// and without the filter, equals brute force bit for bit.
fn assert_tiled_equals_brute(
    s: &Searcher,
    q: &[(u32, f32)],
    ks: &[usize],
    shifts: &[u32],
    accept: DocFilter<'_>,
) {
    for &k in ks {
        let want = key(&s.run_brute(q, k, None));
        let want_f = key(&s.run_brute(q, k, Some(accept)));
        for &shift in shifts {
            assert_eq!(
                key(&tiled(s, q, k, shift, None)),
                want,
                "shift {shift} k {k}"
            );
            assert_eq!(
                key(&tiled(s, q, k, shift, Some(accept))),
                want_f,
                "filtered, shift {shift} k {k}"
            );
        }
    }
}

/// The test corpora are far smaller than a production tile, so small
/// tiles make the pruning (non-essential terms, candidates, skipped
/// tiles) run across many tiles. Results must equal brute force exactly:
/// the top-k under the (score, position) order is unique.
#[test]
fn tiled_maxscore_equals_brute_force_across_many_tiles() {
    let mut g = Synth::new(SynthParams::default(), 11);
    let segs: Vec<Vec<Vec<(u32, f32)>>> = [1500usize, 900, 40]
        .iter()
        .map(|&n| (0..n).map(|_| g.doc()).collect())
        .collect();
    let s = snapshot(segs, 13);
    let accept = |id: &str| !id.len().is_multiple_of(3);
    for _ in 0..30 {
        let q = s.canon(&g.query()).unwrap();
        assert_tiled_equals_brute(&s, &q, &[1, 10, 50], &[3, 6, 9, 15], &accept);
    }
}

/// A segment of several postings tiles: search tiles of every width up
/// to a postings tile find each term's run through the tile directory
/// (with dense columns for the frequent tokens), and every exact mode
/// equals brute force bit for bit.
#[test]
fn search_across_postings_tiles_equals_brute_force() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    // Skewed token ids: small ids are frequent (dense columns), large ones rare.
    let token = |rng: &mut rand::rngs::StdRng, p: i32| {
        let u: f64 = rng.random();
        (u.powi(p) * 3000.0) as u32
    };

    let n = 2 * (1usize << crate::postings::POSTINGS_TILE_SHIFT) + 5000;
    let docs: Vec<Vec<(u32, f32)>> = (0..n)
        .map(|_| {
            let mut v: Vec<(u32, f32)> = (0..12)
                .map(|_| (token(&mut rng, 4), rng.random_range(0.05f32..3.0)))
                .collect();
            v.sort_by_key(|p| p.0);
            v.dedup_by_key(|p| p.0);
            v
        })
        .collect();
    let s = snapshot(vec![docs], 11);
    assert!(s.snap.segs[0].seg.dense(u64::MAX).len() > 3);
    let accept = |id: &str| !id.ends_with('7');
    for _ in 0..5 {
        let q: Vec<(u32, f32)> = (0..10)
            .map(|_| (token(&mut rng, 2), rng.random_range(0.1f32..2.0)))
            .collect();
        let q = s.canon(&q).unwrap();
        assert_tiled_equals_brute(&s, &q, &[10], &[12, 15, 16], &accept);
        let want = key(&s.run_brute(&q, 10, None));
        assert_eq!(key(&s.run_taat(&q, 10, None)), want);
        assert_eq!(key(&s.run_maxscore(&q, 10, None)), want);
        assert_eq!(key(&s.run_bmp(&q, &q, 1.0, 10, None)), want);
    }
}

#[test]
fn gallop_below_matches_partition_point() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for len in [0usize, 1, 2, 3, 5, 64, 1000] {
        let mut v: Vec<u32> = (0..len).map(|_| rng.random_range(0..5000)).collect();
        v.sort_unstable();
        for bound in [0u32, 1, 17, 2500, 4999, 5000, u32::MAX] {
            assert_eq!(gallop_below(&v, bound), v.partition_point(|&d| d < bound));
        }
    }
}

/// A segment large enough for dense columns: frequent tokens are scored
/// from their columns, the rest from postings, and the scores still equal
/// brute force bit for bit (also with deletions and a filter).
#[test]
fn dense_columns_keep_tiled_search_exact() {
    let mut g = Synth::new(SynthParams::default(), 5);
    let n = crate::segment::bound_columns::DENSE_MIN_DOCS as usize + 1000;
    let s = snapshot(vec![(0..n).map(|_| g.doc()).collect()], 7);
    let cols = s.snap.segs[0].seg.dense(u64::MAX);
    assert!(
        cols.len() > 20,
        "expected dense columns, got {}",
        cols.len()
    );
    let accept = |id: &str| !id.ends_with('3');
    // A memory cap keeps the most frequent tokens' columns, and search
    // stays exact with the rest scored from postings.
    {
        let seg = &s.snap.segs[0].seg;
        let n = seg.n_docs() as u64;
        // Planned twice, the columns are the same.
        let again = DenseColumns::plan(seg, u64::MAX);
        assert_eq!(again.len(), cols.len());
        for t in 0..30_522u32 {
            assert_eq!(
                again.column(seg.post(), t),
                cols.column(seg.post(), t),
                "token {t}"
            );
            // A code bounds the weight from above and is 0 only where
            // the token is absent; the block positions find the exact
            // weight.
            if let Some(col) = cols.column(seg.post(), t) {
                for d in 0..seg.n_docs() {
                    let exact = seg.weight(t, d);
                    assert_eq!(col.exact(d), exact, "token {t} doc {d}");
                    let w = exact.map_or(0.0, dequantize);
                    assert_eq!(col.codes[d as usize] == 0, exact.is_none());
                    assert!(
                        col.bound(d) >= w,
                        "token {t} doc {d}: {} < {w}",
                        col.bound(d)
                    );
                    assert!(col.bound(d) - w <= col.step * 1.001, "token {t} doc {d}");
                }
            }
        }
        let capped = DenseColumns::plan(seg, 5 * DenseColumns::column_bytes(n as usize) + 1);
        assert_eq!(capped.len(), 5);
        let df = |t: u32| seg.post().df(t);
        let min_kept = (0..30_522u32)
            .filter(|&t| capped.has(t))
            .map(df)
            .min()
            .unwrap();
        let max_dropped = (0..30_522u32)
            .filter(|&t| cols.has(t) && !capped.has(t))
            .map(df)
            .max()
            .unwrap();
        assert!(min_kept >= max_dropped);
        assert_eq!(DenseColumns::plan(seg, 0).len(), 0);
        let mut tiny = Synth::new(SynthParams::default(), 5);
        let s2 = snapshot(vec![(0..n).map(|_| tiny.doc()).collect()], 7);
        assert!(s2.snap.segs[0]
            .seg
            .dense_cell()
            .set(DenseColumns::plan(
                &s2.snap.segs[0].seg,
                5 * DenseColumns::column_bytes(n as usize),
            ))
            .is_ok());
        for _ in 0..6 {
            let q = s2.canon(&g.query()).unwrap();
            assert_tiled_equals_brute(&s2, &q, &[10], &[15], &accept);
        }
    }

    let mut dense_terms = 0;
    for _ in 0..12 {
        let q = s.canon(&g.query()).unwrap();
        dense_terms += q.iter().filter(|p| cols.has(p.0)).count();
        assert_tiled_equals_brute(&s, &q, &[1, 10, 100, 300, 600], &[9, 15], &accept);
    }

    assert!(
        dense_terms > 12,
        "queries used only {dense_terms} dense tokens"
    );

    // Approximate mode (candidates completed from dense columns and
    // postings): every returned score is the document's exact score, and
    // with all tokens generating candidates it is the exact top-k.
    for _ in 0..8 {
        let q = s.canon(&g.query()).unwrap();
        let exact = key(&s.run_brute(&q, 10, None));
        assert_eq!(key(&s.run_tiled(&q, 10, None, 1.0, q.len())), exact);
        for (top_n, hf) in [(3usize, 1.0f32), (6, 0.9), (10, 0.8)] {
            let got = s.run_tiled(&q, 10, None, hf, top_n);
            assert_eq!(got.len(), 10.min(exact.len()));
            for c in &got {
                assert_eq!(c.score.to_bits(), s.dot(&q, c.seg, c.doc).to_bits());
            }
            assert!(got.windows(2).all(|w| w[0].score >= w[1].score));
        }
    }
}
