//! Sequential writer for large new files that bypasses the page cache.
//!
//! A segment of a million documents is about a gigabyte. Written through the
//! page cache and then fsynced, it cost about 4 s per GB on the benchmark host: every
//! cache page is fresh memory the kernel (and, in a VM, the host) must
//! provide, and the data is copied twice. Written with `O_DIRECT` from a
//! background thread it costs about 0.9 s per GB, and the encoding of the next
//! bytes overlaps the device write of the previous ones (measured with `dd`
//! and `examples/build_profile`, see BENCHMARKS.md).
//!
//! `O_DIRECT` needs block-aligned buffers, offsets and lengths, so the sink
//! collects bytes in aligned blocks and writes whole blocks; the unaligned
//! tail of the file and any in-place patch (the container header) go through
//! an ordinary descriptor. Filesystems without `O_DIRECT` (tmpfs) and
//! non-Linux systems use the ordinary descriptor for everything. Durability
//! is unchanged: the caller still fsyncs before publishing the file.
//!
//! A direct write may still sit in the device's volatile write cache (in a
//! VM, the host's page cache), and the final fsync then waits for all of it.
//! So the background thread also asks the device to persist what it has
//! written every [`SYNC_EVERY`] bytes, while the caller goes on encoding.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;

use crate::directory::faults::{check, IoOp};
use crate::error::{Error, Result};

/// Alignment of direct-I/O buffers, offsets and lengths (the largest logical
/// block size in common use).
const ALIGN: usize = 4096;

/// Bytes per direct write.
const BLOCK: usize = 4 << 20;

/// Most blocks in flight (one filling, the others queued or being
/// written), allocated as needed. A build on several threads appends each
/// postings tile (~50 MB at a million documents) in one burst after the
/// tile's sort: with room for the whole burst, the device writes it while
/// the next tile is sorted. With room for 24 MB, a one-thread build of 1M
/// documents (which then buffered its tiles too) waited 0.75-0.9 s on the
/// device (BENCHMARKS.md).
const BLOCKS_MAX: usize = 32;

/// Bytes the writer thread writes between two `fdatasync` calls. Without
/// them the final fsync of an 815 MB segment took 0.4-0.96 s, all of
/// it on the building thread; with them it takes ~15 ms, and the wait for
/// the thread's last write and sync ~0.1 s (BENCHMARKS.md).
const SYNC_EVERY: u64 = 32 << 20;

/// A heap buffer whose usable part starts at an `ALIGN`-aligned address.
struct AlignedBlock {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBlock {
    fn new() -> AlignedBlock {
        let raw = vec![0u8; BLOCK + ALIGN];
        let start = raw.as_ptr().align_offset(ALIGN);
        assert!(start < ALIGN, "allocator returned an unalignable pointer");
        AlignedBlock { raw, start, len: 0 }
    }

    fn filled(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    /// Append as much of `bytes` as fits; returns how much was taken.
    fn push(&mut self, bytes: &[u8]) -> usize {
        let k = bytes.len().min(BLOCK - self.len);
        let at = self.start + self.len;
        self.raw[at..at + k].copy_from_slice(&bytes[..k]);
        self.len += k;
        k
    }
}

/// The background writer: whole aligned blocks, in order, at known offsets.
struct DirectWriter {
    /// Block being filled and the file offset where it starts.
    block: AlignedBlock,
    block_off: u64,
    /// Blocks allocated so far, and the most there may be.
    allocated: usize,
    max_blocks: usize,
    to_thread: Option<SyncSender<(AlignedBlock, u64)>>,
    free: Receiver<AlignedBlock>,
    /// Returns the number of intermediate syncs it made.
    thread: Option<JoinHandle<io::Result<u32>>>,
}

/// Writes a new file front to back, then lets the caller patch bytes in
/// place and fsync.
pub(crate) struct FileSink {
    path: PathBuf,
    /// Ordinary descriptor: the unaligned tail, patches, fsync.
    file: File,
    direct: Option<DirectWriter>,
    /// Bytes accepted so far (the logical file length).
    pos: u64,
}

impl FileSink {
    /// Create (truncate) `path`. `direct` asks for page-cache bypass where
    /// the system supports it.
    pub(crate) fn create(path: &Path, direct: bool) -> Result<FileSink> {
        Self::create_with(path, direct, BLOCKS_MAX, SYNC_EVERY)
    }

    /// [`FileSink::create`] with at most `max_blocks` (≥ 2) direct-I/O
    /// blocks and a background `fdatasync` every `sync_every` bytes.
    fn create_with(
        path: &Path,
        direct: bool,
        max_blocks: usize,
        sync_every: u64,
    ) -> Result<FileSink> {
        check(IoOp::Create, path).map_err(|e| Error::io(path, e))?;
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let direct = if direct {
            open_direct(path)
                .and_then(|fd| DirectWriter::start(fd, &file, path, max_blocks, sync_every))
        } else {
            None
        };
        Ok(FileSink {
            path: path.to_path_buf(),
            file,
            direct,
            pos: 0,
        })
    }

