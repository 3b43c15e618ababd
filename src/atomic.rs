//! Atomic output files: everything mathneuro writes goes to a temporary file in the target's
//! directory (registered for removal on a signal, see `safety::tempfiles`), is fsync'd, then
//! renamed over the target, so a crash never leaves half a file. Writing onto the input model is
//! refused. Temporary files left by killed runs in the same directory are removed first.

use std::fs::File;
use std::path::Path;

use crate::gguf::GgufError;
use crate::safety::tempfiles::{self, TempFile};

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
pub fn write_atomic<F>(path: &Path, input: Option<&Path>, fill: F) -> Result<(), GgufError>
where
    F: FnOnce(&mut File) -> Result<(), GgufError>,
{
    let err = |source| GgufError::Io { path: path.to_path_buf(), source };
    if let Some(input) = input
        && same_file(path, input)
    {
        return Err(GgufError::Write {
            path: path.to_path_buf(),
            problem: "refusing to overwrite the input model; choose another output path".into(),
        });
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
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), GgufError> {
    use std::io::Write;
    write_atomic(path, None, |f| f.write_all(bytes).map_err(|source| GgufError::Io { path: path.to_path_buf(), source }))
}
