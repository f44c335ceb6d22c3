//! Rust errors as Python exceptions: `ValueError` for bad input, `OSError` (or a subclass) for
//! files, with the Rust message (which names the input, the problem and the fix).

use nsparse_index::Error as IndexError;
use nsparse_model::ModelError;
use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::PyErr;

/// A model-crate error as the Python exception a caller would expect.
pub fn model_err(e: ModelError) -> PyErr {
    let message = e.to_string();
    match e {
        ModelError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        ModelError::MissingFile { .. } => PyFileNotFoundError::new_err(message),
        ModelError::Io { .. }
        | ModelError::InvalidFile { .. }
        | ModelError::MissingTensor { .. }
        | ModelError::BadTensor { .. }
        | ModelError::Hub { .. } => PyOSError::new_err(message),
        ModelError::QueryOnly { .. }
        | ModelError::Tokenizer(_)
        | ModelError::InvalidArgument { .. } => PyValueError::new_err(message),
        // A variant added to the crate later stays a clear error, not a build break here.
        #[allow(unreachable_patterns)]
        _ => PyRuntimeError::new_err(message),
    }
}

/// An index-crate error as the Python exception a caller would expect.
pub fn index_err(e: IndexError) -> PyErr {
    let message = e.to_string();
    match e {
        IndexError::AlreadyExists { .. } => PyFileExistsError::new_err(message),
        IndexError::NotAnIndex { .. } => PyFileNotFoundError::new_err(message),
        IndexError::Io { .. }
        | IndexError::Corrupt { .. }
        | IndexError::UnsupportedVersion { .. }
        | IndexError::Locked { .. } => PyOSError::new_err(message),
        IndexError::DuplicateId { .. }
        | IndexError::InvalidInput { .. }
        | IndexError::ModelMismatch { .. } => PyValueError::new_err(message),
        // The enum is not `#[non_exhaustive]` today; this arm keeps a new variant a clear
        // error instead of a build break of the bindings.
        #[allow(unreachable_patterns)]
        _ => PyRuntimeError::new_err(message),
    }
}

/// A `ValueError` naming the argument, the problem and the fix.
pub fn value_err(what: &str, problem: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("invalid {what}: {problem}"))
}
