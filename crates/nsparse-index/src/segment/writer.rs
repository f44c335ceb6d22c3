//! Building a segment in memory or straight into its file.

use std::path::Path;

use crate::codec::varint::put_varint;
use crate::error::{Error, Result};
use crate::postings::invert::{tile_pieces, Inverter};
use crate::postings::tile_writer::write_postings;
use crate::postings::Postings;
use crate::quantize::dequantize;
use crate::segment::id_index::IdIndex;
use crate::segment::input::{Bm25Source, NeuralSource, SegmentInput};
use crate::segment::store::{compress_sources, doc_ranges, SOURCE_CHUNK};
use crate::segment::{
    Segment, SEC_BM25, SEC_IDS, SEC_META, SEC_POSTINGS, SEC_SOURCE, SEG_MAGIC, SEG_VERSION,
};
use crate::threads::{build_threads, join_part, per_range};

impl Segment {
    /// Build a segment from documents (doc ids are positions in `docs`),
    /// on up to [`build_threads`] threads.
    pub(crate) fn build<D: SegmentInput + ?Sized>(docs: &D, vocab: u32) -> Segment {
        Segment::build_on(docs, vocab, 0)
    }

    /// [`Segment::build`] on at most `threads` threads ([`build_threads`]).
    pub(crate) fn build_on<D: SegmentInput + ?Sized>(
        docs: &D,
        vocab: u32,
        threads: usize,
    ) -> Segment {
        let mut s = Segment::build_underived(docs, vocab, threads, true);
        let derived = s.derived(None);
        s.set_derived(derived);
        s
    }

    /// Build a segment straight into the file `dir/name` and return it with
    /// its neural postings left on disk: they are loaded on first use
    /// ([`Segment::postings`]).
    ///
    /// The neural postings never exist in memory as a whole here: each tile
    /// of documents is counting-sorted by token into a buffer the thread
    /// reuses and encoded into the file from there ([`TileEncoder`]). A
    /// segment's in-memory postings are 4 bytes per posting of fresh memory
    /// (1.1 GB at a million documents), and on the machines we measure fresh
    /// memory costs 0.5 to 4 s per GB to fault in, depending on the host:
    /// more than the rest of the inversion. A process that only builds
    /// (`nsparse index`, merges) never pays it; one that searches pays it
    /// once, at the first search, as [`open_reader`](crate::open_reader)
    /// always has. The `_id` index is built while the file is written (the
    /// write waits on the device and leaves the cores partly idle).
    /// `id_index`, when given, is the `_id` index of `docs` already built by
    /// the caller; `threads` limits the threads ([`build_threads`]; 0: every
    /// core).
    pub(crate) fn build_and_write<D: SegmentInput + ?Sized>(
        docs: &D,
        vocab: u32,
        dir: &Path,
        name: &str,
        id_index: Option<IdIndex>,
        threads: usize,
    ) -> Result<Segment> {
        let t0 = std::time::Instant::now();
        let mut s = Segment::build_underived(docs, vocab, threads, false);
        let tiles = tile_pieces(0..docs.n_docs());
        let workers = build_threads(docs.n_docs(), threads);
        let neural = NeuralSource(docs);
        s.n_post = (0..docs.n_docs()).map(|i| docs.n_postings(i)).sum();
        let prepared = t0.elapsed();
        let (index, written) = std::thread::scope(|sc| {
            let seg = &s;
            let index = sc.spawn(move || id_index.map_or_else(|| IdIndex::build(&seg.ids), Ok));
            let written = seg.write_file(dir, name, |out| {
                let (max_bits, total) =
                    write_postings(out, &tiles, &neural, workers, vocab as usize)?;
                // The metadata section, written first, states the total.
                if total != seg.n_post {
                    return Err(Error::invalid(
                        "segment build",
                        format!(
                            "{total} postings sorted, {} counted (a bug in nsparse-index)",
                            seg.n_post
                        ),
                    ));
                }
                Ok(max_bits)
            });
            (join_part(index), written)
        });
        let max_bits = written?;
        let term_max = max_bits
            .into_iter()
            .map(|w| if w == 0 { 0.0 } else { dequantize(w) })
            .collect();
        s.set_derived(index.map(|i| (i, term_max)));
        s.file = Some(dir.join(name));
        tracing::debug!(
            prepare_ms = prepared.as_millis() as u64,
            write_ms = (t0.elapsed() - prepared).as_millis() as u64,
            "built and wrote segment (postings tile by tile, _id index alongside)"
        );
        Ok(s)
    }

