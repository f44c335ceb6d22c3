//! Write-ahead log: every acknowledged `add`/`upsert`/`delete` is appended and
//! fsynced here before the call returns, and replayed on open.
//!
//! File: 16-byte header (magic `NSPWAL\0\0`, version u32, crc32 of the first
//! 12 bytes), then records `[len u32][crc32(len) u32][crc32(payload) u32][payload]`.
//! A record that is incomplete at the end of the file (the process died while
//! appending, so it was never acknowledged) is dropped and, for a writer,
//! truncated away. A bad record followed by more data is reported as corruption.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::codec::varint::{put_varint, Cursor};
use crate::directory::faults::{check, IoOp};
use crate::error::{Error, Result};

const WAL_MAGIC: &[u8; 8] = b"NSPWAL\0\0";

/// Version 2 added the `Features` record; version 1 logs are still read.
const WAL_VERSION: u32 = 2;

const WAL_OLDEST_READABLE: u32 = 1;

const HEADER: usize = 16;

/// One logged operation, with the caller's original (unquantized) input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WalOp {
    Upsert {
        id: String,
        vector: Vec<(u32, f32)>,
        tokens: Option<Vec<u32>>,
        source: Vec<u8>,
    },
    Delete {
        id: String,
    },
    /// Feature names given ids `first..first + names.len()` (open vocabularies), logged
    /// before the first document that uses them.
    Features {
        first: u32,
        names: Vec<String>,
    },
}

impl WalOp {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; 12]);
        match self {
            WalOp::Upsert {
                id,
                vector,
                tokens,
                source,
            } => {
                out.push(1);
                put_varint(out, id.len() as u64);
                out.extend_from_slice(id.as_bytes());
                put_varint(out, vector.len() as u64);
                for &(t, w) in vector {
                    put_varint(out, t as u64);
                    out.extend_from_slice(&w.to_le_bytes());
                }
                match tokens {
                    None => out.push(0),
                    Some(ts) => {
                        out.push(1);
                        put_varint(out, ts.len() as u64);
                        for &t in ts {
                            put_varint(out, t as u64);
                        }
                    }
                }
                put_varint(out, source.len() as u64);
                out.extend_from_slice(source);
            }
            WalOp::Delete { id } => {
                out.push(2);
                put_varint(out, id.len() as u64);
                out.extend_from_slice(id.as_bytes());
            }
            WalOp::Features { first, names } => {
                out.push(3);
                put_varint(out, u64::from(*first));
                put_varint(out, names.len() as u64);
                for n in names {
                    put_varint(out, n.len() as u64);
                    out.extend_from_slice(n.as_bytes());
                }
            }
        }
        let len = (out.len() - start - 12) as u32;
        let lb = len.to_le_bytes();
        let pcrc = crc32fast::hash(&out[start + 12..]);
        out[start..start + 4].copy_from_slice(&lb);
        out[start + 4..start + 8].copy_from_slice(&crc32fast::hash(&lb).to_le_bytes());
        out[start + 8..start + 12].copy_from_slice(&pcrc.to_le_bytes());
    }

    fn decode(path: &Path, b: &[u8]) -> Result<WalOp> {
        let mut c = Cursor::new(b, path);
        let op = c.bytes(1)?[0];
        if op == 3 {
            let first = c.varint_u32()?;
            let n = c.varint()? as usize;
            let mut names = Vec::with_capacity(n.min(b.len()));
            for _ in 0..n {
                let l = c.varint()? as usize;
                names.push(
                    String::from_utf8(c.bytes(l)?.to_vec())
                        .map_err(|_| Error::corrupt(path, "WAL feature name is not UTF-8"))?,
                );
            }
            c.done()?;
            return Ok(WalOp::Features { first, names });
        }
        let idl = c.varint()? as usize;
        let id = String::from_utf8(c.bytes(idl)?.to_vec())
            .map_err(|_| Error::corrupt(path, "WAL _id is not UTF-8"))?;
        let r = match op {
            1 => {
                let n = c.varint()? as usize;
                let mut vector = Vec::with_capacity(n.min(b.len()));
                for _ in 0..n {
                    let t = c.varint_u32()?;
                    vector.push((t, c.f32()?));
                }
                let tokens = match c.bytes(1)?[0] {
                    0 => None,
                    1 => {
                        let n = c.varint()? as usize;
                        let mut ts = Vec::with_capacity(n.min(b.len()));
                        for _ in 0..n {
                            ts.push(c.varint_u32()?);
                        }
                        Some(ts)
                    }
                    _ => return Err(Error::corrupt(path, "bad WAL token flag")),
                };
                let sl = c.varint()? as usize;
                let source = c.bytes(sl)?.to_vec();
                WalOp::Upsert {
                    id,
                    vector,
                    tokens,
                    source,
                }
            }
            2 => WalOp::Delete { id },
            _ => return Err(Error::corrupt(path, format!("unknown WAL operation {op}"))),
        };
        c.done()?;
        Ok(r)
    }
}

