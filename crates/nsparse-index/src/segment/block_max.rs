//! Per-token maxima over 64-document blocks (built on first use).

use crate::segment::{Segment, DOC_BLOCK_SHIFT};

/// Per token, one entry per block of 2^`DOC_BLOCK_SHIFT` doc ids the token occurs in.
#[derive(Debug)]
pub(crate) struct BlockMax {
    /// Token `t`'s entries are `start[t]..start[t + 1]`.
    pub start: Vec<usize>,
    /// Block number.
    pub block: Vec<u32>,
    /// Largest dequantized weight of the token in the block.
    pub max: Vec<f32>,
    /// Where the block's postings start in `Postings::packed`, plus a final
    /// entry for the end: entry `i` spans `pos[i]..pos[i + 1]` (the blocks of
    /// all tokens cover the packed postings in order).
    pub pos: Vec<usize>,
}

impl Segment {
    /// The block-max table (built on first call).
    pub(crate) fn block_max(&self) -> &BlockMax {
        self.block_max.get_or_init(|| {
            let v = self.vocab as usize;
            let mut bm = BlockMax {
                start: Vec::with_capacity(v + 1),
                block: Vec::new(),
                max: Vec::new(),
                pos: Vec::new(),
            };
            for t in 0..v as u32 {
                bm.start.push(bm.block.len());
                let mut last = u32::MAX;
                for i in self.post().runs(t) {
                    let (base, r) = self.post().run(i);
                    for (p, &x) in self.post().packed()[r.clone()].iter().enumerate() {
                        // Blocks are aligned within tiles, so a block's postings are one slice.
                        let b = (base + crate::postings::offset(x)) >> DOC_BLOCK_SHIFT;
                        if b != last {
                            last = b;
                            bm.block.push(b);
                            bm.max.push(0.0f32);
                            bm.pos.push(r.start + p);
                        }
                        if let Some(m) = bm.max.last_mut() {
                            *m = m.max(crate::postings::weight(x));
                        }
                    }
                }
            }
            bm.pos.push(self.post().len());
            bm.start.push(bm.block.len());
            bm
        })
    }
}
