//! Building [`Postings`] token by token (the legacy decoders' output).

use crate::postings::{pack, Postings, POSTINGS_TILE_SHIFT};

/// Appends postings token by token, docs ascending, keeping the run table.
#[derive(Debug)]
pub(crate) struct PostingsBuilder {
    post: Postings,
    /// Token whose list is being appended (`None` before the first).
    token: Option<usize>,
    /// Tile of the last appended posting of the current token.
    tile: Option<u32>,
}

impl PostingsBuilder {
    /// An empty builder for a vocabulary of `vocab` tokens, with room for `postings`.
    pub(crate) fn new(vocab: usize, postings: usize) -> PostingsBuilder {
        let mut packed = Vec::with_capacity(postings);
        crate::memory::populate(packed.spare_capacity_mut());
        PostingsBuilder {
            post: Postings {
                term_start: Vec::with_capacity(vocab + 1),
                run_start: Vec::with_capacity(vocab + 1),
                packed,
                ..Postings::default()
            },
            token: None,
            tile: None,
        }
    }

    /// Start token `t`'s list (tokens strictly ascending, below the vocabulary).
    pub(crate) fn start_token(&mut self, t: usize) {
        let next = self.token.map_or(0, |x| x + 1);
        debug_assert!(t >= next);
        for _ in next..=t {
            self.post.term_start.push(self.post.packed.len());
            self.post.run_start.push(self.post.run_tile.len());
        }
        self.token = Some(t);
        self.tile = None;
    }

    /// Append a posting of the current token (docs ascending within it).
    #[inline]
    pub(crate) fn push(&mut self, doc: u32, w: u16) {
        let tile = doc >> POSTINGS_TILE_SHIFT;
        if self.tile != Some(tile) {
            self.tile = Some(tile);
            self.post.run_tile.push(tile);
            self.post.run_pos.push(self.post.packed.len());
        }
        self.post.packed.push(pack(doc, w));
    }

    /// Number of postings appended so far.
    pub(crate) fn len(&self) -> usize {
        self.post.packed.len()
    }

    /// The postings of a vocabulary of `vocab` tokens.
    pub(crate) fn finish(mut self, vocab: usize) -> Postings {
        let next = self.token.map_or(0, |x| x + 1);
        for _ in next..=vocab {
            self.post.term_start.push(self.post.packed.len());
            self.post.run_start.push(self.post.run_tile.len());
        }
        self.post.run_pos.push(self.post.packed.len());
        self.post
    }
}
