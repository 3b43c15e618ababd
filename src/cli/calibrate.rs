//! `mathneuro calibrate MODEL --data SPEC -o STATS.gguf`: draws calibration samples, runs them
//! through the model with activation capture, and writes the STATS file. Supports sharding
//! (`--shard i/N`, merged later with `stats merge`) and checkpoints (`--checkpoint-every K`,
//! `--resume`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::calibrate::sample::Shard;
use crate::calibrate::{CalibrateOptions, Calibrator, DEFAULT_MAX_TOKENS, DEFAULT_MICRO_BATCH, DEFAULT_PACK, checkpoint};
use crate::data::calibration;
use crate::ffi::llama::Model;
use crate::pipeline::{Checkpoints, Outcome, Sampling, calibrate_set};
use crate::safety::OutputPlan;

/// Arguments of `mathneuro calibrate`.
#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// The model: a GGUF path (a split's first shard), ollama:NAME[:TAG], publisher/model (LM
    /// Studio) or hf:org/name[/file.gguf] (Hugging Face cache).
    pub model: PathBuf,
    /// Calibration data: gsm8k, math, mmlu, race, embedded-math, embedded-general, FILE.jsonl (a
    /// `text` field per line) or FILE.txt (blank-line-separated texts). `math` (MATH problem +
    /// solution) takes the ~4 500 MATH problems outside the 500 test problems of the one seeded
    /// split that `eval --tasks math` scores (docs/math.md). To
    /// isolate a skill other than math, calibrate once on texts of that skill and once on
    /// contrasting texts, e.g. `--data code.jsonl` and `--data prose.txt`, then pass them to
    /// `apply --math code.gguf --general prose.gguf` (the "math" side is the skill kept or removed).
    #[arg(long, verbatim_doc_comment)]
    pub data: String,
    /// Directory of the named data sets (default: $MATHNEURO_DATA, else ../shared/data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Samples (texts) to draw (at least 1).
    #[arg(long, default_value_t = 500, value_parser = crate::cli::args::samples_value)]
    pub samples: usize,
    /// Sampling seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Draw without replacement (default: with replacement, as the reference).
    #[arg(long)]
    pub no_replacement: bool,
    /// Tokens kept per text (BOS included); longer texts are truncated and counted.
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS, value_parser = crate::cli::args::tokens_value)]
    pub max_tokens: usize,
    /// Threads and progress (the flags every long-running command shares).
    #[command(flatten)]
    pub shared: crate::cli::args::Shared,
    /// Tokens per forward pass (llama.cpp micro-batch).
    #[arg(long, default_value_t = DEFAULT_MICRO_BATCH, value_parser = crate::cli::args::tokens_value)]
    pub micro_batch: usize,
    /// Texts packed into one forward pass (1: each text alone, as the reference; more was not
    /// faster in our measurements and adds ~1e-3 numerical noise in late layers).
    #[arg(long, default_value_t = DEFAULT_PACK, value_parser = crate::cli::args::parallel_value)]
    pub pack: usize,
    /// Compute the output head anyway (slower; for speed comparisons).
    #[arg(long)]
    pub keep_head: bool,
    /// Measure only shard i of N (zero-based, e.g. 0/4) of the drawn samples.
    #[arg(long)]
    pub shard: Option<String>,
    /// Save a checkpoint every K samples (OUT.partial.gguf).
    #[arg(long, default_value_t = 0, value_parser = crate::cli::args::count_value)]
    pub checkpoint_every: usize,
    /// Continue from OUT.partial.gguf when it exists.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many samples, leaving the checkpoint (simulates an interruption; tests).
    #[arg(long, hide = true, value_parser = crate::cli::args::count_value)]
    pub stop_after: Option<usize>,
    /// The STATS file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Wrap each text in the model's chat template (prompt part as a user turn, the rest as the
    /// assistant's reply), for instruction-tuned models.
    #[arg(long)]
    pub chat: bool,
    /// Begin every text with the model's start token even when its vocabulary does not add one
    /// (Qwen2.5's `<|endoftext|>`), as `eval`'s prompts and `kld`'s windows do. Without it the
    /// texts start as llama-imatrix starts them (the start token only where the vocabulary asks).
    #[arg(long)]
    pub start_token: bool,
    /// Overwrite an existing output (never an input).
    #[arg(long)]
    pub force: bool,
}

