//! The scoring and generation engine: a llama.cpp model and context driven in batches.
//!
//! Three operations serve every task:
//! - [`Session::score`]: log-likelihoods of continuations given contexts. Many groups decode
//!   together as separate sequences of one batch; the context of a group is decoded once and
//!   shared by all its continuations (its tokens belong to every continuation's sequence); an
//!   optional shared prefix (few-shot exemplars) is decoded once into sequence 0 and copied into
//!   each group's sequences through the KV cache (a metadata-only copy in the unified cache).
//! - [`Session::generate`]: greedy generation for many prompts at once, continuous batching:
//!   a slot that finishes is refilled with the next prompt while the others keep decoding.
//! - [`Session::full_logits`]: every position's logits of one sequence, the naive reference.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

use super::backend::shared_backend;
use super::logits::{LogSoftmaxRow, row_stats};

/// Most tokens per llama.cpp micro-batch. Below ggml's flash-attention query tile (64 rows),
/// the CPU kernel attends each query row on its own, visiting the row's unmasked KV cells in
/// cache order; with a sequence's cells kept in position order (see [`Session::score`]) a row's
/// result then does not depend on which other sequences share the batch. Gemma 3's large
/// activations turn the tiled kernel's different rounding into log-likelihood changes of
/// 0.1 nats and more, so batch invariance matters here.
pub const MAX_UBATCH: u32 = 60;

/// Fewest rows (and output rows) per decode. Decodes of four rows or fewer gave other numbers
/// than larger ones on Gemma 3 (single-token log-likelihoods moved by up to 0.3 nats; with
/// one row, ggml's CPU flash attention also switches to a KV-split kernel), so small batches
/// are padded with throw-away rows of a padding sequence.
pub const MIN_ROWS: usize = 8;

/// Every decode's row count and output-row count are multiples of this. llama.cpp's repacked
/// CPU matrix products (Q4_K here) take the rows of a micro-batch four at a time (a gemm
/// kernel, activations quantized in groups of four rows) and send the `rows % 4` left over to
/// a gemv kernel that rounds differently; the output rows go through the last layer's
/// feed-forward and the output head as a product of their own. Which tokens fell into that
/// remainder depended on the batch layout: decoding a shared prefix in calls of its own moved
/// continuation log-likelihoods by 0.02 to 0.2 nats against one single-sequence pass. With
/// every product a whole number of 4-row groups, a row's numbers no longer depend on the rows
/// beside it: measured bit-identical across layouts (examples/prefix_probe.rs).
pub const ROW_MULTIPLE: usize = 4;

/// KV cells kept free for the padding rows of one decode (at most `MIN_ROWS - 1` output pads
/// plus `ROW_MULTIPLE - 1` more rows).
const PAD_CELLS: usize = MIN_ROWS + ROW_MULTIPLE;

/// Rows and output rows a decode of `tokens` real rows, `outputs` of them output rows, has
/// after padding: (total rows, padding rows that are outputs). See [`MIN_ROWS`] and
/// [`ROW_MULTIPLE`].
fn padded_shape(tokens: usize, outputs: usize) -> (usize, usize) {
    let round = |n: usize| n.max(MIN_ROWS).div_ceil(ROW_MULTIPLE) * ROW_MULTIPLE;
    let output_pads = if outputs > 0 { round(outputs) - outputs } else { 0 };
    (round(tokens + output_pads), output_pads)
}

/// A token id of the model's vocabulary.
pub type Token = i32;

