//! One writer per output set: a writing command takes an advisory `flock` on a lock file beside
//! its main output (`DIR/.NAME.mathneuro-lock`) when its [`OutputPlan`](super::OutputPlan) is
//! checked, and holds it for the rest of the process. A second command that would write the same
//! output fails at once with "another mathneuro is writing …" instead of interleaving its files
//! with the first one's.
//!
//! The lock file is removed when the process ends normally, on an error or on SIGINT, SIGTERM or
//! SIGHUP ([`release_all`]). After a `kill -9` it stays behind, empty and harmless: nothing holds
//! its lock, so the next run takes it and removes it in turn.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Name suffix of the lock files.
pub const SUFFIX: &str = ".mathneuro-lock";

/// Why an output could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error("{}: another mathneuro is writing this output (lock {} is held); wait for it to finish or choose another output", output.display(), lock.display())]
    Busy {
        /// The output.
        output: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// The lock file could not be created or locked.
    #[error("{}: cannot create the lock file {}: {source}", output.display(), lock.display())]
    Io {
        /// The output.
        output: PathBuf,
        /// Its lock file.
        lock: PathBuf,
        /// The OS's reason.
        source: std::io::Error,
    },
}

/// The locks this process holds: (the lock file's path, the open file that holds the lock).
fn held() -> std::sync::MutexGuard<'static, Vec<(PathBuf, File)>> {
    static HELD: OnceLock<Mutex<Vec<(PathBuf, File)>>> = OnceLock::new();
    HELD.get_or_init(|| Mutex::new(Vec::new())).lock().unwrap_or_else(|e| e.into_inner())
}

/// The lock file of `output` (a file or a directory, existing or not): beside it in its
/// directory, with the output's canonical directory resolved so `./a` and `a` share one lock.
pub fn lock_path(output: &Path) -> PathBuf {
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    dir.join(format!(".{name}{SUFFIX}"))
}

/// Locks `output` for the rest of the process (a second call for the same output does nothing).
/// Fails at once when another process holds the lock.
pub fn lock(output: &Path) -> Result<(), LockError> {
    let path = lock_path(output);
    let mut list = held();
    if list.iter().any(|(p, _)| *p == path) {
        return Ok(());
    }
    let io = |source| LockError::Io { output: output.to_path_buf(), lock: path.clone(), source };
    // A holder that ends removes the file while still holding its lock; a file locked after that
    // is no longer the one at `path`, so the lock is taken again on the new file.
    loop {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(LockError::Busy { output: output.to_path_buf(), lock: path }),
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let mine = file.metadata().map_err(io)?;
        if std::fs::metadata(&path).is_ok_and(|m| m.dev() == mine.dev() && m.ino() == mine.ino()) {
            list.push((path, file));
            return Ok(());
        }
    }
}

/// Removes the lock files this process holds, then releases their locks (at exit, on an error
/// and from the signal handler).
pub fn release_all() {
    let mut list = held();
    for (path, _) in list.iter() {
        let _ = std::fs::remove_file(path);
    }
    list.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_the_lock_file_goes_on_release() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("m.gguf");
        lock(&out).unwrap();
        lock(&d.path().join(".").join("m.gguf")).unwrap();
        let path = lock_path(&out);
        assert!(path.exists());
        // Another open file description conflicts as another process would.
        let other = File::open(&path).unwrap();
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        drop(other);
        release_all();
        assert!(!path.exists());
    }
}
