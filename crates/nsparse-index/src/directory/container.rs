//! Low-level encoding shared by every file: the checksummed section container,
//! varints, weight quantization and atomic file replacement.

use std::path::Path;

use crate::directory::atomic::publish;
use crate::directory::sink::FileSink;
use crate::error::{Error, Result};

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
}
