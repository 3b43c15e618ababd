//! `mathneuro apply`: select math-specific weights from two STATS files and write a scaled or
//! pruned copy of the model (`*-mathneuro.gguf`), a Modelfile, a JSON report and a heat map;
//! prints the markdown summary on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::gguf::GgufFile;
use crate::modelref::ResolvedModel;
use crate::select::restrict::{Kind, Layers, Restriction};
use crate::select::{Method, SelectOptions};
use crate::stats::ActivationStats;
use crate::surgery::deliver::{DeliverOptions, Delivery};
use crate::surgery::{self, ApplyOptions, Change, EditMode, Quantize};

/// Arguments of `mathneuro apply`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("change").required(true).args(["scale", "prune"])))]
pub struct ApplyArgs {
    /// The model: a GGUF path (a split's first shard), ollama:NAME[:TAG], publisher/model (LM
    /// Studio) or hf:org/name[/file.gguf] (Hugging Face cache).
    pub model: PathBuf,
    /// STATS file measured on math texts.
    #[arg(long)]
    pub math: PathBuf,
    /// STATS file measured on general texts.
    #[arg(long)]
    pub general: PathBuf,
    /// Seed for `--method random`.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// What to select and how to change it, and where the result goes.
    #[command(flatten)]
    pub surgery: SurgeryArgs,
    /// Threads and progress (the flags every long-running command shares).
    #[command(flatten)]
    pub shared: crate::cli::args::Shared,
    /// Do not write the Ollama Modelfile.
    #[arg(long)]
    pub no_modelfile: bool,
}

/// Selection, change and output options shared by `apply` and `run`.
#[derive(Debug, clap::Args)]
pub struct SurgeryArgs {
    /// K: percent of each matrix's entries in a top-k set.
    #[arg(long, default_value_t = 5.0)]
    pub top_k: f64,
    /// Multiply the selected weights by this factor (the paper uses 1.1).
    #[arg(long)]
    pub scale: Option<f32>,
    /// Set the selected weights to zero.
    #[arg(long)]
    pub prune: bool,
    /// Selection rule: mathneuro (math top-k minus general top-k), wanda (math top-k), random
    /// (as many as mathneuro, at seeded random positions).
    #[arg(long, value_enum, default_value_t = Method::MathNeuro)]
    pub method: Method,
    /// Also write the selection as a mask GGUF (one bit-packed I8 tensor per weight).
    #[arg(long)]
    pub save_mask: Option<PathBuf>,
    /// How the edit is stored: keep (every tensor keeps its type; in-grid edits, a scale widened
    /// only where that lowers the importance-weighted error) or promote=TYPE (q8_0, f16, bf16,
    /// f32: targets with selected entries rewritten in TYPE, exact up to its step).
    #[arg(long, default_value = "keep", value_parser = parse_edit)]
    pub edit: EditMode,
    /// MODEL is an F16/BF16 master (STATS from its quantized sibling, matched by name and
    /// shape): edit it, then quantize every tensor with ggml, like=SIBLING.gguf (the sibling's
    /// types) or Q4_K_M (llama-quantize's mix), with the STATS' Σx² as importance.
    #[arg(long, value_name = "like=SIBLING.gguf|Q4_K_M", value_parser = parse_quantize)]
    pub quantize: Option<Quantize>,
    /// Edit only these kinds of target matrix (comma list): ffn (blk.N.ffn_*), attn
    /// (blk.N.attn_*), head (output.weight), other (any other target). The selection is made
    /// over every target, then kept only here [default: every kind].
    #[arg(long, value_name = "KINDS", value_enum, value_delimiter = ',')]
    pub only: Vec<Kind>,
    /// Edit only the blocks A to B, inclusive (e.g. 0-5, or one layer: 7); tensors outside the
    /// blocks (the head) are then left alone [default: every layer].
    #[arg(long, value_name = "A-B")]
    pub layers: Option<Layers>,
    /// Output GGUF [default: MODEL-mathneuro.gguf beside the model].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Overwrite existing output files.
    #[arg(long)]
    pub force: bool,
    /// For a split input: write the output split the same way (OUT-00001-of-0000N.gguf …)
    /// instead of one file (Ollama cannot load split models).
    #[arg(long)]
    pub keep_split: bool,
    /// After writing, load the result into Ollama as NAME (`ollama create NAME -f Modelfile`
    /// when `ollama` is on PATH; otherwise the command is printed).
    #[arg(long, value_name = "NAME")]
    pub ollama: Option<String>,
}

