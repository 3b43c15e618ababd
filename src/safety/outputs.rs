//! The output-path policy every writing command goes through: an [`OutputPlan`] lists a
//! command's inputs and every file or directory it will write, and [`OutputPlan::check`] refuses
//! the plan before any work starts when an output
//!
//! - is one of the inputs (same path, a symlink to it or a hard link: same device and inode),
//!   even with `--force`;
//! - already exists and `--force` was not given (except files this tool marks as its own, such
//!   as the Modelfile);
//! - is named twice, or is a directory where a file is written (or the other way round);
//! - exists and is not a regular file (a device node, FIFO or socket), even with `--force`;
//! - lies in a directory that does not exist or cannot be written to.
//!
//! A plan that passes in a command of the binary (`safety::start_command`) is then held for the
//! rest of the process: its main output (the first one
//! named) and its directories are locked against a second mathneuro (`safety::lock`), and its
//! files are watched so that, if the command fails or is interrupted, the ones this run already
//! renamed into place are removed again (`safety::tempfiles::roll_back`): a command's outputs
//! appear together or not at all. Outputs marked [`OutputPlan::kept`] (checkpoints, journals)
//! stay, since a rerun resumes from them.
//!
//! ```no_run
//! # fn demo() -> Result<(), mathneuro::safety::OutputError> {
//! use mathneuro::safety::OutputPlan;
//! OutputPlan::new("calibrate", false)
//!     .input("model.gguf")
//!     .input("texts.txt")
//!     .file("math-stats.gguf")
//!     .check()?;
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a plan of outputs was refused.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The output is one of the command's inputs.
    #[error("{}: is the input {} (same file); {} never writes onto its inputs, choose another output path", output.display(), input.display(), command)]
    IsInput {
        /// The command.
        command: &'static str,
        /// The output asked for.
        output: PathBuf,
        /// The input it names.
        input: PathBuf,
    },
    /// The output exists and `--force` was not given.
    #[error("{}: already exists (pass --force to overwrite it)", .0.display())]
    Exists(PathBuf),
    /// Two outputs of the plan name the same file.
    #[error("{}: would be written twice (as {} too); give the outputs different paths", first.display(), second.display())]
    Twice {
        /// The first output.
        first: PathBuf,
        /// The output that names the same file.
        second: PathBuf,
    },
    /// A file output is an existing directory, or a directory output an existing file.
    #[error("{}: {problem}", path.display())]
    WrongKind {
        /// The output.
        path: PathBuf,
        /// What it is and what was wanted.
        problem: &'static str,
    },
    /// The output exists and is not a regular file (a device, FIFO or socket): never replaced.
    #[error("{}: {what}; mathneuro writes only regular files and never replaces anything else, --force or not; choose another output path", path.display())]
    NotRegular {
        /// The output.
        path: PathBuf,
        /// What it is.
        what: String,
    },
    /// Another mathneuro holds the lock of this output.
    #[error(transparent)]
    Locked(#[from] crate::safety::lock::LockError),
    /// The directory the output goes into is missing or not writable.
    #[error("{}: cannot write into {}: {problem}", path.display(), dir.display())]
    Directory {
        /// The output.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
        /// Missing, not a directory, or the OS's reason.
        problem: String,
    },
}

#[derive(Clone, Debug)]
enum Kind {
    /// A file; an existing one needs `--force`.
    File,
    /// A file that may be replaced without `--force` when its content starts with the marker
    /// (a file this tool wrote, such as the Modelfile).
    Marked(&'static str),
    /// A directory that is created when missing; files are written inside it.
    Dir,
    /// A file the command reuses when it exists (a cache or the journal it resumes from): no
    /// `--force` needed, but never an input and never anything but a regular file.
    Reused,
}

/// One output of a plan.
#[derive(Clone, Debug)]
struct Output {
    path: PathBuf,
    kind: Kind,
    /// Left in place when the command fails (a checkpoint or journal a rerun resumes from).
    kept: bool,
}

/// The inputs and outputs of one command, checked together once (see the module docs).
#[derive(Clone, Debug)]
#[must_use = "a plan does nothing until `check` is called"]
pub struct OutputPlan {
    command: &'static str,
    force: bool,
    inputs: Vec<PathBuf>,
    outputs: Vec<Output>,
}

impl OutputPlan {
    /// An empty plan for `command` (named in errors); `force` allows replacing existing outputs.
    pub fn new(command: &'static str, force: bool) -> OutputPlan {
        OutputPlan { command, force, inputs: Vec::new(), outputs: Vec::new() }
    }

