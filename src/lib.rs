//! mathneuro: MathNeuro "math neurosurgery" on GGUF language models, on an ordinary CPU.
//!
//! The modules follow the pipeline, data flowing one way:
//! `data` (calibration texts) → `calibrate` (forward passes, activation norms) → `stats`
//! (the STATS file) → `select` (math-specific weights) → `surgery` (the rewritten GGUF) →
//! `eval` (did math improve, did the rest survive). `gguf` is the file format, `ffi` holds every
//! call into llama.cpp/ggml (and the crate's only `unsafe`), `model` names the weights that are
//! targets, `safety` guards the user's files (output policy, input checks, temp-file cleanup on
//! signals), `pipeline` runs the stages in order for the commands, `progress` is the one
//! progress display, `tune` searches edits on dev data and
//! tests the winner once on held-out questions, and `cli` glues the stages into commands.
#![deny(missing_docs)]

pub mod atomic;
pub mod calibrate;
pub mod chat;
pub mod cli;
pub mod data;
pub mod eval;
pub mod experiments;
pub mod ffi;
pub mod gguf;
pub mod inspect;
pub mod model;
pub mod modelref;
pub mod pipeline;
pub mod progress;
pub mod quantize;
pub mod safety;
pub mod select;
pub mod stats;
pub mod surgery;
pub mod svg;
pub mod tune;