    /// Install [`Segment::derived`]'s result.
    ///
    /// # Panics
    /// On a repeated `_id`: every caller deduplicates `_id`s before building.
    pub(crate) fn set_derived(&mut self, derived: std::result::Result<(IdIndex, Vec<f32>), usize>) {
        if let Err(pos) = self.install_derived(derived) {
            panic!("segment input repeats the _id {:?}", self.ids[pos]);
        }
    }

    /// Install [`Segment::derived`]'s result, or pass its error on.
    pub(crate) fn install_derived(
        &mut self,
        derived: std::result::Result<(IdIndex, Vec<f32>), usize>,
    ) -> std::result::Result<(), usize> {
        let (index, term_max) = derived?;
        self.id_index = index;
        self.term_max = term_max;
        Ok(())
    }

    /// The postings, `_id`s and sources of a segment, without the derived
    /// structures.
    ///
    /// With `with_neural` false the neural postings are left out (unloaded,
    /// no file): [`Segment::build_and_write`] streams them into the file.
    pub(crate) fn build_underived<D: SegmentInput + ?Sized>(
        docs: &D,
        vocab: u32,
        threads: usize,
        with_neural: bool,
    ) -> Segment {
        let v = vocab as usize;
        let n = docs.n_docs();
        let ranges = doc_ranges(n, build_threads(n, threads));
        let t0 = std::time::Instant::now();
        let (neural, bm25) = (NeuralSource(docs), Bm25Source(docs));
        let post_inv = with_neural.then(|| Inverter::count(&ranges, v, &neural));
        let tf_inv = Inverter::count(&ranges, v, &bm25);
        let counted = t0.elapsed();
        let post_cell = std::sync::OnceLock::new();
        if let Some(inv) = post_inv {
            let packed = inv.invert(&neural);
            let _ = post_cell.set(inv.into_postings(packed));
        }
        let n_post = post_cell.get().map_or(0, Postings::len);
        let tf_post = tf_inv.invert(&bm25);
        let inverted = t0.elapsed();
        let doc_len: Vec<u32> = (0..n).map(|i| docs.doc_len(i)).collect();
        let total_len = doc_len.iter().map(|&l| l as u64).sum();
        let (parts, ids): (Vec<_>, Vec<Vec<String>>) = per_range(&ranges, |r| {
            let src = compress_sources(docs, r.clone());
            let ids: Vec<String> = r.map(|i| docs.id(i).to_string()).collect();
            (src, ids)
        })
        .into_iter()
        .unzip();
        let mut src_chunks = Vec::with_capacity(n.div_ceil(SOURCE_CHUNK));
        let mut src_data = Vec::with_capacity(parts.iter().map(|p| p.1.len()).sum());
        for (chunks, data) in parts {
            let base = src_data.len();
            src_chunks.extend(chunks.into_iter().map(|(o, c, u)| (base + o, c, u)));
            src_data.extend_from_slice(&data);
        }
        let ids: Vec<String> = ids.into_iter().flatten().collect();
        let seg = Segment {
            n_docs: n as u32,
            vocab,
            id_index: IdIndex::default(),
            ids,
            post: post_cell,
            post_loading: std::sync::Mutex::new(()),
            file: None,
            n_post,
            #[cfg(feature = "baselines")]
            block_max: std::sync::OnceLock::new(),
            dense: std::sync::OnceLock::new(),
            term_max: Vec::new(),
            tf_start: tf_inv.term_start,
            tf_post,
            doc_len,
            total_len,
            src_chunks,
            src_data,
        };
        tracing::debug!(
            docs = n,
            threads = ranges.len(),
            count_ms = counted.as_millis() as u64,
            invert_ms = (inverted - counted).as_millis() as u64,
            rest_ms = (t0.elapsed() - inverted).as_millis() as u64,
            "built segment"
        );
        seg
    }