    /// Adds a file the command reads (a missing one is ignored here: reading it reports that).
    pub fn input(mut self, path: impl AsRef<Path>) -> OutputPlan {
        self.inputs.push(path.as_ref().to_path_buf());
        self
    }

    /// Adds a file the command writes.
    pub fn file(self, path: impl AsRef<Path>) -> OutputPlan {
        self.push(path, Kind::File)
    }

    fn push(mut self, path: impl AsRef<Path>, kind: Kind) -> OutputPlan {
        self.outputs.push(Output { path: path.as_ref().to_path_buf(), kind, kept: false });
        self
    }

    /// Adds a file the command reuses when it exists (see `Kind::Reused`); it stays when the
    /// command fails.
    pub fn reused_file(self, path: impl AsRef<Path>) -> OutputPlan {
        self.push(path, Kind::Reused).kept()
    }

    /// Leaves the output added last in place when the command fails or is interrupted (a
    /// checkpoint or journal that a rerun resumes from).
    pub fn kept(mut self) -> OutputPlan {
        if let Some(last) = self.outputs.last_mut() {
            last.kept = true;
        }
        self
    }

    /// Adds a file the command writes that it may replace without `--force` when the existing
    /// file starts with `marker` (it wrote that file itself).
    pub fn marked_file(self, path: impl AsRef<Path>, marker: &'static str) -> OutputPlan {
        self.push(path, Kind::Marked(marker))
    }

    /// Adds a directory the command writes into (created when missing).
    pub fn dir(self, path: impl AsRef<Path>) -> OutputPlan {
        self.push(path, Kind::Dir).kept()
    }

    /// Checks every output against the rules in the module docs; the first violation is the
    /// error. Then locks the plan's main output and directories and watches its files for the
    /// rest of the process (see the module docs). Nothing is written except a probe file that is
    /// removed at once and the lock files.
    pub fn check(&self) -> Result<(), OutputError> {
        self.check_paths()?;
        self.hold()
    }

    /// Locks the main output and every directory; watches the files that are not kept.
    fn hold(&self) -> Result<(), OutputError> {
        if !crate::safety::in_command() {
            return Ok(());
        }
        for (i, o) in self.outputs.iter().enumerate() {
            // A directory whose parent does not exist yet is created by this run: nobody else
            // can be writing there.
            let parent_exists = std::fs::metadata(parent(&o.path)).is_ok_and(|m| m.is_dir());
            let top_dir = matches!(o.kind, Kind::Dir) && !self.outputs.iter().any(|d| matches!(d.kind, Kind::Dir) && d.path != o.path && o.path.starts_with(&d.path));
            if (i == 0 || top_dir) && parent_exists {
                crate::safety::lock::lock(&o.path)?;
            }
            if !o.kept {
                crate::safety::tempfiles::watch(&o.path);
            }
        }
        Ok(())
    }

    fn check_paths(&self) -> Result<(), OutputError> {
        let inputs: Vec<(&PathBuf, FileId)> = self.inputs.iter().filter_map(|p| identity(p).map(|id| (p, id))).collect();
        // Outputs so far: as given, as compared (see `lexical`), and the file they name now.
        let mut seen: Vec<(&PathBuf, PathBuf, Option<FileId>)> = Vec::new();
        let mut probed: HashSet<PathBuf> = HashSet::new();
        for Output { path, kind, .. } in &self.outputs {
            let id = identity(path);
            if let Some((input, _)) = inputs.iter().find(|(p, iid)| Some(*iid) == id || lexical(p) == lexical(path)) {
                return Err(OutputError::IsInput { command: self.command, output: path.clone(), input: (*input).clone() });
            }
            let key = lexical(path);
            if let Some((first, _, _)) = seen.iter().find(|(_, k, sid)| *k == key || (id.is_some() && *sid == id)) {
                return Err(OutputError::Twice { first: (*first).clone(), second: path.clone() });
            }
            seen.push((path, key, id));
            let existing = std::fs::symlink_metadata(path).ok();
            if let (Some(_), Err(e)) = (&existing, crate::safety::inputs::check_regular(path))
                && !matches!(kind, Kind::Dir)
                && !std::fs::metadata(path).is_ok_and(|m| m.is_dir())
                && e.kind() == std::io::ErrorKind::InvalidInput
            {
                return Err(OutputError::NotRegular { path: path.clone(), what: e.to_string() });
            }
            match (kind, &existing) {
                (Kind::Dir, Some(m)) if !std::fs::metadata(path).is_ok_and(|m| m.is_dir()) && !m.is_dir() => {
                    return Err(OutputError::WrongKind { path: path.clone(), problem: "exists and is not a directory (an output directory is wanted here)" });
                }
                (Kind::Dir, _) => {}
                (_, Some(_)) if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) => {
                    return Err(OutputError::WrongKind { path: path.clone(), problem: "is a directory (an output file is wanted here)" });
                }
                (Kind::Marked(marker), Some(_)) if !self.force && !starts_with(path, marker) => return Err(OutputError::Exists(path.clone())),
                (Kind::File, Some(_)) if !self.force => return Err(OutputError::Exists(path.clone())),
                _ => {}
            }
            let in_planned_dir = self.outputs.iter().any(|o| matches!(o.kind, Kind::Dir) && path.starts_with(&o.path));
            let dir = match kind {
                // A missing output directory is created (with its parents) where it can be, and
                // so are the folders of the files planned inside it.
                Kind::Dir => nearest_existing(path),
                _ if in_planned_dir => nearest_existing(&parent(path)),
                _ => parent(path),
            };
            if probed.insert(dir.clone()) {
                probe(&dir).map_err(|problem| OutputError::Directory { path: path.clone(), dir: dir.clone(), problem })?;
            }
        }
        Ok(())
    }
}

