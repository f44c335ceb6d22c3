use rand::{Rng, SeedableRng};
use std::path::Path;

use crate::codec::bitpack::{encode_block, encode_block_serial, POSTING_BLOCK};
use crate::codec::varint::Cursor;
use crate::error::{Error, Result};
use crate::postings::builder::PostingsBuilder;
use crate::postings::legacy::decode_packed_block;
use crate::postings::reader::decode_tile_postings;
use crate::postings::tile_writer::{copy_piece, TileEncoder};
use crate::postings::Postings;
use crate::quantize::{dequantize, quantize};
use crate::segment::bound_columns::{bound_code, code_step, nonzero_bytes};
use crate::segment::input::{NeuralSource, SegmentInput};
use crate::segment::{DocRecord, Segment, DOC_BLOCK_SHIFT, SEC_POSTINGS, SEG_MAGIC};

/// Decode `bytes` as blocks of one list of `m`-sized pieces.
fn decode_list(bytes: &[u8], sizes: &[usize], n_docs: u32) -> Result<Vec<(u32, u16)>> {
    let path = Path::new("test.seg");
    let mut c = Cursor::new(bytes, path);
    let mut out = PostingsBuilder::new(1, sizes.iter().sum());
    out.start_token(0);
    let mut prev = None;
    for &m in sizes {
        decode_packed_block(&mut c, m, &mut prev, n_docs, &mut out)?;
    }

    c.done()?;
    Ok(out.finish(1).iter(0).collect())
}

#[test]
fn nonzero_bytes_counts_every_non_zero_byte() {
    let mut x = 0x9e37_79b9_u32;
    for len in 0..80 {
        for density in [0u32, 1, 4, 8, 16] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    // Zero with probability density/16; otherwise any
                    // non-zero byte, 0x80 and 0xff included.
                    if x % 16 < density {
                        0
                    } else {
                        [1u8, 0x7f, 0x80, 0xff, (x >> 8) as u8 | 1][(x >> 4) as usize % 5]
                    }
                })
                .collect();
            let want = bytes.iter().filter(|&&b| b != 0).count();
            assert_eq!(nonzero_bytes(&bytes), want, "{bytes:?}");
        }
    }
}

/// A bound code is the smallest that covers the weight, in the f32
/// arithmetic of the searcher, for every f16 weight up to the maximum.
#[test]
fn bound_codes_are_the_smallest_upper_bounds() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for _ in 0..200 {
        let max = dequantize(quantize(rng.random_range(1e-3f32..3.0)));
        let step = code_step(max);
        let inv = 1.0 / step;
        assert!(step * 255.0 >= max);
        let mut ws: Vec<f32> = (0..500)
            .map(|_| dequantize(quantize(rng.random_range(0.0..=max))))
            .collect();
        ws.extend([max, step, 2.0 * step, 1e-7, 0.0]);
        for w in ws.into_iter().filter(|&w| w <= max) {
            let k = bound_code(w, step, inv);
            if w <= 0.0 {
                assert_eq!(k, 0);
                continue;
            }
            assert!(k >= 1 && step * k as f32 >= w, "w {w} max {max} k {k}");
            assert!(
                k == 1 || step * ((k - 1) as f32) < w,
                "w {w} max {max} k {k}"
            );
        }
    }
}

/// The grouped packer writes exactly the bytes of one accumulator over
/// all the gaps, at every width and every block length (the groups'
/// boundaries at 32, 64 and 96 gaps included), after other blocks in
/// the buffer.
#[test]
fn grouped_packing_equals_the_serial_definition() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    for width in 0..=32u32 {
        let top = if width == 0 {
            0
        } else {
            u32::MAX >> (32 - width)
        };
        for m in 1..=POSTING_BLOCK {
            let mut gaps: Vec<u32> = (0..m).map(|_| rng.random_range(0..=top)).collect();
            // The widest gap sets the width: make one reach it.
            if m > 1 {
                gaps[1 + rng.random_range(0..m - 1)] = top;
            }
            let weights: Vec<u16> = (0..m)
                .map(|_| rng.random_range(0x0400u16..0x7c00))
                .collect();
            let (mut grouped, mut serial) = (vec![7u8; 3], vec![7u8; 3]);
            encode_block(&gaps, &weights, &mut grouped);
            encode_block_serial(&gaps, &weights, &mut serial);
            assert_eq!(grouped, serial, "width {width}, {m} postings");
        }
    }
}

