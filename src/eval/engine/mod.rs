//! The scoring and generation engine: a llama.cpp context (`crate::ffi::llama`) driven in
//! padded batches.
//!
//! Three operations serve every task:
//! - [`Session::score`] (`score`): log-likelihoods of continuations given contexts. Many groups
//!   decode together as separate sequences of one batch; the context of a group is decoded once
//!   and shared by all its continuations (its tokens belong to every continuation's sequence);
//!   an optional shared prefix (few-shot exemplars) is decoded once into sequence 0 and copied
//!   into each group's sequences through the KV cache (a metadata-only copy in the unified
//!   cache).
//! - [`Session::generate`] (`generate`): greedy generation for many prompts at once, continuous
//!   batching: a slot that finishes is refilled with the next prompt while the others keep
//!   decoding.
//! - [`Session::full_logits`]: every position's logits of one sequence, the naive reference;
//!   [`Session::extend`] (`stream`): the same piece by piece, for reading two models in lockstep.
//!
//! `batch` builds every decode and owns the padding rule that keeps results batch-invariant.

mod batch;
mod generate;
mod score;
mod stream;

pub use crate::ffi::llama::{Model, ROW_MULTIPLE, Token};
pub use batch::{MAX_UBATCH, MIN_ROWS, PAD_CELLS, padded_shape};
pub use generate::{GenerateOptions, Generation, cut_at_stop};
pub use score::{ContinuationScore, ScoreGroup};

use crate::ffi::llama::{Context, ContextParams, FlashAttention, LlamaError};
use batch::{RowBatch, batch_rows};

/// Errors of the engine; each names what failed and the numbers involved.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// llama.cpp failed (loading, a context, a decode, tokenization).
    #[error(transparent)]
    Llama(#[from] LlamaError),
    /// A request does not fit into the context window.
    #[error("a request of {tokens} tokens does not fit into the context of {n_ctx} tokens (raise --ctx-size)")]
    TooLong {
        /// Tokens the request needs in the KV cache at once.
        tokens: usize,
        /// The usable context size.
        n_ctx: usize,
    },
    /// A KV cache smaller than one decode batch: llama.cpp would shrink its batch under ours
    /// and abort on the first decode (issue 27 case 7).
    #[error("a context of {n_ctx} tokens is too small: one decode batch and its padding need {min}; raise --ctx-size")]
    ContextTooSmall {
        /// The context asked for.
        n_ctx: usize,
        /// The least that works.
        min: usize,
    },
    /// The model's logits hold NaN: its weights (or activations) are not numbers, and every
    /// score from here on would be meaningless (issue 27 case 12).
    #[error("{}: the model produced NaN logits (request {request} of this batch of requests); its weights hold NaN or its activations overflow", model.display())]
    NanLogits {
        /// The model file.
        model: std::path::PathBuf,
        /// Which request of the engine call (group, prompt or position) met it first.
        request: usize,
    },
    /// A decode whose padding would overflow the batch (a bug in the batch filling).
    #[error("a decode of {rows} rows ({outputs} outputs) pads to {padded} rows, more than the batch of {batch}")]
    PaddedTooLarge {
        /// Real rows.
        rows: usize,
        /// Real output rows.
        outputs: usize,
        /// Rows after padding.
        padded: usize,
        /// The batch's rows.
        batch: usize,
    },
    /// A scoring group without context tokens (nothing predicts its first continuation token).
    #[error("invalid request: group {group} has an empty context")]
    EmptyContext {
        /// The group's index.
        group: usize,
    },
    /// A scoring group without continuations, or with an empty one.
    #[error("invalid request: group {group} has an empty continuation")]
    EmptyContinuation {
        /// The group's index.
        group: usize,
    },
    /// A scoring group with more continuations than the context has sequences.
    #[error("invalid request: group {group} has {continuations} continuations, more than the {sequences} sequences of the context")]
    TooManyContinuations {
        /// The group's index.
        group: usize,
        /// Its continuations.
        continuations: usize,
        /// Sequences of the context.
        sequences: usize,
    },
    /// An empty generation prompt (nothing to predict the first token from).
    #[error("invalid request: prompt {prompt} is empty (nothing to predict the first token from)")]
    EmptyPrompt {
        /// The prompt's index.
        prompt: usize,
    },
    /// A chat template could not be applied.
    #[error("chat template: {0}")]
    Chat(#[from] crate::ffi::chat::ChatError),
}

/// KV-cache size unless asked otherwise (`eval --ctx-size`).
pub const DEFAULT_N_CTX: u32 = 8192;

/// Sizes and threads of an evaluation context.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineOptions {
    /// CPU threads for llama.cpp.
    pub threads: usize,
    /// KV cache size in tokens, shared by all sequences (unified cache).
    pub n_ctx: u32,
    /// Most sequences decoding together (generation slots; scoring continuations).
    pub max_sequences: usize,
    /// Most tokens per `llama_decode` call, padding included (clamped to [`MIN_ROWS`]..=
    /// [`MAX_UBATCH`] and rounded down to a multiple of [`ROW_MULTIPLE`]).
    pub batch_tokens: usize,
    /// Most logit rows per `llama_decode` call (each row is n_vocab floats).
    pub max_outputs: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            n_ctx: DEFAULT_N_CTX,
            max_sequences: super::DEFAULT_PARALLEL,
            batch_tokens: MAX_UBATCH as usize,
            max_outputs: 128,
        }
    }
}