/// (device, inode): what makes two paths one file.
type FileId = (u64, u64);

/// The identity of the file `path` names, following symlinks.
fn identity(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The path with its directory made absolute where possible, so `./a` and `a` compare equal
/// even when `a` does not exist yet.
fn lexical(path: &Path) -> PathBuf {
    let dir = parent(path);
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    match path.file_name() {
        Some(name) => dir.join(name),
        None => dir,
    }
}

/// The directory a file output goes into (`.` for a bare name).
fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The path itself when it exists, else its nearest existing ancestor.
fn nearest_existing(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.exists() {
        p = parent(&p);
        if p == Path::new(".") {
            break;
        }
    }
    p
}

fn starts_with(path: &Path, marker: &str) -> bool {
    use std::io::Read as _;
    let mut head = vec![0u8; marker.len()];
    crate::safety::inputs::check_regular(path).is_ok()
        && std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok()
        && head == marker.as_bytes()
}

/// Creates and removes a file in `dir`: the only reliable test that outputs can be written there.
fn probe(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Err(_) => return Err("the directory does not exist".into()),
        Ok(m) if !m.is_dir() => return Err("not a directory".into()),
        Ok(_) => {}
    }
    crate::safety::tempfiles::probe_dir(dir).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_inputs_links_existing_twice_and_missing_dirs() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n);
        std::fs::write(p("in.gguf"), b"x").unwrap();
        std::os::unix::fs::symlink(p("in.gguf"), p("sym.gguf")).unwrap();
        std::fs::hard_link(p("in.gguf"), p("hard.gguf")).unwrap();
        let plan = |out: &str, force: bool| OutputPlan::new("t", force).input(p("in.gguf")).file(p(out)).check();
        for out in ["in.gguf", "sym.gguf", "hard.gguf"] {
            assert!(matches!(plan(out, true), Err(OutputError::IsInput { .. })), "{out}");
        }
        std::fs::write(p("old.gguf"), b"y").unwrap();
        assert!(matches!(plan("old.gguf", false), Err(OutputError::Exists(p)) if p.ends_with("old.gguf")));
        assert!(plan("old.gguf", true).is_ok());
        assert!(plan("new.gguf", false).is_ok());
        let twice = OutputPlan::new("t", true).file(p("a")).file(d.path().join(".").join("a")).check();
        assert!(matches!(twice, Err(OutputError::Twice { .. })), "{twice:?}");
        let missing = OutputPlan::new("t", false).file(p("no/such/s.gguf")).check();
        assert!(matches!(missing, Err(OutputError::Directory { .. })), "{missing:?}");
        std::fs::create_dir(p("dir")).unwrap();
        assert!(matches!(plan("dir", true), Err(OutputError::WrongKind { .. })));
        assert!(matches!(OutputPlan::new("t", false).dir(p("old.gguf")).check(), Err(OutputError::WrongKind { .. })));
        assert!(OutputPlan::new("t", false).dir(p("dir")).dir(p("fresh/sub")).check().is_ok());
        std::fs::write(p("Modelfile"), b"# mine\nFROM x").unwrap();
        assert!(OutputPlan::new("t", false).marked_file(p("Modelfile"), "# mine").check().is_ok());
        assert!(OutputPlan::new("t", false).marked_file(p("Modelfile"), "# theirs").check().is_err());
    }
}
