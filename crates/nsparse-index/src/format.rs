//! Low-level encoding shared by every file: the checksummed section container,
//! varints, weight quantization and atomic file replacement.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::faults::{check, IoOp};
use crate::sink::FileSink;

/// Size of the fixed container header before the section table.
const HEADER_FIXED: usize = 16;
/// Bytes per section-table entry: kind u32, offset u64, len u64, crc32 u32.
const ENTRY: usize = 24;

/// A section-table entry: kind, offset, length, crc32 of the section's bytes.
type SectionEntry = (u32, u64, u64, u32);

/// The container header: magic, version, section table, and a crc32 over them.
fn container_header(magic: &[u8; 8], version: u32, entries: &[SectionEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_FIXED + entries.len() * ENTRY + 4);
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for &(kind, off, len, crc) in entries {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
    }
    let hcrc = crc32fast::hash(&out);
    out.extend_from_slice(&hcrc.to_le_bytes());
    out
}

/// Serialize a checksummed container: magic, version, section table (each
/// section has its own crc32), a crc32 over the header, then the sections.
pub(crate) fn write_container(magic: &[u8; 8], version: u32, sections: &[(u32, &[u8])]) -> Vec<u8> {
    let mut off = (HEADER_FIXED + sections.len() * ENTRY + 4) as u64;
    let entries: Vec<SectionEntry> = sections
        .iter()
        .map(|&(kind, data)| {
            let e = (kind, off, data.len() as u64, crc32fast::hash(data));
            off += data.len() as u64;
            e
        })
        .collect();
    let mut out = container_header(magic, version, &entries);
    out.reserve(off as usize - out.len());
    for (_, data) in sections {
        out.extend_from_slice(data);
    }
    out
}

/// Bytes a [`ContainerFile`] section stages before writing them out.
const SPILL: usize = 1 << 20;
/// Bytes [`ContainerFile::append`] checksums and copies at a time (well
/// inside a core's L2).
const APPEND_PIECE: usize = 64 << 10;

/// Streams a container (the same bytes as [`write_container`]) into
/// `dir/name` without holding the sections in memory: a zeroed header first,
/// then each section, staged in a 1 MiB buffer and checksummed as it is
/// written, then the real header in place; fsync, atomic rename, fsync of the
/// directory. Until [`ContainerFile::finish`] the data lives under a `.tmp`
/// name that readers never open.
pub(crate) struct ContainerFile {
    sink: FileSink,
    dir: std::path::PathBuf,
    tmp: std::path::PathBuf,
    dst: std::path::PathBuf,
    magic: [u8; 8],
    version: u32,
    n_sections: usize,
    done: Vec<SectionEntry>,
    /// The open section: kind, offset, running CRC (of the bytes before
    /// the reserved stretch while there is one).
    open: Option<(u32, u64, crc32fast::Hasher)>,
    /// A stretch of the open section written as zeros, to be filled later
    /// ([`ContainerFile::reserve`]): its offset, its length, and the CRC of
    /// the section's bytes after it.
    hole: Option<(u64, usize, crc32fast::Hasher)>,
    /// Filled stretches, written in place when the file is finished.
    patches: Vec<(u64, Vec<u8>)>,
    /// Staged bytes of the open section, not yet written.
    buf: Vec<u8>,
    pos: u64,
}

impl ContainerFile {
    /// Create `dir/name.tmp` for a container of exactly `n_sections` sections.
    pub(crate) fn create(
        dir: &Path,
        name: &str,
        magic: &[u8; 8],
        version: u32,
        n_sections: usize,
    ) -> Result<ContainerFile> {
        let tmp = dir.join(format!("{name}.tmp"));
        // Container files are large and written once: around the page cache.
        let sink = FileSink::create(&tmp, true)?;
        let mut c = ContainerFile {
            sink,
            dir: dir.to_path_buf(),
            dst: dir.join(name),
            tmp,
            magic: *magic,
            version,
            n_sections,
            done: Vec::with_capacity(n_sections),
            open: None,
            hole: None,
            patches: Vec::new(),
            buf: Vec::with_capacity(SPILL + 4096),
            pos: 0,
        };
        let header = vec![0u8; HEADER_FIXED + n_sections * ENTRY + 4];
        c.sink.write(&header)?;
        c.pos = header.len() as u64;
        Ok(c)
    }

