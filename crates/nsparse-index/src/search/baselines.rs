//! Exact algorithms kept as benchmark baselines: plain term-at-a-time,
//! term-at-a-time MaxScore, and BMP-style block-max.

use crate::quantize::dequantize;
use crate::search::request::DocFilter;
use crate::search::snapshot::SnapSeg;
use crate::search::tiled::{Scratch, SCRATCH};
use crate::search::top_k::{Cand, TopK};
use crate::search::Searcher;
use crate::segment::DOC_BLOCK_SHIFT;

impl Searcher {
    /// Term-at-a-time MaxScore: accumulate terms by decreasing upper bound
    /// (`query weight × segment max weight`) until the bounds of the remaining
    /// terms cannot lift an untouched document past a lower bound of the k-th
    /// score; then only touched documents that can still qualify are rescored
    /// exactly (canonical token order, so scores equal brute force bit for bit).
    pub(crate) fn run_maxscore(
        &self,
        q: &[(u32, f32)],
        k: usize,
        filter: Option<DocFilter<'_>>,
    ) -> Vec<Cand> {
        let mut top = TopK::new(k);
        if k == 0 || q.is_empty() {
            return Vec::new();
        }
        // Float slack for comparing sums taken in different orders.
        const SLACK: f32 = 1.0 - 1e-5;
        SCRATCH.with(|sc| {
            let sc = &mut *sc.borrow_mut();
            for (si, ss) in self.snap.segs.iter().enumerate() {
                let seg = &*ss.seg;
                let mut order: Vec<(f32, u32, f32)> = q
                    .iter()
                    .map(|&(t, w)| (w * seg.term_max(t), t, w))
                    .collect();
                order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                let mut rest: f32 = order.iter().map(|o| o.0).sum();
                let acc = &mut sc.zacc;
                if acc.len() < seg.n_docs() as usize {
                    acc.resize(seg.n_docs() as usize, 0.0);
                }
                let touched = &mut sc.touched;
                touched.clear();
                let mut lower = top.theta();
                let mut max_acc = 0f32;
                for &(ub, t, w) in &order {
                    let df = seg.post().df(t);
                    // The k-th best live partial score is a lower bound of the k-th
                    // final score. Computing it costs O(touched): only try when it
                    // could exceed `rest` and would let us skip a long list.
                    if touched.len() >= k
                        && rest < max_acc
                        && df * 4 > touched.len()
                        && touched.len() <= 1 << 16
                    {
                        if let Some(kth) = kth_partial(touched, acc, ss, filter, k, &mut sc.tmp) {
                            lower = lower.max(kth);
                        }
                    }
                    if rest < lower * SLACK {
                        break;
                    }
                    rest -= ub;
                    for (d, qw) in seg.post().iter(t) {
                        let a = &mut acc[d as usize];
                        if *a == 0.0 {
                            touched.push(d);
                        }
                        *a += w * dequantize(qw);
                        max_acc = max_acc.max(*a);
                    }
                }
                let rest = rest.max(0.0) / SLACK;
                // Final lower bound over all touched live documents, then rescore
                // only the few that can reach it.
                if let Some(kth) = kth_partial(touched, acc, ss, filter, k, &mut sc.tmp) {
                    lower = lower.max(kth);
                }
                let cut = lower * SLACK;
                for &d in touched.iter() {
                    let a = std::mem::take(&mut acc[d as usize]);
                    if a + rest >= cut
                        && (!top.full() || a + rest >= top.theta() * SLACK)
                        && ss.accepts(d, filter)
                    {
                        let s = self.dot(q, si as u32, d);
                        if s > 0.0 {
                            top.push(Cand {
                                score: s,
                                seg: si as u32,
                                doc: d,
                            });
                        }
                    }
                }
            }
        });
        top.into_sorted()
    }

    pub(crate) fn run_taat(
        &self,
        q: &[(u32, f32)],
        k: usize,
        filter: Option<DocFilter<'_>>,
    ) -> Vec<Cand> {
        let mut top = TopK::new(k);
        SCRATCH.with(|sc| {
            let acc = &mut sc.borrow_mut().acc;
            for (si, ss) in self.snap.segs.iter().enumerate() {
                let seg = &*ss.seg;
                acc.clear();
                acc.resize(seg.n_docs() as usize, 0.0);
                for &(t, w) in q {
                    for i in seg.post().runs(t) {
                        let (base, r) = seg.post().run(i);
                        let acc = &mut acc[base as usize..];
                        for &x in &seg.post().packed()[r] {
                            acc[crate::postings::offset(x) as usize] +=
                                w * crate::postings::weight(x);
                        }
                    }
                }
                top.push_accumulated(si as u32, acc, |d| ss.accepts(d, filter));
            }
        });
        top.into_sorted()
    }