impl SurgeryArgs {
    /// The change asked for: `--prune`, `--scale S`, else `default_scale` (an error when none).
    pub fn change(&self, default_scale: Option<f32>) -> anyhow::Result<Change> {
        match (self.scale.or(default_scale), self.prune) {
            (_, true) if self.scale.is_none() => Ok(Change::Prune),
            (Some(s), false) if s.is_finite() => Ok(Change::Scale(s)),
            (Some(s), false) => anyhow::bail!("--scale {s} is not a finite number"),
            _ => anyhow::bail!("give exactly one of --scale S or --prune"),
        }
    }

    /// The output path: `--output`, else `MODEL-mathneuro.gguf` (see `default_output`).
    pub fn output_for(&self, model: &ResolvedModel) -> PathBuf {
        self.output.clone().unwrap_or_else(|| default_output(model))
    }

    /// Apply options for `model` with `change` (Modelfile and report written, progress shown).
    pub fn apply_options(&self, model: &ResolvedModel, change: Change, seed: u64) -> ApplyOptions {
        ApplyOptions {
            select: SelectOptions { method: self.method, top_k_percent: self.top_k, seed },
            change,
            edit: self.edit,
            quantize: self.quantize.clone(),
            output: self.output_for(model),
            force: self.force,
            save_mask: self.save_mask.clone(),
            write_modelfile: true,
            write_report: true,
            progress: true,
            restrict: self.restriction(),
        }
    }

    /// What to do with the written model (`--keep-split`, `--ollama`).
    pub fn deliver_options(&self) -> DeliverOptions {
        DeliverOptions { keep_split: self.keep_split, ollama: self.ollama.clone(), force: self.force }
    }

    /// The targets `--only` and `--layers` keep.
    pub fn restriction(&self) -> Restriction {
        let kinds = (!self.only.is_empty()).then(|| self.only.iter().copied().collect());
        Restriction { kinds, layers: self.layers }
    }
}

fn parse_edit(s: &str) -> Result<EditMode, String> {
    s.parse()
}

fn parse_quantize(s: &str) -> Result<Quantize, String> {
    s.parse()
}

/// `MODEL.gguf` → `MODEL-mathneuro.gguf` in the same directory (a split's first shard
/// `M-00001-of-00003.gguf` → `M-mathneuro.gguf`); a model inside Ollama's, LM Studio's or the
/// Hugging Face store → `STEM-mathneuro.gguf` in the current directory, since those folders
/// belong to the tools.
pub fn default_output(model: &ResolvedModel) -> PathBuf {
    let name = format!("{}-mathneuro.gguf", model.stem);
    if model.in_store() { PathBuf::from(name) } else { model.path.with_file_name(name) }
}

/// Runs `mathneuro apply`.
pub fn run(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let resolved = crate::modelref::resolve(&args.model)?;
    let change = args.surgery.change(None)?;
    let mut opts = args.surgery.apply_options(&resolved, change, args.seed);
    opts.write_modelfile = !args.no_modelfile;
    opts.progress = args.shared.progress();
    surgery::outputs::plan("apply", &resolved.path, &opts).input(&args.math).input(&args.general).check()?;
    anyhow::ensure!(
        !crate::atomic::same_file(&args.math, &args.general),
        "--math {} and --general {} are the same file: nothing would be math-specific; give STATS measured on math texts and on general texts",
        args.math.display(),
        args.general.display()
    );
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.shared.threads()).build().context("starting worker threads")?;
    let model = GgufFile::open(&resolved.path).with_context(|| format!("reading model {}", resolved.path.display()))?;
    crate::model::ensure_model(&model)?;
    let plan = Delivery::new(&model, &args.surgery.deliver_options(), &opts)?;
    plan.prepare(&mut opts);
    let math = ActivationStats::load(&args.math).with_context(|| format!("reading math STATS {}", args.math.display()))?;
    let general = ActivationStats::load(&args.general).with_context(|| format!("reading general STATS {}", args.general.display()))?;
    let report = pool
        .install(|| surgery::apply(&model, &math, &general, &opts))
        .with_context(|| format!("applying {} / {} to {}", args.math.display(), args.general.display(), resolved.path.display()))?;
    let report = plan.finish(report)?;
    print!("{}", report.markdown());
    plan.load_into_ollama(&report)?;
    Ok(ExitCode::SUCCESS)
}