/// Errors of the engine; each names what failed and the numbers involved.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// llama.cpp could not be initialised.
    #[error("cannot initialise llama.cpp: {0}")]
    Backend(String),
    /// The model file could not be loaded.
    #[error("cannot load model {path}: {reason}")]
    Load {
        /// The model file.
        path: PathBuf,
        /// llama.cpp's reason.
        reason: String,
    },
    /// The file is not a readable GGUF (checked before llama.cpp sees it).
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// A context could not be created.
    #[error("cannot create a llama.cpp context (n_ctx {n_ctx}, {n_seq} sequences): {reason}")]
    Context {
        /// Requested context size.
        n_ctx: u32,
        /// Requested number of sequences.
        n_seq: u32,
        /// llama.cpp's reason.
        reason: String,
    },
    /// `llama_decode` failed.
    #[error("llama_decode failed on a batch of {tokens} tokens: {reason}")]
    Decode {
        /// Tokens in the failing batch.
        tokens: usize,
        /// llama.cpp's reason.
        reason: String,
    },
    /// A request does not fit into the context window.
    #[error("a request of {tokens} tokens does not fit into the context of {n_ctx} tokens")]
    TooLong {
        /// Tokens the request needs in the KV cache at once.
        tokens: usize,
        /// The usable context size.
        n_ctx: usize,
    },
    /// A request is malformed (for example a continuation without any context before it).
    #[error("invalid request: {0}")]
    Invalid(String),
}

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
            n_ctx: 8192,
            max_sequences: 32,
            batch_tokens: MAX_UBATCH as usize,
            max_outputs: 128,
        }
    }
}

/// A loaded GGUF model with its tokenizer.
pub struct EvalModel {
    model: LlamaModel,
    path: PathBuf,
}

impl std::fmt::Debug for EvalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalModel").field("path", &self.path).finish()
    }
}

impl EvalModel {
    /// Loads a model (CPU only, memory-mapped).
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        let backend = shared_backend().map_err(|e| EngineError::Backend(e.to_string()))?;
        crate::model::check_loadable(path)?;
        let params = LlamaModelParams::default().with_n_gpu_layers(0);
        let model = LlamaModel::load_from_file(backend, path, &params)
            .map_err(|e| EngineError::Load { path: path.to_path_buf(), reason: format!("{e}: llama.cpp refused a structurally valid GGUF (unsupported architecture or tensor layout?); run with MATHNEURO_LLAMA_LOG=1 to see why") })?;
        Ok(Self { model, path: path.to_path_buf() })
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Vocabulary size (the length of a logit row).
    pub fn n_vocab(&self) -> usize {
        self.model.n_vocab() as usize
    }

    /// Tokenizes `text`; `bos` adds the model's start token when the model wants one.
    pub fn tokenize(&self, text: &str, bos: bool) -> Vec<Token> {
        self.model.vocab().tokenize(text.as_bytes(), bos, false).into_iter().map(|t| t.0).collect()
    }

    /// The bytes one token stands for (special tokens render as nothing).
    pub fn token_bytes(&self, token: Token) -> Vec<u8> {
        self.model.vocab().token_to_piece(LlamaToken(token), false, None)
    }

    /// The text of a token sequence (lossy for invalid UTF-8).
    pub fn detokenize(&self, tokens: &[Token]) -> String {
        let bytes: Vec<u8> = tokens.iter().flat_map(|&t| self.token_bytes(t)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Whether `token` ends generation (end of sequence or end of turn).
    pub fn is_end_of_generation(&self, token: Token) -> bool {
        self.model.vocab().is_eog(LlamaToken(token))
    }

    /// The start-of-sequence token.
    pub fn bos(&self) -> Token {
        self.model.vocab().bos().0
    }

    /// Opens a context for scoring and generation.
    pub fn session(&self, options: &EngineOptions) -> Result<Session<'_>, EngineError> {
        let backend = shared_backend().map_err(|e| EngineError::Backend(e.to_string()))?;
        // Sequence 0 holds a shared prefix, 1..=max_sequences serve requests, and the last one
        // carries padding rows (see MIN_ROWS and ROW_MULTIPLE).
        let n_seq = (options.max_sequences + 2).clamp(3, 256) as u32;
        let threads = options.threads.max(1) as i32;
        // One decode call is one micro-batch: llama.cpp splitting a larger batch changes the
        // numbers of some rows, as measured on Gemma 3 (see MAX_UBATCH).
        // A multiple of ROW_MULTIPLE, so a padded decode always fits.
        let batch = (options.batch_tokens.clamp(MIN_ROWS, MAX_UBATCH as usize) / ROW_MULTIPLE * ROW_MULTIPLE) as u32;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(options.n_ctx))
            .with_n_batch(batch)
            .with_n_ubatch(batch)
            .with_n_seq_max(n_seq)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_kv_unified(true)
            .with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED);
        let ctx = self.model.new_context(backend, params).map_err(|e| EngineError::Context {
            n_ctx: options.n_ctx,
            n_seq,
            reason: e.to_string(),
        })?;
        let n_ctx = ctx.n_ctx() as usize;
        Ok(Session {
            model: self,
            ctx,
            batch: LlamaBatch::new(batch as usize, n_seq as i32),
            max_sequences: (n_seq - 2) as usize,
            pad_seq: (n_seq - 1) as i32,
            pad_token: self.bos(),
            batch_tokens: batch as usize,
            max_outputs: options.max_outputs.max(1),
            n_ctx,
            n_vocab: self.n_vocab(),
        })
    }
}

