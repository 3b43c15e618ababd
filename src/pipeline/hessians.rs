//! `quantize --gptq`'s capture stage: H = Σ x xᵀ of the target weights' inputs over drawn texts
//! (`calibrate::hessian`), either all in one pass ([`capture_hessians`]) or pass by pass within
//! a memory budget ([`HessianPasses`]): the weights, in the master's tensor order, are cut into
//! consecutive groups whose matrices fit the budget, and a group is captured — one forward pass
//! over the texts — when the encoder first asks for one of its weights, replacing the group
//! before it. The writer asks in tensor order, so each group is captured once; every matrix is
//! summed from the same rows in the same order whatever the grouping, so H, and the bytes
//! written, do not depend on the budget (tested).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;

use super::Sampling;
use crate::calibrate::hessian::{HessianSink, Hessians, Lower};
use crate::calibrate::{CalibrateOptions, Calibrator};
use crate::data::calibration::CalibrationSet;
use crate::progress::Progress;
use crate::quantize::gptq::{GptqError, HessianSource};

/// Captures H of the target weights' inputs (of those in `only`, or all) over the `sampling`
/// texts of `set`, on the model at `model_path`; the model is unloaded before this returns.
pub fn capture_hessians(model_path: &Path, set: &CalibrationSet, sampling: &Sampling, opts: &CalibrateOptions, only: Option<HashSet<String>>, progress: bool) -> anyhow::Result<Hessians> {
    let model = crate::ffi::llama::Model::load(model_path).with_context(|| format!("loading {}", model_path.display()))?;
    let mut cal = Calibrator::new(&model, opts)?;
    let texts = sampling.texts(set, model_path)?;
    let tok = cal.tokenize(&texts)?;
    let mut sink = HessianSink::new(cal.shapes(), opts.threads).context("starting the H capture's worker threads")?;
    if let Some(only) = only {
        sink = sink.only(only);
    }
    let bar = Progress::new(&format!("capturing H ({})", set.name), tok.total_tokens() as u64, "tok", progress);
    cal.measure(&mut sink, &tok, &mut |n| bar.inc(n as u64)).with_context(|| format!("capturing H on {}", model_path.display()))?;
    bar.finish_and_clear();
    Ok(sink.finish())
}

/// `--gptq-memory`'s default: half the memory available now (Linux `MemAvailable`), or no limit
/// where that cannot be read.
pub fn default_budget() -> u64 {
    let kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| s.lines().find_map(|l| l.strip_prefix("MemAvailable:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())));
    kib.map_or(u64::MAX, |k| k * 1024 / 2)
}

/// Groups `weights` (name, input width; in tensor order) into consecutive runs whose matrices
/// ([`Lower::bytes_for`], each weight counted on its own: an upper bound where weights share an
/// input) fit `budget` bytes; a weight larger than the budget gets a group of its own.
pub fn plan_groups(weights: &[(String, usize)], budget: u64) -> Vec<Vec<String>> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut used = 0u64;
    for (name, n_in) in weights {
        let bytes = Lower::bytes_for(*n_in);
        match groups.last_mut() {
            Some(g) if used + bytes <= budget => g.push(name.clone()),
            _ => {
                groups.push(vec![name.clone()]);
                used = 0;
            }
        }
        used += bytes;
    }
    groups
}

/// The targets of `master` whose H a capture can give (2-D weights; expert stacks are not
/// captured), as (name, input width) in tensor order: what [`HessianPasses::plan`] groups.
pub fn gptq_weights(master: &crate::gguf::GgufFile) -> Vec<(String, usize)> {
    crate::model::target_weights(master).into_iter().filter(|t| t.dims.len() == 2).map(|t| (t.name.clone(), t.dims[0] as usize)).collect()
}

/// H captured pass by pass (see the module doc); the first group is captured when planned.
pub struct HessianPasses {
    model: PathBuf,
    set: CalibrationSet,
    sampling: Sampling,
    opts: CalibrateOptions,
    progress: bool,
    groups: Vec<HashSet<String>>,
    group_of: HashMap<String, usize>,
    current: Mutex<Current>,
    /// Tokens summed into every matrix (the same in every pass).
    pub tokens: u64,
}

/// The group in memory (None while the next is captured) and the passes made.
struct Current {
    group: Option<(usize, Hessians)>,
    passes: usize,
}

impl HessianPasses {
    /// Plans the passes over `weights` (name, input width; tensor order) within `budget` bytes
    /// of matrices and captures the first.
    pub fn plan(model: &Path, set: CalibrationSet, sampling: Sampling, opts: CalibrateOptions, weights: &[(String, usize)], budget: u64, progress: bool) -> anyhow::Result<HessianPasses> {
        let groups: Vec<HashSet<String>> = plan_groups(weights, budget).into_iter().map(|g| g.into_iter().collect()).collect();
        let group_of = groups.iter().enumerate().flat_map(|(i, g)| g.iter().map(move |n| (n.clone(), i))).collect();
        // (An empty `weights` plans no group; this pass then captures everything, asked for by no one.)
        let first = capture_hessians(model, &set, &sampling, &opts, groups.first().cloned(), progress)?;
        let tokens = first.tokens;
        let current = Mutex::new(Current { group: Some((0, first)), passes: 1 });
        Ok(HessianPasses { model: model.to_path_buf(), set, sampling, opts, progress, groups, group_of, current, tokens })
    }

    /// Groups planned (forward passes when every group is asked for once).
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Forward passes made so far.
    pub fn passes(&self) -> usize {
        self.lock().passes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl HessianSource for HessianPasses {
    fn hessian(&self, name: &str) -> Result<Option<Arc<Lower>>, GptqError> {
        let Some(&g) = self.group_of.get(name) else { return Ok(None) };
        let mut current = self.lock();
        if current.group.as_ref().is_none_or(|(held, _)| *held != g) {
            // Drop the group before capturing the next: only one group's matrices at a time.
            current.group = None;
            let h = capture_hessians(&self.model, &self.set, &self.sampling, &self.opts, Some(self.groups[g].clone()), self.progress).map_err(|e| GptqError::Capture(format!("{e:#}")))?;
            if h.tokens != self.tokens {
                return Err(GptqError::Capture(format!("pass {} measured {} tokens, the first {}", g + 1, h.tokens, self.tokens)));
            }
            current.passes += 1;
            current.group = Some((g, h));
        }
        Ok(current.group.as_ref().and_then(|(_, h)| h.shared(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_consecutive_within_the_budget_and_an_oversized_weight_stands_alone() {
        let w = |n: &str, d: usize| (n.to_string(), d);
        let weights = [w("a", 256), w("b", 256), w("c", 512), w("d", 256), w("e", 256)];
        let one = Lower::bytes_for(256);
        assert_eq!(plan_groups(&weights, 2 * one), vec![vec!["a", "b"], vec!["c"], vec!["d", "e"]]);
        assert_eq!(plan_groups(&weights, u64::MAX).len(), 1);
        assert_eq!(plan_groups(&weights, 1).len(), 5);
        assert!(plan_groups(&[], 1).is_empty());
        assert!(default_budget() > 0);
    }
}
