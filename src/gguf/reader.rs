//! Reads and validates a GGUF file (v2/v3) through a memory map.
//!
//! Nothing read from the file is trusted before it is checked: every count and length is compared
//! with the bytes that are left before anything is allocated for it, nesting is capped, tensor
//! extents must lie inside the data section without overlapping, and each failure names the file,
//! the field and the byte offset. Metadata keeps its exact value types (see `types::MetaValue`).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::error::GgufError;
use super::types::{MetaValue, TensorInfo};

/// The four magic bytes at the start of every GGUF file.
pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";
/// Data alignment when `general.alignment` is absent (gguf.h `GGUF_DEFAULT_ALIGNMENT`).
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most this many dimensions (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Arrays nested deeper than this are refused (real files nest at most 1 deep).
pub const MAX_ARRAY_DEPTH: u32 = 8;
/// Longest tensor name ggml accepts, in bytes (`GGML_MAX_NAME` - 1; gguf.cpp refuses longer).
pub const MAX_TENSOR_NAME: usize = 63;

/// Where the bytes of a parsed file live: a read-only map of a file, or an owned buffer
/// (tests, generated files).
enum Backing {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// A further shard of a split model: its own map and data section.
struct Shard {
    path: PathBuf,
    backing: Backing,
    data_offset: u64,
    tensors: usize,
}

/// A parsed, validated GGUF file. Tensor data stays in the map and is borrowed on demand. A split
/// model opened at its first shard reads as one file: metadata from the first shard, tensors
/// from all of them (see `gguf::split`).
pub struct GgufFile {
    path: PathBuf,
    backing: Backing,
    /// Shards after the first of a split model (empty for a single file).
    shards: Vec<Shard>,
    /// For tensors stored in `shards`: name → index into `shards`.
    shard_of: HashMap<String, usize>,
    /// GGUF version (2 or 3).
    pub version: u32,
    /// Metadata in file order, types kept.
    pub metadata: Vec<(String, MetaValue)>,
    /// Tensor table in file order.
    pub tensors: Vec<TensorInfo>,
    /// Data alignment (`general.alignment`, default 32).
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps and parses `path`; a split model's first shard brings in the other shards (named
    /// as llama.cpp names them), any other shard is refused with the name of the first. The
    /// maps are read-only: the input model is never modified.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let mut file = GgufFile::open_shard(path)?;
        if let Some((no, count)) = super::split::shard_of(&file) {
            file.attach_shards(no, count)?;
        }
        Ok(file)
    }

    /// Maps and parses exactly one file, ignoring `split.*` keys (one shard on its own).
    pub fn open_shard(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io { path: path.clone(), source };
        // A FIFO would block `open` forever and /dev/zero would read as an endless file.
        crate::safety::inputs::check_regular(&path).map_err(io)?;
        let file = File::open(&path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        let len = meta.len();
        if len == 0 {
            return Err(GgufError::malformed(&path, 0, "magic", "the file is empty"));
        }
        let map = crate::ffi::mmap::map_read_only(&file).map_err(io)?;
        GgufFile::parse(path, Backing::Mapped(map))
    }

    /// Parses a GGUF image held in memory; `name` is used in error messages.
    pub fn from_bytes(name: impl AsRef<Path>, bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        GgufFile::parse(name.as_ref().to_path_buf(), Backing::Owned(bytes))
    }

    fn parse(path: PathBuf, backing: Backing) -> Result<GgufFile, GgufError> {
        let bytes: &[u8] = match &backing {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
        };
        let header = super::header::parse_header(&path, bytes)?;
        Ok(GgufFile {
            path,
            backing,
            shards: Vec::new(),
            shard_of: HashMap::new(),
            version: header.version,
            metadata: header.metadata,
            tensors: header.tensors,
            alignment: header.alignment,
            data_offset: header.data_offset,
        })
    }

    /// The path the file was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens shards 2..=count of the split whose first shard this is and merges their tensor
    /// tables, checking what llama.cpp checks: each shard's `split.no`, no tensor twice, and
    /// `split.tensors.count` against the tensors found.
    fn attach_shards(&mut self, no: u32, count: u32) -> Result<(), GgufError> {
        use super::split::{KEY_NO, KEY_TENSORS, sibling_paths};
        if no != 0 {
            let first = super::split::parse_shard_name(&self.path.file_name().unwrap_or_default().to_string_lossy())
                .map(|s| format!("{}-00001-of-{count:05}.gguf", s.prefix))
                .unwrap_or_else(|| "the first shard".into());
            return Err(GgufError::malformed(&self.path, 0, KEY_NO, format!("this is shard {} of {count} of a split model; give its first shard ({first})", no + 1)));
        }
        let mut names: HashSet<String> = self.tensors.iter().map(|t| t.name.clone()).collect();
        for (i, path) in sibling_paths(&self.path, count)?.into_iter().enumerate().skip(1) {
            let part = GgufFile::open_shard(&path)?;
            let part_no = part.get(KEY_NO).and_then(MetaValue::as_u64);
            if part_no != Some(i as u64) {
                return Err(GgufError::malformed(&path, 0, KEY_NO, format!("expected split.no = {i} in shard {} of {count}, found {part_no:?}", i + 1)));
            }
            for t in &part.tensors {
                if !names.insert(t.name.clone()) {
                    return Err(GgufError::malformed(&path, 0, "tensor", format!("tensor {:?} is also in another shard", t.name)));
                }
                self.shard_of.insert(t.name.clone(), self.shards.len());
            }
            let GgufFile { path, backing, tensors, data_offset, .. } = part;
            self.shards.push(Shard { path, backing, data_offset, tensors: tensors.len() });
            self.tensors.extend(tensors);
        }
        let declared = self.get(KEY_TENSORS).and_then(MetaValue::as_u64);
        if declared != Some(self.tensors.len() as u64) {
            return Err(GgufError::malformed(&self.path, 0, KEY_TENSORS, format!("{declared:?} tensors declared but the {count} shards hold {}", self.tensors.len())));
        }
        Ok(())
    }

    /// The files this model is read from: the path, then any further shards.
    pub fn shard_paths(&self) -> Vec<&Path> {
        std::iter::once(self.path.as_path()).chain(self.shards.iter().map(|s| s.path.as_path())).collect()
    }

    /// Tensors per file, in `shard_paths` order (one entry for a single file).
    pub fn shard_sizes(&self) -> Vec<usize> {
        let rest: usize = self.shards.iter().map(|s| s.tensors).sum();
        std::iter::once(self.tensors.len() - rest).chain(self.shards.iter().map(|s| s.tensors)).collect()
    }

    /// Bytes of all files the model is read from.
    pub fn total_bytes(&self) -> u64 {
        self.bytes().len() as u64 + self.shards.iter().map(|s| s.backing.bytes().len() as u64).sum::<u64>()
    }

    /// The backing and data-section offset of the file holding `t`.
    fn backing_of(&self, t: &TensorInfo) -> (&Backing, u64) {
        match self.shard_of.get(&t.name).map(|&i| &self.shards[i]) {
            Some(s) => (&s.backing, s.data_offset),
            None => (&self.backing, self.data_offset),
        }
    }

    /// The bytes and data-section offset of the file holding `t`.
    fn data_of(&self, t: &TensorInfo) -> (&[u8], u64) {
        let (backing, data_offset) = self.backing_of(t);
        (backing.bytes(), data_offset)
    }

    /// The whole (first) file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A string metadata value by key, when present and UTF-8.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(MetaValue::as_str)
    }

    /// A tensor's info by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A tensor's data bytes (extents were validated when the file was parsed). `t` must come
    /// from this file's table; for infos of unknown origin use `tensor_rows`, which checks.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let (bytes, data_offset) = self.data_of(t);
        let start = (data_offset + t.offset) as usize;
        &bytes[start..start + t.n_bytes() as usize]
    }

    /// Lets the resident set drop the pages of `t`'s data once it has been read (a mapped input
    /// only; see `ffi::mmap::release`). Reading `t` again still works and gives the same bytes.
    /// Long jobs over big models call this after each tensor, so peak memory stays near the
    /// working set instead of growing to the whole file.
    pub fn release(&self, t: &TensorInfo) {
        if let (Backing::Mapped(map), data_offset) = self.backing_of(t) {
            let start = (data_offset + t.offset) as usize;
            crate::ffi::mmap::release(map, start..start + t.n_bytes() as usize);
        }
    }

    /// The bytes of rows `rows` of tensor `t` (a row is `dims[0]` elements, whole blocks; rows
    /// count over all outer dimensions). An empty range gives an empty slice. Rows past the end
    /// of the tensor, or an info whose data does not lie in this file, are an error.
    pub fn tensor_rows(&self, t: &TensorInfo, rows: Range<u64>) -> Result<&[u8], GgufError> {
        let out_of_range = |problem: String| GgufError::OutOfRange {
            path: self.path.clone(),
            tensor: t.name.clone(),
            problem,
        };
        let n_rows = t.n_rows();
        if rows.start > rows.end || rows.end > n_rows {
            return Err(out_of_range(format!("rows {}..{} asked for, the tensor has {n_rows}", rows.start, rows.end)));
        }
        let row_bytes = t
            .ggml_type
            .bytes_for(t.row_len())
            .ok_or_else(|| out_of_range(format!("row length {} is not whole {} blocks", t.row_len(), t.ggml_type)))?;
        let (bytes, data_offset) = self.data_of(t);
        let span = data_offset
            .checked_add(t.offset)
            .and_then(|base| Some((base.checked_add(rows.start.checked_mul(row_bytes)?)?, base.checked_add(rows.end.checked_mul(row_bytes)?)?)))
            .and_then(|(s, e)| Some(usize::try_from(s).ok()?..usize::try_from(e).ok()?));
        span.and_then(|r| bytes.get(r))
            .ok_or_else(|| out_of_range(format!("data at offset {} does not lie in this file", t.offset)))
    }

    /// `general.architecture`, e.g. "gemma3".
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }
}

