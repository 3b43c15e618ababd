//! The deliver stage: what `apply` and `run` do with the model once it is written: keep a split
//! input's layout
//! (`--keep-split`: the one-file output is split like the input, gguf-split style) and load the
//! result into Ollama (`--ollama NAME`: `ollama create NAME -f Modelfile`, or the command printed
//! when no `ollama` is on PATH). The checks run before any work, so a bad combination costs
//! nothing.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::atomic::same_file;
use crate::gguf::GgufFile;
use crate::gguf::split;
use crate::surgery::outputs::modelfile_path;
use crate::surgery::{ApplyOptions, ApplyReport};

/// The delivery asked for (`--keep-split`, `--ollama NAME`, `--force`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeliverOptions {
    /// Split the output like the (split) input.
    pub keep_split: bool,
    /// Load the result into Ollama under this name.
    pub ollama: Option<String>,
    /// Existing shard files may be overwritten.
    pub force: bool,
}

/// The delivery steps asked for, checked against the model and the output paths.
#[derive(Debug)]
pub struct Delivery {
    /// Tensors per shard when the output keeps the input's split layout.
    split_groups: Option<Vec<usize>>,
    /// The shard files `--keep-split` will write.
    shard_paths: Vec<PathBuf>,
    /// `--ollama NAME`.
    ollama: Option<String>,
}

impl Delivery {
    /// Checks the options before any work: `--keep-split` needs a split input, `--ollama` needs
    /// the Modelfile and one file, and no output may be a shard of the input or, without
    /// `--force`, an existing file.
    pub fn new(model: &GgufFile, args: &DeliverOptions, opts: &ApplyOptions) -> anyhow::Result<Delivery> {
        let groups = split::groups_of(model);
        for input in model.shard_paths() {
            anyhow::ensure!(!same_file(&opts.output, input), "{}: is a shard of the input model; choose another output path", opts.output.display());
        }
        let mut shard_paths = Vec::new();
        if args.keep_split {
            anyhow::ensure!(groups.len() > 1, "--keep-split: {} is not a split model (it is one file)", model.path().display());
            anyhow::ensure!(args.ollama.is_none(), "--keep-split and --ollama: Ollama cannot load split models; drop --keep-split to write one file");
            let prefix = output_prefix(&opts.output);
            shard_paths = (0..groups.len() as u32).map(|i| split::shard_path(&prefix, i, groups.len() as u32)).collect();
            for p in &shard_paths {
                anyhow::ensure!(!model.shard_paths().iter().any(|i| same_file(p, i)), "{}: is a shard of the input model; choose another output path", p.display());
                anyhow::ensure!(args.force || !p.exists(), "{}: already exists (use --force to overwrite)", p.display());
            }
        }
        if let Some(name) = &args.ollama {
            anyhow::ensure!(opts.write_modelfile, "--ollama {name} needs the Modelfile; drop --no-modelfile");
            anyhow::ensure!(valid_ollama_name(name), "--ollama {name:?}: not a model name Ollama accepts (letters, digits, `_`, `-`, `.`, `/`, one `:TAG`)");
        }
        Ok(Delivery { split_groups: args.keep_split.then_some(groups), shard_paths, ollama: args.ollama.clone() })
    }

    /// Adjusts the surgery options: a split output gets no Modelfile (Ollama cannot load it).
    pub fn prepare(&self, opts: &mut ApplyOptions) {
        if self.split_groups.is_some() {
            opts.write_modelfile = false;
        }
    }

    /// After the surgery: splits the one-file output into the input's layout when asked (the
    /// one file is removed once the shards are written) and updates the report.
    pub fn finish(&self, report: ApplyReport) -> anyhow::Result<ApplyReport> {
        let Some(groups) = &self.split_groups else { return Ok(report) };
        let merged = GgufFile::open_shard(&report.output).with_context(|| format!("reading back {}", report.output.display()))?;
        let prefix = output_prefix(&report.output);
        let paths = split::write_split(&merged, groups, &prefix, None).with_context(|| format!("splitting {}", report.output.display()))?;
        debug_assert_eq!(paths, self.shard_paths);
        drop(merged);
        std::fs::remove_file(&report.output).with_context(|| format!("removing the unsplit {}", report.output.display()))?;
        let mut report = report;
        report.output = paths[0].clone();
        if let Some(json) = &report.report_json {
            let text = serde_json::to_string_pretty(&report).context("serializing the report")?;
            crate::atomic::write_bytes_atomic(json, text.as_bytes())?;
        }
        eprintln!("wrote {} shards: {}", paths.len(), paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
        Ok(report)
    }

    /// Runs `ollama create NAME -f Modelfile` in the output's directory when asked and `ollama`
    /// is on PATH; otherwise prints the command to run.
    pub fn load_into_ollama(&self, report: &ApplyReport) -> anyhow::Result<()> {
        let Some(name) = &self.ollama else { return Ok(()) };
        let modelfile = report.modelfile.clone().unwrap_or_else(|| modelfile_path(&report.output));
        let dir = match modelfile.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let shown = format!("cd {} && ollama create {name} -f Modelfile", dir.display());
        let Some(ollama) = find_on_path("ollama") else {
            eprintln!("`ollama` is not on PATH; to load the model into Ollama run:\n  {shown}\nthen: ollama run {name}");
            return Ok(());
        };
        eprintln!("running: {shown}");
        let status = std::process::Command::new(&ollama)
            .args(["create", name, "-f", "Modelfile"])
            .current_dir(&dir)
            .status()
            .with_context(|| format!("starting {}", ollama.display()))?;
        anyhow::ensure!(status.success(), "`{shown}` failed ({status}); the model file itself was written");
        eprintln!("loaded into Ollama: ollama run {name}");
        Ok(())
    }
}

/// `OUT.gguf` → `OUT` (the shard prefix).
fn output_prefix(output: &Path) -> PathBuf {
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    output.with_file_name(name.strip_suffix(".gguf").unwrap_or(&name))
}

/// Ollama model names: `[ns/]name[:tag]` of letters, digits, `_`, `-`, `.`.
fn valid_ollama_name(name: &str) -> bool {
    let (base, tag) = name.split_once(':').unwrap_or((name, "x"));
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    ok(tag) && base.split('/').all(ok) && !base.starts_with('.')
}

/// The first executable file named `program` in `$PATH`.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_names_and_prefixes() {
        assert!(valid_ollama_name("gemma3-mathneuro"));
        assert!(valid_ollama_name("me/qwen2.5-coder:0.5b-mn"));
        assert!(!valid_ollama_name("bad name"));
        assert!(!valid_ollama_name("a:"));
        assert!(!valid_ollama_name("../x"));
        assert_eq!(output_prefix(Path::new("/d/m-mathneuro.gguf")), PathBuf::from("/d/m-mathneuro"));
    }
}