    /// Block-max pruning: upper-bound every 64-doc block from `ub_q`, visit
    /// blocks by decreasing bound, stop when a bound cannot beat
    /// `heap_factor × k-th score`. Visited blocks are scored with all of `q`.
    pub(crate) fn run_bmp(
        &self,
        q: &[(u32, f32)],
        ub_q: &[(u32, f32)],
        heap_factor: f32,
        k: usize,
        filter: Option<DocFilter<'_>>,
    ) -> Vec<Cand> {
        let mut top = TopK::new(k);
        if k == 0 || q.is_empty() {
            return Vec::new();
        }
        SCRATCH.with(|sc| {
            let sc = &mut *sc.borrow_mut();
            for (si, ss) in self.snap.segs.iter().enumerate() {
                bmp_segment(ss, si as u32, q, ub_q, heap_factor, &mut top, sc, filter);
            }
        });
        top.into_sorted()
    }
}

const BLOCK_DOCS: usize = 1 << DOC_BLOCK_SHIFT;

#[allow(clippy::too_many_arguments)]
fn bmp_segment(
    ss: &SnapSeg,
    si: u32,
    q: &[(u32, f32)],
    ub_q: &[(u32, f32)],
    hf: f32,
    top: &mut TopK,
    sc: &mut Scratch,
    filter: Option<DocFilter<'_>>,
) {
    let seg = &*ss.seg;
    let bm = seg.block_max();
    let nb = (seg.n_docs() as usize).div_ceil(BLOCK_DOCS);
    if nb == 0 {
        return;
    }

    let ub = &mut sc.ub;
    ub.clear();
    ub.resize(nb, 0.0);
    for &(t, w) in ub_q {
        let r = crate::postings::span(&bm.start, t);
        for (&b, &m) in bm.block[r.clone()].iter().zip(&bm.max[r]) {
            ub[b as usize] += w * m;
        }
    }

    let blocks = &mut sc.blocks;
    blocks.clear();
    let cut = top.theta() * hf;
    blocks.extend(
        ub.iter()
            .enumerate()
            .filter(|(_, &u)| u > 0.0 && u > cut)
            .map(|(b, &u)| (u, b as u32)),
    );
    let desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    // Score the most promising blocks first to raise the threshold, then
    // sort only the blocks that can still beat it.
    const HEAD: usize = 32;
    let mut start = 0;
    if blocks.len() > HEAD * 4 {
        blocks.select_nth_unstable_by(HEAD, desc);
        blocks[..HEAD].sort_unstable_by(desc);
        for &(u, b) in blocks[..HEAD].iter() {
            if top.full() && u <= top.theta() * hf {
                break;
            }
            score_block(ss, si, q, b, top, filter);
        }
        start = HEAD;
    }

    let cut = top.theta() * hf;
    let mut rest: Vec<(f32, u32)> = blocks[start..]
        .iter()
        .copied()
        .filter(|&(u, _)| u > cut)
        .collect();
    rest.sort_unstable_by(desc);
    for (u, b) in rest {
        if top.full() && u <= top.theta() * hf {
            break;
        }
        score_block(ss, si, q, b, top, filter);
    }
}

#[inline]
fn score_block(
    ss: &SnapSeg,
    si: u32,
    q: &[(u32, f32)],
    b: u32,
    top: &mut TopK,
    filter: Option<DocFilter<'_>>,
) {
    let seg = &*ss.seg;
    let bm = seg.block_max();
    let base = b << DOC_BLOCK_SHIFT;
    let mut acc = [0f32; BLOCK_DOCS];
    let mut mask = 0u64;
    for &(t, w) in q {
        let std::ops::Range { start: s, end: e } = crate::postings::span(&bm.start, t);
        let Ok(i) = bm.block[s..e].binary_search(&b) else {
            continue;
        };
        let ei = s + i;
        // Blocks lie inside postings tiles: the offset's low bits are the
        // position in the block.
        for &x in &seg.post().packed()[bm.pos[ei]..bm.pos[ei + 1]] {
            let l = crate::postings::offset(x) as usize & (BLOCK_DOCS - 1);
            acc[l] += w * crate::postings::weight(x);
            mask |= 1 << l;
        }
    }

    while mask != 0 {
        let l = mask.trailing_zeros();
        mask &= mask - 1;
        let d = base + l;
        let s = acc[l as usize];
        if s > 0.0 && (!top.full() || s >= top.theta()) && ss.accepts(d, filter) {
            top.push(Cand {
                score: s,
                seg: si,
                doc: d,
            });
        }
    }
}

/// The k-th largest partial score among the `touched` documents `filter` accepts (`None`
/// when fewer than `k` are), a lower bound of the k-th final score; `tmp` is scratch.
fn kth_partial(
    touched: &[u32],
    acc: &[f32],
    ss: &SnapSeg,
    filter: Option<DocFilter<'_>>,
    k: usize,
    tmp: &mut Vec<f32>,
) -> Option<f32> {
    tmp.clear();
    tmp.extend(
        touched
            .iter()
            .filter(|&&d| ss.accepts(d, filter))
            .map(|&d| acc[d as usize]),
    );
    if tmp.len() < k {
        return None;
    }
    let (_, kth, _) = tmp.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    Some(*kth)
}
