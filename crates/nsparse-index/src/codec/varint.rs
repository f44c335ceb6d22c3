//! LEB128 varints (plain and fixed-width padded) and the bounds-checked reading cursor.

use std::path::Path;

use crate::error::{Error, Result};

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

#[cfg(test)]
mod tests {
    use super::*;

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
