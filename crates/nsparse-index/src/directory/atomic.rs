//! Replacing a file atomically and durably: write a temporary, fsync it,
//! rename it over the target, fsync the directory. The one place that does it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::directory::faults::{check, IoOp};
use crate::error::{Error, Result};

/// Write `bytes` to `dir/name` atomically and durably: `name.tmp`, fsync, rename over `name`,
/// fsync of `dir`. After a crash the file holds its old or its new content, never a mix; on
/// `Err` no temporary is left behind. Every step passes the I/O fault hook.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let written = write_tmp(&tmp, bytes).and_then(|()| rename(&tmp, &dst));
    if written.is_err() {
        // Leave no partial temporary behind: on a full disk it holds the space a retry needs.
        let _ = std::fs::remove_file(&tmp);
    }

    written?;
    fsync_dir(dir)
}

/// Write `bytes` to a new file `tmp` and fsync it.
pub(crate) fn write_tmp(tmp: &Path, bytes: &[u8]) -> Result<()> {
    check(IoOp::Create, tmp).map_err(|e| Error::io(tmp, e))?;
    let mut f = File::create(tmp).map_err(|e| Error::io(tmp, e))?;
    check(IoOp::Write, tmp)
        .and_then(|()| f.write_all(bytes))
        .map_err(|e| Error::io(tmp, e))?;
    check(IoOp::Sync, tmp)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(tmp, e))
}

/// Rename the fsynced `tmp` over `dst` (atomic: on error nothing changed).
pub(crate) fn rename(tmp: &Path, dst: &Path) -> Result<()> {
    check(IoOp::Rename, dst)
        .and_then(|()| std::fs::rename(tmp, dst))
        .map_err(|e| Error::io(dst, e))
}

/// Rename the fsynced `tmp` over `dst` and fsync `dir`, so the new file
/// replaces the old one atomically and durably.
pub(crate) fn publish(dir: &Path, tmp: &Path, dst: &Path) -> Result<()> {
    rename(tmp, dst)?;
    fsync_dir(dir)
}

/// fsync a directory so renames, creations and removals in it are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    check(IoOp::Sync, dir).map_err(|e| Error::io(dir, e))?;
    let f = OpenOptions::new()
        .read(true)
        .open(dir)
        .map_err(|e| Error::io(dir, e))?;
    f.sync_all().map_err(|e| Error::io(dir, e))
}
