//! `nsparse._nsparse`: the PyO3 extension behind the `nsparse` Python package.
//!
//! This layer is deliberately thin: it owns the Rust objects ([`encoder::Encoder`] around
//! `nsparse_model::SparseEncoder`, [`index::IndexCore`] around `nsparse_index::Index`), runs
//! their long work with the GIL released, and moves sparse matrices across the boundary as
//! CSR byte buffers (`indptr` u64, `indices` u32, `data` f32, little-endian). The Python
//! package (`python/nsparse/`) converts those to and from scipy, torch and `{token: weight}`
//! dicts and gives the sentence-transformers-shaped API.
//!
//! Byte buffers instead of NumPy's C API keep the module on the stable ABI (`abi3-py39`): the
//! buffer protocol is only in the limited API from Python 3.11, and a byte copy costs far less
//! than the work on either side of it.

mod csr;
mod encoder;
mod errors;
mod index;

use pyo3::prelude::*;

/// The extension module (imported as `nsparse._nsparse`).
#[pymodule]
fn _nsparse(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<encoder::Encoder>()?;
    m.add_class::<index::IndexCore>()?;
    m.add("BUILTIN_QUERY_MODEL", nsparse_model::BUILTIN_QUERY_MODEL)?;
    m.add("MAX_LENGTH", nsparse_model::MAX_LENGTH)?;
    m.add("DEFAULT_VOCAB_SIZE", nsparse_index::DEFAULT_VOCAB_SIZE)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