#[test]
fn packed_blocks_round_trip_at_every_bit_width() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for width in 0..=32u32 {
        for _ in 0..20 {
            // One list of up to three blocks whose gaps use `width` bits.
            let sizes: Vec<usize> = (0..rng.random_range(1..4))
                .map(|_| rng.random_range(1..=POSTING_BLOCK))
                .collect();
            let n: usize = sizes.iter().sum();
            let top = if width == 0 {
                0
            } else {
                u64::MAX >> (64 - width)
            };
            // Keep the doc ids below 2^32 (the gaps' sum is the last id).
            let cap = (u32::MAX as u64 - 2 * n as u64) / n as u64;
            let mut list = Vec::with_capacity(n);
            let mut next = 0u64;
            for k in 0..n {
                let g = if k % 17 == 0 {
                    top.min(cap)
                } else {
                    rng.random_range(0..=top.min(cap))
                };
                let d = next + g;
                list.push((d as u32, rng.random_range(0x0400u16..0x7c00)));
                next = d + 1;
            }
            let mut bytes = Vec::new();
            let (mut at, mut next) = (0, 0u32);
            for &m in &sizes {
                let gaps: Vec<u32> = list[at..at + m]
                    .iter()
                    .map(|&(d, _)| {
                        let g = d - next;
                        next = d + 1;
                        g
                    })
                    .collect();
                let w: Vec<u16> = list[at..at + m].iter().map(|p| p.1).collect();
                encode_block(&gaps, &w, &mut bytes);
                at += m;
            }
            let last = list[n - 1].0;
            // Postings store tile offsets in 16 bits: compare doc ids
            // and weights through the builder's own iterator.
            assert_eq!(
                decode_list(&bytes, &sizes, last + 1).unwrap(),
                list,
                "width {width}"
            );
            // A doc id at the bound, a cut and a bad width are errors.
            assert!(decode_list(&bytes, &sizes, last).is_err());
            assert!(decode_list(&bytes[..bytes.len() - 1], &sizes, last + 1).is_err());
        }
    }

    let mut block = Vec::new();
    encode_block(&[5, 1], &[0x3c00, 0x3c00], &mut block);
    block[1] = 33;
    let err = decode_list(&block, &[2], 100).unwrap_err().to_string();
    assert!(err.contains("bit width"), "{err}");
}

/// `n` documents over tokens `0..vocab`: per (doc `i`, token `t`) one
/// xorshift step from `seed`; the token is present when `present(i, t, x)`
/// for the drawn `x`, with a weight taken from `x`'s high bits.
fn xorshift_docs(
    n: usize,
    vocab: u32,
    seed: u64,
    present: impl Fn(usize, u32, u64) -> bool,
) -> Vec<DocRecord> {
    let mut x = seed;
    (0..n)
        .map(|i| {
            let mut vec = Vec::new();
            for t in 0..vocab {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if present(i, t, x) {
                    vec.push((t, quantize(0.01 + (x >> 40) as f32 / (1u64 << 24) as f32)));
                }
            }
            DocRecord {
                id: format!("d{i}"),
                vec,
                tf: Vec::new(),
                len: 0,
                source: Vec::new(),
            }
        })
        .collect()
}

/// Documents spanning four postings tiles (the build splits them over
/// the machine's cores, so a tile is cut between two parts), with tokens
/// that skip whole tiles.
fn multi_tile_docs() -> Vec<DocRecord> {
    let tile = 1usize << crate::postings::POSTINGS_TILE_SHIFT;
    xorshift_docs(3 * tile + 1234, 40, 0x9e37_79b9_7f4a_7c15, |i, t, x| {
        // Token t occurs with probability ~1/(t+2); token 39 only in tile 2.
        if t == 39 {
            i / tile == 2 && x.is_multiple_of(5)
        } else {
            x.is_multiple_of(t as u64 + 2)
        }
    })
}

/// `copy_piece` copies exactly its piece at every length, touching
/// nothing around it.
#[test]
fn pieces_are_copied_exactly() {
    let src: Vec<u32> = (1..=80).collect();
    for at in 0..3 {
        for k in 1..=40 {
            let mut dst = vec![0u32; 90];
            copy_piece(&mut dst[at..at + k], &src[at..at + k]);
            for (j, &x) in dst.iter().enumerate() {
                let want = if (at..at + k).contains(&j) { src[j] } else { 0 };
                assert_eq!(x, want, "at {at} k {k} j {j}");
            }
        }
    }
}

