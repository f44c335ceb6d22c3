//! Sparse matrices across the boundary: CSR as little-endian byte buffers.
//!
//! In: `bytes` from NumPy's `tobytes()` (`indptr` u64, `indices` u32, `data` f32). Out: three
//! `bytearray`s the Python side views with `numpy.frombuffer` (writable, no further copy).

use pyo3::prelude::*;
use pyo3::types::PyByteArray;

use crate::errors::value_err;

/// A borrowed CSR matrix decoded from byte buffers, validated for structure.
pub struct CsrIn {
    /// Row starts, `rows + 1` entries, first 0, non-decreasing, last = `nnz`.
    pub indptr: Vec<usize>,
    /// Column of each stored entry.
    pub indices: Vec<u32>,
    /// Value of each stored entry.
    pub data: Vec<f32>,
}

impl CsrIn {
    /// Decodes and checks the three buffers (`what` names the input in errors).
    pub fn from_bytes(what: &str, indptr: &[u8], indices: &[u8], data: &[u8]) -> PyResult<Self> {
        if !indptr.len().is_multiple_of(8)
            || !indices.len().is_multiple_of(4)
            || !data.len().is_multiple_of(4)
        {
            return Err(value_err(
                what,
                "CSR buffers must hold u64 indptr, u32 indices and f32 data; pass numpy arrays through the nsparse Python API",
            ));
        }
        let indptr: Vec<usize> = indptr
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")) as usize)
            .collect();
        let indices: Vec<u32> = u32s(indices);
        let data: Vec<f32> = f32s(data);
        if indptr.first() != Some(&0)
            || indptr.last() != Some(&indices.len())
            || indices.len() != data.len()
            || indptr.windows(2).any(|w| w[0] > w[1])
        {
            return Err(value_err(
                what,
                format!(
                    "inconsistent CSR matrix (indptr of {} entries from {:?} to {:?}, {} indices, {} values); build it with scipy.sparse.csr_array",
                    indptr.len(),
                    indptr.first(),
                    indptr.last(),
                    indices.len(),
                    data.len()
                ),
            ));
        }
        Ok(CsrIn {
            indptr,
            indices,
            data,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Row `i` as `(token, weight)` pairs, explicit zeros dropped.
    pub fn row_pairs(&self, i: usize) -> Vec<(u32, f32)> {
        let (a, b) = (self.indptr[i], self.indptr[i + 1]);
        self.indices[a..b]
            .iter()
            .zip(&self.data[a..b])
            .filter(|(_, w)| **w != 0.0)
            .map(|(t, w)| (*t, *w))
            .collect()
    }
}

/// Little-endian u32s of a byte buffer (length a multiple of 4).
pub fn u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4-byte chunk")))
        .collect()
}

/// Little-endian f32s of a byte buffer (length a multiple of 4).
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4-byte chunk")))
        .collect()
}

/// A CSR matrix being returned to Python.
#[derive(Default)]
pub struct CsrOut {
    indptr: Vec<u64>,
    indices: Vec<u32>,
    data: Vec<f32>,
}

impl CsrOut {
    /// An empty matrix with room for `rows` rows.
    pub fn with_rows(rows: usize) -> Self {
        let mut indptr = Vec::with_capacity(rows + 1);
        indptr.push(0);
        CsrOut {
            indptr,
            indices: Vec::new(),
            data: Vec::new(),
        }
    }

    /// Appends one row of increasing ids.
    pub fn push_row(&mut self, ids: &[u32], weights: &[f32]) {
        self.indices.extend_from_slice(ids);
        self.data.extend_from_slice(weights);
        self.indptr.push(self.indices.len() as u64);
    }

    /// `(indptr, indices, data)` as `bytearray`s.
    pub fn into_py(
        self,
        py: Python<'_>,
    ) -> PyResult<(
        Bound<'_, PyByteArray>,
        Bound<'_, PyByteArray>,
        Bound<'_, PyByteArray>,
    )> {
        Ok((
            bytearray(py, &self.indptr, |v| v.to_le_bytes())?,
            bytearray(py, &self.indices, |v| v.to_le_bytes())?,
            bytearray(py, &self.data, |v| v.to_le_bytes())?,
        ))
    }
}

/// A `bytearray` holding `values` little-endian.
pub fn bytearray<'py, T: Copy, const N: usize>(
    py: Python<'py>,
    values: &[T],
    le: impl Fn(T) -> [u8; N],
) -> PyResult<Bound<'py, PyByteArray>> {
    PyByteArray::new_with(py, values.len() * N, |buf| {
        for (chunk, v) in buf.chunks_exact_mut(N).zip(values) {
            chunk.copy_from_slice(&le(*v));
        }
        Ok(())
    })
}