    /// True if the bulk of the file goes around the page cache.
    #[cfg(test)]
    pub(crate) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Append `bytes` at the end of the file.
    pub(crate) fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        check(IoOp::Write, &self.path).map_err(|e| Error::io(&self.path, e))?;
        self.pos += bytes.len() as u64;
        let Some(d) = self.direct.as_mut() else {
            return self
                .file
                .write_all_at(bytes, self.pos - bytes.len() as u64)
                .map_err(|e| Error::io(&self.path, e));
        };
        while !bytes.is_empty() {
            let k = d.block.push(bytes);
            bytes = &bytes[k..];
            if d.block.len == BLOCK {
                d.submit(&self.path)?;
            }
        }
        Ok(())
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.pos
    }

    /// Write everything out, then overwrite each `(offset, bytes)` patch
    /// (which must lie inside what was written), and fsync the file.
    pub(crate) fn finish(self, patches: &[(u64, &[u8])]) -> Result<()> {
        self.finish_counting(patches).map(|_| ())
    }

    /// [`FileSink::finish`], returning how many syncs the writer thread
    /// made along the way.
    fn finish_counting(mut self, patches: &[(u64, &[u8])]) -> Result<u32> {
        let mut syncs = 0;
        for &(offset, patch) in patches {
            assert!(
                offset + patch.len() as u64 <= self.pos,
                "patch past the end"
            );
        }
        if let Some(mut d) = self.direct.take() {
            // Whole aligned blocks directly; the remainder through the cache.
            let aligned = d.block.len / ALIGN * ALIGN;
            let tail = d.block.filled()[aligned..].to_vec();
            let tail_off = d.block_off + aligned as u64;
            d.block.len = aligned;
            if aligned > 0 {
                d.submit(&self.path)?;
            }
            syncs = d.join(&self.path)?;
            self.file
                .write_all_at(&tail, tail_off)
                .map_err(|e| Error::io(&self.path, e))?;
        }
        check(IoOp::Write, &self.path).map_err(|e| Error::io(&self.path, e))?;
        for &(offset, patch) in patches {
            self.file
                .write_all_at(patch, offset)
                .map_err(|e| Error::io(&self.path, e))?;
        }
        check(IoOp::Sync, &self.path)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(syncs)
    }
}

impl DirectWriter {
    fn start(
        direct: File,
        buffered: &File,
        path: &Path,
        max_blocks: usize,
        sync_every: u64,
    ) -> Option<DirectWriter> {
        assert!(max_blocks >= 2, "one block filling, one being written");
        // The thread falls back to an ordinary descriptor if the filesystem
        // accepted O_DIRECT at open but rejects the I/O itself.
        let fallback = buffered.try_clone().ok()?;
        // Neither channel can fill up: there are never more blocks than
        // `max_blocks`.
        let (to_thread, from_main) = sync_channel::<(AlignedBlock, u64)>(max_blocks);
        let (give_back, free) = sync_channel::<AlignedBlock>(max_blocks);
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("nsparse-write".into())
            .spawn(move || {
                let mut use_direct = true;
                let (mut unsynced, mut syncs) = (0u64, 0u32);
                for (block, off) in from_main {
                    let data = block.filled();
                    if use_direct {
                        match direct.write_all_at(data, off) {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                                tracing::debug!(file = %shown, "O_DIRECT write refused; writing through the page cache");
                                use_direct = false;
                                fallback.write_all_at(data, off)?;
                            }
                            Err(e) => return Err(e),
                        }
                    } else {
                        fallback.write_all_at(data, off)?;
                    }
                    unsynced += data.len() as u64;
                    if unsynced >= sync_every {
                        fallback.sync_data()?;
                        unsynced = 0;
                        syncs += 1;
                    }
                    let mut block = block;
                    block.len = 0;
                    // The main side may have finished; a closed channel is fine.
                    let _ = give_back.send(block);
                }
                Ok(syncs)
            })
            .ok()?;
        Some(DirectWriter {
            block: AlignedBlock::new(),
            block_off: 0,
            allocated: 1,
            max_blocks,
            to_thread: Some(to_thread),
            free,
            thread: Some(thread),
        })
    }

