//! Never lose a user's file, never leave a file behind: the output-path policy every writing
//! command checks before it starts ([`OutputPlan`]), the refusal of non-regular input files
//! ([`inputs`]), and the registry of temporary files that a signal cleans up ([`tempfiles`]).

pub mod inputs;
pub mod outputs;
pub mod tempfiles;

pub use outputs::{OutputError, OutputPlan};

