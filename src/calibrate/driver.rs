//! The calibration driver: one llama.cpp context on a loaded model, watching every target
//! weight's matmul, fed with packed decodes of tokenized texts. `Calibrator::run` is the whole
//! measurement for one data set; `tokenize` + `measure` let callers checkpoint between chunks.

use std::time::Instant;

use crate::ffi::llama::{Batch, Context, ContextParams, FlashAttention, LlamaError, Model, Watch, round_up_rows};
use crate::gguf::{GgufError, GgufFile};
use crate::model;
use crate::stats::ActivationStats;

use super::accumulate::{AccumulateError, Accumulator, Segment, WeightShape};
use super::schedule;

/// Name of the final-norm node in llama.cpp graphs; the graph is stopped after it.
pub const FINAL_NORM_NODE: &str = "result_norm";

/// Why calibration failed.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// llama.cpp refused something.
    #[error(transparent)]
    Llama(#[from] LlamaError),
    /// The model's tensor table could not be read.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The model has no target weights.
    #[error("{0}: no target weights (blk.N.*.weight matrices) in this model")]
    NoTargets(String),
    /// Capturing activations went wrong in a decode.
    #[error("forward pass {decode}: {source}")]
    Capture {
        /// Decode number (0-based) within the call.
        decode: usize,
        /// What went wrong.
        source: AccumulateError,
    },
    /// The graph never reached the final-norm node it was to stop after.
    #[error("forward pass {decode}: the graph has no `{FINAL_NORM_NODE}` node to stop at; use skip_head = false")]
    NoStopNode {
        /// Decode number (0-based) within the call.
        decode: usize,
    },
    /// Options out of range.
    #[error("micro-batch {micro_batch}, max tokens {max_tokens}, threads {threads} and texts per decode {texts_per_decode} must all be positive")]
    Options {
        /// Tokens per decode.
        micro_batch: usize,
        /// Tokens kept per text.
        max_tokens: usize,
        /// CPU threads.
        threads: usize,
        /// Texts per decode.
        texts_per_decode: usize,
    },
    /// More tokens per text than the model has context (issue 27 case 6).
    #[error("{model}: --max-tokens {max_tokens} is more than the model's context of {context} tokens")]
    TooManyTokens {
        /// The model file.
        model: String,
        /// Tokens kept per text, as asked.
        max_tokens: usize,
        /// The model's `context_length`.
        context: u64,
    },
    /// Samples could not be drawn from the set.
    #[error("data set {set}: {source}")]
    Sample {
        /// The set.
        set: String,
        /// Why.
        source: super::sample::SampleError,
    },
}

/// How to run the forward passes.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrateOptions {
    /// CPU threads.
    pub threads: usize,
    /// Tokens per decode (= llama.cpp micro-batch); rounded up to a multiple of
    /// [`crate::ffi::llama::ROW_MULTIPLE`]: every decode is padded with a throw-away sequence to
    /// whole groups of rows, so that, with one text per decode, a text's statistics do not
    /// depend on the micro-batch (a test checks this).
    pub micro_batch: usize,
    /// Texts sharing one decode at most. 1 (the default) computes every text alone, as the
    /// reference does, so a text's statistics never depend on its neighbours; more packs short
    /// texts together (faster on small texts), at the price of last-bit differences in attention
    /// that the 8-bit activation quantization amplifies to ~1e-3 relative in late layers.
    pub max_texts_per_decode: usize,
    /// Tokens kept per text (BOS included); longer texts are truncated.
    pub max_tokens: usize,
    /// Stop each forward pass after the final norm (skips the tied output head). Ignored when
    /// the head is a target (untied `output.weight`).
    pub skip_head: bool,
    /// False: plain decodes without the callback (a speed baseline; measures nothing).
    pub capture: bool,
    /// In a plain decode (`capture` false), compute logits for the last token of each text only,
    /// as a prompt-processing llama.cpp would (the cheapest baseline). Ignored when capturing.
    pub plain_last_output_only: bool,
    /// Tokenize special-token markup (`<|im_start|>` …) as the special tokens it names, as
    /// chat-templated texts need (`--chat`); plain texts keep it as text.
    pub parse_special: bool,
    /// Begin every text with the model's start token even when its vocabulary does not add one
    /// (Qwen2.5's `<|endoftext|>`), as `eval`'s prompts and `kld`'s windows do; a model without
    /// a start token is left as it is.
    pub start_token: bool,
}

