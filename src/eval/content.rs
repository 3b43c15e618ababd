//! What `--resume` keys an item file on: the content of the model and of a task's data, as
//! sha256 digests. A model rewritten in place, or a data or task file edited since the items
//! were written, gives another key, so its old items are not reused (never the path or size).

use std::io::Read as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::datasets::DatasetError;
use super::task::Task;

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn feed_file(h: &mut Sha256, path: &Path) -> Result<(), DatasetError> {
    let io = |source| DatasetError::Io { path: path.to_path_buf(), source };
    crate::safety::inputs::check_regular(path).map_err(io)?;
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

/// The sha256 of a whole file, in hex.
pub fn file_sha256(path: &Path) -> Result<String, DatasetError> {
    let mut h = Sha256::new();
    feed_file(&mut h, path)?;
    Ok(hex(&h.finalize()))
}

/// The sha256 of a text, in hex.
pub fn text_sha256(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// The folder of the data directory a named task reads (test items and few-shot examples).
fn data_subdir(task: Task) -> Option<&'static str> {
    Some(match task {
        Task::Gsm8k | Task::Gsm8kNll | Task::Gsm8kPpl => "gsm8k",
        Task::Math => "math",
        Task::Mmlu => "mmlu",
        Task::Race => "race",
        Task::Hellaswag => "hellaswag",
        Task::ArcEasy | Task::ArcChallenge => "arc",
        Task::Piqa => "piqa",
        Task::Boolq => "boolq",
        Task::Wikitext => "wikitext2",
        Task::TaskFile => return None,
    })
}

/// Every regular file a task reads: the files of its data folder (in name order), or the task
/// file. Writing commands name them as inputs, so no output replaces them.
pub fn task_files(data_dir: &Path, task: Task, task_file: Option<&Path>) -> Vec<std::path::PathBuf> {
    match (data_subdir(task), task_file) {
        (Some(sub), _) => {
            let dir = data_dir.join(sub);
            let mut files: Vec<_> = match std::fs::read_dir(&dir) {
                Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect(),
                Err(_) => Vec::new(),
            };
            files.sort();
            files
        }
        (None, Some(file)) => vec![file.to_path_buf()],
        (None, None) => Vec::new(),
    }
}

/// One digest over every regular file a task reads: the files of its data folder (names and
/// bytes, in name order), or the task file. A folder that is missing hashes as empty: the task
/// itself then stops with the missing file's name.
pub fn task_data_sha256(data_dir: &Path, task: Task, task_file: Option<&Path>) -> Result<String, DatasetError> {
    let mut h = Sha256::new();
    let files = task_files(data_dir, task, task_file);
    for f in files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        feed_file(&mut h, &f)?;
    }
    Ok(hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_file_edited_in_place_changes_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("gsm8k")).unwrap();
        let test = dir.path().join("gsm8k/test.jsonl");
        std::fs::write(&test, "{\"question\":\"1+1\",\"answer\":\"#### 2\"}\n").unwrap();
        let a = task_data_sha256(dir.path(), Task::Gsm8k, None).unwrap();
        assert_eq!(a, task_data_sha256(dir.path(), Task::Gsm8kNll, None).unwrap());
        std::fs::write(&test, "{\"question\":\"1+1\",\"answer\":\"#### 3\"}\n").unwrap();
        assert_ne!(a, task_data_sha256(dir.path(), Task::Gsm8k, None).unwrap());
        let model = dir.path().join("m.gguf");
        std::fs::write(&model, b"abc").unwrap();
        assert_eq!(file_sha256(&model).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
