//! The error type of the model crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading a model folder or encoding text.
///
/// Every message names the input (a file, a tensor, a model id), the problem, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The model folder lacks a file the model needs.
    #[error("{dir}: missing {file}; {hint}")]
    MissingFile {
        /// The model folder.
        dir: PathBuf,
        /// The file name that is missing.
        file: &'static str,
        /// What the user can do about it.
        hint: String,
    },
    /// A file exists but its content is not what it should be.
    #[error("{path}: {problem}")]
    InvalidFile {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it, and how to fix it.
        problem: String,
    },
    /// A weight tensor is absent from `model.safetensors`.
    #[error("{path}: tensor {name} not found (looked for {tried}); is this a {arch} masked-LM checkpoint?")]
    MissingTensor {
        /// The safetensors file.
        path: PathBuf,
        /// The logical tensor name.
        name: String,
        /// The names that were tried.
        tried: String,
        /// The architecture from config.json.
        arch: &'static str,
    },
    /// A weight tensor has the wrong shape or dtype.
    #[error("{path}: tensor {name} has {found}, expected {expected}; config.json and model.safetensors disagree")]
    BadTensor {
        /// The safetensors file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// What was found (shape or dtype).
        found: String,
        /// What the config implies.
        expected: String,
    },
    /// The model folder is query-only (no network weights) but a neural encoding was asked for.
    #[error("model {model} is query-only (tokenizer.json + idf.json, no model.safetensors): it cannot encode documents; use a document encoder folder")]
    QueryOnly {
        /// The model's name.
        model: String,
    },
    /// The tokenizer failed on an input.
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),
    /// A Hub model id was given but could not be downloaded.
    #[error("cannot download {id} from the Hugging Face Hub: {problem}. Offline? Download the folder elsewhere with `huggingface-cli download {id} --local-dir DIR`, copy it here and pass --model DIR")]
    Hub {
        /// The Hub model id.
        id: String,
        /// What went wrong.
        problem: String,
    },
    /// An argument is outside its valid range.
    #[error("invalid {what}: {problem}")]
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        ModelError::InvalidFile {
            path: path.into(),
            problem: problem.into(),
        }
    }
}
