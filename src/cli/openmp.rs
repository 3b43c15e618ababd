//! OpenMP's wait policy for the commands that run llama.cpp (calibrate, eval, run, experiments).

use std::os::unix::process::CommandExt as _;

use anyhow::Context as _;

/// When `OMP_WAIT_POLICY` is unset, replaces this process (exec, same pid) with the same command
/// and `OMP_WAIT_POLICY=PASSIVE`; returns only when the variable is already set (go on here) or
/// with the error when exec failed.
///
/// Why: calibration splits each forward pass at every watched matmul, and between the pieces
/// ggml's OpenMP workers spin. On a machine with other busy processes the spinning steals the
/// CPU from the working threads: 44 → 306 tokens/s measured on a shared 2-core machine, same
/// output bytes. libgomp reads the variable once, in its constructor, before `main` runs, so it
/// cannot be set from inside. Exec rather than a child process: signals (Ctrl-C, `kill`,
/// `timeout`), the exit status and a crash's signal all belong to the one process the user
/// started, and nothing is left running when it ends. Set `OMP_WAIT_POLICY=ACTIVE` to keep
/// spinning (marginally faster on idle cores).
pub fn exec_with_passive_openmp() -> anyhow::Result<()> {
    if std::env::var_os("OMP_WAIT_POLICY").is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe().context("locating the mathneuro executable")?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(std::env::args_os().skip(1)).env("OMP_WAIT_POLICY", "PASSIVE");
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    // `exec` returns only on failure.
    let err = cmd.exec();
    Err(err).with_context(|| format!("re-executing {} with OMP_WAIT_POLICY=PASSIVE", exe.display()))
}