/// One group of continuations sharing a context.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoreGroup {
    /// Whether the session's shared prefix comes before `context`.
    pub use_prefix: bool,
    /// Context tokens (after the prefix when `use_prefix`); must not be empty.
    pub context: Vec<Token>,
    /// Continuations to score, each non-empty.
    pub continuations: Vec<Vec<Token>>,
}

/// The log-likelihood of one continuation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContinuationScore {
    /// log p(token | everything before) for each continuation token, natural log.
    pub token_logprobs: Vec<f64>,
    /// Whether every token was the argmax of its row (greedy decoding would produce it).
    pub greedy: bool,
}

impl ContinuationScore {
    /// Sum of the token log-probabilities.
    pub fn logprob(&self) -> f64 {
        self.token_logprobs.iter().sum()
    }
}

/// Greedy generation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Most new tokens per prompt.
    pub max_new_tokens: usize,
    /// Generation stops once the text contains one of these; the text is cut before it.
    pub stop: Vec<String>,
    /// Most prompts decoding at once (1 = one question at a time).
    pub parallel: usize,
}

/// The result of generating for one prompt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Generation {
    /// Generated text, cut before the first stop string.
    pub text: String,
    /// Number of tokens generated (including the one that completed a stop string).
    pub n_tokens: usize,
}

/// Where one logit row goes: the row predicts `target` as token `index` of continuation
/// `continuation` of group `group`.
#[derive(Debug, Clone, Copy)]
struct Target {
    group: usize,
    continuation: usize,
    index: usize,
    target: Token,
}

/// One token to feed into the batch.
#[derive(Debug, Clone)]
struct Feed {
    token: Token,
    pos: i32,
    seqs: Vec<i32>,
    targets: Vec<Target>,
}

/// Per-group progress through its feed list.
struct Active {
    feeds: Vec<Feed>,
    next: usize,
    seqs: Vec<i32>,
    cells: usize,
}

/// A context of a loaded model, ready to score and generate.
pub struct Session<'m> {
    model: &'m EvalModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    max_sequences: usize,
    batch_tokens: usize,
    max_outputs: usize,
    n_ctx: usize,
    n_vocab: usize,
    pad_seq: i32,
    pad_token: Token,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("model", &self.model.path).field("n_ctx", &self.n_ctx).finish()
    }
}

