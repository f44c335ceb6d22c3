//! A flipped byte in any index file is reported as corruption naming the file:
//! never a panic, never a silently different index.

use nsparse_index::*;
use nsparse_testkit::synth;
use rand::{Rng, SeedableRng};

fn build(dir: &std::path::Path) -> (u64, Vec<u8>) {
    let mut g = synth::Synth::new(synth::SynthParams::default(), 3);
    let mut idx = Index::create(
        dir,
        &CreateOptions::new("m"),
        WriterOptions {
            flush_docs: 1_000_000,
            merge_factor: 8,
            ..Default::default()
        },
    )
    .unwrap();
    for seg in 0..2 {
        let docs: Vec<Document> = (0..150)
            .map(|i| Document {
                id: format!("s{seg}-{i}"),
                vector: g.doc(),
                tokens: Some(g.text(40)),
                source: format!("{{\"n\":{i},\"text\":\"some source text {i}\"}}").into_bytes(),
            })
            .collect();
        idx.add_batch(&docs).unwrap();
        idx.commit().unwrap();
    }
    for i in 0..10 {
        idx.delete(&format!("s0-{i}")).unwrap();
    }
    idx.commit().unwrap();
    // Uncommitted WAL records: two upserts and a delete.
    for i in 0..2 {
        idx.upsert(&Document {
            id: format!("w{i}"),
            vector: g.doc(),
            tokens: None,
            source: b"{}".to_vec(),
        })
        .unwrap();
    }
    idx.delete("s1-3").unwrap();
    let live = idx.info().live_docs;
    drop(idx);
    let q = g.query();
    let s = open_reader(dir).unwrap();
    let r = s
        .search(Query::Neural(&q), &SearchRequest::new(10))
        .unwrap();
    let sig = serde_json::to_vec(&r.iter().map(|h| (&h.id, h.score)).collect::<Vec<_>>()).unwrap();
    (live, sig)
}

#[test]
fn every_file_type_detects_flipped_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (live, _) = build(dir.path());
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "LOCK")
        .collect();
    files.sort();
    let kinds: Vec<String> = files
        .iter()
        .map(|p| {
            p.extension()
                .map_or("MANIFEST".into(), |e| e.to_string_lossy().into())
        })
        .collect();
    for k in ["MANIFEST", "seg", "del", "log"] {
        assert!(
            kinds.iter().any(|x| x == k),
            "missing file kind {k}: {files:?}"
        );
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut checked = 0;
    for path in &files {
        let orig = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let mut positions: Vec<usize> = if orig.len() <= 1500 {
            (0..orig.len()).collect()
        } else {
            let mut v: Vec<usize> = (0..200).chain(orig.len() - 100..orig.len()).collect();
            v.extend((0..200).map(|_| rng.random_range(0..orig.len())));
            v
        };
        positions.sort_unstable();
        positions.dedup();
        // Start of the WAL's last record, where a flip is indistinguishable from a torn append.
        let last_rec = if name.ends_with(".log") {
            last_record_start(&orig)
        } else {
            usize::MAX
        };
        for (n, &pos) in positions.iter().enumerate() {
            let mut b = orig.clone();
            b[pos] ^= [0x01, 0x80, 0xff][n % 3];
            std::fs::write(path, &b).unwrap();
            match verify(dir.path()) {
                Err(e) => {
                    assert!(e.is_corruption(), "{name} byte {pos}: {e}");
                    assert!(
                        e.to_string().contains(&name),
                        "{name} byte {pos}: error does not name the file: {e}"
                    );
                }
                Ok(rep) => {
                    assert!(
                        pos >= last_rec && rep.wal_torn_bytes > 0,
                        "{name} byte {pos}: flip not detected"
                    );
                    assert_eq!(
                        rep.live_docs,
                        live + 1,
                        "{name} byte {pos}: a torn last delete drops just it"
                    );
                }
            }
            if n % 25 == 0 {
                // The writer path reports it too (and must not panic).
                let r = Index::open(dir.path(), WriterOptions::default());
                if pos < last_rec {
                    assert!(r.unwrap_err().is_corruption());
                }
                // A writer truncates a torn tail; restore the original for the next flip.
            }
            checked += 1;
        }
        std::fs::write(path, &orig).unwrap();
        verify(dir.path()).unwrap();
    }
    assert!(checked > 1000, "{checked}");
}