/// A context of a loaded model, ready to score and generate.
pub struct Session<'m> {
    ctx: Context<'m>,
    batch: RowBatch,
    max_sequences: usize,
    n_ctx: usize,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("model", &self.ctx.model().path()).field("n_ctx", &self.n_ctx).finish()
    }
}

impl<'m> Session<'m> {
    /// Opens a context on `model` for scoring and generation.
    pub fn new(model: &'m Model, options: &EngineOptions) -> Result<Session<'m>, EngineError> {
        // Sequence 0 holds a shared prefix, 1..=max_sequences serve requests, and the last one
        // carries padding rows (see MIN_ROWS and ROW_MULTIPLE).
        let n_seq = (options.max_sequences + 2).clamp(3, 256) as u32;
        // One decode call is one micro-batch: llama.cpp splitting a larger batch changes the
        // numbers of some rows, as measured on Gemma 3 (see MAX_UBATCH).
        let rows = batch_rows(options.batch_tokens);
        if (options.n_ctx as usize) < rows + PAD_CELLS {
            return Err(EngineError::ContextTooSmall { n_ctx: options.n_ctx as usize, min: rows + PAD_CELLS });
        }
        let params = ContextParams {
            n_ctx: options.n_ctx,
            n_batch: rows as u32,
            n_seq_max: n_seq,
            threads: options.threads.max(1) as i32,
            flash_attn: FlashAttention::Enabled,
            watch: None,
        };
        let ctx = Context::new(model, &params)?;
        let n_ctx = ctx.n_ctx();
        let batch = RowBatch::new(rows, n_seq as usize, options.max_outputs, (n_seq - 1) as i32, model.bos());
        Ok(Session { ctx, batch, max_sequences: (n_seq - 2) as usize, n_ctx })
    }

    /// The model this session runs.
    pub fn model(&self) -> &'m Model {
        self.ctx.model()
    }

    /// The KV cache size in tokens.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    fn clear_all(&mut self) {
        self.ctx.clear();
    }

    fn remove_seq(&mut self, seq: i32) {
        self.ctx.clear_seq(seq);
    }

    /// Decodes `prefix` into sequence 0 (replacing whatever the cache held). Returns its length.
    fn load_prefix(&mut self, prefix: &[Token]) -> Result<usize, EngineError> {
        self.clear_all();
        let chunk_len = self.batch.rows();
        for (start, chunk) in (0..).step_by(chunk_len).zip(prefix.chunks(chunk_len)) {
            self.batch.clear();
            for (i, &t) in chunk.iter().enumerate() {
                self.batch.push(t, (start + i) as i32, &[0], false)?;
            }
            self.batch.decode_padded(&mut self.ctx)?;
        }
        Ok(prefix.len())
    }

    /// The logits of batch row `row`, refused when any is NaN (`request` names what the row
    /// served, for the error).
    fn logits(&self, row: usize, request: usize) -> Result<&[f32], EngineError> {
        let logits = self.ctx.logits(row)?;
        if logits.iter().any(|x| x.is_nan()) {
            return Err(EngineError::NanLogits { model: self.ctx.model().path().to_path_buf(), request });
        }
        Ok(logits)
    }

    /// Every position's logits for one sequence, decoded alone: the naive reference path.
    /// Long inputs go in consecutive calls of up to a batch each, padded like every decode;
    /// with that padding the numbers do not depend on where the calls split (see
    /// [`ROW_MULTIPLE`]).
    pub fn full_logits(&mut self, tokens: &[Token]) -> Result<Vec<Vec<f32>>, EngineError> {
        if tokens.len() + PAD_CELLS > self.n_ctx {
            return Err(EngineError::TooLong { tokens: tokens.len(), n_ctx: self.n_ctx });
        }
        self.clear_all();
        let mut rows = Vec::with_capacity(tokens.len());
        let chunk_len = self.batch.rows().min(self.batch.max_outputs());
        for (start, chunk) in (0..).step_by(chunk_len).zip(tokens.chunks(chunk_len)) {
            self.batch.clear();
            for (i, &t) in chunk.iter().enumerate() {
                self.batch.push(t, (start + i) as i32, &[0], true)?;
            }
            self.batch.decode_padded(&mut self.ctx)?;
            for i in 0..chunk.len() {
                rows.push(self.logits(i, start + i)?.to_vec());
            }
        }
        self.clear_all();
        Ok(rows)
    }
}
