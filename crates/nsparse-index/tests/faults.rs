//! The write path under injected I/O faults: every create, write, fsync and rename of a
//! scenario (writes, deletes, automatic and explicit commits, a bulk load, merges) is made to
//! fail in turn, once (EIO) and from then on (a disk that fills up and stays full, ENOSPC).
//!
//! Invariants checked after every operation and every fault:
//! - an operation that returned `Ok` is visible, one that returned `Err` left no trace
//!   (a failed commit leaves the writer exactly as before);
//! - once the fault is gone, a retried commit succeeds;
//! - the directory always opens and verifies, with exactly the acknowledged documents,
//!   whether it is reopened straight after the fault (as after a crash) or after the retry.

use std::collections::BTreeMap;

use nsparse_index::faults::{FaultMode, FaultPlan};
use nsparse_index::*;

/// The acknowledged state: `_id` → the seed its vector was made from.
type Model = BTreeMap<String, u64>;

fn vector(seed: u64) -> Vec<(u32, f32)> {
    let mut m = BTreeMap::new();
    for j in 0..12u64 {
        let t = ((seed * 7919 + j * 104_729 + j * j * 31) % 30_522) as u32;
        m.insert(t, ((seed + j) % 13) as f32 * 0.25 + 0.5);
    }
    m.into_iter().collect()
}

/// Which vocabulary the scenario's index has. With an open one, token `t` is the feature
/// named `f{t}` and the dictionary starts empty, so every write brings new names (WAL
/// records, dictionary files at commits).
#[derive(Clone, Copy, Debug)]
enum Vocab {
    Fixed,
    Open,
}

fn create_options(vocab: Vocab) -> CreateOptions {
    match vocab {
        Vocab::Fixed => CreateOptions::new("m"),
        Vocab::Open => CreateOptions::new("m").with_vocabulary(Vocabulary::open()),
    }
}

fn doc(idx: &mut Index, id: &str, seed: u64) -> Document {
    let mut vector = vector(seed);
    let open = idx.info().open_vocabulary;
    if open {
        let names: Vec<String> = vector.iter().map(|p| format!("f{}", p.0)).collect();
        let ids = idx.feature_ids(names.iter().map(String::as_str)).unwrap();
        for (p, id) in vector.iter_mut().zip(ids) {
            p.0 = id;
        }
    }
    Document {
        id: id.to_string(),
        vector,
        // BM25 token ids are ids of the same vocabulary: the open one holds only names.
        tokens: (!open).then(|| vec![(seed % 50) as u32, 3, 3]),
        source: format!("{{\"seed\":{seed}}}").into_bytes(),
    }
}

fn opts() -> WriterOptions {
    WriterOptions {
        flush_docs: 4,
        merge_factor: 2,
        build_threads: 1,
        ..WriterOptions::default()
    }
}

/// The documents a searcher sees, as `_id` → vector (by token: an open vocabulary's names
/// mapped back).
fn contents(s: &Searcher) -> BTreeMap<String, Vec<(u32, f32)>> {
    s.documents()
        .map(|d| d.expect("stored document reads"))
        .map(|d| {
            let mut v = d.vector;
            if s.has_open_vocabulary() {
                for p in v.iter_mut() {
                    let name = s.feature_name(p.0).expect("every stored id has a name");
                    p.0 = name[1..].parse().expect("a scenario name");
                }
                v.sort_by_key(|p| p.0);
            }
            (d.id, v)
        })
        .collect()
}

/// Panics unless `s` holds exactly the documents of `model`, with their vectors.
fn assert_matches(s: &Searcher, model: &Model, when: &str) {
    let got = contents(s);
    let want: BTreeMap<String, Vec<(u32, f32)>> = model
        .iter()
        .map(|(id, &seed)| (id.clone(), quantized(&vector(seed))))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{when}: live _ids differ from the acknowledged ones"
    );
    assert_eq!(got, want, "{when}: a stored vector differs");
    for (id, &seed) in model {
        let source = s
            .get(id)
            .unwrap()
            .expect("acknowledged document has a source");
        assert_eq!(
            source,
            format!("{{\"seed\":{seed}}}").into_bytes(),
            "{when}"
        );
    }
}

fn quantized(v: &[(u32, f32)]) -> Vec<(u32, f32)> {
    v.iter()
        .map(|&(t, w)| (t, dequantize(quantize(w))))
        .collect()
}

