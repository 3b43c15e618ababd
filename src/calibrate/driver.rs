//! The calibration driver: one llama.cpp context on a loaded model, watching every target
//! weight's matmul, fed with packed decodes of tokenized texts. `Calibrator::run` is the whole
//! measurement for one data set; `tokenize` + `measure` let callers checkpoint between chunks.

use std::time::Instant;

use crate::data::calibration::CalibrationSet;
use crate::ffi::llama::{BatchToken, Context, ContextParams, LlamaError, Model, Watch};
use crate::gguf::{GgufError, GgufFile};
use crate::model;
use crate::stats::ActivationStats;

use super::accumulate::{Accumulator, Segment, WeightShape};
use super::schedule;

/// Every decode is padded (with a throw-away sequence) to a multiple of this many rows. ggml's
/// CPU kernels for repacked quantized weights compute whole groups of 4 rows differently from
/// leftover rows; the last-bit differences are then amplified by the 8-bit quantization of the
/// activations of later layers (up to ~1% in Gemma 3's last layers). With padding, and one text
/// per decode, a text's statistics do not depend on the micro-batch (a test checks this).
pub const ROW_QUANTUM: usize = 4;

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
    #[error("forward pass {decode}: {message}")]
    Capture {
        /// Decode number (0-based) within the call.
        decode: usize,
        /// What went wrong.
        message: String,
    },
    /// Options out of range.
    #[error("invalid option: {0}")]
    Options(String),
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
    /// Tokens per decode (= llama.cpp micro-batch); rounded up to a multiple of `ROW_QUANTUM`.
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
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        CalibrateOptions { threads: default_threads(), micro_batch: 256, max_texts_per_decode: 1, max_tokens: 512, skip_head: true, capture: true, plain_last_output_only: false }
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

/// Measures activation statistics of one model. Create once per model; call `run` for each
/// data set (the math set, then the general set) — the context is reused.
pub struct Calibrator<'m> {
    model: &'m Model,
    ctx: Context<'m>,
    shapes: Vec<WeightShape>,
    fingerprint: String,
    opts: CalibrateOptions,
    head_skipped: bool,
}

impl<'m> Calibrator<'m> {
    /// Prepares a context on `model` watching all of its target weights.
    pub fn new(model: &'m Model, opts: &CalibrateOptions) -> Result<Calibrator<'m>, CalibrateError> {
        if opts.micro_batch == 0 || opts.max_tokens == 0 || opts.threads == 0 || opts.max_texts_per_decode == 0 {
            return Err(CalibrateError::Options(format!(
                "micro-batch {}, max tokens {}, threads {} and texts per decode {} must all be positive",
                opts.micro_batch, opts.max_tokens, opts.threads, opts.max_texts_per_decode
            )));
        }
        let file = GgufFile::open(model.path())?;
        let shapes: Vec<WeightShape> = model::target_weights(&file)
            .into_iter()
            .map(|t| WeightShape { name: t.name.clone(), n_in: t.dims[0] as usize, n_groups: model::n_groups(t) })
            .collect();
        if shapes.is_empty() {
            return Err(CalibrateError::NoTargets(model.path().display().to_string()));
        }
        let head_is_target = shapes.iter().any(|s| s.name == "output.weight");
        let head_skipped = opts.skip_head && !head_is_target;
        let micro_batch = opts.micro_batch.div_ceil(ROW_QUANTUM) * ROW_QUANTUM;
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
            flash_attn: false,
            watch,
        };
        let ctx = Context::new(model, &params)?;
        Ok(Calibrator { model, ctx, shapes, fingerprint: model::fingerprint(&file), opts: CalibrateOptions { max_texts_per_decode: n_seq, micro_batch, ..opts.clone() }, head_skipped })
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

    /// Tokenizes `texts` (BOS added as the model asks) and truncates each to `max_tokens`.
    pub fn tokenize(&self, texts: &[String]) -> Result<Tokenized, CalibrateError> {
        let mut out = Tokenized::default();
        for t in texts {
            let mut toks = self.model.tokenize(t)?;
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

    /// Runs the forward passes over `texts` (each text one sample), adding to `acc`.
    /// `progress` is told the tokens of each finished decode.
    pub fn measure(&mut self, acc: &mut Accumulator, texts: &Tokenized, progress: &mut dyn FnMut(usize)) -> Result<Throughput, CalibrateError> {
        let lengths: Vec<usize> = texts.texts.iter().map(Vec::len).collect();
        let decodes = schedule::pack(&lengths, self.opts.micro_batch, self.opts.max_texts_per_decode);
        self.ctx.clear();
        let start = Instant::now();
        let mut batch: Vec<BatchToken> = Vec::with_capacity(self.opts.micro_batch);
        let mut segments: Vec<Segment> = Vec::new();
        let mut tokens = 0;
        for (d, pieces) in decodes.iter().enumerate() {
            batch.clear();
            segments.clear();
            for p in pieces {
                let first = batch.len();
                let last_only = !self.opts.capture && self.opts.plain_last_output_only;
                for pos in p.start..p.end {
                    let output = !last_only || (p.last && pos + 1 == p.end);
                    batch.push(BatchToken { token: texts.texts[p.text][pos], pos: pos as i32, seq: p.seq as i32, output });
                }
                segments.push(Segment { slot: p.seq, start: first, end: batch.len() });
            }
            let real = batch.len();
            let pad_seq = self.opts.max_texts_per_decode as i32;
            let pad_token = batch[0].token;
            for k in 0..(ROW_QUANTUM - real % ROW_QUANTUM) % ROW_QUANTUM {
                batch.push(BatchToken { token: pad_token, pos: k as i32, seq: pad_seq, output: self.opts.capture || !self.opts.plain_last_output_only });
            }
            let fail = |message: String| CalibrateError::Capture { decode: d, message };
            if self.opts.capture {
                acc.begin_decode(&segments, batch.len());
                let report = self.ctx.decode(&batch, Some(&mut *acc))?;
                acc.end_decode().map_err(fail)?;
                if self.head_skipped && !report.stopped {
                    return Err(fail(format!("the graph has no `{FINAL_NORM_NODE}` node to stop at; use skip_head = false")));
                }
            } else {
                self.ctx.decode(&batch, None)?;
            }
            for p in pieces.iter().filter(|p| p.last) {
                if self.opts.capture {
                    acc.finish_text(p.seq);
                }
                self.ctx.clear_seq(p.seq as i32);
            }
            if batch.len() > real {
                self.ctx.clear_seq(pad_seq);
            }
            tokens += real;
            progress(real);
        }
        Ok(Throughput { tokens, decodes: decodes.len(), seconds: start.elapsed().as_secs_f64() })
    }

    /// Draws `n` samples of `set` with `seed` (with or without replacement, as `calibrate`
    /// does) and measures them; the result names the set and the seed. This is what
    /// `mathneuro calibrate` computes without `--shard` or checkpoints.
    pub fn run_sampled(&mut self, set: &CalibrationSet, n: usize, seed: u64, with_replacement: bool) -> Result<ActivationStats, CalibrateError> {
        let drawn = super::sample::draw(set.texts.len(), n, seed, with_replacement).map_err(|source| CalibrateError::Sample { set: set.name.clone(), source })?;
        let texts: Vec<String> = drawn.iter().map(|i| set.texts[*i].clone()).collect();
        let mut stats = self.run(&texts)?;
        stats.datasets = vec![set.name.clone()];
        stats.seeds = vec![seed];
        Ok(stats)
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
