//! Deterministic I/O fault injection, for the tests that prove the write path's invariants.
//!
//! Every call that writes the index's durable state — creating a file, writing to it,
//! fsyncing a file or a directory, renaming a temporary file into place — first asks
//! [`check`]. Normally that is one relaxed atomic load. A test arms a [`FaultPlan`] for a
//! directory; from then on the calls on paths under that directory are counted in program
//! order, and the chosen one (or every one from it on, for a disk that stays full) fails with
//! the chosen OS error before touching the file. Counting is per directory, so tests running
//! in parallel threads do not disturb each other.
//!
//! Calls made by the O_DIRECT writer thread are checked on the thread that hands it the
//! bytes, so the count does not depend on thread timing.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The kind of I/O call a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// Creating (or truncating) a file for writing.
    Create,
    /// Writing bytes to a file.
    Write,
    /// fsync/fdatasync of a file or a directory.
    Sync,
    /// Renaming a finished temporary file over its final name.
    Rename,
}

/// Which calls fail, once armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// Count the calls, fail none (to learn how many a scenario makes).
    CountOnly,
    /// The `n`-th call (0-based) fails once with `errno`; later calls succeed.
    Once {
        /// Index of the failing call.
        n: u64,
        /// OS error number returned (e.g. `libc::EIO`).
        errno: i32,
    },
    /// Every call from the `n`-th on fails with `errno` until the plan is dropped:
    /// a disk that fills up and stays full.
    FromOn {
        /// Index of the first failing call.
        n: u64,
        /// OS error number returned (e.g. `libc::ENOSPC`).
        errno: i32,
    },
}

struct Armed {
    id: u64,
    root: PathBuf,
    mode: FaultMode,
    calls: u64,
    failed: u64,
}

static ARMED: AtomicUsize = AtomicUsize::new(0);

static PLANS: Mutex<Vec<Armed>> = Mutex::new(Vec::new());

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An armed fault plan for one directory; dropping it disarms the plan.
#[derive(Debug)]
pub struct FaultPlan {
    id: u64,
}

impl FaultPlan {
    /// Arm `mode` for every checked call on a path under `root`.
    pub fn arm(root: impl AsRef<Path>, mode: FaultMode) -> FaultPlan {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut plans = PLANS.lock().unwrap_or_else(|p| p.into_inner());
        plans.push(Armed {
            id,
            root: root.as_ref().to_path_buf(),
            mode,
            calls: 0,
            failed: 0,
        });
        ARMED.store(plans.len(), Ordering::SeqCst);
        FaultPlan { id }
    }

    /// Checked calls under the plan's directory so far.
    pub fn calls(&self) -> u64 {
        self.with(|a| a.calls)
    }

    /// Calls that were made to fail so far.
    pub fn failed(&self) -> u64 {
        self.with(|a| a.failed)
    }

    fn with<T>(&self, f: impl Fn(&Armed) -> T) -> T {
        let plans = PLANS.lock().unwrap_or_else(|p| p.into_inner());
        let armed = plans
            .iter()
            .find(|a| a.id == self.id)
            .expect("an armed plan stays registered until dropped");
        f(armed)
    }
}

impl Drop for FaultPlan {
    fn drop(&mut self) {
        let mut plans = PLANS.lock().unwrap_or_else(|p| p.into_inner());
        plans.retain(|a| a.id != self.id);
        ARMED.store(plans.len(), Ordering::SeqCst);
    }
}

/// Ask whether the I/O call `op` on `path` may go ahead; `Err` is the injected fault.
pub(crate) fn check(op: IoOp, path: &Path) -> io::Result<()> {
    if ARMED.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }

    let mut plans = PLANS.lock().unwrap_or_else(|p| p.into_inner());
    let Some(armed) = plans.iter_mut().find(|a| path.starts_with(&a.root)) else {
        return Ok(());
    };

    let n = armed.calls;
    armed.calls += 1;
    let errno = match armed.mode {
        FaultMode::CountOnly => None,
        FaultMode::Once { n: at, errno } => (n == at).then_some(errno),
        FaultMode::FromOn { n: at, errno } => (n >= at).then_some(errno),
    };

    match errno {
        None => Ok(()),
        Some(errno) => {
            armed.failed += 1;
            tracing::debug!(?op, path = %path.display(), call = n, errno, "injected I/O fault");
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_count_and_fail_only_their_own_directory() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let plan = FaultPlan::arm(
            a.path(),
            FaultMode::Once {
                n: 1,
                errno: libc::EIO,
            },
        );
        let f = a.path().join("f");
        assert!(check(IoOp::Write, &f).is_ok());
        let e = check(IoOp::Sync, &f).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        assert!(check(IoOp::Write, &f).is_ok());
        assert!(check(IoOp::Write, &b.path().join("g")).is_ok());
        assert_eq!((plan.calls(), plan.failed()), (3, 1));
        drop(plan);
        assert!(check(IoOp::Write, &f).is_ok());
    }

    #[test]
    fn a_full_disk_stays_full_until_the_plan_is_dropped() {
        let a = tempfile::tempdir().unwrap();
        let plan = FaultPlan::arm(
            a.path(),
            FaultMode::FromOn {
                n: 0,
                errno: libc::ENOSPC,
            },
        );
        let f = a.path().join("f");
        for _ in 0..3 {
            let e = check(IoOp::Create, &f).unwrap_err();
            assert!(crate::error::is_no_space(&e));
        }
        assert_eq!(plan.failed(), 3);
        drop(plan);
        assert!(check(IoOp::Create, &f).is_ok());
    }
}
