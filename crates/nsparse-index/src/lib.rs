//! # nsparse-index
//!
//! Durable inverted index over learned sparse vectors (feature id → weight ≥ 0)
//! and the searcher that returns the top-k documents by dot product — exactly
//! or approximately — plus BM25 over token ids and hybrid (neural + BM25) fusion.
//!
//! An index's [`Vocabulary`] says what the ids are. A *fixed* vocabulary is a
//! model's token ids (default bert-base-uncased's 30,522; up to 16,777,216):
//! the names belong to the model. An *open* vocabulary is the index's own
//! dictionary of feature names (any non-empty UTF-8 string, as OpenSearch's
//! `rank_features` accepts), ids given in order of first use
//! ([`Index::feature_ids`]) up to `u32::MAX − 1`, optionally seeded with a
//! model's vocabulary in id order so that model's ids need no lookup;
//! [`Searcher::resolve_features`] maps a query by name (unknown names match
//! nothing) and [`Searcher::feature_name`] maps ids back.
//!
//! Text encoding is not here (see `nsparse-model`): the API takes sparse
//! vectors `&[(u32, f32)]` and, for BM25, token-id sequences.
//!
//! ## Using it
//! * Writer: [`Index::create`] / [`Index::open`] (one writer per directory,
//!   enforced by a `LOCK` file), then [`Index::add`], [`Index::upsert`],
//!   [`Index::delete`] (each durable on return), their `_batch` forms (one
//!   fsync per batch), [`Index::bulk_upsert`] (build a segment directly, durable
//!   on return), [`Index::commit`] and [`Index::force_merge`].
//! * Reader: [`Index::searcher`] (from the writer, sees every acknowledged
//!   write) or [`open_reader`] (read-only, no lock, a writer may be running;
//!   [`ReaderOptions::open`] with options).
//!   A [`Searcher`] is an immutable snapshot: [`Searcher::search`] takes a
//!   [`Query`] (a neural vector, BM25 tokens, or both for hybrid) and a
//!   [`SearchRequest`] (k, the neural algorithm in [`SearchMode`], the hybrid
//!   [`Fusion`], a [`DocFilter`] on `_id` that makes it the top-k among
//!   accepted documents, explanations, sources); [`Searcher::explain`],
//!   [`Searcher::get`], [`Searcher::contains`], [`Searcher::check_model`];
//!   [`Searcher::documents`] iterates every live document (for export and
//!   warm-up). `Searcher` is `Send + Sync + Clone` (an `Arc` inside).
//! * [`verify`] checks every file without modifying anything.
//!
//! ```
//! use nsparse_index::*;
//! # fn main() -> Result<()> {
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path();
//! let mut index = Index::create(dir, &CreateOptions::new("opensearch-neural-sparse-v3"), WriterOptions::default())?;
//! index.add(&Document {
//!     id: "doc-1".into(),
//!     vector: vec![(2054, 1.2), (7592, 0.4)],
//!     tokens: Some(vec![2054, 7592, 2054]), // optional, for BM25
//!     source: br#"{"title":"hello"}"#.to_vec(),
//! })?; // durable (WAL fsynced) on return
//! index.delete("no-such-id")?;
//! index.commit()?; // optional: moves the buffer into a segment
//!
//! let searcher = open_reader(dir)?; // or index.searcher()
//! searcher.check_model("opensearch-neural-sparse-v3")?;
//! let hits = searcher.search(Query::Neural(&[(2054, 3.0)]), &SearchRequest::new(10).with_source(true).explain(true))?;
//! assert_eq!(hits[0].id, "doc-1");
//! let approx = searcher.search(Query::Neural(&[(2054, 3.0)]), &SearchRequest::new(10).mode(SearchMode::Approximate { top_n: 10, heap_factor: 1.2 }))?;
//! let two_phase = searcher.search(Query::Neural(&[(2054, 3.0)]), &SearchRequest::new(10).mode(SearchMode::two_phase()))?;
//! let bm25 = searcher.search(Query::Bm25(&[2054]), &SearchRequest::new(10))?;
//! let hybrid = searcher.search(Query::Hybrid { vector: &[(2054, 3.0)], tokens: &[2054] }, &SearchRequest::new(10))?;
//! let only_doc_1: DocFilter = &|id| id == "doc-1";
//! let filtered = searcher.search(Query::Bm25(&[2054]), &SearchRequest::new(10).filter(only_doc_1))?;
//! # assert_eq!(filtered.len(), 1);
//! # assert_eq!((approx.len(), two_phase.len(), bm25.len(), hybrid.len()), (1, 1, 1, 1));
//! assert_eq!(verify(dir)?.live_docs, 1);
//! # Ok(()) }
//! ```
//!
//! ## Durability
//! Writes go to a write-ahead log first: `add`/`upsert`/`delete` append a
//! checksummed record and `fsync` before returning, so an acknowledged write
//! survives a crash (SIGKILL or power loss, given an honest `fsync`). Opening
//! replays the log. A record cut short at the end of the log (the process died
//! while appending, so it was never acknowledged) is dropped with a warning and
//! truncated by the next writer; a bad record followed by more data is
//! corruption. Limitation: a bit flip inside the *last* record is
//! indistinguishable from a torn append and is dropped the same way.
//!
//! [`Index::commit`] (also run every `flush_docs` buffered documents) writes
//! the buffer as a new immutable segment and changed deletion bitmaps as new
//! files (each written to a `.tmp`, fsynced, renamed, directory fsynced), runs
//! the merge policy, creates a fresh empty WAL, and then atomically replaces
//! `MANIFEST` the same way; only after that are obsolete files removed. A crash
//! at any point leaves either the old manifest (whose WAL still holds every
//! operation) or the new one; unreferenced files are removed by the next writer.
//!
//! Segment files are written around the page cache (`O_DIRECT` where the
//! filesystem allows it, from a background thread; see `directory/sink.rs`) and are
//! still fsynced before the rename: the bytes and the durability rule are the
//! same, the write is ~5× faster on a large segment.
//!
//! ## Directory layout and file formats (all integers little-endian)
//! * `MANIFEST` — container (below) with one JSON section: model identity,
//!   metadata, vocabulary size, for an open vocabulary its dictionary file and
//!   name count, BM25 parameters, generation, live WAL name, segment list (file,
//!   doc count, deletion-bitmap file, deleted count). Version 2 (this build)
//!   added the dictionary; version 1 is still read.
//! * `features-GGGGGGGG.dict` — the feature dictionary of an open vocabulary as
//!   of generation G (container `NSPFEATS`, version 1: the name count, then per
//!   name in id order its prefix shared with the previous name and the rest).
//!   The dictionary only grows; names added after the commit that wrote it are
//!   in the WAL, each batch in a record written before the first document that
//!   uses them, so an acknowledged document's names survive a crash with it.
//! * `seg-NNNNNNNN.seg` — immutable segment: container with sections
//!   1 META (doc count, vocab, BM25 total length, posting counts),
//!   2 IDS (varint length + UTF-8 `_id` per doc),
//!   3 POSTINGS (format 3: per 65,536-doc tile in order: first doc, doc
//!   count, run count, a directory of (token delta, run length), the data's
//!   byte length, then each run's blocks of 128 postings: the block's first
//!   doc-id gap as a LEB128 varint, one byte of bit width `b`, the other 127
//!   gaps bit-packed at `b` bits, then the u16 weights; formats 1 and 2, still
//!   read, stored each token's whole list in turn (token, df, blocks), 2 with
//!   these blocks, 1 with one varint per gap),
//!   4 BM25 (per-doc lengths; per token: doc-id deltas + term frequencies),
//!   5 SOURCE (chunks of 32 documents' sources, lz4 block-compressed).
//! * `seg-NNNNNNNN-GGGGGGGG.del` — deletion bitmap of a segment at generation G
//!   (container: doc count, deleted count, bitset words).
//! * `wal-GGGGGGGG.log` — write-ahead log (see `Durability`; 16-byte header with
//!   magic `NSPWAL\0\0`, version (2; version 1, without feature-name records,
//!   is still read), crc32; records `[len][crc32(len)][crc32(payload)][payload]`).
//! * `LOCK` — held with an exclusive `flock` by the single writer.
//!
//! The *container* used by MANIFEST, segments and bitmaps is: 8-byte magic
//! (`NSPMANIF`, `NSPSEG\0\0`, `NSPDEL\0\0`, `NSPFEATS`), u32 format version (segments
//! 3, reading 1 to 3; `MANIFEST` 2, reading 1 and 2; the others 1),
//! u32 section count, a table of `(kind u32, offset u64, length u64, crc32 u32)`
//! entries, a crc32 of everything before it, then the sections back to back.
//! Opening verifies the magic, the header checksum, the version (an unknown
//! version is rejected with [`Error::UnsupportedVersion`]), every section's
//! crc32, exact file length and the structure (ids in range, ascending
//! postings, counts consistent). Any failure is [`Error::Corrupt`] naming the
//! file. A segment file is memory-mapped only while it is verified and
//! decoded into owned memory at open (segment files are immutable once renamed
//! into place); searches never read the mapping, so nothing a file undergoes
//! after open can reach them. The exception is a segment this process has just
//! written (bulk load, flush, merge): its neural postings stay on disk and are
//! verified and decoded the same way on first use, so damage done to the file
//! before then is reported as [`Error::Corrupt`] by that search (or `vector`,
//! or merge).
//!
//! ## Weights: f16 quantization
//! Document weights are stored as IEEE binary16 (round to nearest even), with
//! subnormals flushed to 0 or to the smallest normal (6.1e-5) and zeros dropped,
//! so decoding is one shift and one add. Relative error per weight is at most
//! 2⁻¹¹ ≈ 0.049 %, so a score's relative error is at most 0.049 % (all terms are
//! non-negative); weights above 65,504 are rejected. This is exact enough that
//! quantization never visibly reorders results of real encoders, needs no
//! per-index scale (u8 would need one, and a scale fixed at creation either
//! clips later outliers or wastes precision), and costs 2 bytes per posting
//! while the index stays ≈ 0.57 × the size of raw `(u32 id, u8 weight)`
//! postings thanks to bit-packed doc-id gaps. Query weights stay f32.
//!
//! ## Search algorithms
//! All exact modes compute a document's score as the f32 sum, in ascending
//! token order, of `query weight × dequantized doc weight`, so they agree with
//! brute force bit for bit; ties are broken by segment then document order.
//! * [`SearchMode::Exact`] — tiled term-at-a-time, chosen by measurement
//!   (see BENCHMARKS.md): documents are scanned in tiles of 32,768 ids so the
//!   f32 accumulator stays in L2. Per tile, each query token is added in
//!   its tile: rare tokens by scattering their postings in the tile (found
//!   through the postings' directory of 65,536-document runs, 4 bytes per
//!   posting in memory), frequent ones (in ≥ 1/16 of the segment's
//!   documents) from their *bound column*: one byte per document bounding
//!   the weight from above, added by a vectorised multiply-add. The
//!   accumulator then holds an upper bound of each score; a vectorised
//!   pre-filter finds the documents whose bound can enter the top k, and
//!   only those are rescored exactly, most promising first: a document's
//!   rank among its 64-document block's non-zero codes is the position of
//!   its posting, so an exact weight is one load away, and the next
//!   candidate's weights are prefetched while one is scored. Because a
//!   bound overstates a score by at most one code step per frequent token,
//!   a handful of documents per query are rescored (more for a large k;
//!   above k = 512 frequent tokens are scattered from their postings). Every
//!   query term goes into the accumulator: a MaxScore split (terms whose
//!   upper bounds sum below the k-th score completed only for candidates)
//!   made flat-weight learned-sparse queries slower.
//! * `SearchMode::ExactTaat`, `ExactMaxScore`, `ExactBlockMax` (cargo
//!   feature `baselines`, for benchmarks and tests): plain term-at-a-time
//!   over a dense accumulator; term-at-a-time MaxScore (terms by decreasing
//!   upper bound, the rest skipped once their summed bound cannot lift an
//!   untouched document past the k-th partial score, survivors rescored
//!   exactly); BMP-style block-max (per-token maxima over blocks of 64
//!   documents, built on first use, blocks visited by decreasing bound).
//! * [`SearchMode::BruteForce`] — every live document scored (a test oracle).
//! * [`SearchMode::Approximate`] — the tiled search with OpenSearch's knobs:
//!   only the `top_n` heaviest query tokens can make a document a candidate
//!   (the others only add to candidates' scores), and the k-th score a
//!   candidate must beat is multiplied by `heap_factor` (`> 1` prunes more).
//!   Scores of returned documents are exact; recall is what is traded.
//! * [`SearchMode::TwoPhase`] — OpenSearch's two-phase: tokens below
//!   `prune_ratio × max weight` are deferred; phase 1 (tiled search) retrieves
//!   `k × expansion_rate` (capped by `max_window_size`), phase 2 rescores
//!   that window with all tokens.
//!
//! Derived in-memory structures (per-token maxima, `_id` index, and on first
//! use the block maxima and each token's bound column) are rebuilt from the
//! postings, so they cannot disagree with the files. Bound columns cost a
//! byte per document per frequent token, plus 4 bytes per 64 documents (at
//! most about 1.2 GB at 1M SPLADE-like documents, if queries use every
//! frequent token); [`WriterOptions::dense_columns_max_mb`] and
//! [`ReaderOptions::dense_columns_max_mb`] cap them per segment (most
//! frequent tokens first; `0` turns them off), trading speed for memory,
//! never results. The library reads no environment variable: programs may
//! take the cap from `NSPARSE_DENSE_COLUMNS_MAX_MB`
//! ([`dense_columns_max_mb_from_env`]), as the CLI and the server do.
//!
//! ## BM25
//! Documents may carry a token-id sequence; segments store term frequencies and
//! document lengths. Weights are computed at query time:
//! `idf = ln(1 + (N − df + 0.5)/(df + 0.5))` and
//! `tf·(k1+1)/(tf + k1·(1−b+b·len/avglen))`, with N, df and avglen summed over
//! the snapshot's segments, so scores follow the corpus as it grows; deleted
//! documents count until a merge removes them (as in Lucene).
//!
//! ## Concurrency
//! Single writer (lock file). Readers hold an `Arc` snapshot of segment list +
//! deletion bitmaps (copy-on-write) and are unaffected by later writes.
//! A segment build (bulk load, commit of a large buffer, merge) uses up to
//! one thread per core (at most 8, and one per 64k documents); the file it
//! writes does not depend on the thread count.

mod codec;
mod directory;
mod error;
mod features;
mod index;
mod memory;
mod postings;
mod quantize;
mod schema;
mod search;
mod segment;
mod simd;
mod threads;

#[doc(hidden)]
pub use directory::atomic::{fsync_dir, write_atomic};
pub use directory::faults;
pub use error::{Error, Result};
pub use features::{MAX_FEATURES, MAX_FEATURE_NAME_BYTES};
pub use index::{open_reader, verify, Index, IndexInfo, VerifyReport};
pub use quantize::{dequantize, quantize, MAX_WEIGHT, MIN_WEIGHT};
pub use schema::{
    Bm25Params, CreateOptions, Document, ReaderOptions, Vocabulary, WriterOptions,
    DEFAULT_VOCAB_SIZE, MAX_ID_BYTES,
};
pub use search::{
    DocFilter, Fusion, Hit, HybridCombination, Query, SearchMode, SearchRequest, Searcher,
    StoredDocument, TokenContribution,
};
pub use segment::bound_columns::{dense_columns_max_mb_from_env, DENSE_COLUMNS_MAX_MB_ENV};
