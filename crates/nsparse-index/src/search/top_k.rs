//! The top-k heap: candidates ordered by score, then segment and document.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Cand {
    pub(super) score: f32,
    pub(super) seg: u32,
    pub(super) doc: u32,
}

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}

impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Cand {
    /// Greater = better: higher score, then lower (segment, doc).
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| (o.seg, o.doc).cmp(&(self.seg, self.doc)))
    }
}

pub(crate) struct TopK {
    pub(super) k: usize,
    heap: BinaryHeap<Reverse<Cand>>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }

    #[inline]
    pub(crate) fn full(&self) -> bool {
        self.heap.len() >= self.k
    }

    /// Score a candidate must exceed to matter (−∞ while not full).
    #[inline]
    pub(crate) fn theta(&self) -> f32 {
        if self.full() {
            self.heap.peek().map_or(f32::NEG_INFINITY, |c| c.0.score)
        } else {
            f32::NEG_INFINITY
        }
    }

    /// The score a candidate must be able to reach: θ × `heap_factor`
    /// (−∞ while not full).
    #[inline]
    pub(crate) fn bar(&self, heap_factor: f32) -> f32 {
        if self.full() {
            self.theta() * heap_factor
        } else {
            f32::NEG_INFINITY
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, c: Cand) {
        if self.k == 0 {
            return;
        }
        if !self.full() {
            self.heap.push(Reverse(c));
        } else if let Some(mut top) = self.heap.peek_mut() {
            if c > top.0 {
                *top = Reverse(c);
            }
        }
    }

    /// Offers the positive scores of segment `seg`'s dense accumulator (`acc[d]` is document
    /// `d`'s score) to the heap, in document order; `accepts` admits a document.
    #[inline]
    pub(crate) fn push_accumulated(
        &mut self,
        seg: u32,
        acc: &[f32],
        accepts: impl Fn(u32) -> bool,
    ) {
        let mut theta = self.theta();
        for (d, &s) in acc.iter().enumerate() {
            if s > 0.0 && s >= theta && accepts(d as u32) {
                self.push(Cand {
                    score: s,
                    seg,
                    doc: d as u32,
                });
                theta = self.theta();
            }
        }
    }

    pub(crate) fn into_sorted(self) -> Vec<Cand> {
        let mut v: Vec<Cand> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    }
}
