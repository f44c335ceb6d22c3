//! A 64-byte aligned, zero-initialised buffer for packed operands.
//!
//! Packed panels are streamed with aligned vector loads and every panel row
//! is one cache line, so the backing store must start on a cache line.

use std::marker::PhantomData;

/// Element types that may live in an [`AlignedBuf`]: plain numbers for which
/// the all-zero bit pattern is a valid value and whose alignment divides 64.
///
/// # Safety
/// Implementors must be `Copy`, valid for all-zero bytes and have alignment ≤ 64.
pub(crate) unsafe trait Pod: Copy + Send + Sync + 'static {}
// SAFETY: primitive numbers, zero is valid, alignment ≤ 8.
unsafe impl Pod for f32 {}
// SAFETY: as above.
unsafe impl Pod for i16 {}
// SAFETY: as above.
unsafe impl Pod for i32 {}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Cache-line aligned `[T]` of fixed length.
pub(crate) struct AlignedBuf<T: Pod> {
    lines: Vec<Line>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> AlignedBuf<T> {
    /// A buffer of `len` zero elements.
    pub(crate) fn zeroed(len: usize) -> Self {
        let bytes = len * std::mem::size_of::<T>();
        Self {
            lines: vec![Line([0; 64]); bytes.div_ceil(64)],
            len,
            _t: PhantomData,
        }
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        // SAFETY: `lines` holds at least len*size_of::<T>() initialised bytes,
        // the pointer is 64-aligned (≥ align_of::<T>()) and zero/any bit
        // pattern written through `as_mut_slice` is a valid T (Pod).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const T, self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`; the &mut self borrow makes it unique.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut T, self.len) }
    }

    pub(crate) fn len_bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }
}
