//! What the experiments runner does: the grids of the quick smoke check and of the full suite,
//! the evaluation items per task, and a rough wall-time estimate for this 2-core machine.

use serde::Serialize;

use crate::eval::Task;
use crate::select::Method;

/// The experiments and their sizes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// "quick", "full" or "custom".
    pub mode: String,
    /// Calibration samples per set (drawn with replacement) for the main masks.
    pub samples: usize,
    /// Sampling seed of the main masks (and of `random`).
    pub seed: u64,
    /// Seeds compared in experiment 4 (`seed`, `seed+1`, …).
    pub consistency_seeds: usize,
    /// Samples of the small side of experiment 3.
    pub efficiency_samples: usize,
    /// K (percent) of experiments 3, 4 and 5.
    pub reference_k: f64,
    /// Experiment 1: K values.
    pub prune_ks: Vec<f64>,
    /// Experiment 1: methods.
    pub prune_methods: Vec<Method>,
    /// Experiment 2: K values.
    pub scale_ks: Vec<f64>,
    /// Experiment 2: factors.
    pub scales: Vec<f32>,
    /// Experiment 3: the factors tried with the small-sample mask (0 = prune).
    pub efficiency_factors: Vec<f32>,
    /// Evaluation tasks and the items of each (a seeded subset).
    pub tasks: Vec<(Task, usize)>,
    /// Seed of the evaluation subsets and bootstrap.
    pub eval_seed: u64,
    /// Bootstrap resamples.
    pub bootstrap: usize,
    /// Tokens kept per calibration text.
    pub max_tokens: usize,
    /// Experiments to run (1–5).
    pub only: Vec<u8>,
}

impl Plan {
    /// The smoke check: finishes within 15 minutes on a shared 2-core machine.
    pub fn quick() -> Plan {
        Plan {
            mode: "quick".into(),
            samples: 100,
            seed: 42,
            consistency_seeds: 2,
            efficiency_samples: 1,
            reference_k: 5.0,
            prune_ks: vec![5.0],
            prune_methods: vec![Method::MathNeuro, Method::Wanda, Method::Random],
            scale_ks: vec![5.0],
            scales: vec![1.1],
            efficiency_factors: vec![0.0],
            tasks: vec![(Task::Gsm8kNll, 30), (Task::ArcEasy, 60), (Task::Wikitext, 1)],
            eval_seed: crate::eval::DEFAULT_SEED,
            bootstrap: crate::eval::DEFAULT_BOOTSTRAP,
            max_tokens: crate::calibrate::DEFAULT_MAX_TOKENS,
            only: vec![1, 2, 3, 4, 5],
        }
    }

    /// The grids with the official 500 samples and 5 seeds.
    pub fn full() -> Plan {
        Plan {
            mode: "full".into(),
            samples: 500,
            consistency_seeds: 5,
            prune_ks: vec![1.0, 5.0, 10.0, 15.0],
            scale_ks: vec![1.0, 5.0, 10.0],
            scales: vec![1.01, 1.05, 1.1, 1.2],
            efficiency_factors: vec![0.0, 1.1],
            tasks: vec![(Task::Gsm8k, 50), (Task::Gsm8kNll, 100), (Task::Mmlu, 200), (Task::ArcEasy, 200), (Task::Wikitext, 3)],
            ..Plan::quick()
        }
    }

    /// Whether experiment `n` is selected.
    pub fn runs(&self, n: u8) -> bool {
        self.only.contains(&n)
    }

    /// The evaluated settings: experiment 1, 2 and 3 rows (experiment 3 reuses or adds the
    /// matching full-sample MathNeuro row).
    pub fn settings_count(&self) -> usize {
        let mut n = 0;
        if self.runs(1) {
            n += self.prune_ks.len() * self.prune_methods.len();
        }
        if self.runs(2) {
            n += self.scale_ks.len() * self.scales.len();
        }
        if self.runs(3) {
            n += 2 * self.efficiency_factors.len();
        }
        n
    }

