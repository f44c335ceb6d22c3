use crate::postings::builder::PostingsBuilder;
use crate::postings::{
    find_in_run, offset, pack, weight_bits, Postings, POSTINGS_TILE_SHIFT, TILE_MASK,
};

fn build(lists: &[(usize, Vec<(u32, u16)>)], vocab: usize) -> Postings {
    let total = lists.iter().map(|l| l.1.len()).sum();
    let mut b = PostingsBuilder::new(vocab, total);
    for (t, list) in lists {
        b.start_token(*t);
        for &(d, w) in list {
            b.push(d, w);
        }
    }

    b.finish(vocab)
}

#[test]
fn lists_round_trip_across_tiles() {
    let tile = 1u32 << POSTINGS_TILE_SHIFT;
    let lists = vec![
        (
            1usize,
            vec![(0u32, 0x3c00u16), (5, 0x4000), (tile - 1, 0x0400)],
        ),
        (
            4,
            vec![
                (3, 0x3800),
                (tile, 0x3c01),
                (tile + 7, 0x3c02),
                (3 * tile + 2, 0x7bff),
            ],
        ),
        (9, vec![(2 * tile + 9, 0x3c00)]),
    ];
    let p = build(&lists, 12);
    assert_eq!(p.len(), 8);
    p.check(4 * tile).unwrap();
    for t in 0..12u32 {
        let want: Vec<(u32, u16)> = lists
            .iter()
            .find(|l| l.0 == t as usize)
            .map(|l| l.1.clone())
            .unwrap_or_default();
        assert_eq!(p.iter(t).collect::<Vec<_>>(), want, "token {t}");
        assert_eq!(p.df(t), want.len());
        assert_eq!(p.max_weight(t), want.iter().map(|x| x.1).max().unwrap_or(0));
        for &(d, w) in &want {
            assert_eq!(p.weight(t, d), Some(w));
            assert_eq!(
                p.weight(t, d + 1).is_some(),
                want.iter().any(|x| x.0 == d + 1)
            );
        }
    }

    assert_eq!(p.runs(4).len(), 3);
    assert_eq!(p.weight(4, 2 * tile + 7), None);
    // A doc id past the segment is a structural error.
    assert!(p.check(3 * tile).is_err());
}

#[test]
fn find_in_run_finds_what_a_binary_search_finds() {
    let mut x = 0x2545_f491_u32;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };

    for len in 0..120usize {
        for spread in [1u32, 3, 50, 2000] {
            // Ascending offsets: even gaps, or clustered at both ends
            // (far from where interpolation guesses).
            let clustered = next() % 2 == 0;
            let mut run = Vec::with_capacity(len);
            let mut off = next() % 5;
            for i in 0..len {
                let gap = if clustered && i == len / 2 {
                    60_000 / (len as u32 + 1)
                } else {
                    1 + next() % spread
                };
                off = (off + gap).min(TILE_MASK);
                if run.last().is_some_and(|&p| offset(p) >= off) {
                    break;
                }
                run.push(pack(off, (next() % 0x7bff) as u16 | 1));
            }
            let top = run.last().map_or(10, |&p| offset(p) + 3);
            for probe in 0..=top.min(70_000) {
                let i = run.partition_point(|&p| offset(p) < probe);
                let want = run
                    .get(i)
                    .filter(|&&p| offset(p) == probe)
                    .map(|&p| weight_bits(p));
                assert_eq!(find_in_run(&run, probe), want, "offset {probe} in {run:?}");
            }
        }
    }
}

#[test]
fn check_rejects_unordered_runs() {
    let mut p = build(&[(0, vec![(1, 0x3c00), (2, 0x3c00)])], 1);
    p.packed.swap(0, 1);
    assert!(p.check(10).unwrap_err().contains("ascending"));
    let empty = build(&[], 3);
    empty.check(0).unwrap();
    assert_eq!(empty.iter(2).count(), 0);
}
