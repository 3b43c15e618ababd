//! Atomic output files: everything mathneuro writes goes to a temporary file in the target's
//! directory (registered for removal on a signal, see `safety::tempfiles`), is fsync'd, then
//! renamed over the target, so a crash never leaves half a file. Writing onto the input model is
//! refused. Temporary files left by killed runs in the same directory are removed first.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::safety::tempfiles::{self, TempFile};

/// Why an atomic write failed before or after its contents were filled in.
#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    /// The output is the input model itself.
    #[error("{}: refusing to overwrite the input model; choose another output path", path.display())]
    OntoInput {
        /// The output path.
        path: PathBuf,
    },
    /// The temporary file could not be created, written or renamed into place.
    #[error("{}: {source}", path.display())]
    Io {
        /// The output path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// True when `a` and `b` name the same existing file (same device and inode, or same
/// canonical path).
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) => ma.dev() == mb.dev() && ma.ino() == mb.ino(),
        _ => false,
    }
}

/// Writes `path` atomically through `fill`, refusing when `path` is the same file as `input`.
/// `fill`'s own error type carries the write's failures too (`E: From<AtomicWriteError>`).
pub fn write_atomic<F, E>(path: &Path, input: Option<&Path>, fill: F) -> Result<(), E>
where
    F: FnOnce(&mut File) -> Result<(), E>,
    E: From<AtomicWriteError>,
{
    let err = |source| AtomicWriteError::Io { path: path.to_path_buf(), source };
    if let Some(input) = input
        && same_file(path, input)
    {
        return Err(AtomicWriteError::OntoInput { path: path.to_path_buf() }.into());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let stale = tempfiles::sweep_stale(dir);
    for p in &stale.removed {
        eprintln!("mathneuro: note: removed {}, left by an interrupted run", p.display());
    }
    for p in &stale.unknown {
        eprintln!("mathneuro: note: {} looks like a temporary file of an older mathneuro; remove it if no mathneuro is running", p.display());
    }
    let mut tmp = TempFile::new_in(dir).map_err(err)?;
    fill(tmp.as_file_mut())?;
    tmp.persist(path).map_err(err)?;
    Ok(())
}

/// Writes `bytes` to `path` atomically (reports, masks, JSON).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    use std::io::Write;
    write_atomic(path, None, |f| f.write_all(bytes).map_err(|source| AtomicWriteError::Io { path: path.to_path_buf(), source }))
}