    /// Hand the current block to the thread and take an empty one: a
    /// written one if there is one, else a new one while fewer than
    /// `max_blocks` exist, else the next one the thread finishes.
    fn submit(&mut self, path: &Path) -> Result<()> {
        let next = match self.free.try_recv() {
            Ok(b) => b,
            Err(TryRecvError::Empty) if self.allocated < self.max_blocks => {
                self.allocated += 1;
                AlignedBlock::new()
            }
            Err(TryRecvError::Empty) => match self.free.recv() {
                Ok(b) => b,
                Err(_) => return Err(self.join_error(path)),
            },
            // The thread stopped: it failed, and join reports why.
            Err(TryRecvError::Disconnected) => return Err(self.join_error(path)),
        };
        let full = std::mem::replace(&mut self.block, next);
        let off = self.block_off;
        self.block_off += full.len as u64;
        let sent = self
            .to_thread
            .as_ref()
            .map(|tx| tx.send((full, off)).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(self.join_error(path));
        }
        Ok(())
    }

    /// Wait for every submitted block to be written; returns the number of
    /// intermediate syncs.
    fn join(&mut self, path: &Path) -> Result<u32> {
        self.to_thread = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Ok(syncs))) => Ok(syncs),
            None => Ok(0),
            Some(Ok(Err(e))) => Err(Error::io(path, e)),
            Some(Err(_)) => Err(Error::io(path, io::Error::other("writer thread panicked"))),
        }
    }

    fn join_error(&mut self, path: &Path) -> Error {
        match self.join(path) {
            Err(e) => e,
            Ok(_) => Error::io(path, io::Error::other("writer thread stopped early")),
        }
    }
}

impl Drop for DirectWriter {
    fn drop(&mut self) {
        // An abandoned write (error elsewhere): let the thread drain and end.
        self.to_thread = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> Option<File> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random bytes, so a misplaced block cannot go unnoticed.
    fn pattern(n: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn roundtrip(direct: bool, sizes: &[usize]) {
        roundtrip_with(direct, sizes, BLOCKS_MAX, SYNC_EVERY);
    }

    /// Write `sizes` and a patch, check the file's bytes; returns the
    /// writer thread's intermediate syncs and whether it wrote directly.
    fn roundtrip_with(
        direct: bool,
        sizes: &[usize],
        max_blocks: usize,
        sync_every: u64,
    ) -> (u32, bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let total: usize = sizes.iter().sum();
        let data = pattern(total);
        let mut sink = FileSink::create_with(&path, direct, max_blocks, sync_every).unwrap();
        let is_direct = sink.is_direct();
        if direct && cfg!(target_os = "linux") {
            // The test directory is on a real filesystem on CI and here;
            // tmpfs would make this false and the test still check the bytes.
            eprintln!("direct: {is_direct}");
        }
        let mut at = 0;
        for &s in sizes {
            sink.write(&data[at..at + s]).unwrap();
            at += s;
        }
        assert_eq!(sink.len(), total as u64);
        let patch = [0xAB; 40];
        let tail_patch = [0xCD; 5];
        let tail_at = total.saturating_sub(5);
        let syncs = sink
            .finish_counting(&[(3, &patch), (tail_at as u64, &tail_patch)])
            .unwrap();
        let mut want = data;
        want[3..43].copy_from_slice(&patch);
        want[tail_at..].copy_from_slice(&tail_patch[..total - tail_at]);
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "file bytes differ");
        (syncs, is_direct)
    }

    #[test]
    fn writes_the_same_bytes_with_and_without_the_page_cache() {
        // Crosses several blocks, with a tail that is not block aligned.
        let sizes = [100, BLOCK - 7, 3 * ALIGN + 1, BLOCK, 2 * BLOCK + 123, 5];
        roundtrip(true, &sizes);
        roundtrip(false, &sizes);
        // Exactly aligned end, and a file smaller than one alignment unit.
        roundtrip(true, &[BLOCK, ALIGN]);
        roundtrip(true, &[64]);
    }

    /// More blocks than the pool may hold: the writer reuses written blocks
    /// (waiting for them when all are in flight) and the bytes stay in order.
    #[test]
    fn reuses_blocks_when_the_pool_is_full() {
        let sizes = [BLOCK / 2, 3 * BLOCK + 5, BLOCK, 2 * BLOCK - 1, 77];
        roundtrip_with(true, &sizes, 2, SYNC_EVERY);
        roundtrip_with(true, &sizes, 3, SYNC_EVERY);
    }

    /// The writer thread syncs each time another `sync_every` bytes are
    /// written, and the bytes are the same as without syncs.
    #[test]
    fn syncs_in_the_background_every_so_many_bytes() {
        // Seven whole blocks go out directly, the unaligned tail through
        // the page cache at the end.
        let sizes = [3 * BLOCK + 11, 4 * BLOCK - 5, 300];
        let (syncs, direct) = roundtrip_with(true, &sizes, 4, 2 * BLOCK as u64);
        if direct {
            assert_eq!(syncs, 3, "one sync per two blocks of the seven");
        }
        let (syncs, direct) = roundtrip_with(true, &sizes, 4, u64::MAX);
        if direct {
            assert_eq!(syncs, 0);
        }
    }
}