/// The file `--data SPEC` reads: the `.jsonl`/`.txt` file, or a named set's file in the data
/// directory (none for the built-in sets).
pub fn data_inputs(spec: &str, data_dir: Option<&std::path::Path>) -> Option<PathBuf> {
    crate::data::calibration::input_file(spec, data_dir)
}

impl CalibrateArgs {
    /// Everything `calibrate` reads and writes, checked before any work.
    fn plan(&self, ckpt: &std::path::Path) -> OutputPlan {
        let mut plan = OutputPlan::new("calibrate", self.force).input(&self.model).file(&self.output);
        if let Some(data) = data_inputs(&self.data, self.data_dir.as_deref()) {
            plan = plan.input(data);
        }
        if self.resume {
            plan = plan.input(ckpt);
        } else if self.checkpoint_every > 0 {
            plan = plan.file(ckpt).kept();
        }
        plan
    }

    /// The forward-pass options these arguments describe.
    fn calibrate_options(&self) -> CalibrateOptions {
        CalibrateOptions {
            threads: self.shared.threads(),
            micro_batch: self.micro_batch,
            max_tokens: self.max_tokens,
            max_texts_per_decode: self.pack,
            skip_head: !self.keep_head,
            parse_special: self.chat,
            start_token: self.start_token,
            ..CalibrateOptions::default()
        }
    }

    /// The checkpoint file and schedule; its settings key names everything that decides the
    /// statistics besides the model and the texts.
    fn checkpoints(&self, path: PathBuf) -> Checkpoints {
        let settings = format!(
            "samples={} seed={} replacement={} max_tokens={} micro_batch={} pack={} shard={}{}",
            self.samples,
            self.seed,
            !self.no_replacement,
            self.max_tokens,
            self.micro_batch,
            self.pack,
            self.shard.as_deref().unwrap_or("-"),
            if self.start_token { " start_token" } else { "" },
        );
        Checkpoints { path, every: self.checkpoint_every, resume: self.resume, stop_after: self.stop_after, settings }
    }
}

/// Runs `mathneuro calibrate`.
pub fn run(args: CalibrateArgs) -> anyhow::Result<ExitCode> {
    let ckpt = checkpoint::checkpoint_path(&args.output);
    args.plan(&ckpt).check()?;
    let set = calibration::load(&args.data, args.data_dir.as_deref())?;
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    let sampling = Sampling { samples: args.samples, seed: args.seed, replacement: !args.no_replacement, shard, chat: args.chat };
    let resolved = crate::modelref::resolve(&args.model)?;
    let model = Model::load(&resolved.path)?;
    let mut cal = Calibrator::new(&model, &args.calibrate_options()).with_context(|| format!("{}", args.model.display()))?;
    let checkpoints = args.checkpoints(ckpt);
    let calibrated = match calibrate_set(&mut cal, &set, &sampling, args.shared.progress(), Some(&checkpoints), &args.output)? {
        Outcome::Finished(c) => c,
        Outcome::Stopped { done, total } => {
            eprintln!("stopped after {done} of {total} samples; continue with --resume (checkpoint {})", checkpoints.path.display());
            return Ok(ExitCode::from(3));
        }
    };
    let (stats, th) = (&calibrated.stats, &calibrated.throughput);
    println!(
        "wrote {}: {} samples of {}, {} tokens, {} weights ({:.1} s, {:.0} tok/s)",
        args.output.display(),
        stats.samples,
        set.name,
        stats.tokens,
        stats.weights.len(),
        th.seconds,
        th.tokens_per_second()
    );
    Ok(ExitCode::SUCCESS)
}