impl<'m> Session<'m> {
    /// The model this session runs.
    pub fn model(&self) -> &'m EvalModel {
        self.model
    }

    /// The KV cache size in tokens.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Whether a decode of `tokens` real rows with `outputs` output rows fits into one batch once
    /// padded (see [`padded_shape`]).
    fn fits(&self, tokens: usize, outputs: usize) -> bool {
        padded_shape(tokens, outputs).0 <= self.batch_tokens
    }

    /// Decodes the batch after padding it (see [`padded_shape`]) with throw-away tokens of the
    /// padding sequence (removed again right after).
    fn decode_padded(&mut self, n_tokens: usize, n_outputs: usize) -> Result<(), EngineError> {
        let (total, output_pads) = padded_shape(n_tokens, n_outputs);
        if total > self.batch_tokens {
            return Err(EngineError::Invalid(format!(
                "a decode of {n_tokens} rows ({n_outputs} outputs) pads to {total} rows, more than the batch of {}",
                self.batch_tokens
            )));
        }
        let pads = total - n_tokens;
        for i in 0..pads {
            self.batch
                .add(LlamaToken(self.pad_token), i as i32, &[self.pad_seq], i < output_pads)
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
        }
        let result = self.decode();
        if pads > 0 {
            self.remove_seq(self.pad_seq);
        }
        result
    }

    fn decode(&mut self) -> Result<(), EngineError> {
        let tokens = self.batch.n_tokens() as usize;
        self.ctx
            .decode(&mut self.batch)
            .map_err(|e| EngineError::Decode { tokens, reason: e.to_string() })
    }

    fn clear_all(&mut self) {
        self.ctx.clear_kv_cache();
    }

    fn remove_seq(&mut self, seq: i32) {
        // Whole-sequence removal always succeeds.
        let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
    }

    /// Decodes `prefix` into sequence 0 (replacing whatever the cache held). Returns its length.
    fn load_prefix(&mut self, prefix: &[Token]) -> Result<usize, EngineError> {
        self.clear_all();
        for (start, chunk) in (0..).step_by(self.batch_tokens).zip(prefix.chunks(self.batch_tokens)) {
            self.batch.clear();
            for (i, &t) in chunk.iter().enumerate() {
                self.batch
                    .add(LlamaToken(t), (start + i) as i32, &[0], false)
                    .map_err(|e| EngineError::Invalid(e.to_string()))?;
            }
            self.decode_padded(chunk.len(), 0)?;
        }
        Ok(prefix.len())
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
        let chunk_len = self.batch_tokens.min(self.max_outputs);
        for (start, chunk) in (0..).step_by(chunk_len).zip(tokens.chunks(chunk_len)) {
            self.batch.clear();
            for (i, &t) in chunk.iter().enumerate() {
                self.batch
                    .add(LlamaToken(t), (start + i) as i32, &[0], true)
                    .map_err(|e| EngineError::Invalid(e.to_string()))?;
            }
            self.decode_padded(chunk.len(), chunk.len())?;
            for i in 0..chunk.len() {
                rows.push(self.ctx.get_logits_ith(i as i32).to_vec());
            }
        }
        self.clear_all();
        Ok(rows)
    }

    /// Log-likelihoods of every continuation of every group; `prefix` (may be empty) is decoded
    /// once and shared by the groups that set `use_prefix`. `progress` is called with the
    /// number of groups finished so far.
    pub fn score(
        &mut self,
        prefix: &[Token],
        groups: &[ScoreGroup],
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<Vec<ContinuationScore>>, EngineError> {
        let mut results: Vec<Vec<ContinuationScore>> = groups
            .iter()
            .map(|g| {
                g.continuations
                    .iter()
                    .map(|c| ContinuationScore { token_logprobs: vec![0.0; c.len()], greedy: true })
                    .collect()
            })
            .collect();
        let prefix_len = if groups.iter().any(|g| g.use_prefix) && !prefix.is_empty() {
            self.load_prefix(prefix)?
        } else {
            self.clear_all();
            0
        };
        for (gi, g) in groups.iter().enumerate() {
            if g.context.is_empty() {
                return Err(EngineError::Invalid(format!("group {gi} has an empty context")));
            }
            if g.continuations.is_empty() || g.continuations.iter().any(|c| c.is_empty()) {
                return Err(EngineError::Invalid(format!("group {gi} has an empty continuation")));
            }
            if g.continuations.len() > self.max_sequences {
                return Err(EngineError::Invalid(format!(
                    "group {gi} has {} continuations, more than the {} sequences of the context",
                    g.continuations.len(),
                    self.max_sequences
                )));
            }
            let cells = group_cells(g) + if g.use_prefix { prefix_len } else { 0 };
            if cells + PAD_CELLS > self.n_ctx {
                return Err(EngineError::TooLong { tokens: cells, n_ctx: self.n_ctx });
            }
        }
        // Room for the padding rows too (see PAD_CELLS).
        let budget = self.n_ctx.saturating_sub(prefix_len + PAD_CELLS);
        let mut free_seqs: Vec<i32> = (1..=self.max_sequences as i32).rev().collect();
        let mut active: Vec<Active> = Vec::new();
        let mut next_group = 0;
        let mut cells_in_use = 0;
        let mut done = 0;
        let mut done_in_wave = 0;
        while next_group < groups.len() || !active.is_empty() {
            // Admit a wave of groups while sequences and cache cells last. Groups are admitted
            // only into an empty cache (besides the prefix) so each sequence's cells are
            // allocated in position order, which keeps results independent of batching.
            let wave_starts = active.is_empty();
            while wave_starts && next_group < groups.len() {
                let g = &groups[next_group];
                let own_cells = group_cells(g);
                if g.continuations.len() > free_seqs.len() || cells_in_use + own_cells > budget {
                    break;
                }
                let seqs: Vec<i32> = (0..g.continuations.len()).map(|_| free_seqs.pop().unwrap()).collect();
                let base = if g.use_prefix && prefix_len > 0 {
                    for &s in &seqs {
                        self.ctx.copy_cache(0, s, prefix_len as i32);
                    }
                    prefix_len
                } else {
                    0
                };
                active.push(Active {
                    feeds: group_feeds(next_group, g, base, &seqs),
                    next: 0,
                    seqs,
                    cells: own_cells,
                });
                cells_in_use += own_cells;
                next_group += 1;
            }
            if active.is_empty() {
                return Err(EngineError::TooLong { tokens: group_cells(&groups[next_group]), n_ctx: budget });
            }
            // Fill one batch from the active groups, in order.
            self.batch.clear();
            let mut row_targets: Vec<(i32, Vec<Target>)> = Vec::new();
            let (mut n_tokens, mut n_outputs) = (0usize, 0usize);
            'fill: for a in active.iter_mut() {
                while a.next < a.feeds.len() {
                    let f = &a.feeds[a.next];
                    let wants = !f.targets.is_empty();
                    let outputs_after = n_outputs + usize::from(wants);
                    if !self.fits(n_tokens + 1, outputs_after) || outputs_after > self.max_outputs {
                        break 'fill;
                    }
                    self.batch
                        .add(LlamaToken(f.token), f.pos, &f.seqs, wants)
                        .map_err(|e| EngineError::Invalid(e.to_string()))?;
                    if wants {
                        row_targets.push((n_tokens as i32, f.targets.clone()));
                        n_outputs += 1;
                    }
                    n_tokens += 1;
                    a.next += 1;
                }
            }
            self.decode_padded(n_tokens, n_outputs)?;
            for (row, targets) in &row_targets {
                let logits = self.ctx.get_logits_ith(*row);
                debug_assert_eq!(logits.len(), self.n_vocab);
                let stats: LogSoftmaxRow = row_stats(logits);
                for t in targets {
                    let score = &mut results[t.group][t.continuation];
                    score.token_logprobs[t.index] = stats.logprob(logits, t.target);
                    score.greedy &= stats.argmax == t.target as usize;
                }
            }
            // Report finished groups; free the wave's sequences once all of it is done (freeing
            // earlier would let llama.cpp place later tokens into the holes, out of order).
            let finished = active.iter().filter(|a| a.next == a.feeds.len()).count();
            if finished > done_in_wave {
                for _ in done_in_wave..finished {
                    done += 1;
                    progress(done);
                }
                done_in_wave = finished;
            }
            if finished == active.len() {
                for a in active.drain(..) {
                    for &s in &a.seqs {
                        self.remove_seq(s);
                        free_seqs.push(s);
                    }
                    cells_in_use -= a.cells;
                }
                done_in_wave = 0;
            }
        }
        self.clear_all();
        Ok(results)
    }

    /// Greedy generation for every prompt; `prefix` (may be empty) is decoded once and shared by
    /// all prompts (each prompt holds only the tokens after it). `on_done(i, generation)` is
    /// called as prompt `i` finishes.
    pub fn generate(
        &mut self,
        prefix: &[Token],
        prompts: &[Vec<Token>],
        options: &GenerateOptions,
        mut on_done: impl FnMut(usize, &Generation),
    ) -> Result<Vec<Generation>, EngineError> {
        let parallel = options.parallel.clamp(1, self.max_sequences);
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let per_slot = longest + options.max_new_tokens + 1;
        if prefix.len() + per_slot + PAD_CELLS > self.n_ctx {
            return Err(EngineError::TooLong { tokens: prefix.len() + per_slot, n_ctx: self.n_ctx });
        }
        if prompts.iter().any(Vec::is_empty) {
            return Err(EngineError::Invalid("an empty prompt (nothing to predict the first token from)".into()));
        }
        // As many slots as the cache holds at worst.
        let parallel = parallel.min((self.n_ctx - prefix.len() - PAD_CELLS) / per_slot).max(1);
        let prefix_len = if prefix.is_empty() {
            self.clear_all();
            0
        } else {
            self.load_prefix(prefix)?
        };

        struct Slot {
            prompt: usize,
            seq: i32,
            fed: usize,
            pos: i32,
            last: Option<Token>,
            tokens: Vec<Token>,
            bytes: Vec<u8>,
        }
        let mut results: Vec<Option<Generation>> = vec![None; prompts.len()];
        let mut slots: Vec<Slot> = Vec::new();
        let mut next_prompt = 0;
        let mut free_seqs: Vec<i32> = (1..=parallel as i32).rev().collect();
        loop {
            while next_prompt < prompts.len() && !free_seqs.is_empty() {
                let seq = free_seqs.pop().unwrap();
                if prefix_len > 0 {
                    self.ctx.copy_cache(0, seq, prefix_len as i32);
                }
                slots.push(Slot {
                    prompt: next_prompt,
                    seq,
                    fed: 0,
                    pos: prefix_len as i32,
                    last: None,
                    tokens: Vec::new(),
                    bytes: Vec::new(),
                });
                next_prompt += 1;
            }
            if slots.is_empty() {
                break;
            }
            self.batch.clear();
            // (slot index, batch row) of slots whose next token is read from this decode.
            let mut reads: Vec<(usize, i32)> = Vec::new();
            let mut n_tokens = 0usize;
            // Decoding slots first (one token each), then prompt tokens in the room left.
            for (si, s) in slots.iter_mut().enumerate() {
                let room = padded_shape(n_tokens + 1, reads.len() + 1).0 <= self.batch_tokens
                    && reads.len() < self.max_outputs;
                if s.last.is_some() && !room {
                    break;
                }
                if let Some(t) = s.last.take() {
                    self.batch
                        .add(LlamaToken(t), s.pos, &[s.seq], true)
                        .map_err(|e| EngineError::Invalid(e.to_string()))?;
                    s.pos += 1;
                    reads.push((si, n_tokens as i32));
                    n_tokens += 1;
                }
            }
            for (si, s) in slots.iter_mut().enumerate() {
                let prompt = &prompts[s.prompt];
                while s.fed < prompt.len() {
                    let last = s.fed + 1 == prompt.len();
                    let outputs_after = reads.len() + usize::from(last);
                    if padded_shape(n_tokens + 1, outputs_after).0 > self.batch_tokens || outputs_after > self.max_outputs {
                        break;
                    }
                    self.batch
                        .add(LlamaToken(prompt[s.fed]), s.pos, &[s.seq], last)
                        .map_err(|e| EngineError::Invalid(e.to_string()))?;
                    if last {
                        reads.push((si, n_tokens as i32));
                    }
                    s.fed += 1;
                    s.pos += 1;
                    n_tokens += 1;
                }
            }
            self.decode_padded(n_tokens, reads.len())?;
            let mut finished: Vec<usize> = Vec::new();
            for &(si, row) in &reads {
                let logits = self.ctx.get_logits_ith(row);
                let next = row_stats(logits).argmax as Token;
                let s = &mut slots[si];
                let end = self.model.is_end_of_generation(next);
                if !end {
                    s.tokens.push(next);
                    s.bytes.extend(self.model.token_bytes(next));
                }
                let text = String::from_utf8_lossy(&s.bytes);
                let stopped = options.stop.iter().any(|stop| text.contains(stop.as_str()));
                if end || stopped || s.tokens.len() >= options.max_new_tokens {
                    finished.push(si);
                } else {
                    s.last = Some(next);
                }
            }
            finished.sort_unstable_by(|a, b| b.cmp(a));
            for si in finished {
                let s = slots.swap_remove(si);
                self.remove_seq(s.seq);
                free_seqs.push(s.seq);
                let generation = Generation {
                    text: cut_at_stop(&String::from_utf8_lossy(&s.bytes), &options.stop).to_string(),
                    n_tokens: s.tokens.len(),
                };
                on_done(s.prompt, &generation);
                results[s.prompt] = Some(generation);
            }
            slots.sort_by_key(|s| s.prompt);
        }
        self.clear_all();
        Ok(results.into_iter().map(|g| g.expect("every prompt was generated")).collect())
    }
}