/// A tile sorted in batches of any size (a document each, a few, the
/// whole tile) encodes to the same bytes, and the encoder counts the
/// postings the input states.
#[test]
fn tiles_sorted_in_batches_of_any_size_encode_alike() {
    let docs = multi_tile_docs();
    let src = NeuralSource(&docs[..]);
    let tile = 1usize << crate::postings::POSTINGS_TILE_SHIFT;
    // A whole tile, and the last, partial one.
    for range in [tile..2 * tile, 3 * tile..docs.len()] {
        let stated: usize = range.clone().map(|i| docs.n_postings(i)).sum();
        let encode = |batch_postings: usize| {
            // `longest` 0: the encoder grows its buffer itself.
            let mut e = TileEncoder::new(0, 40);
            e.batch_postings = batch_postings;
            let n = e.encode(range.clone(), &src, None).unwrap();
            assert_eq!(n, stated);
            let batches = e.batch_ends.len();
            (batches, (e.head, e.data, e.max_bits))
        };
        let (one, whole) = encode(usize::MAX);
        assert_eq!(one, 1);
        for batch_postings in [1, 2, 50, 1000, 100_000] {
            let (batches, got) = encode(batch_postings);
            if batch_postings < stated {
                assert!(batches > 1, "{batch_postings}: {batches} batches");
            }
            assert!(got == whole, "batches of {batch_postings} postings");
        }
    }
}

/// The file a one-thread build streams tile by tile and the one three
/// threads write from buffered tiles are the same bytes.
#[test]
fn streamed_and_buffered_tiles_give_the_same_file() {
    let docs = multi_tile_docs();
    let dir = tempfile::tempdir().unwrap();
    let file = |threads: usize| {
        let name = format!("s{threads}.seg");
        Segment::build_and_write(&docs[..], 40, dir.path(), &name, None, threads).unwrap();
        std::fs::read(dir.path().join(name)).unwrap()
    };

    let one = file(1);
    assert!(one == file(3), "the file depends on the thread count");
}

#[test]
fn multi_tile_build_equals_a_plain_inversion_and_round_trips() {
    let docs = multi_tile_docs();
    // One thread, and three, whose document ranges cut tiles 1 and 2 in
    // two (a tile's run then spans two threads' pieces).
    for threads in [1, 3] {
        let seg = Segment::build_on(&docs[..], 40, threads);
        check_multi_tile_segment(&docs, &seg);
        // Written tile by tile, read back lazily and at open: the same
        // postings, run table and per-token maxima.
        let dir = tempfile::tempdir().unwrap();
        let lazy =
            Segment::build_and_write(&docs[..], 40, dir.path(), "s.seg", None, threads).unwrap();
        assert!(
            lazy.post.get().is_none(),
            "postings stay on disk until used"
        );
        assert_eq!(lazy.n_postings(), seg.n_postings());
        assert_eq!(lazy.term_max, seg.term_max);
        let opened = Segment::load(&dir.path().join("s.seg")).unwrap();
        for back in [lazy.postings().unwrap(), opened.post()] {
            let (back, seg) = (back.parts(), seg.post().parts());
            assert_eq!(back.0, seg.0);
            assert_eq!(back.1, seg.1);
            assert_eq!(back.2, seg.2);
            assert_eq!(back.3, seg.3);
            assert_eq!(back.4, seg.4);
        }
        assert_eq!(opened.term_max, seg.term_max);
        check_multi_tile_segment(&docs, &lazy);
    }
}

/// A few postings over two and a half tiles (a small file to damage).
fn sparse_multi_tile_docs() -> Vec<DocRecord> {
    let tile = 1usize << crate::postings::POSTINGS_TILE_SHIFT;
    xorshift_docs(2 * tile + 4321, 6, 0x2545_f491_4f6c_dd1d, |_, _, x| {
        x.is_multiple_of(60)
    })
}

#[test]
fn an_empty_segment_is_written_and_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let seg = Segment::build_and_write(&[][..], 6, dir.path(), "e.seg", None, 0).unwrap();
    assert_eq!(seg.term_max, vec![0.0; 6]);
    assert_eq!(seg.postings().unwrap().len(), 0);
    let back = Segment::load(&dir.path().join("e.seg")).unwrap();
    assert_eq!(back.post().parts().0, vec![0; 7]);
}