    /// Start the next section.
    pub(crate) fn begin(&mut self, kind: u32) {
        assert!(self.open.is_none(), "section {kind} begun inside another");
        self.open = Some((kind, self.pos, crc32fast::Hasher::new()));
    }

    /// The open section's staging buffer: append its bytes here, and call
    /// [`ContainerFile::spill`] now and then so it stays small.
    pub(crate) fn buffer(&mut self) -> &mut Vec<u8> {
        assert!(
            self.open.is_some(),
            "ContainerFile::buffer outside a section"
        );
        &mut self.buf
    }

    /// Write the staged bytes out once there are at least 1 MiB of them.
    pub(crate) fn spill(&mut self) -> Result<()> {
        if self.buf.len() >= SPILL {
            self.write_staged()?;
        }
        Ok(())
    }

    /// The CRC the next bytes of the open section go into.
    fn running_crc<'a>(
        open: &'a mut Option<(u32, u64, crc32fast::Hasher)>,
        hole: &'a mut Option<(u64, usize, crc32fast::Hasher)>,
    ) -> &'a mut crc32fast::Hasher {
        match (hole, open) {
            (Some((_, _, after)), _) => after,
            (None, Some((_, _, crc))) => crc,
            (None, None) => panic!("ContainerFile: bytes written outside a section"),
        }
    }

    fn write_staged(&mut self) -> Result<()> {
        let crc = Self::running_crc(&mut self.open, &mut self.hole);
        crc.update(&self.buf);
        self.sink.write(&self.buf)?;
        self.pos += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Append `bytes` to the open section, after anything staged.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_staged()?;
        let crc = Self::running_crc(&mut self.open, &mut self.hole);
        // Checksum and copy piece by piece, so the copy reads what the
        // checksum just brought into cache: a postings tile's ~50 MB of
        // runs is read from memory once instead of twice.
        for piece in bytes.chunks(APPEND_PIECE) {
            crc.update(piece);
            self.sink.write(piece)?;
        }
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Write `len` zero bytes in the open section, after anything staged,
    /// to be replaced by [`ContainerFile::fill`] before the section ends:
    /// a length that is known only once the bytes after it are written.
    /// One stretch at a time.
    pub(crate) fn reserve(&mut self, len: usize) -> Result<()> {
        assert!(
            self.hole.is_none(),
            "ContainerFile: one reserved stretch at a time"
        );
        self.write_staged()?;
        assert!(
            self.open.is_some(),
            "ContainerFile: reserve outside a section"
        );
        self.sink.write(&vec![0; len])?;
        self.hole = Some((self.pos, len, crc32fast::Hasher::new()));
        self.pos += len as u64;
        Ok(())
    }

    /// Fill the stretch [`ContainerFile::reserve`] left with `bytes` (of
    /// its length). The file's bytes there are replaced when it is
    /// finished; the section's checksum covers `bytes` from now on.
    pub(crate) fn fill(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_staged()?;
        let (at, len, after) = self
            .hole
            .take()
            .expect("ContainerFile::fill without reserve");
        assert_eq!(bytes.len(), len, "ContainerFile: fill of another length");
        let Some((_, _, crc)) = self.open.as_mut() else {
            unreachable!("a reserved stretch lies inside an open section");
        };
        crc.update(bytes);
        crc.combine(&after);
        self.patches.push((at, bytes.to_vec()));
        Ok(())
    }

    /// Write the rest of the open section and close it.
    pub(crate) fn end(&mut self) -> Result<()> {
        self.write_staged()?;
        assert!(
            self.hole.is_none(),
            "ContainerFile: section ended with a stretch unfilled"
        );
        let (kind, off, crc) = self.open.take().expect("ContainerFile::end without begin");
        self.done.push((kind, off, self.pos - off, crc.finalize()));
        Ok(())
    }

    /// Write the header, make the file durable and move it to its final name.
    pub(crate) fn finish(self) -> Result<()> {
        assert!(self.open.is_none() && self.done.len() == self.n_sections);
        let header = container_header(&self.magic, self.version, &self.done);
        debug_assert_eq!(self.sink.len(), self.pos);
        let mut patches: Vec<(u64, &[u8])> = vec![(0, &header)];
        patches.extend(self.patches.iter().map(|(at, b)| (*at, b.as_slice())));
        self.sink.finish(&patches)?;
        publish(&self.dir, &self.tmp, &self.dst)
    }
}

