//! `mathneuro calibrate MODEL --data SPEC -o STATS.gguf`: draws calibration samples, runs them
//! through the model with activation capture, and writes the STATS file. Supports sharding
//! (`--shard i/N`, merged later with `stats merge`) and checkpoints (`--checkpoint-every K`,
//! `--resume`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::calibrate::accumulate::Accumulator;
use crate::calibrate::sample::{self, Shard};
use crate::calibrate::{CalibrateOptions, Calibrator, checkpoint};
use crate::data::calibration;
use crate::ffi::llama::Model;
use crate::gguf::MetaValue;
use crate::progress::Progress;
use crate::safety::OutputPlan;

/// Arguments of `mathneuro calibrate`.
#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// The GGUF model.
    pub model: PathBuf,
    /// Calibration data: gsm8k, mmlu, race, embedded-math, embedded-general, FILE.jsonl (a `text`
    /// field per line) or FILE.txt (blank-line-separated texts).
    #[arg(long)]
    pub data: String,
    /// Directory of the named data sets (default: $MATHNEURO_DATA, else ../shared/data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Samples (texts) to draw (at least 1).
    #[arg(long, default_value_t = 500, value_parser = crate::cli::args::at_least_one)]
    pub samples: usize,
    /// Sampling seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Draw without replacement (default: with replacement, as the reference).
    #[arg(long)]
    pub no_replacement: bool,
    /// Tokens kept per text (BOS included); longer texts are truncated and counted.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
    /// CPU threads (default: all).
    #[arg(long, value_parser = crate::cli::args::threads_value)]
    pub threads: Option<usize>,
    /// Tokens per forward pass (llama.cpp micro-batch).
    #[arg(long, default_value_t = 256)]
    pub micro_batch: usize,
    /// Texts packed into one forward pass (1: each text alone, as the reference; more was not
    /// faster in our measurements and adds ~1e-3 numerical noise in late layers).
    #[arg(long, default_value_t = 1)]
    pub pack: usize,
    /// Compute the output head anyway (slower; for speed comparisons).
    #[arg(long)]
    pub keep_head: bool,
    /// Measure only shard i of N (zero-based, e.g. 0/4) of the drawn samples.
    #[arg(long)]
    pub shard: Option<String>,
    /// Save a checkpoint every K samples (OUT.partial.gguf).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Continue from OUT.partial.gguf when it exists.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many samples, leaving the checkpoint (simulates an interruption; tests).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
    /// The STATS file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Overwrite an existing output (never an input).
    #[arg(long)]
    pub force: bool,
}

/// The progress display of a calibration over `total` tokens.
pub fn token_progress(total: u64, label: &str) -> Progress {
    Progress::new(&format!("calibrating {label}"), total, "tok", true)
}