#[test]
fn tile_postings_decoder_rejects_damage_without_panicking() {
    let docs = sparse_multi_tile_docs();
    let n = docs.len() as u32;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.seg");
    let seg = Segment::build_and_write(&docs[..], 6, dir.path(), "s.seg", None, 1).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (_, secs) =
        crate::directory::container::read_container_of(&path, &bytes, SEG_MAGIC, 3..=3).unwrap();
    let section = crate::directory::container::section(&path, &secs, SEC_POSTINGS)
        .unwrap()
        .to_vec();
    // Decoded on one thread and on three (pieces split between them),
    // the outcome must be the same: equal postings, or the same
    // corruption (the first damaged piece in file order).
    let decode = |b: &[u8]| {
        let on = |threads| {
            decode_tile_postings(&mut Cursor::new(b, &path), 6, n, seg.n_postings(), threads)
        };
        let (one, three) = (on(1), on(3));
        match (&one, &three) {
            (Ok(a), Ok(b)) => assert!(a.parts().4 == b.parts().4 && a.parts().3 == b.parts().3),
            (Err(a @ Error::Corrupt { .. }), Err(b @ Error::Corrupt { .. })) => {
                assert_eq!(a.to_string(), b.to_string())
            }
            _ => panic!("1 and 3 decoding threads disagree: {one:?} vs {three:?}"),
        }
        one
    };

    let intact = decode(&section).unwrap();
    assert_eq!(intact.packed(), seg.postings().unwrap().packed());
    let is_corrupt = |r: Result<Postings>| match r {
        Err(Error::Corrupt { .. }) => true,
        Err(e) => panic!("not a corruption error: {e}"),
        Ok(p) => {
            // A change the structure cannot see (a weight, a gap) still
            // decodes to well-formed postings.
            p.check(n).unwrap();
            false
        }
    };

    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rejected = 0;
    for _ in 0..3000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut damaged = section.clone();
        let at = (x >> 8) as usize % damaged.len();
        damaged[at] ^= 1 << (x % 8);
        rejected += is_corrupt(decode(&damaged)) as usize;
    }

    assert!(rejected > 300, "only {rejected} of 3000 flips rejected");
    for cut in (0..section.len()).step_by(section.len() / 211 + 1) {
        assert!(is_corrupt(decode(&section[..cut])), "cut at {cut}");
    }

    // A file whose tiles are out of order: the first tile claims to start at doc 1.
    let mut shifted = section.clone();
    assert_eq!(shifted[1], 0, "first tile starts at doc 0");
    shifted[1] = 1;
    let e = decode(&shifted).unwrap_err().to_string();
    assert!(e.contains("not the segment's tiles in order"), "{e}");
}

fn check_multi_tile_segment(docs: &[DocRecord], seg: &Segment) {
    let n = docs.len() as u32;
    seg.post().check(n).unwrap();
    let mut want: Vec<Vec<(u32, u16)>> = vec![Vec::new(); 40];
    for (d, doc) in docs.iter().enumerate() {
        for &(t, w) in &doc.vec {
            want[t as usize].push((d as u32, w));
        }
    }

    for (t, list) in want.iter().enumerate() {
        assert_eq!(
            seg.post().iter(t as u32).collect::<Vec<_>>(),
            *list,
            "token {t}"
        );
        for &(d, w) in list.iter().step_by(97) {
            assert_eq!(seg.weight(t as u32, d), Some(w));
        }
    }

    assert_eq!(seg.post().runs(39).len(), 1);

    // Forward windows and whole-vector reconstruction give back the input.
    let mut cur = seg.forward_cursor();
    let mut d = 0u32;
    while d < n {
        let end = (d + 20_000).min(n);
        for (i, f) in seg.forward_window(&mut cur, d, end).into_iter().enumerate() {
            assert_eq!(f.vec, docs[d as usize + i].vec, "doc {}", d as usize + i);
        }
        d = end;
    }

    let all = seg.all_vectors();
    assert!(all.iter().zip(docs).all(|(v, doc)| *v == doc.vec));

    // The block-max table covers every posting of every block.
    let bm = seg.block_max();
    for t in 0..40u32 {
        for e in bm.start[t as usize]..bm.start[t as usize + 1] {
            let base = bm.block[e] << DOC_BLOCK_SHIFT;
            for &x in &seg.post().packed()[bm.pos[e]..bm.pos[e + 1]] {
                let d = base + (crate::postings::offset(x) & ((1 << DOC_BLOCK_SHIFT) - 1));
                assert_eq!(seg.weight(t, d), Some(crate::postings::weight_bits(x)));
            }
        }
    }
}