/// Cache cells a group occupies: its context plus every continuation.
fn group_cells(g: &ScoreGroup) -> usize {
    g.context.len() + g.continuations.iter().map(Vec::len).sum::<usize>()
}

/// The tokens to feed for one group: the context once, belonging to all its sequences (the
/// last context token's row predicts every continuation's first token), then each
/// continuation in its own sequence (each token's row predicts the next one; the last token
/// needs no row).
fn group_feeds(group: usize, g: &ScoreGroup, base: usize, seqs: &[i32]) -> Vec<Feed> {
    let mut feeds = Vec::with_capacity(group_cells(g));
    let n = g.context.len();
    for (i, &token) in g.context.iter().enumerate() {
        let targets = if i + 1 == n {
            g.continuations
                .iter()
                .enumerate()
                .map(|(c, cont)| Target { group, continuation: c, index: 0, target: cont[0] })
                .collect()
        } else {
            Vec::new()
        };
        feeds.push(Feed { token, pos: (base + i) as i32, seqs: seqs.to_vec(), targets });
    }
    for (c, cont) in g.continuations.iter().enumerate() {
        for (j, &token) in cont.iter().enumerate() {
            let targets = match cont.get(j + 1) {
                Some(&next) => vec![Target { group, continuation: c, index: j + 1, target: next }],
                None => Vec::new(),
            };
            feeds.push(Feed { token, pos: (base + n + j) as i32, seqs: vec![seqs[c]], targets });
        }
    }
    feeds
}