/// Tokens per decode unless asked otherwise (`--micro-batch`).
pub const DEFAULT_MICRO_BATCH: usize = 256;
/// Tokens kept per text unless asked otherwise (`--max-tokens`).
pub const DEFAULT_MAX_TOKENS: usize = 512;
/// Texts per decode unless asked otherwise (`--pack`): each text alone, as the reference.
pub const DEFAULT_PACK: usize = 1;

impl Default for CalibrateOptions {
    fn default() -> Self {
        CalibrateOptions {
            threads: default_threads(),
            micro_batch: DEFAULT_MICRO_BATCH,
            max_texts_per_decode: DEFAULT_PACK,
            max_tokens: DEFAULT_MAX_TOKENS,
            skip_head: true,
            capture: true,
            plain_last_output_only: false,
            parse_special: false,
            start_token: false,
        }
    }
}

/// The available CPU parallelism.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Texts turned into tokens, truncated to `max_tokens`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tokenized {
    /// Tokens per text.
    pub texts: Vec<Vec<i32>>,
    /// Texts that were truncated.
    pub truncated: usize,
    /// Tokens dropped by truncation.
    pub tokens_dropped: usize,
}

impl Tokenized {
    /// Tokens in all.
    pub fn total_tokens(&self) -> usize {
        self.texts.iter().map(Vec::len).sum()
    }

    /// Texts `range` only (the truncation counts are not split).
    pub fn slice(&self, range: std::ops::Range<usize>) -> Tokenized {
        Tokenized { texts: self.texts[range].to_vec(), truncated: 0, tokens_dropped: 0 }
    }
}

/// Timing of a `measure` call.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Throughput {
    /// Tokens decoded.
    pub tokens: usize,
    /// Forward passes.
    pub decodes: usize,
    /// Wall seconds.
    pub seconds: f64,
}

impl Throughput {
    /// Tokens per second.
    pub fn tokens_per_second(&self) -> f64 {
        if self.seconds > 0.0 { self.tokens as f64 / self.seconds } else { 0.0 }
    }
}

/// Bytes per token beyond any vocabulary's longest piece: a text longer than `max_tokens`
/// times this is clipped before tokenizing, which cannot change its first `max_tokens` tokens
/// but one at the cut.
const MAX_BYTES_PER_TOKEN: usize = 64;

/// `text` cut to at most `max` bytes, at a character boundary.
fn clip_bytes(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// What `Calibrator::measure` feeds: an activation sink told which rows of each decode belong
/// to which text (rows outside every segment are padding) and when a text ends.
pub trait Capture {
    /// Declares the rows of the next decode.
    fn begin_decode(&mut self, segments: &[Segment], n_rows: usize);
    /// The sink the decode reports its matmul inputs to.
    fn sink(&mut self) -> &mut dyn crate::ffi::llama::ActivationSink;
    /// Ends a decode: the first error any matmul met.
    fn end_decode(&mut self) -> Result<(), AccumulateError>;
    /// The text in `slot` has had its last row.
    fn finish_text(&mut self, slot: usize);
}

impl Capture for Accumulator {
    fn begin_decode(&mut self, segments: &[Segment], n_rows: usize) {
        Accumulator::begin_decode(self, segments, n_rows);
    }
    fn sink(&mut self) -> &mut dyn crate::ffi::llama::ActivationSink {
        self
    }
    fn end_decode(&mut self) -> Result<(), AccumulateError> {
        Accumulator::end_decode(self)
    }
    fn finish_text(&mut self, slot: usize) {
        Accumulator::finish_text(self, slot);
    }
}

/// Measures activation statistics of one model. Create once per model; call `run` for each
/// data set (the math set, then the general set) — the context is reused.
pub struct Calibrator<'m> {
    model: &'m Model,
    ctx: Context<'m>,
    batch: Batch,
    shapes: Vec<WeightShape>,
    fingerprint: String,
    opts: CalibrateOptions,
    /// `max_texts_per_decode` as asked for (`opts` holds the value in effect).
    requested_pack: usize,
    head_skipped: bool,
}

