//! Reads and validates a GGUF file (v2/v3) through a memory map.
//!
//! Nothing read from the file is trusted before it is checked: every count and length is compared
//! with the bytes that are left before anything is allocated for it, nesting is capped, tensor
//! extents must lie inside the data section without overlapping, and each failure names the file,
//! the field and the byte offset. Metadata keeps its exact value types (see `types::MetaValue`).

use std::collections::HashSet;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::error::GgufError;
use super::types::{GgmlType, MetaType, MetaValue, TensorInfo};

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
/// Vectors sized by a count read from the file reserve at most this many slots up front and grow
/// as items are actually read, so a lying count cannot make a large allocation by itself.
const MAX_RESERVE: usize = 4096;

/// Where the bytes of a parsed file live: a read-only map of a file, or an owned buffer
/// (tests, generated files).
enum Backing {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

/// A parsed, validated GGUF file. Tensor data stays in the map and is borrowed on demand.
pub struct GgufFile {
    path: PathBuf,
    backing: Backing,
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
    /// Maps and parses `path`. The map is read-only: the input model is never modified.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
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
        let header = parse_header(&path, bytes)?;
        Ok(GgufFile {
            path,
            backing,
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

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
        }
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
        let start = (self.data_offset + t.offset) as usize;
        &self.bytes()[start..start + t.n_bytes() as usize]
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
        let span = self
            .data_offset
            .checked_add(t.offset)
            .and_then(|base| Some((base.checked_add(rows.start.checked_mul(row_bytes)?)?, base.checked_add(rows.end.checked_mul(row_bytes)?)?)))
            .and_then(|(s, e)| Some(usize::try_from(s).ok()?..usize::try_from(e).ok()?));
        span.and_then(|r| self.bytes().get(r))
            .ok_or_else(|| out_of_range(format!("data at offset {} does not lie in this file", t.offset)))
    }

    /// `general.architecture`, e.g. "gemma3".
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }
}

/// Everything before the data section, parsed and checked.
struct Header {
    version: u32,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_offset: u64,
}

