//! Atomic output files: everything mathneuro writes goes to a temporary file in the target's
//! directory, is fsync'd, then renamed over the target, so a crash never leaves half a file.
//! Writing onto the input model is refused.

use std::fs::File;
use std::path::Path;

use crate::gguf::GgufError;

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
    if let Some(input) = input {
        if same_file(path, input) {
            return Err(GgufError::Write {
                path: path.to_path_buf(),
                problem: "refusing to overwrite the input model; choose another output path".into(),
            });
        }
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".mathneuro-")
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(err)?;
    fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// Writes `bytes` to `path` atomically (reports, masks, JSON).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), GgufError> {
    use std::io::Write;
    write_atomic(path, None, |f| f.write_all(bytes).map_err(|source| GgufError::Io { path: path.to_path_buf(), source }))
}
