//! Faulting in fresh memory before it is written out of order.
//!
//! A freshly allocated buffer of hundreds of MB (a segment's postings, its
//! dense columns) is backed by no pages until it is written; written out of
//! order, every first write to a page is a page fault in the middle of the
//! work. [`populate`] maps the pages in up front. A buffer written at tens
//! of thousands of places at once also misses the TLB on nearly every write
//! with 4 KiB pages; [`huge_page_vec`] asks for 2 MiB pages instead.

/// Make every page of `buf` resident and writable without changing its
/// contents.
///
/// On Linux one `madvise(MADV_POPULATE_WRITE)` (kernel 5.14+) maps the
/// pages in a loop inside the kernel, 20–30 % faster than taking one page
/// fault per page from user space (C probe, 1.14 GB). Elsewhere, or when the
/// kernel refuses, every page is written once (with its own value).
pub(crate) fn populate<T: Copy>(buf: &mut [T]) {
    const PAGE: usize = 4096;
    let bytes = std::mem::size_of_val(buf);
    if bytes == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let start = buf.as_mut_ptr() as usize;
        let (a, b) = (start.next_multiple_of(PAGE), (start + bytes) / PAGE * PAGE);
        if b > a {
            // SAFETY: [a, b) lies inside `buf`, which is borrowed mutably,
            // and MADV_POPULATE_WRITE only maps pages in: the memory's
            // contents do not change.
            let r =
                unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_POPULATE_WRITE) };
            if r == 0 {
                // The partial pages at either end.
                rewrite(&mut buf[0]);
                let last = buf.len() - 1;
                rewrite(&mut buf[last]);
                return;
            }
        }
    }
    let step = (PAGE / std::mem::size_of::<T>().max(1)).max(1);
    for x in buf.iter_mut().step_by(step) {
        rewrite(x);
    }
}

/// A vector of `len` default elements whose memory is backed by transparent
/// huge pages where the kernel allows it (Linux, THP `madvise` or `always`).
///
/// For buffers written at tens of thousands of places at once (a counting
/// sort's output): with 4 KiB pages nearly every write misses the TLB, with
/// 2 MiB pages a 75 MB buffer needs 38 entries. Small buffers (under 4 MiB)
/// and other systems get a plain vector.
pub(crate) fn huge_page_vec<T: Copy + Default>(len: usize) -> Vec<T> {
    const HUGE: usize = 2 << 20;
    let size = std::mem::size_of::<T>().max(1);
    let bytes = len.saturating_mul(size);
    if bytes < 2 * HUGE {
        return vec![T::default(); len];
    }
    // One huge page of slack, so the aligned interior covers `len` elements.
    let mut v: Vec<T> = Vec::with_capacity(len + HUGE / size);
    #[cfg(target_os = "linux")]
    {
        let start = v.as_mut_ptr() as usize;
        let end = start + v.capacity() * size;
        let (a, b) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if b > a {
            // SAFETY: [a, b) lies inside `v`'s allocation, which this
            // function owns, and MADV_HUGEPAGE only changes how its pages
            // are backed, not their contents (none are written yet). A
            // refusal (THP disabled) leaves ordinary pages.
            unsafe {
                libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE);
            }
        }
    }
    v.resize(len, T::default());
    v
}

/// Write `x`'s own value back, so its page is faulted in writable.
#[inline]
fn rewrite<T: Copy>(x: &mut T) {
    let p: *mut T = x;
    // SAFETY: `p` comes from a live `&mut T`; a volatile copy of a `Copy`
    // value (possibly `MaybeUninit`) back to the same place changes nothing
    // and is not optimised away.
    unsafe { std::ptr::write_volatile(p, std::ptr::read_volatile(p)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populate_keeps_contents_and_accepts_spare_capacity() {
        for n in [0usize, 1, 1023, 1024, 1025, 3 << 20] {
            let mut v: Vec<u32> = (0..n as u32)
                .map(|i| i.wrapping_mul(2_654_435_761))
                .collect();
            let want = v.clone();
            populate(&mut v);
            assert_eq!(v, want);
            populate(&mut v[n / 3..]);
            assert_eq!(v, want);
            let mut w: Vec<u16> = Vec::with_capacity(n + 5000);
            w.extend_from_slice(&[7, 8, 9]);
            populate(w.spare_capacity_mut());
            w.extend((0..n).map(|i| i as u16));
            assert_eq!(&w[..3], &[7, 8, 9]);
            assert_eq!(w.len(), n + 3);
        }
    }

    #[test]
    fn huge_page_vec_is_default_filled_and_writable() {
        for n in [0usize, 1, 1 << 20, (3 << 20) + 7] {
            let mut v: Vec<u32> = huge_page_vec(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&x| x == 0));
            for (i, x) in v.iter_mut().enumerate() {
                *x = i as u32;
            }
            assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
            let w: Vec<(u32, u32)> = huge_page_vec(n);
            assert!(w.len() == n && w.iter().all(|&x| x == (0, 0)));
        }
    }
}