/// One operation of the scenario; `Ok` means acknowledged.
enum Op {
    Upsert(Vec<(&'static str, u64)>),
    Add(Vec<(&'static str, u64)>),
    Delete(&'static str),
    Bulk(Vec<(&'static str, u64)>),
    Commit,
    Merge,
}

fn scenario() -> Vec<Op> {
    use Op::*;
    vec![
        Upsert(vec![("a", 1), ("b", 2), ("c", 3)]),
        Upsert(vec![("d", 4), ("e", 5)]), // reaches flush_docs: automatic commit
        Delete("b"),
        Upsert(vec![("a", 11)]),
        Commit, // deletion bitmap + segment + merge
        Bulk(vec![("e", 15), ("f", 6), ("g", 7)]),
        Add(vec![("h", 8), ("i", 9)]),
        Delete("f"),
        Upsert(vec![("j", 10), ("k", 12), ("l", 13)]), // automatic commit
        Merge,
        Delete("a"),
        Upsert(vec![("m", 14)]),
    ]
}

/// Applies `op`; on `Ok` updates `model`. Returns whether it was acknowledged.
fn apply(idx: &mut Index, op: &Op, model: &mut Model) -> bool {
    let docs = |idx: &mut Index, v: &[(&str, u64)]| {
        v.iter().map(|&(id, s)| doc(idx, id, s)).collect::<Vec<_>>()
    };
    let put = |model: &mut Model, v: &[(&str, u64)]| {
        for &(id, s) in v {
            model.insert(id.to_string(), s);
        }
    };
    match op {
        Op::Upsert(v) => {
            let d = docs(idx, v);
            idx.upsert_batch(&d).map(|()| put(model, v)).is_ok()
        }
        Op::Add(v) => {
            let d = docs(idx, v);
            idx.add_batch(&d).map(|()| put(model, v)).is_ok()
        }
        Op::Bulk(v) => {
            let d = docs(idx, v);
            idx.bulk_upsert(&d).map(|()| put(model, v)).is_ok()
        }
        Op::Delete(id) => match idx.delete(id) {
            Ok(existed) => {
                assert_eq!(existed, model.remove(*id).is_some(), "delete {id}");
                true
            }
            Err(_) => false,
        },
        Op::Commit => idx.commit().is_ok(),
        Op::Merge => idx.force_merge(1).is_ok(),
    }
}

/// Runs the scenario under `mode` in a fresh directory; returns (the directory, the
/// acknowledged model, the index handle still open, calls counted, faults injected).
fn run(mode: FaultMode, vocab: Vocab) -> (tempfile::TempDir, Model, Option<Index>, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx");
    let mut model = Model::new();
    let plan = FaultPlan::arm(&path, mode);
    let mut idx = match Index::create(&path, &create_options(vocab), opts()) {
        Ok(idx) => idx,
        Err(e) => {
            // Nothing was acknowledged; creating again once the fault is gone works.
            let (calls, failed) = (plan.calls(), plan.failed());
            drop(plan);
            assert!(failed > 0, "create failed without a fault: {e}");
            let idx = Index::create(&path, &create_options(vocab), opts())
                .unwrap_or_else(|e| panic!("create after a failed create: {e}"));
            return (dir, model, Some(idx), calls, failed);
        }
    };
    for (step, op) in scenario().iter().enumerate() {
        let acknowledged = apply(&mut idx, op, &mut model);
        if !acknowledged {
            assert!(plan.failed() > 0, "step {step} failed without a fault");
        }
        // Whatever happened, the writer shows exactly the acknowledged state.
        assert_matches(
            &idx.searcher(),
            &model,
            &format!("{mode:?}, after step {step}"),
        );
    }
    let (calls, failed) = (plan.calls(), plan.failed());
    (dir, model, Some(idx), calls, failed)
}

fn reopen_and_check(dir: &std::path::Path, model: &Model, when: &str) {
    let report = verify(dir).unwrap_or_else(|e| panic!("{when}: verify: {e}"));
    assert_eq!(report.live_docs, model.len() as u64, "{when}");
    let mut idx = Index::open(dir, opts()).unwrap_or_else(|e| panic!("{when}: open: {e}"));
    assert_matches(&idx.searcher(), model, when);
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "{when}: temporary files left: {leftovers:?}"
    );
}

fn faulted_runs(errno: i32, persistent: bool, vocab: Vocab) -> (u64, u64) {
    let (_, _, _, total, _) = run(FaultMode::CountOnly, vocab);
    assert!(total > 50, "the scenario makes {total} checked I/O calls");
    let mut failed_ops = 0;
    for n in 0..total {
        let mode = if persistent {
            FaultMode::FromOn { n, errno }
        } else {
            FaultMode::Once { n, errno }
        };
        let (tmp, model, idx, _, failed) = run(mode, vocab);
        assert!(failed > 0, "{mode:?}: no fault was injected");
        failed_ops += failed;
        let path = tmp.path().join("idx");
        let when = format!("{mode:?}, {vocab:?} vocabulary");
        // As after a crash straight after the fault.
        let mut idx = idx.unwrap();
        {
            let snapshot = tempfile::tempdir().unwrap();
            copy_dir(&path, snapshot.path());
            reopen_and_check(snapshot.path(), &model, &format!("{when}, crash copy"));
        }
        // The fault is gone: a retried commit succeeds and loses nothing.
        idx.commit()
            .unwrap_or_else(|e| panic!("{when}: commit after the fault: {e}"));
        assert_matches(&idx.searcher(), &model, &format!("{when}, after retry"));
        let mut model = model;
        let after = doc(&mut idx, "after", 99);
        idx.upsert(&after).unwrap();
        model.insert("after".into(), 99);
        drop(idx);
        reopen_and_check(&path, &model, &format!("{when}, reopened"));
    }
    (total, failed_ops)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn every_single_io_failure_loses_nothing_acknowledged() {
    let (calls, faults) = faulted_runs(libc::EIO, false, Vocab::Fixed);
    eprintln!("EIO once: {calls} call sites in the scenario, {faults} faults injected");
}

#[test]
fn every_single_io_failure_loses_nothing_acknowledged_nor_its_names() {
    let (calls, faults) = faulted_runs(libc::EIO, false, Vocab::Open);
    eprintln!("EIO once, open vocabulary: {calls} call sites, {faults} faults injected");
}

#[test]
fn a_disk_that_fills_up_at_any_call_loses_no_acknowledged_name() {
    let (calls, faults) = faulted_runs(libc::ENOSPC, true, Vocab::Open);
    eprintln!("ENOSPC from then on, open vocabulary: {calls} call sites, {faults} faults injected");
}

#[test]
fn a_disk_that_fills_up_at_any_call_loses_nothing_acknowledged() {
    let (calls, faults) = faulted_runs(libc::ENOSPC, true, Vocab::Fixed);
    eprintln!("ENOSPC from then on: {calls} call sites in the scenario, {faults} faults injected");
}

#[test]
fn disk_full_errors_say_so_and_writes_resume_by_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx");
    let mut idx = Index::create(&path, &CreateOptions::new("m"), opts()).unwrap();
    let batch = [doc(&mut idx, "a", 1), doc(&mut idx, "b", 2)];
    idx.upsert_batch(&batch).unwrap();
    let plan = FaultPlan::arm(
        &path,
        FaultMode::FromOn {
            n: 0,
            errno: libc::ENOSPC,
        },
    );
    let c = doc(&mut idx, "c", 3);
    let e = idx.upsert(&c).unwrap_err();
    assert!(e.is_no_space(), "{e}");
    let e = idx.commit().unwrap_err();
    assert!(e.is_no_space(), "{e}");
    assert!(!idx.contains("c"));
    drop(plan);
    idx.upsert(&c).unwrap();
    idx.commit().unwrap();
    drop(idx);
    let model: Model = [("a", 1), ("b", 2), ("c", 3)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    reopen_and_check(&path, &model, "after the disk had room again");
}

#[test]
fn a_failed_automatic_commit_does_not_fail_the_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx");
    let mut idx = Index::create(&path, &CreateOptions::new("m"), opts()).unwrap();
    let batch = [
        doc(&mut idx, "a", 1),
        doc(&mut idx, "b", 2),
        doc(&mut idx, "c", 3),
    ];
    idx.upsert_batch(&batch).unwrap();
    // The WAL append (a write and an fsync) succeeds; the commit it triggers fails.
    let plan = FaultPlan::arm(
        &path,
        FaultMode::FromOn {
            n: 2,
            errno: libc::ENOSPC,
        },
    );
    let d = doc(&mut idx, "d", 4);
    idx.upsert(&d)
        .expect("the write is in the WAL, so it is acknowledged");
    assert!(plan.failed() > 0, "the automatic commit was tried");
    drop(plan);
    assert_eq!(idx.info().buffered_docs, 4, "still buffered, not lost");
    drop(idx);
    let model: Model = [("a", 1), ("b", 2), ("c", 3), ("d", 4)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    reopen_and_check(&path, &model, "after a failed automatic commit");
}