    /// The in-memory derived structures (`_id` index, per-token maxima),
    /// computed side by side; the `_id` index only when not `given`. `Err`
    /// carries the position of a repeated `_id`.
    pub(crate) fn derived(
        &self,
        given: Option<IdIndex>,
    ) -> std::result::Result<(IdIndex, Vec<f32>), usize> {
        let v = self.vocab as usize;
        let (index, term_max) = std::thread::scope(|sc| {
            let ids = &self.ids;
            let index = sc.spawn(move || given.map_or_else(|| IdIndex::build(ids), Ok));
            // Quantized weights are positive f16 bits: their order is the order of the values.
            let term_max: Vec<f32> = (0..v as u32)
                .map(|t| match self.post().max_weight(t) {
                    0 => 0.0,
                    w => dequantize(w),
                })
                .collect();
            (join_part(index), term_max)
        });
        Ok((index?, term_max))
    }

    /// Write the segment to `dir/name` (atomically, fsynced), streaming each
    /// section through a small buffer instead of materialising the file;
    /// `postings` writes the neural postings section's bytes (format 3,
    /// [`write_postings`]).
    pub(crate) fn write_file<R>(
        &self,
        dir: &Path,
        name: &str,
        postings: impl FnOnce(&mut crate::directory::container::ContainerFile) -> Result<R>,
    ) -> Result<R> {
        let v = self.vocab as usize;
        let mut out = crate::directory::container::ContainerFile::create(
            dir,
            name,
            SEG_MAGIC,
            SEG_VERSION,
            5,
        )?;

        out.begin(SEC_META);
        let buf = out.buffer();
        buf.extend_from_slice(&self.n_docs.to_le_bytes());
        buf.extend_from_slice(&self.vocab.to_le_bytes());
        buf.extend_from_slice(&self.total_len.to_le_bytes());
        buf.extend_from_slice(&(self.n_post as u64).to_le_bytes());
        buf.extend_from_slice(&(self.tf_post.len() as u64).to_le_bytes());
        out.end()?;

        out.begin(SEC_IDS);
        for id in &self.ids {
            let buf = out.buffer();
            put_varint(buf, id.len() as u64);
            buf.extend_from_slice(id.as_bytes());
            out.spill()?;
        }
        out.end()?;

        out.begin(SEC_POSTINGS);
        let written = postings(&mut out)?;
        out.end()?;

        out.begin(SEC_BM25);
        for &l in &self.doc_len {
            put_varint(out.buffer(), l as u64);
            out.spill()?;
        }
        let n_tf_terms = (0..v)
            .filter(|&t| self.tf_start[t + 1] > self.tf_start[t])
            .count();
        put_varint(out.buffer(), n_tf_terms as u64);
        for t in 0..v {
            let (s, e) = (self.tf_start[t], self.tf_start[t + 1]);
            if s == e {
                continue;
            }
            let buf = out.buffer();
            put_varint(buf, t as u64);
            put_varint(buf, (e - s) as u64);
            let mut prev = 0u32;
            for (p, &(d, f)) in self.tf_post[s..e].iter().enumerate() {
                put_varint(buf, (if p == 0 { d } else { d - prev - 1 }) as u64);
                put_varint(buf, f as u64);
                prev = d;
            }
            out.spill()?;
        }
        out.end()?;

        out.begin(SEC_SOURCE);
        put_varint(out.buffer(), self.src_chunks.len() as u64);
        for &(o, c, u) in &self.src_chunks {
            let buf = out.buffer();
            put_varint(buf, u as u64);
            put_varint(buf, c as u64);
            buf.extend_from_slice(&self.src_data[o..o + c]);
            out.spill()?;
        }
        out.end()?;
        out.finish()?;
        Ok(written)
    }
}
