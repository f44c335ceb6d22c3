//! Fuzzing of every index file reader through the public API: a small real index is built once,
//! then each case copies it, damages one or more files (flipped, set, inserted, removed, zeroed,
//! duplicated bytes, truncation, appended garbage) and opens the copy with `verify`,
//! `open_reader` (and every search mode) and `Index::open`.
//!
//! What must hold, whatever the damage:
//! - nothing panics;
//! - a changed `MANIFEST`, segment (`*.seg`) or deletion bitmap (`*.del`) is an error, corruption
//!   (naming the file) or I/O, from every entry point;
//! - a changed WAL (`wal-*.log`) is either corruption, or drops a torn tail: the index then holds
//!   exactly the writes acknowledged before some point at or after the first damaged byte (never
//!   losing a record that ends before it), searches agree with that state, and a writer opens it,
//!   accepts a new write and reopens.
//!
//! Cases per property: 256, or `NSPARSE_FUZZ_CASES`. Failing cases found by proptest are kept in
//! `fuzz_files.proptest-regressions` next to this file and replayed first.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use nsparse_index::*;
use nsparse_testkit::synth;
use proptest::prelude::*;
use proptest::sample::Index as Pick;

fn cases() -> u32 {
    std::env::var("NSPARSE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// What a reader sees of an index: live `_id`s with their stored sources, and the results of a
/// few searches (ids and scores) in several modes.
#[derive(Debug, Clone, PartialEq)]
struct Signature {
    docs: BTreeMap<String, StoredDocument>,
    searches: Vec<Vec<(String, u32)>>,
}

/// Neural queries and BM25 token queries.
type Queries = (Vec<Vec<(u32, f32)>>, Vec<Vec<u32>>);

/// A write to the index under test.
type Write = Box<dyn Fn(&mut Index, &mut synth::Synth)>;

fn queries() -> Queries {
    let mut g = synth::Synth::new(synth::SynthParams::default(), 77);
    let neural = (0..2).map(|_| g.query()).collect();
    let bm25 = (0..2).map(|_| g.text(4)).collect();
    (neural, bm25)
}

fn hits(r: Vec<Hit>) -> Vec<(String, u32)> {
    r.into_iter().map(|h| (h.id, h.score.to_bits())).collect()
}

/// Every search entry point on `s`; any error is returned (a reader that opened must search).
fn signature(s: &Searcher) -> Result<Signature> {
    let (neural, bm25) = queries();
    let mut docs = BTreeMap::new();
    for d in s.documents() {
        let d = d?;
        docs.insert(d.id.clone(), d);
    }
    let mut searches = Vec::new();
    for q in &neural {
        for mode in [
            SearchMode::Exact,
            SearchMode::ExactTaat,
            SearchMode::ExactMaxScore,
            SearchMode::ExactBlockMax,
            SearchMode::Approximate {
                top_n: 5,
                heap_factor: 1.0,
            },
            SearchMode::two_phase(),
        ] {
            let exact = !matches!(
                mode,
                SearchMode::Approximate { .. } | SearchMode::TwoPhase { .. }
            );
            let r = hits(s.search(
                Query::Neural(q),
                &SearchRequest::new(7).mode(mode).with_source(true),
            )?);
            if exact {
                searches.push(r);
            }
        }
        s.explain(q, "s0-1")?;
        let filter = |id: &str| id.ends_with('1');
        searches.push(hits(
            s.search(Query::Neural(q), &SearchRequest::new(5).filter(&filter))?,
        ));
        s.search(
            Query::Hybrid {
                vector: q,
                tokens: &bm25[0],
            },
            &SearchRequest::new(5),
        )?;
    }
    for t in &bm25 {
        searches.push(hits(s.search(
            Query::Bm25(t),
            &SearchRequest::new(6).explain(true).with_source(true),
        )?));
    }
    for id in docs.keys().take(5) {
        assert!(s.contains(id), "{id} listed but not contained");
        assert!(s.get(id)?.is_some(), "{id} listed but not found");
        s.vector(id)?;
    }
    assert_eq!(s.num_docs(), docs.len() as u64, "num_docs vs documents()");
    Ok(Signature { docs, searches })
}

/// The pristine index: its directory, each file's bytes, and for the WAL the file length after
/// every acknowledged write since the last commit with the state a reader saw right then.
struct Pristine {
    _dir: tempfile::TempDir,
    files: Vec<(String, Vec<u8>)>,
    wal: String,
    /// (WAL length after the write, reader's view after it); entry 0 is the state at commit.
    steps: Vec<(usize, Signature)>,
    /// The step that wrote a batch of documents, and their `_id`s in order: its records may
    /// survive a crash in part (the batch was not acknowledged then).
    batch: (usize, Vec<String>),
}

/// The write after which a reader sees `seen`: the latest step with that state, or for the
/// batch cut short, the step before it.
fn state_step(p: &Pristine, seen: &Signature) -> Option<usize> {
    if let Some(i) = p.steps.iter().rposition(|(_, s)| s == seen) {
        return Some(i);
    }
    let (j, ids) = &p.batch;
    let (before, after) = (&p.steps[j - 1].1.docs, &p.steps[*j].1.docs);
    (1..ids.len())
        .any(|m| {
            let mut want = before.clone();
            for id in &ids[..m] {
                want.insert(id.clone(), after[id].clone());
            }
            seen.docs == want
        })
        .then_some(j - 1)
}

fn doc(g: &mut synth::Synth, id: &str, n: usize, tokens: bool) -> Document {
    Document {
        id: id.into(),
        vector: g.doc(),
        tokens: tokens.then(|| g.text(12)),
        source: format!("{{\"n\":{n},\"text\":\"source {id}\"}}").into_bytes(),
    }
}

fn pristine() -> &'static Pristine {
    static P: OnceLock<Pristine> = OnceLock::new();
    P.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let mut g = synth::Synth::new(synth::SynthParams::default(), 9);
        let mut idx = Index::create(
            path,
            &CreateOptions::new("fuzz"),
            WriterOptions {
                flush_docs: 1_000_000,
                merge_factor: 8,
                build_threads: 1,
                ..WriterOptions::default()
            },
        )
        .unwrap();
        // Two segments (one bulk-built, one flushed from the WAL), deletions in both.
        let first: Vec<Document> = (0..70)
            .map(|i| doc(&mut g, &format!("s0-{i}"), i, true))
            .collect();
        idx.bulk_upsert(&first).unwrap();
        let second: Vec<Document> = (0..50)
            .map(|i| doc(&mut g, &format!("s1-{i}"), i, i % 3 != 0))
            .collect();
        idx.add_batch(&second).unwrap();
        idx.commit().unwrap();
        for i in [0, 5, 9] {
            assert!(idx.delete(&format!("s0-{i}")).unwrap());
        }
        assert!(idx.delete("s1-7").unwrap());
        idx.commit().unwrap();
        // Acknowledged writes after the last commit, one WAL append each.
        let wal = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|n| n.ends_with(".log"))
            .unwrap();
        let wal_len = || std::fs::metadata(path.join(&wal)).unwrap().len() as usize;
        let mut steps = vec![(wal_len(), signature(&idx.searcher()).unwrap())];
        let writes: Vec<Write> = vec![
            Box::new(|x, g| x.upsert(&doc(g, "w0", 0, true)).unwrap()),
            Box::new(|x, g| x.upsert(&doc(g, "w1", 1, false)).unwrap()),
            Box::new(|x, _| assert!(x.delete("s1-3").unwrap())),
            Box::new(|x, g| x.upsert(&doc(g, "s0-20", 20, true)).unwrap()),
            Box::new(|x, g| {
                let batch: Vec<Document> =
                    (2..5).map(|i| doc(g, &format!("w{i}"), i, true)).collect();
                x.add_batch(&batch).unwrap()
            }),
            Box::new(|x, _| assert!(x.delete("w0").unwrap())),
            Box::new(|x, g| x.upsert(&doc(g, "w1", 11, true)).unwrap()),
        ];
        for write in writes {
            write(&mut idx, &mut g);
            steps.push((wal_len(), signature(&idx.searcher()).unwrap()));
        }
        drop(idx);
        // A fresh reader agrees with the writer's last view.
        assert_eq!(
            signature(&open_reader(path).unwrap()).unwrap(),
            steps.last().unwrap().1
        );
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap() != "LOCK")
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        for kind in ["MANIFEST", ".seg", ".del", ".log"] {
            assert!(
                files.iter().any(|(n, _)| n.ends_with(kind)),
                "no {kind} file: {:?}",
                files.iter().map(|f| &f.0).collect::<Vec<_>>()
            );
        }
        assert!(
            files.iter().filter(|(n, _)| n.ends_with(".seg")).count() >= 2,
            "two segments expected"
        );
        Pristine {
            _dir: dir,
            files,
            wal,
            steps,
            batch: (5, vec!["w2".into(), "w3".into(), "w4".into()]),
        }
    })
}

