//! Split GGUF models, as llama.cpp's `gguf-split` writes them: shards named
//! `PREFIX-00001-of-00003.gguf`, each a complete GGUF file holding some of the tensors. Every
//! shard carries `split.no` (u16, zero-based), `split.count` (u16) and `split.tensors.count`
//! (i32, tensors over all shards); only the first shard carries the model's other metadata.
//! llama.cpp (and so calibration and evaluation) loads a split from its first shard; the reader
//! here merges the shards into one tensor table (`GgufFile::open`), and `write_split` writes one.

use std::path::{Path, PathBuf};

use super::error::GgufError;
use super::reader::GgufFile;
use super::types::MetaValue;
use super::writer::{GgufWriter, TensorSpec};

/// Shard number key (u16, zero-based).
pub const KEY_NO: &str = "split.no";
/// Shard count key (u16).
pub const KEY_COUNT: &str = "split.count";
/// Tensors over all shards (i32).
pub const KEY_TENSORS: &str = "split.tensors.count";
/// The three keys, for removal when shards are merged.
pub const KEYS: [&str; 3] = [KEY_NO, KEY_COUNT, KEY_TENSORS];

/// A shard's file name taken apart: `x-00002-of-00003.gguf` → prefix `x`, index 1, count 3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardName {
    /// The file name before `-NNNNN-of-NNNNN.gguf`.
    pub prefix: String,
    /// Zero-based shard number.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

/// Parses a shard file name (`PREFIX-%05d-of-%05d.gguf`, one-based in the name).
pub fn parse_shard_name(file_name: &str) -> Option<ShardName> {
    let rest = file_name.strip_suffix(".gguf")?;
    let (rest, count) = rest.rsplit_once("-of-")?;
    let (prefix, no) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(no) || !digits(count) || prefix.is_empty() {
        return None;
    }
    let (no, count): (u32, u32) = (no.parse().ok()?, count.parse().ok()?);
    (no >= 1 && no <= count).then(|| ShardName { prefix: prefix.to_string(), index: no - 1, count })
}

/// The file of shard `index` (zero-based) of `count` for `prefix` (a path without `.gguf`), as
/// llama.cpp's `llama_split_path` forms it.
pub fn shard_path(prefix: &Path, index: u32, count: u32) -> PathBuf {
    let mut name = prefix.as_os_str().to_os_string();
    name.push(format!("-{:05}-of-{:05}.gguf", index + 1, count));
    PathBuf::from(name)
}

/// The shard paths of a split model given its first shard (an error when the name does not
/// follow the shard pattern, so the others cannot be found).
pub fn sibling_paths(first: &Path, count: u32) -> Result<Vec<PathBuf>, GgufError> {
    let name = first.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parsed = parse_shard_name(&name).filter(|s| s.count == count && s.index == 0).ok_or_else(|| {
        GgufError::malformed(first, 0, KEY_COUNT, format!("the file is shard 1 of {count} but is not named PREFIX-00001-of-{count:05}.gguf, so the other shards cannot be found"))
    })?;
    let prefix = first.with_file_name(&parsed.prefix);
    Ok((0..count).map(|i| shard_path(&prefix, i, count)).collect())
}

/// Shard `no` of `count` from a file's metadata, when it is part of a split (count > 1).
pub fn shard_of(file: &GgufFile) -> Option<(u32, u32)> {
    let count = file.get(KEY_COUNT)?.as_u64()? as u32;
    let no = file.get(KEY_NO).and_then(MetaValue::as_u64).unwrap_or(0) as u32;
    (count > 1).then_some((no, count))
}

/// Splits `n_tensors` tensors into `shards` groups of consecutive tensors, sizes as even as can
/// be (earlier groups one larger). Each group has at least one tensor when `shards <= n_tensors`.
pub fn even_groups(n_tensors: usize, shards: usize) -> Vec<usize> {
    let shards = shards.max(1);
    (0..shards).map(|i| n_tensors / shards + usize::from(i < n_tensors % shards)).collect()
}

/// Writes `src` (a merged view; a split input is fine) as `groups.len()` shards of `groups[i]`
/// consecutive tensors at `PREFIX-0000i-of-0000N.gguf`, in gguf-split's layout: the first shard
/// keeps all metadata, every shard gets the three `split.*` keys. `data(i)` gives tensor `i`'s
/// bytes (the source's own by default, see `write_split`). Returns the shard paths. Each shard
/// is written atomically; `input` is never overwritten.
pub fn write_split_with<F>(src: &GgufFile, groups: &[usize], prefix: &Path, input: Option<&Path>, mut data: F) -> Result<Vec<PathBuf>, GgufError>
where
    F: FnMut(usize, &mut dyn std::io::Write) -> std::io::Result<()>,
{
    let total: usize = groups.iter().sum();
    let count = groups.len();
    let bad = |problem: String| GgufError::Write { path: prefix.to_path_buf(), problem };
    if total != src.tensors.len() || count == 0 || count > u16::MAX as usize || groups.iter().skip(1).any(|&g| g == 0) {
        return Err(bad(format!("cannot split {} tensors into shards of {groups:?}", src.tensors.len())));
    }
    let n_tensors = i32::try_from(total).map_err(|_| bad(format!("{total} tensors do not fit split.tensors.count (i32)")))?;
    let mut paths = Vec::with_capacity(count);
    let mut first = 0usize;
    for (i, &n) in groups.iter().enumerate() {
        let mut w = GgufWriter::new();
        w.version = src.version;
        if i == 0 {
            w.metadata = src.metadata.iter().filter(|(k, _)| !KEYS.contains(&k.as_str())).cloned().collect();
        } else if let Some(a) = src.get("general.alignment") {
            // Later shards are read on their own: they need the same alignment to be valid.
            w.set("general.alignment", a.clone());
        }
        w.set(KEY_NO, MetaValue::U16(i as u16));
        w.set(KEY_COUNT, MetaValue::U16(count as u16));
        w.set(KEY_TENSORS, MetaValue::I32(n_tensors));
        w.tensors = src.tensors[first..first + n].iter().map(TensorSpec::from).collect();
        let path = shard_path(prefix, i as u32, count as u32);
        let base = first;
        w.write_atomic(&path, input, |j, _spec, sink| data(base + j, sink))?;
        paths.push(path);
        first += n;
    }
    Ok(paths)
}

/// `write_split_with`, copying each tensor's bytes from `src`.
pub fn write_split(src: &GgufFile, groups: &[usize], prefix: &Path, input: Option<&Path>) -> Result<Vec<PathBuf>, GgufError> {
    write_split_with(src, groups, prefix, input, |i, sink| sink.write_all(src.tensor_data(&src.tensors[i])))
}

/// How many tensors each shard of a split file holds, in order (one group for a single file).
pub fn groups_of(file: &GgufFile) -> Vec<usize> {
    file.shard_sizes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_parse_and_format_like_llama_cpp() {
        assert_eq!(parse_shard_name("m-00002-of-00003.gguf"), Some(ShardName { prefix: "m".into(), index: 1, count: 3 }));
        assert_eq!(parse_shard_name("a-b-00001-of-00002.gguf").unwrap().prefix, "a-b");
        assert_eq!(parse_shard_name("m-00004-of-00003.gguf"), None);
        assert_eq!(parse_shard_name("m-0001-of-00003.gguf"), None);
        assert_eq!(parse_shard_name("m.gguf"), None);
        assert_eq!(shard_path(Path::new("/x/m"), 0, 2), PathBuf::from("/x/m-00001-of-00002.gguf"));
        assert_eq!(even_groups(7, 3), vec![3, 2, 2]);
    }
}