impl<'m> Calibrator<'m> {
    /// Prepares a context on `model` watching all of its target weights.
    pub fn new(model: &'m Model, opts: &CalibrateOptions) -> Result<Calibrator<'m>, CalibrateError> {
        if opts.micro_batch == 0 || opts.max_tokens == 0 || opts.threads == 0 || opts.max_texts_per_decode == 0 {
            return Err(CalibrateError::Options {
                micro_batch: opts.micro_batch,
                max_tokens: opts.max_tokens,
                threads: opts.threads,
                texts_per_decode: opts.max_texts_per_decode,
            });
        }
        let file = GgufFile::open(model.path())?;
        let context = file.architecture().and_then(|a| file.get(&format!("{a}.context_length"))).and_then(|v| v.as_u64());
        if let Some(context) = context.filter(|c| opts.max_tokens as u64 > *c) {
            return Err(CalibrateError::TooManyTokens { model: model.path().display().to_string(), max_tokens: opts.max_tokens, context });
        }
        let shapes: Vec<WeightShape> = model::target_weights(&file)
            .into_iter()
            .map(|t| WeightShape { name: t.name.clone(), n_in: t.dims[0] as usize, n_groups: model::n_groups(t) })
            .collect();
        if shapes.is_empty() {
            return Err(CalibrateError::NoTargets(model.path().display().to_string()));
        }
        let head_is_target = shapes.iter().any(|s| s.name == "output.weight");
        let head_skipped = opts.skip_head && !head_is_target;
        let micro_batch = round_up_rows(opts.micro_batch);
        // One more sequence id for the padding rows.
        let n_seq = opts.max_texts_per_decode.min(micro_batch - 1).min(255);
        let watch = opts.capture.then(|| Watch {
            weights: shapes.iter().map(|s| s.name.clone()).collect(),
            stop_after: head_skipped.then(|| FINAL_NORM_NODE.to_string()),
        });
        let params = ContextParams {
            n_ctx: (opts.max_tokens + micro_batch) as u32,
            n_batch: micro_batch as u32,
            n_seq_max: n_seq as u32 + 1,
            threads: opts.threads as i32,
            flash_attn: FlashAttention::Disabled,
            watch,
        };
        let ctx = Context::new(model, &params)?;
        let batch = Batch::new(micro_batch, 1);
        Ok(Calibrator { model, ctx, batch, shapes, fingerprint: model::fingerprint(&file), opts: CalibrateOptions { max_texts_per_decode: n_seq, micro_batch, ..opts.clone() }, requested_pack: opts.max_texts_per_decode, head_skipped })
    }

    /// The model measured.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Texts per decode as asked for (recorded in STATS files as `mathneuro.pack`).
    pub fn requested_pack(&self) -> usize {
        self.requested_pack
    }

    /// The weights measured, in tensor-table order.
    pub fn shapes(&self) -> &[WeightShape] {
        &self.shapes
    }

    /// The model fingerprint written into STATS files.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// True when forward passes stop before the output head.
    pub fn head_skipped(&self) -> bool {
        self.head_skipped
    }

    /// The options in effect.
    pub fn options(&self) -> &CalibrateOptions {
        &self.opts
    }

    /// Tokenizes `texts` (BOS added as the model asks, or always with `start_token`) and truncates each to `max_tokens`.
    pub fn tokenize(&self, texts: &[String]) -> Result<Tokenized, CalibrateError> {
        let mut out = Tokenized::default();
        let bos = self.model.bos();
        for t in texts {
            // A text is clipped to a generous byte budget first, so a 50 MB line is not
            // tokenized whole to keep its first tokens (issue 27 case 5).
            let t = clip_bytes(t, self.opts.max_tokens.saturating_mul(MAX_BYTES_PER_TOKEN));
            let mut toks = if self.opts.parse_special { self.model.tokenize_special(t, true)? } else { self.model.tokenize(t, true)? };
            if self.opts.start_token && bos >= 0 && toks.first() != Some(&bos) {
                toks.insert(0, bos);
            }
            if toks.len() > self.opts.max_tokens {
                out.truncated += 1;
                out.tokens_dropped += toks.len() - self.opts.max_tokens;
                toks.truncate(self.opts.max_tokens);
            }
            out.texts.push(toks);
        }
        Ok(out)
    }

    /// A fresh accumulator for this model's weights.
    pub fn new_accumulator(&self) -> Accumulator {
        Accumulator::new(self.shapes.clone(), self.opts.max_texts_per_decode)
    }

    /// Runs the forward passes over `texts` (each text one sample), adding to `acc` (the
    /// statistics' [`Accumulator`], or another [`Capture`] such as `hessian::HessianSink`).
    /// `progress` is told the tokens of each finished decode.
    pub fn measure(&mut self, acc: &mut dyn Capture, texts: &Tokenized, progress: &mut dyn FnMut(usize)) -> Result<Throughput, CalibrateError> {
        let lengths: Vec<usize> = texts.texts.iter().map(Vec::len).collect();
        let decodes = schedule::pack(&lengths, self.opts.micro_batch, self.opts.max_texts_per_decode);
        self.ctx.clear();
        let start = Instant::now();
        let mut segments: Vec<Segment> = Vec::new();
        let mut tokens = 0;
        let pad_seq = self.opts.max_texts_per_decode as i32;
        for (d, pieces) in decodes.iter().enumerate() {
            let real = self.fill_batch(texts, pieces, &mut segments)?;
            let fail = |source: AccumulateError| CalibrateError::Capture { decode: d, source };
            if self.opts.capture {
                acc.begin_decode(&segments, self.batch.len());
                let report = self.ctx.decode(&self.batch, Some(acc.sink()))?;
                acc.end_decode().map_err(fail)?;
                if self.head_skipped && !report.stopped {
                    return Err(CalibrateError::NoStopNode { decode: d });
                }
            } else {
                self.ctx.decode(&self.batch, None)?;
            }
            for p in pieces.iter().filter(|p| p.last) {
                if self.opts.capture {
                    acc.finish_text(p.seq);
                }
                self.ctx.clear_seq(p.seq as i32);
            }
            if self.batch.len() > real {
                self.ctx.clear_seq(pad_seq);
            }
            tokens += real;
            progress(real);
        }
        Ok(Throughput { tokens, decodes: decodes.len(), seconds: start.elapsed().as_secs_f64() })
    }

    /// Fills the batch with one decode's pieces, each text in its own sequence, then pads it to
    /// whole row groups with the first token in the padding sequence (see [`round_up_rows`]).
    /// Returns the real rows; `segments` says which rows belong to which text slot.
    fn fill_batch(&mut self, texts: &Tokenized, pieces: &[schedule::Piece], segments: &mut Vec<Segment>) -> Result<usize, CalibrateError> {
        self.batch.clear();
        segments.clear();
        let last_only = !self.opts.capture && self.opts.plain_last_output_only;
        for p in pieces {
            let first = self.batch.len();
            for pos in p.start..p.end {
                let output = !last_only || (p.last && pos + 1 == p.end);
                self.batch.push(texts.texts[p.text][pos], pos as i32, &[p.seq as i32], output)?;
            }
            segments.push(Segment { slot: p.seq, start: first, end: self.batch.len() });
        }
        let real = self.batch.len();
        let pad_seq = self.opts.max_texts_per_decode as i32;
        let Some(pad_token) = self.batch.token(0) else { return Ok(0) };
        for k in 0..round_up_rows(real) - real {
            self.batch.push(pad_token, k as i32, &[pad_seq], !last_only)?;
        }
        Ok(real)
    }

    /// Measures `texts` (one sample each) from scratch. The result's `datasets` and `seeds`
    /// are empty: the caller names its data.
    pub fn run(&mut self, texts: &[String]) -> Result<ActivationStats, CalibrateError> {
        let tok = self.tokenize(texts)?;
        let mut acc = self.new_accumulator();
        self.measure(&mut acc, &tok, &mut |_| {})?;
        Ok(acc.totals.to_stats(&self.shapes, &self.fingerprint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_keeps_whole_characters() {
        assert_eq!(clip_bytes("abcdef", 4), "abcd");
        assert_eq!(clip_bytes("ab", 64), "ab");
        // "é" is two bytes: a cut inside it moves back before it.
        assert_eq!(clip_bytes("aé", 2), "a");
    }
}