fn last_record_start(wal: &[u8]) -> usize {
    let mut pos = 16;
    let mut last = pos;
    while pos + 12 <= wal.len() {
        let len = u32::from_le_bytes(wal[pos..pos + 4].try_into().unwrap()) as usize;
        last = pos;
        pos += 12 + len;
    }
    last
}

#[test]
fn truncated_files_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "LOCK" || name.ends_with(".log") {
            continue;
        }
        let orig = std::fs::read(&path).unwrap();
        for cut in [0, 7, orig.len() / 2, orig.len() - 1] {
            std::fs::write(&path, &orig[..cut]).unwrap();
            let e = verify(dir.path()).unwrap_err();
            assert!(
                e.is_corruption() && e.to_string().contains(&name),
                "{name} cut {cut}: {e}"
            );
        }
        std::fs::write(&path, &orig).unwrap();
    }
    verify(dir.path()).unwrap();
}

/// A segment written by this process keeps its postings on disk until the
/// first search; damage done to the file before that is reported by the
/// search (and by `vector`), naming the file, and the index is untouched.
#[test]
fn damage_before_the_first_search_of_a_new_segment_is_reported_by_the_search() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = synth::Synth::new(synth::SynthParams::default(), 5);
    let docs: Vec<Document> = (0..400)
        .map(|i| Document {
            id: format!("d{i}"),
            vector: g.doc(),
            tokens: None,
            source: b"{}".to_vec(),
        })
        .collect();
    let mut idx = Index::create(
        dir.path(),
        &CreateOptions::new("m"),
        WriterOptions::default(),
    )
    .unwrap();
    idx.bulk_upsert(&docs).unwrap();
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let good = std::fs::read(&seg).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    std::fs::write(&seg, &bad).unwrap();
    let q = g.query();
    let s = idx.searcher();
    let e = s
        .search(Query::Neural(&q), &SearchRequest::new(10))
        .unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains(".seg"), "{e}");
    assert!(s.vector("d1").is_err());
    // Repaired, the same snapshot loads and searches like a fresh reader.
    std::fs::write(&seg, &good).unwrap();
    let hits = s
        .search(Query::Neural(&q), &SearchRequest::new(10))
        .unwrap();
    let fresh = open_reader(dir.path()).unwrap();
    assert_eq!(
        hits,
        fresh
            .search(Query::Neural(&q), &SearchRequest::new(10))
            .unwrap()
    );
    assert!(!hits.is_empty());
    assert_eq!(s.vector("d1").unwrap(), fresh.vector("d1").unwrap());
}

#[test]
fn a_damaged_last_wal_record_is_kept_in_a_file_not_cut_off_silently() {
    let dir = tempfile::tempdir().unwrap();
    let (live, _) = build(dir.path());
    let wal = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let orig = std::fs::read(&wal).unwrap();
    let last = last_record_start(&orig);
    let mut damaged = orig.clone();
    // A payload byte of the last record (the delete of "s1-3"): its length is intact.
    *damaged.last_mut().unwrap() ^= 0x40;
    std::fs::write(&wal, &damaged).unwrap();
    let idx = Index::open(dir.path(), WriterOptions::default()).unwrap();
    assert_eq!(
        idx.info().live_docs,
        live + 1,
        "only the damaged delete is not applied"
    );
    drop(idx);
    let kept_name = format!("{}.tail-{last}", wal.file_name().unwrap().to_string_lossy());
    let kept = std::fs::read(dir.path().join(&kept_name))
        .unwrap_or_else(|e| panic!("{kept_name} should hold the dropped record: {e}"));
    assert_eq!(
        kept,
        damaged[last..],
        "the kept bytes are the dropped record"
    );
    assert_eq!(
        std::fs::read(&wal).unwrap(),
        orig[..last],
        "the WAL was cut at the record"
    );
    // An incomplete record (a torn append) is dropped without a copy.
    let dir2 = tempfile::tempdir().unwrap();
    build(dir2.path());
    let wal2 = dir2.path().join(wal.file_name().unwrap());
    let orig2 = std::fs::read(&wal2).unwrap();
    std::fs::write(&wal2, &orig2[..orig2.len() - 3]).unwrap();
    Index::open(dir2.path(), WriterOptions::default()).unwrap();
    let tails = std::fs::read_dir(dir2.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tail-")
        })
        .count();
    assert_eq!(tails, 0);
}