/// A bounds-checked reader over the file's bytes that knows its offset for error messages.
struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, field: &str, problem: impl Into<String>) -> GgufError {
        GgufError::malformed(self.path, self.pos as u64, field, problem)
    }
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(self.err(
                field,
                format!("needs {n} bytes but the file ends after {}", self.remaining()),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], GgufError> {
        Ok(self.take(N, field)?.try_into().expect("take returned N bytes"))
    }
    fn u32(&mut self, field: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    /// A count that will size an allocation: refused when `count * min_item_bytes` exceeds what
    /// is left of the file.
    fn count(&mut self, field: &str, min_item_bytes: usize) -> Result<usize, GgufError> {
        let at = self.pos;
        let n = self.u64(field)?;
        self.check_count(at, n, field, min_item_bytes)
    }
    /// Checks a count read earlier at `at` against what is left of the file now.
    fn check_count(&self, at: usize, n: u64, field: &str, min_item_bytes: usize) -> Result<usize, GgufError> {
        let need = n.checked_mul(min_item_bytes as u64);
        match need {
            Some(need) if need <= self.remaining() as u64 => Ok(n as usize),
            _ => Err(GgufError::malformed(
                self.path,
                at as u64,
                field,
                format!(
                    "count {n} needs at least {} bytes but only {} are left",
                    need.map_or_else(|| "2^64+".to_string(), |v| v.to_string()),
                    self.remaining()
                ),
            )),
        }
    }
    fn string_bytes(&mut self, field: &str) -> Result<Vec<u8>, GgufError> {
        let len = self.count(field, 1)?;
        Ok(self.take(len, field)?.to_vec())
    }
    fn utf8(&mut self, field: &str) -> Result<String, GgufError> {
        let at = self.pos;
        let raw = self.string_bytes(field)?;
        String::from_utf8(raw).map_err(|e| {
            GgufError::malformed(self.path, at as u64, field, format!("is not valid UTF-8 ({e})"))
        })
    }

    fn value(&mut self, ty: MetaType, field: &str, depth: u32) -> Result<MetaValue, GgufError> {
        Ok(match ty {
            MetaType::U8 => MetaValue::U8(self.array::<1>(field)?[0]),
            MetaType::I8 => MetaValue::I8(self.array::<1>(field)?[0] as i8),
            MetaType::U16 => MetaValue::U16(u16::from_le_bytes(self.array(field)?)),
            MetaType::I16 => MetaValue::I16(i16::from_le_bytes(self.array(field)?)),
            MetaType::U32 => MetaValue::U32(self.u32(field)?),
            MetaType::I32 => MetaValue::I32(i32::from_le_bytes(self.array(field)?)),
            MetaType::F32 => MetaValue::F32(f32::from_le_bytes(self.array(field)?)),
            MetaType::U64 => MetaValue::U64(self.u64(field)?),
            MetaType::I64 => MetaValue::I64(i64::from_le_bytes(self.array(field)?)),
            MetaType::F64 => MetaValue::F64(f64::from_le_bytes(self.array(field)?)),
            MetaType::Bool => {
                let b = self.array::<1>(field)?[0];
                if b > 1 {
                    return Err(self.err(field, format!("bool byte is {b}, not 0 or 1")));
                }
                MetaValue::Bool(b == 1)
            }
            MetaType::String => MetaValue::String(self.string_bytes(field)?),
            MetaType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(field, format!("arrays nested deeper than {MAX_ARRAY_DEPTH}")));
                }
                let at = self.pos;
                let tag = self.u32(field)?;
                let elem = MetaType::from_u32(tag).ok_or_else(|| {
                    GgufError::malformed(self.path, at as u64, field, format!("unknown array element type {tag}"))
                })?;
                // Strings and arrays take at least 8 bytes (their own length/count).
                let min = elem.fixed_size().unwrap_or(8);
                let n = self.count(field, min)?;
                let mut items = Vec::with_capacity(n.min(MAX_RESERVE));
                for _ in 0..n {
                    items.push(self.value(elem, field, depth + 1)?);
                }
                MetaValue::Array { elem, items }
            }
        })
    }
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header, GgufError> {
    let mut c = Cursor { path, bytes, pos: 0 };
    let magic = c.array::<4>("magic")?;
    if &magic != GGUF_MAGIC {
        return Err(GgufError::malformed(
            path,
            0,
            "magic",
            format!("expected \"GGUF\", found {:?}: not a GGUF file", String::from_utf8_lossy(&magic)),
        ));
    }
    let version = c.u32("version")?;
    if version != 2 && version != 3 {
        let hint = if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
            " (this is a big-endian GGUF; only little-endian files are read)"
        } else if version == 1 {
            " (GGUF v1 predates 64-bit counts; convert the model with a current llama.cpp)"
        } else {
            ""
        };
        return Err(GgufError::malformed(
            path,
            4,
            "version",
            format!("GGUF version {version} is not supported (only 2 and 3){hint}"),
        ));
    }
    // Checked against what is left once the metadata is read (nothing is sized by it before), so
    // a file cut short in its metadata is reported there, not as a bad tensor count.
    let tensor_count_at = c.pos;
    let tensor_count = c.u64("tensor_count")?;
    // A key/value pair takes at least 8 (key len) + 4 (type) + 1 (smallest value).
    let n_kv = c.count("metadata_kv_count", 13)?;

    let mut metadata = Vec::with_capacity(n_kv.min(MAX_RESERVE));
    let mut keys = HashSet::with_capacity(n_kv.min(MAX_RESERVE));
    let mut alignment_at = 0u64;
    for i in 0..n_kv {
        let key_at = c.pos;
        let key = c.utf8(&format!("metadata key #{i}"))?;
        if !keys.insert(key.clone()) {
            return Err(GgufError::malformed(path, key_at as u64, &format!("metadata key {key:?}"), "duplicate key"));
        }
        let field = format!("metadata {key:?}");
        let tag_at = c.pos;
        if key == "general.alignment" {
            alignment_at = tag_at as u64;
        }
        let tag = c.u32(&field)?;
        let ty = MetaType::from_u32(tag).ok_or_else(|| {
            GgufError::malformed(path, tag_at as u64, &field, format!("unknown value type {tag}"))
        })?;
        let value = c.value(ty, &field, 0)?;
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, MetaValue::U32(a))) if *a != 0 && a.is_power_of_two() => *a as u64,
        Some((_, v)) => {
            return Err(GgufError::malformed(
                path,
                alignment_at,
                "general.alignment",
                format!("must be a non-zero power of two stored as u32, found {v:?}"),
            ));
        }
    };

    // A tensor info takes at least 8 (name len) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset).
    let n_tensors = c.check_count(tensor_count_at, tensor_count, "tensor_count", 32)?;
    let mut tensors = Vec::with_capacity(n_tensors.min(MAX_RESERVE));
    let mut names = HashSet::with_capacity(n_tensors.min(MAX_RESERVE));
    for i in 0..n_tensors {
        let at = c.pos as u64;
        let name = c.utf8(&format!("tensor #{i} name"))?;
        let field = format!("tensor {name:?}");
        if name.len() > MAX_TENSOR_NAME {
            return Err(GgufError::malformed(
                path,
                at,
                &field,
                format!("name is {} bytes long; ggml allows at most {MAX_TENSOR_NAME}", name.len()),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(GgufError::malformed(path, at, &field, "duplicate tensor name"));
        }
        let n_dims = c.u32(&field)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(c.err(&field, format!("has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = c.u64(&field)?;
            if d == 0 || d > i64::MAX as u64 {
                return Err(c.err(&field, format!("dimension {d} is out of range")));
            }
            dims.push(d);
        }
        let type_at = c.pos as u64;
        let type_id = c.u32(&field)?;
        let ggml_type = GgmlType::from_u32(type_id).ok_or_else(|| {
            GgufError::malformed(path, type_at, &field, format!("unknown ggml type id {type_id}"))
        })?;
        let offset = c.u64(&field)?;
        let n_elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        let n_bytes = n_elements.and_then(|n| ggml_type.bytes_for(n));
        if n_elements.is_none_or(|n| n > i64::MAX as u64) || n_bytes.is_none() {
            return Err(GgufError::malformed(path, at, &field, "element count or byte size overflows"));
        }
        if !dims[0].is_multiple_of(ggml_type.block_size()) {
            return Err(GgufError::malformed(
                path,
                at,
                &field,
                format!("row length {} is not a multiple of the {} block size {}", dims[0], ggml_type, ggml_type.block_size()),
            ));
        }
        if !offset.is_multiple_of(alignment) {
            return Err(GgufError::malformed(
                path,
                at,
                &field,
                format!("data offset {offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        tensors.push(TensorInfo { name, dims, ggml_type, offset });
    }

    let header_end = c.pos as u64;
    let data_offset = header_end.div_ceil(alignment) * alignment;
    let file_len = bytes.len() as u64;
    if !tensors.is_empty() && data_offset > file_len {
        return Err(GgufError::malformed(path, header_end, "data section", "the file ends before the data section"));
    }
    // Extents inside the file and pairwise disjoint (checked on the sorted list).
    let mut extents: Vec<(u64, u64, &str)> = Vec::with_capacity(tensors.len());
    for t in &tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes()));
        match end {
            Some(end) if end <= file_len => extents.push((t.offset, t.offset + t.n_bytes(), &t.name)),
            _ => {
                return Err(GgufError::malformed(
                    path,
                    data_offset.saturating_add(t.offset),
                    &format!("tensor {:?}", t.name),
                    format!(
                        "data [{} .. +{}) runs past the end of the file ({file_len} bytes)",
                        data_offset.saturating_add(t.offset),
                        t.n_bytes()
                    ),
                ));
            }
        }
    }
    extents.sort_unstable();
    for w in extents.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(GgufError::malformed(
                path,
                data_offset + w[1].0,
                &format!("tensor {:?}", w[1].2),
                format!("data overlaps tensor {:?}", w[0].2),
            ));
        }
    }
    Ok(Header { version, metadata, tensors, alignment, data_offset })
}
