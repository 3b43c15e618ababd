//! Why the engine pads every decode (see `ffi::llama::ROW_MULTIPLE` and `engine::MIN_ROWS`): scores
//! six continuations on the real model under several decode layouts and prints each layout's
//! log-likelihood minus that of one naive single-call pass (and the largest per-token change).
//!
//! ```text
//! cargo run --release --example prefix_probe -- [ROW_MULTIPLE=1] [MIN_ROWS=0]
//! FA=0 cargo run --release --example prefix_probe -- 4   # flash attention off
//! ```
//! Layouts: B = prefix in one call, the rest in a second call of the same sequence; C = prefix
//! in sequence 0, copied (llama_memory_seq_cp) to sequence 1, the rest there; D = as B but
//! with output rows for the prefix; E = everything before the continuation in one call, then
//! one token per call. Each call is padded with rows of a separate sequence to a multiple of
//! ROW_MULTIPLE rows and output rows, and at least MIN_ROWS of each.
//!
//! Measured (Gemma 3 270M Q4_K_M, 2 threads, flash attention on, unified KV cache):
//! `1 0` → B, C, D off by 0.01–0.20 nats (C always equal to B: the sequence copy is exact);
//! `4 0` → B, C, D bit-identical to the naive pass, E still off (sums by up to 0.04, a token by
//! up to 0.14: calls of 4 rows);
//! `4 8` → B, C, D, E bit-identical (except where the naive call has 64+ rows, which takes the
//! tiled flash-attention kernel; the engine keeps calls at most 60 rows).
//! Flash attention off with `4 0`: all of B, C, D bit-identical, 64+ rows included.

use std::path::Path;

use mathneuro::eval::logits::row_stats;
use mathneuro::ffi::llama::{Batch, Context, ContextParams, FlashAttention, Model};

const MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";
const PAD_SEQ: i32 = 7;
const PREFIX: &str = "Q: What is 2 + 3?\nA: 2 + 3 = 5. The answer is 5.\n\n";
const ITEMS: [(&str, &str); 6] = [
    ("Q: Tom has 4 apples and eats one. How many are left?\nA:", " He has 4 - 1 = 3 apples left. The answer is 3."),
    ("Q: Tom has 4 apples and eats one. How many are left?\nA:", " The answer is 5."),
    ("Q: What colour is the sky on a clear day?\nA:", " Blue."),
    ("Q: What colour is the sky on a clear day?\nA:", " It is green, because grass reflects upward."),
    ("Q: Name a prime number larger than 10.\nA:", " 11"),
    ("Q: Name a prime number larger than 10.\nA:", " 12 is prime."),
];

/// One row of a decode.
struct Row {
    token: i32,
    pos: i32,
    seq: i32,
    output: bool,
}

/// Padding rule of one experiment.
#[derive(Clone, Copy)]
struct Padding {
    multiple: usize,
    min_rows: usize,
}

impl Padding {
    fn round(self, n: usize) -> usize {
        n.max(self.min_rows).div_ceil(self.multiple) * self.multiple
    }
}

/// Decodes `rows` padded by `padding`; returns the logits of the real output rows.
fn decode(ctx: &mut Context, rows: &[Row], padding: Padding) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut batch = Batch::new(256, 8);
    for r in rows {
        batch.push(r.token, r.pos, &[r.seq], r.output)?;
    }
    let outputs = rows.iter().filter(|r| r.output).count();
    let output_pads = if outputs > 0 { padding.round(outputs) - outputs } else { 0 };
    let pads = padding.round(rows.len() + output_pads) - rows.len();
    for i in 0..pads {
        batch.push(2, i as i32, &[PAD_SEQ], i < output_pads)?;
    }
    ctx.decode(&batch, None)?;
    let logits = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.output)
        .map(|(i, _)| ctx.logits(i).map(<[f32]>::to_vec))
        .collect::<Result<_, _>>()?;
    ctx.clear_seq(PAD_SEQ);
    Ok(logits)
}

fn logprobs(rows: &[Vec<f32>], targets: &[i32]) -> Vec<f64> {
    rows.iter().zip(targets).map(|(r, &t)| row_stats(r).logprob(r, t)).collect()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|s| s.parse().ok()).collect();
    let padding = Padding { multiple: args.first().copied().unwrap_or(1).max(1), min_rows: args.get(1).copied().unwrap_or(0) };
    let flash = std::env::var("FA").map_or(true, |v| v != "0");
    let model = Model::load(Path::new(MODEL))?;
    let params = ContextParams {
        n_ctx: 2048,
        n_batch: 256,
        n_seq_max: 8,
        threads: 2,
        flash_attn: if flash { FlashAttention::Enabled } else { FlashAttention::Disabled },
        watch: None,
    };
    let mut ctx = Context::new(&model, &params)?;
    // As the engine tokenizes: with the start token, special tokens not parsed.
    let tokenize = |text: &str| -> anyhow::Result<Vec<i32>> { Ok(model.tokenize(text, true)?) };
    let prefix_len = tokenize(PREFIX)?.len();
    println!("prefix {prefix_len} tokens; padding to a multiple of {} rows, at least {}; flash attention {flash}", padding.multiple, padding.min_rows);
    for (question, continuation) in ITEMS {
        let context_len = tokenize(&format!("{PREFIX}{question}"))?.len();
        let all = tokenize(&format!("{PREFIX}{question}{continuation}"))?;
        let targets = &all[context_len..];
        // Rows `range` of sequence `seq`; positions from `outputs_from - 1` on predict a target.
        let rows = |range: std::ops::Range<usize>, seq: i32, outputs_from: usize| -> Vec<Row> {
            range
                .map(|i| Row { token: all[i], pos: i as i32, seq, output: i + 1 >= outputs_from && i + 1 < all.len() })
                .collect()
        };
        ctx.clear();
        let naive = logprobs(&decode(&mut ctx, &rows(0..all.len(), 0, context_len), padding)?, targets);
        let mut layouts = Vec::new();
        for layout in ['B', 'C', 'D'] {
            ctx.clear();
            let prefix_outputs = if layout == 'D' { 0 } else { usize::MAX };
            decode(&mut ctx, &rows(0..prefix_len, 0, prefix_outputs), padding)?;
            let seq = if layout == 'C' { 1 } else { 0 };
            if seq == 1 {
                ctx.copy_seq(0, 1, prefix_len as i32);
            }
            layouts.push(logprobs(&decode(&mut ctx, &rows(prefix_len..all.len(), seq, context_len), padding)?, targets));
        }
        ctx.clear();
        let mut one_by_one = decode(&mut ctx, &rows(0..context_len, 0, context_len), padding)?;
        for i in context_len..all.len() - 1 {
            one_by_one.extend(decode(&mut ctx, &rows(i..i + 1, 0, context_len), padding)?);
        }
        layouts.push(logprobs(&one_by_one, targets));
        let sum = |v: &[f64]| v.iter().sum::<f64>();
        let mut line = format!("{} tokens ({} continuation): naive {:.5}", all.len(), targets.len(), sum(&naive));
        for (name, lp) in ['B', 'C', 'D', 'E'].iter().zip(&layouts) {
            let worst = lp.iter().zip(&naive).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            line += &format!(" | {name} {:+.5} (token {worst:.5})", sum(lp) - sum(&naive));
        }
        println!("{line}");
    }
    Ok(())
}
