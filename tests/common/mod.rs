//! Helpers shared by the integration tests: where the default model lives. Tests that need it
//! fail (never skip) with the command that fetches it.

use std::path::PathBuf;

/// Path of the default model (Gemma 3 270M Q4_K_M) inside the checkout.
pub const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/gemma-3-270m-q4_k_m.gguf");

/// The default model's path, asserting that it has been fetched.
pub fn real_model_path() -> PathBuf {
    let p = PathBuf::from(MODEL);
    assert!(p.exists(), "the default model {MODEL} is missing: run models/fetch.sh (tests need it and do not skip)");
    p
}
