//! Where the evaluation and calibration data sets live: the `--data-dir` flag, else the
//! `MATHNEURO_DATA` environment variable, else `../shared/data` or `./shared/data` when present.

use std::path::{Path, PathBuf};

/// The environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "MATHNEURO_DATA";

/// The data directory could not be found.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// A directory was named (flag or environment) but does not exist.
    #[error("data directory {path} (from {source_name}) does not exist or is not a directory")]
    Missing {
        /// The directory that was named.
        path: PathBuf,
        /// Where the name came from: `--data-dir` or `MATHNEURO_DATA`.
        source_name: &'static str,
    },
    /// Nothing was named and none of the default places exists.
    #[error(
        "no data directory: pass --data-dir DIR or set {DATA_DIR_ENV}; looked for {}",
        .looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and ")
    )]
    NotFound {
        /// The default places that were tried, in order.
        looked: Vec<PathBuf>,
    },
}

/// Resolves the data directory: `flag` if given, else `$MATHNEURO_DATA`, else the first of
/// `../shared/data` and `./shared/data` (relative to the current directory) that exists.
pub fn resolve_data_dir(flag: Option<&Path>) -> Result<PathBuf, DataDirError> {
    let env = std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
    resolve_from(flag, env.as_deref(), Path::new("."))
}

/// [`resolve_data_dir`] with the environment value and the current directory made explicit.
pub fn resolve_from(flag: Option<&Path>, env: Option<&Path>, cwd: &Path) -> Result<PathBuf, DataDirError> {
    if let Some(path) = flag {
        return existing(path, "--data-dir");
    }
    if let Some(path) = env {
        return existing(path, DATA_DIR_ENV);
    }
    let looked = vec![cwd.join("../shared/data"), cwd.join("shared/data")];
    looked
        .iter()
        .find(|p| p.is_dir())
        .cloned()
        .ok_or(DataDirError::NotFound { looked })
}

fn existing(path: &Path, source_name: &'static str) -> Result<PathBuf, DataDirError> {
    if path.is_dir() {
        Ok(path.to_path_buf())
    } else {
        Err(DataDirError::Missing { path: path.to_path_buf(), source_name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_env_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let got = resolve_from(Some(dir.path()), Some(Path::new("/nonexistent")), dir.path()).unwrap();
        assert_eq!(got, dir.path());
    }

    #[test]
    fn missing_flag_directory_is_named() {
        let err = resolve_from(Some(Path::new("/no/such/dir")), None, Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("/no/such/dir"), "{err}");
        assert!(err.to_string().contains("--data-dir"), "{err}");
    }

    #[test]
    fn defaults_are_searched_and_reported() {
        let root = tempfile::tempdir().unwrap();
        let cwd = root.path().join("work");
        std::fs::create_dir_all(&cwd).unwrap();
        let err = resolve_from(None, None, &cwd).unwrap_err();
        assert!(err.to_string().contains("shared/data"), "{err}");
        std::fs::create_dir_all(root.path().join("shared/data")).unwrap();
        assert_eq!(resolve_from(None, None, &cwd).unwrap(), cwd.join("../shared/data"));
    }
}