/// Result of reading a WAL.
pub(crate) struct WalContents {
    pub(super) ops: Vec<WalOp>,
    /// Byte length of the valid prefix (header + complete records).
    pub(super) valid_len: u64,
    /// Bytes of torn tail dropped.
    pub(super) torn_bytes: u64,
    /// The dropped tail starts with a record of complete length whose payload fails its
    /// checksum. A crash during an append can leave that, but so can damage to the last
    /// acknowledged record, so the tail is kept (see [`keep_dropped_tail`]).
    pub(super) torn_complete: bool,
}

/// Copies the WAL's tail from `valid_len` on into `<wal>.tail-<valid_len>` before a writer
/// cuts it off, so a damaged last record is never lost without a trace (an incomplete record
/// needs no copy: it was never fsynced whole, so never acknowledged); returns that file's
/// name.
pub(crate) fn keep_dropped_tail(dir: &Path, wal_name: &str, valid_len: u64) -> Result<String> {
    let bytes = crate::directory::mmap::read_file(&dir.join(wal_name))?;
    let start = (valid_len as usize).min(bytes.len());
    let name = format!("{wal_name}.tail-{valid_len}");
    crate::directory::atomic::write_atomic(dir, &name, &bytes[start..])?;
    Ok(name)
}

pub(crate) fn header() -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER);
    h.extend_from_slice(WAL_MAGIC);
    h.extend_from_slice(&WAL_VERSION.to_le_bytes());
    let c = crc32fast::hash(&h);
    h.extend_from_slice(&c.to_le_bytes());
    h
}

/// Read and verify a WAL file.
pub(crate) fn read(path: &Path) -> Result<WalContents> {
    let b = crate::directory::mmap::read_file(path)?;
    if b.len() < HEADER || &b[..8] != WAL_MAGIC {
        return Err(Error::corrupt(path, "bad WAL header (magic)"));
    }

    if crc32fast::hash(&b[..12]).to_le_bytes() != b[12..16] {
        return Err(Error::corrupt(path, "WAL header checksum mismatch"));
    }

    let ver = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if !(WAL_OLDEST_READABLE..=WAL_VERSION).contains(&ver) {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: ver,
            oldest: WAL_OLDEST_READABLE,
            newest: WAL_VERSION,
        });
    }

    let mut pos = HEADER;
    let mut ops = Vec::new();
    let u = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    while pos < b.len() {
        let rest = &b[pos..];
        let torn = |ops: Vec<WalOp>| {
            Ok(WalContents {
                ops,
                valid_len: pos as u64,
                torn_bytes: rest.len() as u64,
                torn_complete: false,
            })
        };
        if rest.len() < 12 {
            return torn(ops);
        }
        let len = u(&rest[0..4]) as usize;
        if crc32fast::hash(&rest[0..4]) != u(&rest[4..8]) {
            if rest.iter().all(|&x| x == 0) {
                return torn(ops);
            }
            return Err(Error::corrupt(
                path,
                format!("WAL record length checksum mismatch at byte {pos}"),
            ));
        }
        if 12 + len > rest.len() {
            return torn(ops);
        }
        let payload = &rest[12..12 + len];
        if crc32fast::hash(payload) != u(&rest[8..12]) {
            if 12 + len == rest.len() {
                return Ok(WalContents {
                    torn_complete: true,
                    ..torn(ops)?
                });
            }
            return Err(Error::corrupt(
                path,
                format!("WAL record checksum mismatch at byte {pos}"),
            ));
        }
        let op = WalOp::decode(path, payload)?;
        if ver < 2 && matches!(op, WalOp::Features { .. }) {
            return Err(Error::corrupt(
                path,
                format!("a version-1 WAL holds a feature-name record at byte {pos}"),
            ));
        }
        ops.push(op);
        pos += 12 + len;
    }

    Ok(WalContents {
        ops,
        valid_len: pos as u64,
        torn_bytes: 0,
        torn_complete: false,
    })
}

