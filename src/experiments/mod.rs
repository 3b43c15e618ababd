//! The paper's experiments on one model: pruning and scaling grids against the Wanda-only and
//! random baselines, data efficiency, seed consistency and where the math weights live, each
//! row a paired comparison with the base model on identical items.
//!
//! - `plan`: what to run (the quick and full grids, per-task item limits) and a time estimate.
//! - `stats_cache`: calibration STATS per (set, samples, seed), computed once and kept on disk.
//! - `suite`: evaluation with a separate item limit per task, merged into one report.
//! - `setting`: one rewrite (select, apply to a temporary GGUF, evaluate, pair, delete).
//! - `overlap`: mask Jaccard bookkeeping.
//! - `results`: the results.json records.
//! - `plot`: hand-written SVG dot/line plots with interval whiskers.
//! - `markdown`: the per-experiment markdown sections.
//! - `runner`: ties them together ([`run_experiments`]).

pub mod markdown;
pub mod outputs;
pub mod overlap;
pub mod plan;
pub mod plot;
pub mod results;
pub mod runner;
pub mod setting;
pub mod stats_cache;
pub mod suite;

pub use plan::Plan;
pub use results::Results;
pub use runner::{RunnerOptions, run_experiments};