    /// Calibration runs (math + general sets each) the plan needs: (samples, seed) pairs.
    pub fn calibrations(&self) -> Vec<(usize, u64)> {
        let mut v = Vec::new();
        if self.only.iter().any(|e| (1..=5).contains(e)) {
            v.push((self.samples, self.seed));
        }
        if self.runs(3) {
            v.push((self.efficiency_samples, self.seed));
        }
        if self.runs(4) {
            for i in 1..self.consistency_seeds as u64 {
                v.push((self.samples, self.seed + i));
            }
        }
        v.sort();
        v.dedup();
        v
    }

    /// Seconds one evaluation of the task suite takes (rates measured on the shared machine).
    pub fn eval_seconds(&self) -> f64 {
        self.tasks.iter().map(|&(t, n)| seconds_per_item(t) * n as f64).sum()
    }

    /// A rough wall-time estimate in seconds (2 threads, a busy machine), ignoring cached STATS.
    pub fn estimate_seconds(&self) -> f64 {
        // ~190 tokens per GSM8K sample, ~120 per MMLU sample, ~300 tokens/s.
        let calib: f64 = self.calibrations().iter().map(|&(n, _)| n as f64 * 310.0 / 300.0 + 4.0).sum();
        let evals = (self.settings_count() + usize::from(self.settings_count() > 0)) as f64 * (self.eval_seconds() + 5.0);
        let selections = if self.runs(4) { self.consistency_seeds as f64 * 3.0 } else { 0.0 } + 10.0;
        calib + evals + selections
    }
}

/// Measured seconds per evaluation item (per article for WikiText) on the shared machine.
pub fn seconds_per_item(task: Task) -> f64 {
    match task {
        Task::Gsm8k => 4.0,
        // Minerva solutions run longer than GSM8K's (up to 256 tokens after a ~900-token prefix).
        Task::Math => 8.0,
        Task::Gsm8kNll | Task::Gsm8kPpl => 1.0,
        Task::Race => 1.5,
        Task::Hellaswag => 0.6,
        // ~4.6k tokens per article, scored twice (stride 512 of 1024) with full-vocabulary logits.
        Task::Wikitext => 35.0,
        _ => 0.3,
    }
}

/// Parses `task=N,task=N` (e.g. `gsm8k_nll=30,arc_easy=60`).
pub fn parse_limits(s: &str) -> Result<Vec<(Task, usize)>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (t, n) = p.split_once('=').ok_or_else(|| format!("`{p}`: expected task=N"))?;
            let task = Task::parse_list(t.trim()).map_err(|e| e.to_string())?;
            let n: usize = n.trim().parse().map_err(|_| format!("`{p}`: {n} is not a count"))?;
            match task.as_slice() {
                [one] if n > 0 => Ok((*one, n)),
                _ => Err(format!("`{p}`: name one task and at least one item")),
            }
        })
        .collect()
}

/// Parses a comma-separated list of numbers.
pub fn parse_numbers<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, String> {
    s.split(',').filter(|p| !p.trim().is_empty()).map(|p| p.trim().parse::<T>().map_err(|_| format!("`{p}` is not a number"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_plan_fits_fifteen_minutes_and_full_is_larger() {
        let q = Plan::quick();
        assert!(q.estimate_seconds() < 15.0 * 60.0, "{}", q.estimate_seconds());
        assert!(Plan::full().estimate_seconds() > 10.0 * q.estimate_seconds());
        assert_eq!(q.calibrations(), vec![(1, 42), (100, 42), (100, 43)]);
        assert_eq!(q.settings_count(), 3 + 1 + 2);
    }

    #[test]
    fn limits_parse_and_reject_nonsense() {
        assert_eq!(parse_limits("gsm8k_nll=30, arc_easy=60").unwrap(), vec![(Task::Gsm8kNll, 30), (Task::ArcEasy, 60)]);
        assert!(parse_limits("gsm8k_nll").is_err());
        assert!(parse_limits("gsm9k=3").is_err());
        assert!(parse_limits("mmlu=0").is_err());
        assert_eq!(parse_numbers::<f64>("1,5, 10").unwrap(), vec![1.0, 5.0, 10.0]);
        assert!(parse_numbers::<f32>("1,x").is_err());
    }
}
