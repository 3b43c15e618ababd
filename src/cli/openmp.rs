//! OpenMP's wait policy for the commands that run llama.cpp (calibrate, eval, run).

use std::process::ExitCode;

use anyhow::Context as _;

/// When `OMP_WAIT_POLICY` is unset, runs this same command again as a child process with
/// `OMP_WAIT_POLICY=PASSIVE` and returns its exit code (`None`: go on in this process).
///
/// Why: calibration splits each forward pass at every watched matmul, and between the pieces
/// ggml's OpenMP workers spin. On a machine with other busy processes the spinning steals the
/// CPU from the working threads: 44 → 306 tokens/s measured on a shared 2-core machine, same
/// output bytes. libgomp reads the variable once, when the program starts, so it cannot be set
/// from inside. Set `OMP_WAIT_POLICY=ACTIVE` to keep spinning (marginally faster on idle cores).
pub fn rerun_with_passive_openmp() -> anyhow::Result<Option<ExitCode>> {
    if std::env::var_os("OMP_WAIT_POLICY").is_some() {
        return Ok(None);
    }
    let exe = std::env::current_exe().context("locating the mathneuro executable")?;
    let status = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .status()
        .with_context(|| format!("running {}", exe.display()))?;
    Ok(Some(status.code().map_or(ExitCode::FAILURE, |c| ExitCode::from(c as u8))))
}