/// A sha256 of the sampled texts in order: a checkpoint resumes only into the same texts, not
/// into a data file of the same name whose contents changed.
pub fn texts_hash(texts: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for t in texts {
        h.update((t.len() as u64).to_le_bytes());
        h.update(t.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The files `--data SPEC` reads, when it names a file rather than a set.
pub fn data_inputs(spec: &str) -> Option<PathBuf> {
    (spec.ends_with(".jsonl") || spec.ends_with(".txt")).then(|| PathBuf::from(spec))
}

/// Says what a calibration will cost before it starts: texts and tokens now; the progress
/// display adds the measured rate and ETA after its warm-up.
pub fn announce(set: &str, texts: usize, tokens: usize) {
    eprintln!("calibrating {set}: {texts} texts, {tokens} tokens");
}

/// Runs `mathneuro calibrate`.
pub fn run(args: CalibrateArgs) -> anyhow::Result<ExitCode> {
    let ckpt = checkpoint::checkpoint_path(&args.output);
    let mut plan = OutputPlan::new("calibrate", args.force).input(&args.model).file(&args.output);
    if let Some(data) = data_inputs(&args.data) {
        plan = plan.input(data);
    }
    if args.resume {
        plan = plan.input(&ckpt);
    } else if args.checkpoint_every > 0 {
        plan = plan.file(&ckpt);
    }
    plan.check()?;
    let set = calibration::load(&args.data, args.data_dir.as_deref())?;
    let shard = args.shard.as_deref().map(Shard::parse).transpose().map_err(anyhow::Error::msg)?;
    let drawn = sample::draw(set.texts.len(), args.samples, args.seed, !args.no_replacement).with_context(|| format!("data set {}", set.name))?;
    let drawn = match shard {
        Some(s) => s.select(&drawn),
        None => drawn,
    };
    let texts: Vec<String> = drawn.iter().map(|i| set.texts[*i].clone()).collect();

    let model = Model::load(&args.model)?;
    let opts = CalibrateOptions {
        threads: crate::cli::args::threads(args.threads),
        micro_batch: args.micro_batch,
        max_tokens: args.max_tokens,
        max_texts_per_decode: args.pack,
        skip_head: !args.keep_head,
        ..CalibrateOptions::default()
    };
    let mut cal = Calibrator::new(&model, &opts).with_context(|| format!("{}", args.model.display()))?;
    if texts.len() >= 10_000 {
        // Tokenizing this many texts takes a while by itself; say what is happening.
        eprintln!("{}: {} texts drawn; tokenizing", set.name, texts.len());
    }
    let tok = cal.tokenize(&texts)?;
    if tok.truncated > 0 {
        eprintln!("note: {} of {} texts truncated to {} tokens ({} tokens dropped)", tok.truncated, texts.len(), args.max_tokens, tok.tokens_dropped);
    }

    let every = if args.checkpoint_every == 0 { texts.len().max(1) } else { args.checkpoint_every };
    let key = format!(
        "model={} data={} texts_sha256={} samples={} seed={} replacement={} max_tokens={} micro_batch={} pack={} shard={} every={}",
        cal.fingerprint(),
        set.name,
        texts_hash(&texts),
        args.samples,
        args.seed,
        !args.no_replacement,
        args.max_tokens,
        args.micro_batch,
        args.pack,
        args.shard.as_deref().unwrap_or("-"),
        every
    );
    let mut acc: Accumulator = cal.new_accumulator();
    let mut start = 0;
    if args.resume && ckpt.exists() {
        let (totals, done) = checkpoint::load(&ckpt, &key, cal.shapes())?;
        acc.totals = totals;
        start = done.min(texts.len());
        eprintln!("resuming after {start} of {} samples from {}", texts.len(), ckpt.display());
    }

    let total_tokens = tok.total_tokens() as u64;
    let done_tokens: u64 = tok.texts[..start].iter().map(|t| t.len() as u64).sum();
    announce(&set.name, texts.len(), tok.total_tokens());
    let bar = token_progress(total_tokens, &set.name);
    bar.resume_at(done_tokens);
    let t0 = std::time::Instant::now();
    let mut measured = 0usize;
    while start < texts.len() {
        let end = (start + every).min(texts.len());
        let part = tok.slice(start..end);
        let th = cal.measure(&mut acc, &part, &mut |n| bar.inc(n as u64)).with_context(|| format!("calibrating {} on {}", args.model.display(), set.name))?;
        measured += th.tokens;
        start = end;
        if args.checkpoint_every > 0 && start < texts.len() {
            checkpoint::save(&ckpt, &key, start, cal.shapes(), &acc.totals).with_context(|| format!("writing checkpoint {}", ckpt.display()))?;
            if args.stop_after.is_some_and(|k| start >= k) {
                bar.finish_and_clear();
                eprintln!("stopped after {start} of {} samples; continue with --resume (checkpoint {})", texts.len(), ckpt.display());
                return Ok(ExitCode::from(3));
            }
        }
    }
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();

    let mut stats = acc.totals.to_stats(cal.shapes(), cal.fingerprint());
    stats.datasets = vec![set.name.clone()];
    stats.seeds = vec![args.seed];
    let extra = vec![
        ("mathneuro.template".to_string(), MetaValue::string(&set.template)),
        ("mathneuro.tool_version".to_string(), MetaValue::string(env!("CARGO_PKG_VERSION"))),
        ("mathneuro.replacement".to_string(), MetaValue::Bool(!args.no_replacement)),
        ("mathneuro.max_tokens".to_string(), MetaValue::U64(args.max_tokens as u64)),
        ("mathneuro.truncated".to_string(), MetaValue::U64(tok.truncated as u64)),
        ("mathneuro.pack".to_string(), MetaValue::U64(args.pack as u64)),
        ("mathneuro.shard".to_string(), MetaValue::string(args.shard.as_deref().unwrap_or("0/1"))),
        ("mathneuro.head_skipped".to_string(), MetaValue::Bool(cal.head_skipped())),
    ];
    stats.save(&args.output, &extra).with_context(|| format!("writing {}", args.output.display()))?;
    if ckpt.exists() {
        std::fs::remove_file(&ckpt).with_context(|| format!("removing checkpoint {}", ckpt.display()))?;
    }
    let rate = if secs > 0.0 { measured as f64 / secs } else { 0.0 };
    println!(
        "wrote {}: {} samples of {}, {} tokens, {} weights ({:.1} s, {:.0} tok/s)",
        args.output.display(),
        stats.samples,
        set.name,
        stats.tokens,
        stats.weights.len(),
        secs,
        rate
    );
    Ok(ExitCode::SUCCESS)
}
