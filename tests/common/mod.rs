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

use std::path::Path;
use std::process::{Command, Output};

/// The data directory the tests read: `$MATHNEURO_DATA`, else `../shared/data` beside the checkout.
pub fn data_dir() -> PathBuf {
    std::env::var_os("MATHNEURO_DATA").map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"), PathBuf::from)
}

/// Runs a command to its end and returns its output.
pub fn run(c: &mut Command) -> Output {
    c.output().unwrap()
}

/// The command's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the command failed and its stderr contains every `needle`.
pub fn fails_with(o: &Output, needles: &[&str]) -> String {
    let e = stderr(o);
    assert!(!o.status.success(), "expected a failure, got success; stderr:\n{e}");
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}:\n{e}");
    }
    e
}

/// Waits for `child` at most `limit`; kills it and fails when it is still running (a hang).
pub fn wait_limited(mut child: std::process::Child, limit: std::time::Duration, what: &str) -> Output {
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("{what} still running after {limit:?} (hangs)");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