/// A container's sections as `(kind, bytes)` in file order.
pub(crate) type Sections<'a> = Vec<(u32, &'a [u8])>;

/// Parse and fully verify a container written by [`write_container`].
/// Returns the sections as `(kind, bytes)` in file order.
pub(crate) fn read_container<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: &[u8; 8],
    version: u32,
) -> Result<Sections<'a>> {
    read_container_of(path, bytes, magic, version..=version).map(|(_, s)| s)
}

/// [`read_container`] for a reader of several format `versions`; also
/// returns the file's version.
pub(crate) fn read_container_of<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: &[u8; 8],
    versions: std::ops::RangeInclusive<u32>,
) -> Result<(u32, Sections<'a>)> {
    if bytes.len() < HEADER_FIXED + 4 {
        return Err(Error::corrupt(
            path,
            format!("file is {} bytes, too short for a header", bytes.len()),
        ));
    }
    if &bytes[..8] != magic {
        return Err(Error::corrupt(
            path,
            format!(
                "bad magic number (expected {:?})",
                String::from_utf8_lossy(magic)
            ),
        ));
    }
    let n = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default()) as usize;
    let table_end = n
        .checked_mul(ENTRY)
        .and_then(|t| t.checked_add(HEADER_FIXED + 4))
        .filter(|&t| t <= bytes.len())
        .ok_or_else(|| Error::corrupt(path, "section table runs past end of file"))?;
    let hcrc = u32::from_le_bytes(
        bytes[table_end - 4..table_end]
            .try_into()
            .unwrap_or_default(),
    );
    if crc32fast::hash(&bytes[..table_end - 4]) != hcrc {
        return Err(Error::corrupt(path, "header checksum mismatch"));
    }
    let found = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if !versions.contains(&found) {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            oldest: *versions.start(),
            newest: *versions.end(),
        });
    }
    let mut out = Vec::with_capacity(n);
    let mut expect = table_end as u64;
    for i in 0..n {
        let e = &bytes[HEADER_FIXED + i * ENTRY..HEADER_FIXED + (i + 1) * ENTRY];
        let kind = u32::from_le_bytes(e[0..4].try_into().unwrap_or_default());
        let off = u64::from_le_bytes(e[4..12].try_into().unwrap_or_default());
        let len = u64::from_le_bytes(e[12..20].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(e[20..24].try_into().unwrap_or_default());
        if off != expect
            || off
                .checked_add(len)
                .is_none_or(|end| end > bytes.len() as u64)
        {
            return Err(Error::corrupt(path, format!("section {i} has bad bounds")));
        }
        let data = &bytes[off as usize..(off + len) as usize];
        if crc32fast::hash(data) != crc {
            return Err(Error::corrupt(
                path,
                format!("checksum mismatch in section {i} (kind {kind})"),
            ));
        }
        out.push((kind, data));
        expect = off + len;
    }
    if expect != bytes.len() as u64 {
        return Err(Error::corrupt(
            path,
            "trailing bytes after the last section",
        ));
    }
    Ok((found, out))
}

/// Find the one section of `kind` or report which is missing.
pub(crate) fn section<'a>(path: &Path, secs: &[(u32, &'a [u8])], kind: u32) -> Result<&'a [u8]> {
    let mut it = secs.iter().filter(|s| s.0 == kind);
    match (it.next(), it.next()) {
        (Some(s), None) => Ok(s.1),
        _ => Err(Error::corrupt(
            path,
            format!("expected exactly one section of kind {kind}"),
        )),
    }
}