/// Append handle of the live WAL.
pub(crate) struct WalWriter {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    /// Length of the acknowledged (written and fsynced) prefix.
    len: u64,
    /// A failed append may have left bytes past `len` that could not be cut off yet: the
    /// next append cuts them first, so a record never follows garbage (a reader would stop
    /// at the garbage and lose every record after it).
    dirty_tail: bool,
}

impl WalWriter {
    /// Create a new, empty WAL (header fsynced). On failure no file is left behind.
    pub(crate) fn create(path: &Path) -> Result<WalWriter> {
        check(IoOp::Create, path).map_err(|e| Error::io(path, e))?;
        let mut f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let written = check(IoOp::Write, path)
            .and_then(|()| f.write_all(&header()))
            .and_then(|()| check(IoOp::Sync, path))
            .and_then(|()| f.sync_all());
        if let Err(e) = written {
            drop(f);
            let _ = std::fs::remove_file(path);
            return Err(Error::io(path, e));
        }
        Ok(WalWriter {
            file: f,
            path: path.to_path_buf(),
            buf: Vec::new(),
            len: HEADER as u64,
            dirty_tail: false,
        })
    }

    /// Open an existing WAL for appending after truncating it to `valid_len`.
    pub(crate) fn reopen(path: &Path, valid_len: u64) -> Result<WalWriter> {
        let f = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        if f.metadata().map_err(|e| Error::io(path, e))?.len() != valid_len {
            f.set_len(valid_len).map_err(|e| Error::io(path, e))?;
            f.sync_all().map_err(|e| Error::io(path, e))?;
        }
        Ok(WalWriter {
            file: f,
            path: path.to_path_buf(),
            buf: Vec::new(),
            len: valid_len,
            dirty_tail: false,
        })
    }

    /// Append operations and fsync; on `Ok` they are durable. On `Err` none of them is
    /// acknowledged: the file is cut back to its acknowledged length (now, or before the
    /// next append if cutting fails too), so they never reappear after the next record.
    pub(crate) fn append(&mut self, ops: &[WalOp]) -> Result<()> {
        if self.dirty_tail {
            self.cut_back().map_err(|e| Error::io(&self.path, e))?;
        }
        self.buf.clear();
        for op in ops {
            op.encode(&mut self.buf);
        }
        let written = self.write_and_sync();
        if let Err(e) = written {
            self.dirty_tail = true;
            if let Err(cut) = self.cut_back() {
                tracing::error!(wal = %self.path.display(), error = %cut, "could not cut a failed append off the WAL; the next write retries");
            }
            return Err(Error::io(&self.path, e));
        }
        self.len += self.buf.len() as u64;
        Ok(())
    }

    fn write_and_sync(&mut self) -> std::io::Result<()> {
        if let Err(e) = check(IoOp::Write, &self.path) {
            // An injected failure writes part of the records first, as a disk that fills
            // up mid-write does.
            let _ = self.file.write_all(&self.buf[..self.buf.len() / 2]);
            return Err(e);
        }
        self.file.write_all(&self.buf)?;
        check(IoOp::Sync, &self.path)?;
        self.file.sync_data()
    }

    /// Truncate the file to the acknowledged length and make that durable.
    fn cut_back(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.len)?;
        self.file.sync_data()?;
        self.dirty_tail = false;
        Ok(())
    }
}