/// `text` cut before the earliest occurrence of any stop string (the harness splits on each).
pub fn cut_at_stop<'a>(text: &'a str, stops: &[String]) -> &'a str {
    let end = stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min();
    &text[..end.unwrap_or(text.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_decodes_are_whole_groups_of_rows_and_outputs() {
        assert_eq!(padded_shape(1, 1), (8, 7));
        assert_eq!(padded_shape(30, 0), (32, 0));
        assert_eq!(padded_shape(9, 9), (12, 3));
        assert_eq!(padded_shape(10, 1), (20, 7));
        assert_eq!(padded_shape(57, 13), (60, 3));
        for tokens in 1..=60 {
            for outputs in 0..=tokens {
                let (total, output_pads) = padded_shape(tokens, outputs);
                assert!(total % ROW_MULTIPLE == 0 && total >= MIN_ROWS && total >= tokens);
                assert!(total - tokens < PAD_CELLS && output_pads <= total - tokens);
                let padded_outputs = outputs + output_pads;
                assert!(outputs == 0 || (padded_outputs % ROW_MULTIPLE == 0 && padded_outputs >= MIN_ROWS));
            }
        }
    }

    #[test]
    fn cut_at_the_earliest_stop() {
        let stops = vec!["Q:".to_string(), "\n\n".to_string()];
        assert_eq!(cut_at_stop("a b\n\nQ: c", &stops), "a b");
        assert_eq!(cut_at_stop("a Q: b\n\n", &stops), "a ");
        assert_eq!(cut_at_stop("no stop", &stops), "no stop");
    }

    #[test]
    fn feeds_share_the_context_and_target_the_next_token() {
        let g = ScoreGroup { use_prefix: false, context: vec![1, 2], continuations: vec![vec![3, 4], vec![5]] };
        let feeds = group_feeds(0, &g, 10, &[7, 8]);
        assert_eq!(feeds.len(), 5);
        assert_eq!(feeds[0].seqs, vec![7, 8]);
        assert_eq!(feeds[1].pos, 11);
        let firsts: Vec<Token> = feeds[1].targets.iter().map(|t| t.target).collect();
        assert_eq!(firsts, vec![3, 5]);
        assert_eq!(feeds[2].seqs, vec![7]);
        assert_eq!(feeds[2].targets[0].target, 4);
        assert!(feeds[3].targets.is_empty() && feeds[4].targets.is_empty());
        assert_eq!(feeds[4].pos, 12);
    }
}