/// Append `v` as a LEB128 varint of exactly `width` bytes (non-minimal:
/// continuation bytes carry the high zero groups).
pub(crate) fn put_padded_varint(out: &mut Vec<u8>, mut v: u64, width: usize) {
    assert!(
        width >= 1 && (width >= 10 || v < 1u64 << (7 * width)),
        "{v} does not fit {width} varint bytes"
    );
    for _ in 1..width {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Append a LEB128 varint.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bounds-checked reader over a byte slice; every failure is a corruption
/// error naming the file, never a panic.
pub(crate) struct Cursor<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
    pub(crate) path: &'a Path,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], path: &'a Path) -> Self {
        Cursor { buf, pos: 0, path }
    }
    pub(crate) fn err(&self, what: &str) -> Error {
        Error::corrupt(
            self.path,
            format!("{what} at byte {} of a section", self.pos),
        )
    }
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(self.err("overlong varint"));
            }
        }
    }
    pub(crate) fn varint_u32(&mut self) -> Result<u32> {
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| self.err("varint out of u32 range"))
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("truncated data"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub(crate) fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_bits(self.u32()?))
    }
    pub(crate) fn done(&self) -> Result<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.err("unexpected trailing bytes"))
        }
    }
}

/// Largest weight representable by the f16 quantization.
pub const MAX_WEIGHT: f32 = 65504.0;
/// Smallest non-zero stored weight (smallest normal f16); smaller inputs round
/// to 0 (dropped) or to this value, whichever is nearer.
pub const MIN_WEIGHT: f32 = 6.103_515_6e-5;

/// Quantize a weight to IEEE binary16 bits (round to nearest even), with
/// subnormals flushed so decoding is a shift and an add. `0` means "absent".
///
/// Errors are detected by the caller (weights must be finite, ≥ 0, ≤ [`MAX_WEIGHT`]).
#[inline]
pub fn quantize(w: f32) -> u16 {
    let x = w.to_bits() & 0x7fff_ffff;
    if x < 0x3880_0000 {
        // Below the smallest normal half (2^-14): snap to 0 or the smallest normal.
        return if w.abs() >= MIN_WEIGHT / 2.0 {
            0x0400
        } else {
            0
        };
    }
    // Rebias the exponent (127 -> 15) and round the mantissa from 23 to 10
    // bits, to nearest even; a carry out of the mantissa bumps the exponent.
    // Callers keep weights at or below MAX_WEIGHT, so the result stays finite.
    (((x - 0x3800_0000) + 0x0fff + ((x >> 13) & 1)) >> 13) as u16
}

/// Whether [`quantize`] keeps the valid weight `w` (finite, ≥ 0): the
/// same as `quantize(w) != 0`, without computing the rounding.
#[inline]
pub(crate) fn is_kept(w: f32) -> bool {
    w.abs() >= MIN_WEIGHT / 2.0
}

/// The reference definition of [`quantize`] (`half`'s conversion plus the
/// subnormal snapping), kept for the equivalence test.
#[cfg(test)]
fn quantize_reference(w: f32) -> u16 {
    let h = half::f16::from_f32(w).to_bits() & 0x7fff;
    if h != 0 && h < 0x0400 {
        if w >= MIN_WEIGHT / 2.0 {
            0x0400
        } else {
            0
        }
    } else {
        h
    }
}

/// Decode a quantized weight (as produced by [`quantize`], non-zero).
#[inline(always)]
pub fn dequantize(h: u16) -> f32 {
    // Normal positive f16 -> f32: rebias exponent from 15 to 127.
    f32::from_bits(((h as u32) << 13) + 0x3800_0000)
}

/// Write `bytes` to `dir/name` atomically: tmp file, fsync, rename, fsync dir.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
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
fn publish(dir: &Path, tmp: &Path, dst: &Path) -> Result<()> {
    rename(tmp, dst)?;
    fsync_dir(dir)
}

/// fsync a directory so renames and creations in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    check(IoOp::Sync, dir).map_err(|e| Error::io(dir, e))?;
    let f = OpenOptions::new()
        .read(true)
        .open(dir)
        .map_err(|e| Error::io(dir, e))?;
    f.sync_all().map_err(|e| Error::io(dir, e))
}

