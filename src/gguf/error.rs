//! The one error type of the GGUF layer: I/O failures and malformed files, each naming the file,
//! and for malformed files the field and the byte offset where reading stopped.

use std::path::{Path, PathBuf};

/// Why a GGUF file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The operating system refused (missing file, permissions, disk full).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes do not form a valid GGUF file.
    #[error("{}: {field} at byte {offset}: {problem}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Byte offset where the problem was found.
        offset: u64,
        /// What was being read ("tensor_count", "tensor \"blk.0.attn_q.weight\"").
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A hyperparameter llama.cpp would abort on (see `gguf::hparams`).
    #[error("{}: {key}: {problem}", path.display())]
    Hparam {
        /// The model file.
        path: PathBuf,
        /// The metadata key, e.g. `llama.block_count`.
        key: String,
        /// What is wrong with its value.
        problem: String,
    },
    /// A caller asked for tensor data the file does not hold (rows past the end of a tensor).
    #[error("{}: tensor {tensor:?}: {problem}", path.display())]
    OutOfRange {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// What was asked and what exists.
        problem: String,
    },
    /// The atomic write of an output failed (or was refused: it is the input).
    #[error(transparent)]
    Atomic(#[from] crate::atomic::AtomicWriteError),
    /// A GGUF that is not a model (a mathneuro STATS file, an imatrix) was given as the model.
    #[error("{}: is a {what} file, not a model; give the GGUF model itself here", path.display())]
    NotAModel {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// A writer was asked for something it cannot produce.
    #[error("{}: {problem}", path.display())]
    Write {
        /// The output file.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
}

impl GgufError {
    pub(crate) fn malformed(path: &Path, offset: u64, field: &str, problem: impl Into<String>) -> GgufError {
        GgufError::Malformed { path: path.to_path_buf(), offset, field: field.to_string(), problem: problem.into() }
    }
}