/// One kind of damage; positions are picked in the file at hand.
#[derive(Debug, Clone)]
enum Damage {
    Flip(Pick, u8),
    Set(Pick, u8),
    Truncate(Pick),
    Insert(Pick, Vec<u8>),
    Remove(Pick, usize),
    Overwrite(Pick, Vec<u8>),
    Zero(Pick, usize),
    /// Copy `len` bytes from one place over another (plausible-looking garbage).
    Copy(Pick, Pick, usize),
    Append(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    let bytes = prop::collection::vec(any::<u8>(), 1..24);
    prop_oneof![
        4 => (any::<Pick>(), 1..=255u8).prop_map(|(p, m)| Damage::Flip(p, m)),
        1 => (any::<Pick>(), any::<u8>()).prop_map(|(p, b)| Damage::Set(p, b)),
        2 => any::<Pick>().prop_map(Damage::Truncate),
        1 => (any::<Pick>(), bytes.clone()).prop_map(|(p, b)| Damage::Insert(p, b)),
        1 => (any::<Pick>(), 1..64usize).prop_map(|(p, n)| Damage::Remove(p, n)),
        1 => (any::<Pick>(), bytes.clone()).prop_map(|(p, b)| Damage::Overwrite(p, b)),
        1 => (any::<Pick>(), 1..4096usize).prop_map(|(p, n)| Damage::Zero(p, n)),
        1 => (any::<Pick>(), any::<Pick>(), 1..64usize).prop_map(|(a, b, n)| Damage::Copy(a, b, n)),
        1 => bytes.prop_map(Damage::Append),
    ]
}

fn apply(b: &mut Vec<u8>, d: &Damage) {
    let at = |p: &Pick, len: usize| if len == 0 { 0 } else { p.index(len) };
    let len = b.len();
    match d {
        Damage::Flip(p, m) if len > 0 => b[at(p, len)] ^= m,
        Damage::Set(p, v) if len > 0 => b[at(p, len)] = *v,
        Damage::Truncate(p) => b.truncate(at(p, len)),
        Damage::Insert(p, bytes) => {
            let i = at(p, len + 1);
            b.splice(i..i, bytes.iter().copied());
        }
        Damage::Remove(p, n) if len > 0 => {
            let i = at(p, len);
            b.drain(i..(i + n).min(len));
        }
        Damage::Overwrite(p, bytes) if len > 0 => {
            let i = at(p, len);
            for (k, &x) in bytes.iter().enumerate() {
                if let Some(slot) = b.get_mut(i + k) {
                    *slot = x;
                }
            }
        }
        Damage::Zero(p, n) if len > 0 => {
            let i = at(p, len);
            b[i..(i + n).min(len)].fill(0);
        }
        Damage::Copy(from, to, n) if len > 0 => {
            let (i, j) = (at(from, len), at(to, len));
            let n = (*n).min(len - i).min(len - j);
            b.copy_within(i..i + n, j);
        }
        Damage::Append(bytes) => b.extend_from_slice(bytes),
        _ => {}
    }
}

/// A copy of the pristine index with `changes` (file name → new bytes).
fn damaged_copy(p: &Pristine, changes: &BTreeMap<String, Vec<u8>>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in &p.files {
        let bytes = changes.get(name).unwrap_or(bytes);
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

fn writer_options() -> WriterOptions {
    WriterOptions {
        flush_docs: 1_000_000,
        merge_factor: 8,
        build_threads: 1,
        ..WriterOptions::default()
    }
}

/// An error from damaged files: corruption naming one of `damaged`, or an I/O error.
fn check_error(e: &Error, damaged: &[&String], what: &str) {
    match e {
        Error::Io { .. } => {}
        e if e.is_corruption() => {
            let text = e.to_string();
            assert!(
                damaged.iter().any(|n| text.contains(n.as_str())),
                "{what}: the error names none of the damaged files {damaged:?}: {text}"
            );
        }
        e => panic!("{what}: damaged files gave neither corruption nor I/O: {e}"),
    }
}

/// Opens the damaged copy every way and checks the outcome. Returns whether it opened.
fn check_damaged(p: &Pristine, changes: &BTreeMap<String, Vec<u8>>) -> bool {
    let changed: Vec<&String> = changes
        .iter()
        .filter(|(n, b)| p.files.iter().any(|(m, o)| m == *n && o != *b))
        .map(|(n, _)| n)
        .collect();
    let dir = damaged_copy(p, changes);
    let path = dir.path();
    let verified = verify(path);
    let reader = open_reader(path);
    let Ok(report) = verified else {
        let e = verified.unwrap_err();
        check_error(&e, &changed, "verify");
        let Err(r) = reader else {
            panic!("verify failed but open_reader succeeded");
        };
        check_error(&r, &changed, "open_reader");
        let Err(w) = Index::open(path, writer_options()) else {
            panic!("verify failed but Index::open succeeded");
        };
        check_error(&w, &changed, "Index::open");
        return false;
    };
    // Only the WAL may be damaged and still open, by dropping a torn tail.
    let others: Vec<&&String> = changed.iter().filter(|n| **n != &p.wal).collect();
    assert!(
        others.is_empty(),
        "damage to {others:?} was not detected (report {report:?})"
    );
    let reader = reader.expect("verify succeeded but open_reader failed");
    let seen = signature(&reader).expect("an index that opened must search");
    // The state is the one after some acknowledged write at or after the damage (the last
    // one when the damage changed nothing).
    let orig = &p.files.iter().find(|(n, _)| *n == p.wal).unwrap().1;
    let wal = changes.get(&p.wal).unwrap_or(orig);
    let first = first_difference(orig, wal).unwrap_or(usize::MAX);
    let intact = p.steps.iter().filter(|(end, _)| *end <= first).count();
    let step = state_step(p, &seen).unwrap_or_else(|| {
        panic!(
            "the damaged WAL opened as a state no writer acknowledged: {} docs {:?}",
            seen.docs.len(),
            report
        )
    });
    assert!(
        step + 1 >= intact,
        "records lost before the damage at byte {first}: state after write {step}, {intact} intact steps"
    );
    assert_eq!(report.live_docs, seen.docs.len() as u64);
    // A writer opens it (truncating the torn tail), takes a write and reopens.
    let mut idx =
        Index::open(path, writer_options()).expect("verify succeeded but the writer failed");
    assert_eq!(idx.info().live_docs, report.live_docs);
    let mut g = synth::Synth::new(synth::SynthParams::default(), 123);
    idx.upsert(&doc(&mut g, "after", 0, true)).unwrap();
    drop(idx);
    let again = verify(path).expect("reopen after a write");
    assert_eq!(again.wal_torn_bytes, 0, "the writer left a torn tail");
    assert_eq!(again.live_docs, report.live_docs + 1);
    let s = open_reader(path).unwrap();
    assert!(s.contains("after"));
    for id in seen.docs.keys() {
        assert!(s.contains(id), "{id} lost after the writer reopened");
    }
    true
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        max_shrink_iters: 200,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    }
}

fn damage_one(p: &Pristine, file: &Pick, damages: &[Damage], kinds: &[&str]) {
    let names: Vec<&(String, Vec<u8>)> = p
        .files
        .iter()
        .filter(|(n, _)| kinds.iter().any(|k| n.ends_with(k)))
        .collect();
    let (name, orig) = names[file.index(names.len())];
    let mut bytes = orig.clone();
    for d in damages {
        apply(&mut bytes, d);
    }
    check_damaged(p, &BTreeMap::from([(name.clone(), bytes)]));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn damaged_segments_are_errors(file in any::<Pick>(), damages in prop::collection::vec(damage(), 1..4)) {
        damage_one(pristine(), &file, &damages, &[".seg"]);
    }

    #[test]
    fn damaged_manifests_and_deletion_bitmaps_are_errors(file in any::<Pick>(), damages in prop::collection::vec(damage(), 1..4)) {
        damage_one(pristine(), &file, &damages, &["MANIFEST", ".del"]);
    }

    #[test]
    fn damaged_wals_are_errors_or_lose_only_a_torn_tail(file in any::<Pick>(), damages in prop::collection::vec(damage(), 1..3)) {
        // (There is one WAL.)
        damage_one(pristine(), &file, &damages, &[".log"]);
    }

    #[test]
    fn several_damaged_files_are_errors(
        picks in prop::collection::vec((any::<Pick>(), damage()), 2..5)
    ) {
        let p = pristine();
        let mut changes: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (file, d) in &picks {
            let (name, orig) = &p.files[file.index(p.files.len())];
            let bytes = changes.entry(name.clone()).or_insert_with(|| orig.clone());
            apply(bytes, d);
        }
        check_damaged(p, &changes);
    }
}

/// Truncations of the WAL past its header keep exactly the writes whose records they hold
/// whole (cuts at, around and between every record boundary); cuts inside the header are errors.
#[test]
fn wal_truncations_keep_the_complete_records() {
    let p = pristine();
    let orig = &p.files.iter().find(|(n, _)| *n == p.wal).unwrap().1;
    let header = p.steps[0].0;
    let mut cuts: Vec<usize> = (0..header).collect();
    for w in p.steps.windows(2) {
        let (a, b) = (w[0].0, w[1].0);
        cuts.extend([a, a + 1, a + 4, a + 11, a + 12, a + 13, (a + b) / 2, b - 1]);
    }
    cuts.retain(|&c| c < orig.len());
    cuts.sort_unstable();
    cuts.dedup();
    for (n, &cut) in cuts.iter().enumerate() {
        let changes = BTreeMap::from([(p.wal.clone(), orig[..cut].to_vec())]);
        let dir = damaged_copy(p, &changes);
        let path = dir.path();
        if cut < header {
            check_error(&verify(path).unwrap_err(), &[&p.wal], "truncated header");
            assert!(open_reader(path).is_err() && Index::open(path, writer_options()).is_err());
            continue;
        }
        let report = verify(path).unwrap_or_else(|e| panic!("WAL cut at {cut}: {e}"));
        let whole = p.steps.iter().filter(|(end, _)| *end <= cut).count() - 1;
        let seen = signature(&open_reader(path).unwrap()).unwrap();
        assert_eq!(
            state_step(p, &seen),
            Some(whole),
            "WAL cut at {cut}: not the state after write {whole}"
        );
        let at_boundary = p.steps.iter().any(|(end, _)| *end == cut);
        if at_boundary {
            assert_eq!(report.wal_torn_bytes, 0, "cut {cut}");
        } else if whole + 1 != p.batch.0 {
            assert!(report.wal_torn_bytes > 0, "cut {cut}");
        }
        if n % 4 == 0 {
            check_damaged(p, &changes);
        }
    }
}

/// Files that are not index files at all, or are missing, are errors too.
#[test]
fn missing_and_foreign_files_are_errors() {
    let p = pristine();
    for (name, _) in &p.files {
        let dir = damaged_copy(p, &BTreeMap::new());
        std::fs::remove_file(dir.path().join(name)).unwrap();
        let e = verify(dir.path()).unwrap_err();
        assert!(
            matches!(e, Error::Io { .. } | Error::NotAnIndex { .. }) || e.is_corruption(),
            "{name} missing: {e}"
        );
        assert!(open_reader(dir.path()).is_err());
        assert!(Index::open(dir.path(), writer_options()).is_err());
        // Another file's bytes under this name.
        for (other, bytes) in &p.files {
            if other != name {
                let changes = BTreeMap::from([(name.clone(), bytes.clone())]);
                check_damaged(p, &changes);
            }
        }
    }
}