/// Map a whole file read-only, for decoding it once; `None` if it is empty
/// (which cannot be mapped) or the system refuses the mapping.
///
/// A segment is decoded into owned memory at open, so mapping saves a copy
/// of the whole file into fresh memory (the page faults of that copy were
/// a third of the time to open a 1 GB segment on this machine).
pub(crate) fn map_file(path: &Path) -> Result<Option<memmap2::Mmap>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: the mapping is private and read-only, and lives only while
    // the caller decodes it. The files mapped here (segments) are immutable:
    // written to a temporary name, fsynced and renamed into place, never
    // modified afterwards, and removed only when no manifest references them
    // (unlinking keeps a mapped file's pages). A third party truncating the
    // file during the decode is outside the index's contract (it would be
    // corruption either way). Tested by every test that reopens an index.
    let map = unsafe { memmap2::Mmap::map(&file) };
    match map {
        Ok(m) => {
            // Start reading the whole file now: decoding then rarely waits
            // for the disk (a cold 0.9 GB segment: 5.2 s to open without it,
            // 4.0 s with it).
            let _ = m.advise(memmap2::Advice::Sequential);
            let _ = m.advise(memmap2::Advice::WillNeed);
            Ok(Some(m))
        }
        Err(_) => Ok(None),
    }
}

