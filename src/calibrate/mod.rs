//! The calibrate stage: forward passes through llama.cpp that measure, for every target weight
//! and calibration text, the per-column L2 norm of the weight's input activations, summed over
//! texts (A_j = Σ_s ‖X_s[:,j]‖₂), plus pooled Σx² for imatrix export.
//!
//! - `sample`: which texts are measured (seeded draws, shards).
//! - `schedule`: packing texts into decodes.
//! - `accumulate`: the activation sink and running totals.
//! - `driver`: [`Calibrator`], one context per model, `run(&texts) -> ActivationStats`.
//! - `checkpoint`: resumable runs.
//! - `hessian`: the XᵀX capture for `quantize --gptq` (another [`driver::Capture`]).
//!
//! Library use (one loaded model, both data sets; `crate::pipeline` draws, measures and saves):
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mathneuro::calibrate::{CalibrateOptions, Calibrator};
//! use mathneuro::pipeline::{Sampling, calibrate_set};
//! let model = mathneuro::ffi::llama::Model::load("models/gemma-3-270m-q4_k_m.gguf".as_ref())?;
//! let mut cal = Calibrator::new(&model, &CalibrateOptions::default())?;
//! let math_set = mathneuro::data::calibration::load("gsm8k", None)?;
//! let general_set = mathneuro::data::calibration::load("mmlu", None)?;
//! // 100 draws with replacement, seed 42, each written as a STATS file.
//! let math = calibrate_set(&mut cal, &math_set, &Sampling::new(100, 42), false, None, "math.stats.gguf".as_ref())?;
//! let general = calibrate_set(&mut cal, &general_set, &Sampling::new(100, 42), false, None, "general.stats.gguf".as_ref())?;
//! // Or any texts, one sample each:
//! let mine = cal.run(&["Two plus two is four.".to_string()])?;
//! # let _ = (math, general, mine); Ok(()) }
//! ```

pub mod accumulate;
pub mod checkpoint;
pub mod driver;
pub mod hessian;
pub mod sample;
pub mod schedule;

pub use driver::{CalibrateError, CalibrateOptions, Calibrator, DEFAULT_MAX_TOKENS, DEFAULT_MICRO_BATCH, DEFAULT_PACK, Throughput, Tokenized};
