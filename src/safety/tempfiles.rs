//! Temporary files of atomic writes, so none is left behind: each is named
//! `.mathneuro-<pid>-<random>.tmp` and registered while it exists; SIGINT, SIGTERM and SIGHUP
//! remove the registered files and end the process with status 128 + signal. A `kill -9` cannot
//! be caught, so the next write into the same directory removes the temporary files of processes
//! that no longer exist (the pid in the name says whose a file is).
//!
//! A command's outputs appear together or not at all: the outputs its plan names are
//! [`watch`]ed, and each one this run renames into place is remembered. When the command fails
//! ([`roll_back`], called by the binary) or is interrupted by a signal, those files are removed
//! again: only files this run wrote, so a rerun needs no `--force`.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Name prefix of every temporary file this tool creates.
pub const PREFIX: &str = ".mathneuro-";
/// Name suffix of every temporary file this tool creates.
pub const SUFFIX: &str = ".tmp";

/// What a signal or a failure cleans up.
#[derive(Debug, Default)]
struct Registry {
    /// Temporary files that exist now (created here and not yet renamed or removed).
    temps: Vec<PathBuf>,
    /// Outputs of the running command (as [`key`] gives them), removed again on failure.
    watched: HashSet<PathBuf>,
    /// Watched outputs this run renamed into place.
    renamed: Vec<PathBuf>,
}

fn registry() -> &'static Mutex<Registry> {
    static LIVE: OnceLock<Mutex<Registry>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(Registry::default()))
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while the lock was held leaves a list that is still correct.
    registry().lock().unwrap_or_else(|e| e.into_inner())
}

/// The form outputs are compared in: the directory made canonical where it exists.
fn key(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    match path.file_name() {
        Some(name) => dir.join(name),
        None => dir,
    }
}

/// Marks `path` as an output of the running command: once renamed into place by this run, it is
/// removed again if the command fails or is interrupted (see the module docs).
pub fn watch(path: &Path) {
    let k = key(path);
    lock().watched.insert(k);
}

/// Removes the watched outputs this run renamed into place (the command failed); returns them.
pub fn roll_back() -> Vec<PathBuf> {
    let mut reg = lock();
    let renamed = std::mem::take(&mut reg.renamed);
    renamed.into_iter().filter(|p| std::fs::remove_file(p).is_ok()).collect()
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP (once per process; later calls do
/// nothing): it removes the registered temporary files, says so on stderr and exits with
/// 128 + the signal number, without running destructors (llama.cpp's threads may be mid-work).
pub fn install_signal_cleanup() -> io::Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new().name("mathneuro-signals".into()).spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let mut removed = remove_all();
            removed.extend(roll_back());
            crate::safety::lock::release_all();
            let name = match sig {
                SIGINT => "SIGINT",
                SIGTERM => "SIGTERM",
                _ => "SIGHUP",
            };
            let files = if removed.is_empty() { String::new() } else { format!("; removed {}", removed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")) };
            eprintln!("mathneuro: interrupted by {name}{files}");
            signal_hook::low_level::exit(128 + sig);
        }
    })?;
    let _ = INSTALLED.set(());
    Ok(())
}

/// Removes every registered temporary file; returns those removed.
fn remove_all() -> Vec<PathBuf> {
    let mut reg = lock();
    let removed = reg.temps.iter().filter(|p| std::fs::remove_file(p).is_ok()).cloned().collect();
    reg.temps.clear();
    removed
}

/// A temporary file in the output's directory, registered for removal on a signal; dropping it
/// removes the file, [`TempFile::persist`] renames it over the target.
#[derive(Debug)]
pub struct TempFile {
    inner: Option<tempfile::NamedTempFile>,
    path: PathBuf,
}

impl TempFile {
    /// Creates `.mathneuro-<pid>-XXXXXX.tmp` (mode 0644) in `dir`.
    pub fn new_in(dir: &Path) -> io::Result<TempFile> {
        let mut reg = lock();
        // Registered under the lock, so a signal's cleanup either sees the file or runs before
        // it exists.
        let inner = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{}-", std::process::id()))
            .suffix(SUFFIX)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile_in(dir)?;
        let path = inner.path().to_path_buf();
        reg.temps.push(path.clone());
        Ok(TempFile { inner: Some(inner), path })
    }

    /// The open file.
    pub fn as_file_mut(&mut self) -> &mut std::fs::File {
        self.inner.as_mut().expect("present until persisted").as_file_mut()
    }

