//! Crash durability: a child process (this test binary re-executed) ingests in
//! a loop and prints each acknowledged `_id`; the parent SIGKILLs it at random
//! points, then checks that the index verifies and holds every acknowledged write.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nsparse_index::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

const CHILD_DIR: &str = "NSPARSE_INDEX_CRASH_CHILD_DIR";
const CHILD_START: &str = "NSPARSE_INDEX_CRASH_CHILD_START";

fn vector(i: u64) -> Vec<(u32, f32)> {
    let mut m = BTreeMap::new();
    for j in 0..20u64 {
        let t = ((i * 7919 + j * 104_729 + j * j * 31) % 30_522) as u32;
        m.insert(t, ((i + j) % 17) as f32 * 0.1 + 0.05);
    }
    m.into_iter().collect()
}

/// Runs the child test `name` (this binary re-executed) on `dir` from document `start`,
/// SIGKILLs it after a random pause, and returns the lines it printed.
fn run_and_kill(name: &str, dir: &Path, start: u64, rng: &mut StdRng) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_START, start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    // Only whole lines: a line the kill cut short was never acknowledged.
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut r = BufReader::new(out);
        let mut s = String::new();
        while r.read_line(&mut s).unwrap_or(0) > 0 {
            if s.ends_with('\n') {
                lines.push(s.trim_end().to_string());
            }
            s.clear();
        }
        lines
    });
    std::thread::sleep(Duration::from_millis(rng.random_range(30..400)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap()
}

fn opts() -> WriterOptions {
    WriterOptions {
        flush_docs: 1_000_000,
        merge_factor: 3,
        ..Default::default()
    }
}

/// Child role: only active when the parent sets the env var.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let start: u64 = std::env::var(CHILD_START).unwrap().parse().unwrap();
    let mut idx = match Index::open(&dir, opts()) {
        Ok(i) => i,
        Err(Error::NotAnIndex { .. }) => {
            Index::create(&dir, &CreateOptions::new("crash-model"), opts()).unwrap()
        }
        Err(e) => panic!("child open: {e}"),
    };
    for i in start.. {
        let id = format!("d{i}");
        idx.upsert(&Document {
            id: id.clone(),
            vector: vector(i),
            tokens: Some(vec![(i % 100) as u32, 7, 7]),
            source: format!("{{\"i\":{i}}}").into_bytes(),
        })
        .unwrap();
        println!("ACK {id}");
        if i % 5 == 4 {
            let victim = format!("d{}", i - 2);
            idx.delete(&victim).unwrap();
            println!("DEL {victim}");
        }
        if i % 23 == 0 {
            idx.commit().unwrap();
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut acked: HashSet<String> = HashSet::new();
    let mut deleted: HashSet<String> = HashSet::new();
    let mut next = 0u64;
    let t0 = Instant::now();
    let mut kills = 0;
    while kills < 30 && t0.elapsed() < Duration::from_secs(25) {
        let lines = run_and_kill("crash_child", dir.path(), next, &mut rng);
        kills += 1;
        for l in lines {
            if let Some(id) = l.strip_prefix("ACK ") {
                acked.insert(id.to_string());
                let n: u64 = id[1..].parse().unwrap();
                next = next.max(n + 1);
            } else if let Some(id) = l.strip_prefix("DEL ") {
                deleted.insert(id.to_string());
            }
        }
        // Skip an id that may have been half-written, so ids stay unique per attempt.
        next += 1;
        let rep = verify(dir.path()).unwrap_or_else(|e| panic!("after kill {kills}: {e}"));
        let s = open_reader(dir.path()).unwrap();
        for id in &acked {
            let v = s.vector(id).unwrap();
            if deleted.contains(id) {
                assert!(v.is_none(), "after kill {kills}: deleted {id} is back");
            } else {
                let n: u64 = id[1..].parse().unwrap();
                // The child may have been killed between deleting this doc and printing DEL.
                let maybe_deleted = n % 5 == 2 && acked.contains(&format!("d{}", n + 2));
                if maybe_deleted && v.is_none() {
                    continue;
                }
                let want: Vec<(u32, f32)> = vector(n)
                    .into_iter()
                    .map(|(t, w)| (t, dequantize(quantize(w))))
                    .collect();
                assert_eq!(
                    v.as_ref(),
                    Some(&want),
                    "after kill {kills}: acknowledged {id} missing or wrong"
                );
                assert_eq!(
                    s.get(id).unwrap().unwrap(),
                    format!("{{\"i\":{n}}}").into_bytes()
                );
            }
        }
        assert!(rep.live_docs as usize >= acked.len() - deleted.len() - acked.len() / 5 - 1);
    }
    eprintln!(
        "durability: {kills} SIGKILLs, {} acknowledged upserts, {} acknowledged deletes",
        acked.len(),
        deleted.len()
    );
    assert!(kills >= 10, "only {kills} kills");
    assert!(
        acked.len() > 50,
        "child acknowledged only {} writes",
        acked.len()
    );
    let s = open_reader(dir.path()).unwrap();
    // BM25 statistics survive too: token 7 appears in every live document.
    assert_eq!(
        s.search(Query::Bm25(&[7]), &SearchRequest::new(100_000))
            .unwrap()
            .len() as u64,
        s.num_docs()
    );
}

/// A document of the open-vocabulary crash test: a name of its own (new to the dictionary), a
/// shared one, and an id-like key.
fn named_vector(i: u64) -> Vec<(String, f32)> {
    vec![
        (format!("only-d{i}"), 1.0 + (i % 7) as f32),
        (format!("shared-{}", i % 13), 0.5),
        (format!("{}", 300_000 + i % 1000), 0.25),
    ]
}

/// Child role of the open-vocabulary SIGKILL test (active only when the parent sets the env var).
#[test]
fn open_vocabulary_crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let start: u64 = std::env::var(CHILD_START).unwrap().parse().unwrap();
    let mut idx = match Index::open(&dir, opts()) {
        Ok(i) => i,
        Err(Error::NotAnIndex { .. }) => Index::create(
            &dir,
            &CreateOptions::new("m").with_vocabulary(Vocabulary::open()),
            opts(),
        )
        .unwrap(),
        Err(e) => panic!("child open: {e}"),
    };
    for i in start.. {
        let named = named_vector(i);
        let ids = idx
            .feature_ids(named.iter().map(|(n, _)| n.as_str()))
            .unwrap();
        let d = Document {
            id: format!("d{i}"),
            vector: ids.into_iter().zip(named.iter().map(|p| p.1)).collect(),
            ..Default::default()
        };
        if i % 10 == 9 {
            idx.bulk_upsert(&[d]).unwrap();
        } else {
            idx.upsert(&d).unwrap();
        }
        println!("ACK d{i}");
        if i % 17 == 0 {
            idx.commit().unwrap();
        }
    }
}

#[test]
fn acknowledged_documents_and_their_new_names_survive_sigkill() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut acked: Vec<u64> = Vec::new();
    let mut next = 0u64;
    let t0 = Instant::now();
    let mut kills = 0;
    while kills < 20 && t0.elapsed() < Duration::from_secs(20) {
        let lines = run_and_kill("open_vocabulary_crash_child", dir.path(), next, &mut rng);
        kills += 1;
        for l in lines {
            if let Some(n) = l.strip_prefix("ACK d") {
                let n: u64 = n.parse().unwrap();
                acked.push(n);
                next = next.max(n + 1);
            }
        }
        next += 1;
        verify(dir.path()).unwrap_or_else(|e| panic!("after kill {kills}: {e}"));
        let s = open_reader(dir.path()).unwrap();
        for &n in &acked {
            let got: BTreeMap<String, f32> = s
                .vector(&format!("d{n}"))
                .unwrap()
                .unwrap_or_else(|| panic!("after kill {kills}: acknowledged d{n} missing"))
                .into_iter()
                .map(|(t, w)| (s.feature_name(t).unwrap().to_string(), w))
                .collect();
            let want: BTreeMap<String, f32> = named_vector(n)
                .into_iter()
                .map(|(name, w)| (name, dequantize(quantize(w))))
                .collect();
            assert_eq!(got, want, "after kill {kills}: d{n}");
        }
        // Its own name finds each acknowledged document.
        if let Some(&n) = acked.last() {
            let q = s
                .resolve_features([(format!("only-d{n}").as_str(), 1.0)])
                .unwrap();
            let hits = s.search(Query::Neural(&q), &SearchRequest::new(5)).unwrap();
            assert_eq!(hits.len(), 1);
            assert_eq!(hits[0].id, format!("d{n}"));
        }
    }
    eprintln!(
        "open vocabulary durability: {kills} SIGKILLs, {} acknowledged documents",
        acked.len()
    );
    assert!(kills >= 10, "only {kills} kills");
    assert!(acked.len() > 50, "child acknowledged only {}", acked.len());
}