/// Read a whole file, naming it on failure.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_container_equals_the_in_memory_one() {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        let b = b"second".to_vec();
        let want = write_container(b"TESTMAG\0", 3, &[(1, &a), (2, &[]), (9, &b)]);
        let mut c = ContainerFile::create(dir.path(), "x.bin", b"TESTMAG\0", 3, 3).unwrap();
        c.begin(1);
        c.buffer().extend_from_slice(&a[..1000]);
        c.spill().unwrap(); // below the threshold: stays staged
        c.buffer().extend_from_slice(&a[1000..]);
        c.end().unwrap();
        c.begin(2);
        c.end().unwrap();
        c.begin(9);
        c.buffer().extend_from_slice(&b);
        c.end().unwrap();
        c.finish().unwrap();
        assert_eq!(std::fs::read(dir.path().join("x.bin")).unwrap(), want);
        assert!(!dir.path().join("x.bin.tmp").exists());

        // A section larger than the staging buffer is written in pieces.
        let big: Vec<u8> = (0..(SPILL as u32 * 2 + 77))
            .map(|i| (i % 251) as u8)
            .collect();
        let want = write_container(b"TESTMAG\0", 3, &[(4, &big)]);
        let mut c = ContainerFile::create(dir.path(), "y.bin", b"TESTMAG\0", 3, 1).unwrap();
        c.begin(4);
        for piece in big.chunks(4096) {
            c.buffer().extend_from_slice(piece);
            c.spill().unwrap();
        }
        c.end().unwrap();
        c.finish().unwrap();
        assert_eq!(std::fs::read(dir.path().join("y.bin")).unwrap(), want);

        // Appended slices (checksummed and copied in pieces) between staged
        // bytes: the same bytes and checksums.
        let mut c = ContainerFile::create(dir.path(), "z.bin", b"TESTMAG\0", 3, 1).unwrap();
        c.begin(4);
        c.buffer().extend_from_slice(&big[..100]);
        c.append(&big[100..5 * APPEND_PIECE + 33]).unwrap();
        c.append(&big[5 * APPEND_PIECE + 33..5 * APPEND_PIECE + 40])
            .unwrap();
        c.buffer()
            .extend_from_slice(&big[5 * APPEND_PIECE + 40..6 * APPEND_PIECE]);
        c.append(&big[6 * APPEND_PIECE..]).unwrap();
        c.end().unwrap();
        c.finish().unwrap();
        assert_eq!(std::fs::read(dir.path().join("z.bin")).unwrap(), want);
    }

    /// Reserved stretches filled later give the bytes and checksums of a
    /// container written with their final contents, wherever they lie
    /// (after staged bytes, between appended slices, in the file's
    /// unaligned tail) and whatever follows them.
    #[test]
    fn reserved_stretches_are_filled_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..(3 * SPILL as u32 + 5))
            .map(|i| (i % 241) as u8)
            .collect();
        let (a, b) = (1000, SPILL + 3);
        let want = write_container(b"TESTMAG\0", 3, &[(4, &big), (5, &big[..10])]);
        let mut c = ContainerFile::create(dir.path(), "r.bin", b"TESTMAG\0", 3, 2).unwrap();
        c.begin(4);
        c.buffer().extend_from_slice(&big[..a]);
        c.reserve(5).unwrap();
        c.buffer().extend_from_slice(&big[a + 5..a + 100]);
        c.append(&big[a + 100..b]).unwrap();
        c.fill(&big[a..a + 5]).unwrap();
        c.reserve(7).unwrap();
        c.fill(&big[b..b + 7]).unwrap();
        c.append(&big[b + 7..]).unwrap();
        c.end().unwrap();
        c.begin(5);
        c.buffer().extend_from_slice(&big[..4]);
        c.reserve(6).unwrap();
        c.fill(&big[4..10]).unwrap();
        c.end().unwrap();
        c.finish().unwrap();
        assert!(std::fs::read(dir.path().join("r.bin")).unwrap() == want);
    }

    #[test]
    fn quantize_equals_the_half_crate_on_every_valid_weight_pattern() {
        // Every 61st f32 bit pattern from 0 to MAX_WEIGHT, plus the edges.
        let max = MAX_WEIGHT.to_bits();
        let mut x = 0u32;
        while x <= max {
            let w = f32::from_bits(x);
            assert_eq!(quantize(w), quantize_reference(w), "w = {w:e} ({x:#x})");
            assert_eq!(is_kept(w), quantize(w) != 0, "w = {w:e} ({x:#x})");
            assert_eq!(is_kept(-w), quantize(-w) != 0, "w = -{w:e}");
            x += 61;
        }
        for w in [
            0.0,
            MIN_WEIGHT,
            MIN_WEIGHT / 2.0,
            2f32.powi(-14),
            2f32.powi(-15),
            1.0,
            MAX_WEIGHT,
        ] {
            assert_eq!(quantize(w), quantize_reference(w), "w = {w:e}");
            let below = f32::from_bits(w.to_bits().saturating_sub(1));
            assert_eq!(quantize(below), quantize_reference(below), "w = {below:e}");
            for v in [w, below] {
                assert_eq!(is_kept(v), quantize(v) != 0, "w = {v:e}");
            }
        }
    }

    #[test]
    fn quantize_roundtrip_error_is_small() {
        let mut w = MIN_WEIGHT;
        while w < 60000.0 {
            let q = quantize(w);
            assert!(q != 0);
            let d = dequantize(q);
            assert!(((d - w) / w).abs() <= 1.0 / 2048.0 + 1e-7, "{w} -> {d}");
            w *= 1.013;
        }
        assert_eq!(quantize(0.0), 0);
        assert_eq!(quantize(1e-9), 0);
        assert_eq!(
            dequantize(quantize(1e-4)),
            MIN_WEIGHT.max(dequantize(quantize(1e-4)))
        );
    }

    #[test]
    fn container_roundtrip_and_flip() {
        let p = Path::new("x");
        let bytes = write_container(b"TESTMAGI", 3, &[(1, b"hello"), (2, b"world!")]);
        let secs = read_container(p, &bytes, b"TESTMAGI", 3).unwrap();
        assert_eq!(secs, vec![(1, &b"hello"[..]), (2, &b"world!"[..])]);
        assert!(matches!(
            read_container(p, &bytes, b"TESTMAGI", 4),
            Err(Error::UnsupportedVersion { .. })
        ));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(read_container(p, &b, b"TESTMAGI", 3)
                .unwrap_err()
                .is_corruption());
        }
        assert!(read_container(p, &bytes[..bytes.len() - 1], b"TESTMAGI", 3).is_err());
    }

    /// A padded varint has its width and reads back as its value.
    #[test]
    fn padded_varints_read_back() {
        for v in [0u64, 1, 127, 128, 300, 1 << 28, (1 << 35) - 1] {
            let mut b = vec![7u8];
            put_padded_varint(&mut b, v, 5);
            assert_eq!(b.len(), 1 + 5);
            let mut c = Cursor::new(&b[1..], Path::new("x"));
            assert_eq!(c.varint().unwrap(), v);
            c.done().unwrap();
        }
    }

    #[test]
    fn varint_roundtrip() {
        let mut v = Vec::new();
        for x in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            put_varint(&mut v, x);
        }
        let mut c = Cursor::new(&v, Path::new("x"));
        for x in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            assert_eq!(c.varint().unwrap(), x);
        }
        c.done().unwrap();
    }
}