    /// Where the temporary file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// fsyncs, then renames the file to `target` (remembering a watched target, under the
    /// registry's lock so a signal sees either the temporary file or the renamed output).
    pub fn persist(mut self, target: &Path) -> io::Result<()> {
        let inner = self.inner.take().expect("present until persisted");
        inner.as_file().sync_all()?;
        let k = key(target);
        let mut reg = lock();
        let result = inner.persist(target).map(drop).map_err(|e| e.error);
        let watched = result.is_ok() && reg.watched.contains(&k);
        if watched && !reg.renamed.contains(&target.to_path_buf()) {
            reg.renamed.push(target.to_path_buf());
        }
        reg.temps.retain(|p| *p != self.path);
        drop(reg);
        if watched {
            pause_for_tests();
        }
        result
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Dropping the NamedTempFile removes the file; then it no longer needs cleaning up.
        drop(self.inner.take());
        unregister(&self.path);
    }
}

/// Test hook: `MATHNEURO_TEST_PAUSE_AFTER_RENAME_MS=N` sleeps N ms after each output is renamed
/// into place, so a test can interrupt or break a command between two outputs on cue.
fn pause_for_tests() {
    if let Some(ms) = std::env::var("MATHNEURO_TEST_PAUSE_AFTER_RENAME_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms.min(60_000)));
    }
}

fn unregister(path: &Path) {
    lock().temps.retain(|p| p != path);
}

/// Creates and removes a temporary file in `dir` (can outputs be written there?).
pub fn probe_dir(dir: &Path) -> io::Result<()> {
    TempFile::new_in(dir).map(drop)
}

/// Leftovers in `dir` from earlier runs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stale {
    /// Temporary files of processes that no longer exist, now removed.
    pub removed: Vec<PathBuf>,
    /// Temporary files of this tool without a pid in the name (older versions): not removed,
    /// since their writer may still run.
    pub unknown: Vec<PathBuf>,
}

/// Removes the temporary files in `dir` whose writing process is gone (see the module docs).
pub fn sweep_stale(dir: &Path) -> Stale {
    let mut stale = Stale::default();
    let Ok(entries) = std::fs::read_dir(dir) else { return stale };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|n| n.strip_suffix(SUFFIX)) else { continue };
        let path = entry.path();
        match rest.split_once('-').and_then(|(pid, _)| pid.parse::<u32>().ok()) {
            Some(pid) if !process_exists(pid) => {
                if std::fs::remove_file(&path).is_ok() {
                    stale.removed.push(path);
                }
            }
            Some(_) => {}
            None => stale.unknown.push(path),
        }
    }
    stale
}

/// Whether process `pid` exists (Linux: its /proc entry).
fn process_exists(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_while_alive_and_stale_ones_are_swept() {
        let d = tempfile::tempdir().unwrap();
        let t = TempFile::new_in(d.path()).unwrap();
        let path = t.path().to_path_buf();
        assert!(lock().temps.contains(&path));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&format!(".mathneuro-{}-", std::process::id())) && name.ends_with(".tmp"), "{name}");
        drop(t);
        assert!(!path.exists() && !lock().temps.contains(&path));

        // A file of a dead process (pid beyond pid_max) goes; one of a live process stays.
        let dead = d.path().join(".mathneuro-4294967295-abc.tmp");
        let alive = d.path().join(format!(".mathneuro-{}-abc.tmp", std::process::id()));
        let old = d.path().join(".mathneuro-abcdef.tmp");
        for p in [&dead, &alive, &old] {
            std::fs::write(p, b"x").unwrap();
        }
        let s = sweep_stale(d.path());
        assert_eq!(s, Stale { removed: vec![dead.clone()], unknown: vec![old.clone()] });
        assert!(!dead.exists() && alive.exists() && old.exists());
    }

    #[test]
    fn persist_renames_and_unregisters() {
        let d = tempfile::tempdir().unwrap();
        let mut t = TempFile::new_in(d.path()).unwrap();
        std::io::Write::write_all(t.as_file_mut(), b"hello").unwrap();
        let path = t.path().to_path_buf();
        t.persist(&d.path().join("out")).unwrap();
        assert_eq!(std::fs::read(d.path().join("out")).unwrap(), b"hello");
        assert!(!lock().temps.contains(&path));
    }
}
