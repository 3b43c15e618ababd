//! Why a llama.cpp call failed: [`LlamaError`], with `llama_decode`'s status codes as the named
//! variants of [`DecodeStatus`].

use std::path::PathBuf;

use super::capture::CaptureError;

/// A non-zero status of `llama_decode` (llama.h, above `llama_decode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeStatus {
    /// 1: no KV-cache slot for the batch (a smaller batch or a larger context may help).
    #[error("no KV-cache slot for the batch (status 1)")]
    NoKvSlot,
    /// 2: aborted (processed micro-batches stay in the context's memory).
    #[error("aborted (status 2)")]
    Aborted,
    /// -1: llama.cpp rejected the batch as invalid.
    #[error("invalid input batch (status -1)")]
    InvalidBatch,
    /// Any other code (< -1: a fatal error).
    #[error("status {0}")]
    Unknown(i32),
}

impl DecodeStatus {
    /// The status for `llama_decode`'s return value; `None` for 0 (success).
    pub fn from_i32(code: i32) -> Option<DecodeStatus> {
        match code {
            0 => None,
            1 => Some(DecodeStatus::NoKvSlot),
            2 => Some(DecodeStatus::Aborted),
            -1 => Some(DecodeStatus::InvalidBatch),
            other => Some(DecodeStatus::Unknown(other)),
        }
    }

    /// The C return value this status stands for.
    pub fn to_i32(self) -> i32 {
        match self {
            DecodeStatus::NoKvSlot => 1,
            DecodeStatus::Aborted => 2,
            DecodeStatus::InvalidBatch => -1,
            DecodeStatus::Unknown(code) => code,
        }
    }
}

/// Why a llama.cpp call failed.
#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    /// The model file could not be loaded by llama.cpp: an architecture this llama.cpp does not
    /// know, or a tensor layout or hyperparameter it does not accept for that architecture.
    #[error("{}: llama.cpp could not load this model of architecture \"{arch}\" although its GGUF structure is valid: either this llama.cpp does not support architecture \"{arch}\", or the file's tensors or hyperparameters are not what llama.cpp expects for it; run with MATHNEURO_LLAMA_LOG=1 to see why", .path.display())]
    ModelLoad {
        /// The file.
        path: PathBuf,
        /// Its `general.architecture` (`(none)` when the key is missing).
        arch: String,
    },
    /// A path with an interior NUL byte or not valid UTF-8.
    #[error("{}: path cannot be passed to llama.cpp", .0.display())]
    BadPath(PathBuf),
    /// The context could not be created (usually: out of memory).
    #[error("llama.cpp could not create a context with n_ctx={n_ctx}, n_batch={n_batch}, {n_seq_max} sequences")]
    ContextInit {
        /// Context length asked for.
        n_ctx: u32,
        /// Micro-batch asked for.
        n_batch: u32,
        /// Sequences asked for.
        n_seq_max: u32,
    },
    /// The file is not a readable GGUF (checked before llama.cpp sees it).
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// Tokenization failed.
    #[error("llama.cpp could not tokenize a text of {0} bytes")]
    Tokenize(usize),
    /// A token id outside the vocabulary.
    #[error("token {token} is not in the vocabulary of {n_vocab} tokens")]
    BadToken {
        /// The token.
        token: i32,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// llama.cpp could not render a token as text.
    #[error("llama.cpp could not render token {0} as text")]
    Piece(i32),
    /// A batch already holding all the tokens it has room for.
    #[error("batch full: it has room for {capacity} tokens")]
    BatchFull {
        /// Tokens the batch holds at most.
        capacity: usize,
    },
    /// A token given more sequences than the batch has room for per token.
    #[error("a token of {n_seqs} sequences does not fit a batch of at most {max} sequences per token")]
    TooManySequences {
        /// Sequences given.
        n_seqs: usize,
        /// Sequences per token the batch holds.
        max: usize,
    },
    /// A batch larger than the context's micro-batch, or with invalid sequence ids.
    #[error("batch of {n_tokens} tokens does not fit the micro-batch of {n_batch} (or a sequence id is out of range 0..{n_seq_max})")]
    BatchTooLarge {
        /// Tokens given.
        n_tokens: usize,
        /// The context's micro-batch.
        n_batch: usize,
        /// Sequences allowed.
        n_seq_max: usize,
    },
    /// `llama_decode` returned a non-zero status.
    #[error("llama_decode failed on a batch of {tokens} tokens: {status}")]
    Decode {
        /// Tokens in the failing batch.
        tokens: usize,
        /// What llama.cpp returned.
        status: DecodeStatus,
    },
    /// No logits for a batch row (it was not marked as an output row of the last decode).
    #[error("no logits for row {0} of the last decode (not an output row?)")]
    NoLogits(usize),
    /// The eval callback met something it cannot read (reported from inside the callback).
    #[error("activation capture: {0}")]
    Capture(#[from] CaptureError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_status_codes_round_trip() {
        assert_eq!(DecodeStatus::from_i32(0), None);
        for code in [1, 2, -1, -3, 7] {
            assert_eq!(DecodeStatus::from_i32(code).map(DecodeStatus::to_i32), Some(code));
        }
        assert_eq!(DecodeStatus::from_i32(1), Some(DecodeStatus::NoKvSlot));
        assert_eq!(DecodeStatus::from_i32(-5), Some(DecodeStatus::Unknown(-5)));
    }
}
