//! Parses and checks everything before a GGUF file's data section, in the three parts gguf-py's
//! reader reads it in: the metadata key/values, the tensor infos, then the data extents they
//! claim. Each check runs in file order, so the first problem in the file is the one reported.

use std::collections::HashSet;
use std::path::Path;

use super::cursor::{Cursor, MAX_RESERVE};
use super::error::GgufError;
use super::reader::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS, MAX_TENSOR_NAME};
use super::types::{GgmlType, MetaType, MetaValue, TensorInfo};

/// Everything before the data section, parsed and checked.
pub(super) struct Header {
    pub(super) version: u32,
    pub(super) metadata: Vec<(String, MetaValue)>,
    pub(super) tensors: Vec<TensorInfo>,
    pub(super) alignment: u64,
    pub(super) data_offset: u64,
}

/// The parsed metadata section and where `general.alignment`'s type tag was (for its error).
struct Metadata {
    entries: Vec<(String, MetaValue)>,
    alignment_at: u64,
}

/// Parses the header of the GGUF image `bytes`; `path` names it in errors.
pub(super) fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header, GgufError> {
    let mut c = Cursor { path, bytes, pos: 0 };
    check_magic(&mut c)?;
    let version = read_version(&mut c)?;
    // Checked against what is left once the metadata is read (nothing is sized by it before), so
    // a file cut short in its metadata is reported there, not as a bad tensor count.
    let tensor_count_at = c.pos;
    let tensor_count = c.u64("tensor_count")?;
    // A key/value pair takes at least 8 (key len) + 4 (type) + 1 (smallest value).
    let n_kv = c.count("metadata_kv_count", 13)?;
    let metadata = read_metadata(&mut c, n_kv)?;
    let alignment = alignment_of(path, &metadata)?;

    // A tensor info takes at least 8 (name len) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset).
    let n_tensors = c.check_count(tensor_count_at, tensor_count, "tensor_count", 32)?;
    let tensors = read_tensor_infos(&mut c, n_tensors, alignment)?;

    let header_end = c.pos as u64;
    let data_offset = header_end.div_ceil(alignment) * alignment;
    check_data_extents(path, bytes.len() as u64, header_end, data_offset, &tensors)?;
    Ok(Header { version, metadata: metadata.entries, tensors, alignment, data_offset })
}

fn check_magic(c: &mut Cursor) -> Result<(), GgufError> {
    let magic = c.array::<4>("magic")?;
    if &magic != GGUF_MAGIC {
        return Err(GgufError::malformed(
            c.path,
            0,
            "magic",
            format!("expected \"GGUF\", found {:?}: not a GGUF file", String::from_utf8_lossy(&magic)),
        ));
    }
    Ok(())
}

/// The format version; only 2 and 3 are read, with a hint for the usual wrong ones.
fn read_version(c: &mut Cursor) -> Result<u32, GgufError> {
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
            c.path,
            4,
            "version",
            format!("GGUF version {version} is not supported (only 2 and 3){hint}"),
        ));
    }
    Ok(version)
}

/// The `n_kv` metadata key/values, in file order; keys must be UTF-8 and unique.
fn read_metadata(c: &mut Cursor, n_kv: usize) -> Result<Metadata, GgufError> {
    let mut entries = Vec::with_capacity(n_kv.min(MAX_RESERVE));
    let mut keys = HashSet::with_capacity(n_kv.min(MAX_RESERVE));
    let mut alignment_at = 0u64;
    for i in 0..n_kv {
        let key_at = c.pos;
        let key = c.utf8(&format!("metadata key #{i}"))?;
        if !keys.insert(key.clone()) {
            return Err(GgufError::malformed(c.path, key_at as u64, &format!("metadata key {key:?}"), "duplicate key"));
        }
        let field = format!("metadata {key:?}");
        let tag_at = c.pos;
        if key == "general.alignment" {
            alignment_at = tag_at as u64;
        }
        let tag = c.u32(&field)?;
        let ty = MetaType::from_u32(tag).ok_or_else(|| {
            GgufError::malformed(c.path, tag_at as u64, &field, format!("unknown value type {tag}"))
        })?;
        let value = c.value(ty, &field, 0)?;
        entries.push((key, value));
    }
    Ok(Metadata { entries, alignment_at })
}

/// `general.alignment` when present (a non-zero power of two stored as u32), else the default.
fn alignment_of(path: &Path, metadata: &Metadata) -> Result<u64, GgufError> {
    match metadata.entries.iter().find(|(k, _)| k == "general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        Some((_, MetaValue::U32(a))) if *a != 0 && a.is_power_of_two() => Ok(*a as u64),
        Some((_, v)) => Err(GgufError::malformed(
            path,
            metadata.alignment_at,
            "general.alignment",
            format!("must be a non-zero power of two stored as u32, found {v:?}"),
        )),
    }
}

/// The `n_tensors` tensor infos, in file order; names must be unique.
fn read_tensor_infos(c: &mut Cursor, n_tensors: usize, alignment: u64) -> Result<Vec<TensorInfo>, GgufError> {
    let mut tensors = Vec::with_capacity(n_tensors.min(MAX_RESERVE));
    let mut names = HashSet::with_capacity(n_tensors.min(MAX_RESERVE));
    for i in 0..n_tensors {
        let at = c.pos as u64;
        let name = c.utf8(&format!("tensor #{i} name"))?;
        let field = format!("tensor {name:?}");
        if name.len() > MAX_TENSOR_NAME {
            return Err(GgufError::malformed(
                c.path,
                at,
                &field,
                format!("name is {} bytes long; ggml allows at most {MAX_TENSOR_NAME}", name.len()),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(GgufError::malformed(c.path, at, &field, "duplicate tensor name"));
        }
        tensors.push(read_tensor_info(c, name, &field, at, alignment)?);
    }
    Ok(tensors)
}

/// The rest of one tensor info after its name: dimensions, type and data offset, each checked
/// as ggml checks it. `at` is where the info began (errors about the whole tensor point there).
fn read_tensor_info(c: &mut Cursor, name: String, field: &str, at: u64, alignment: u64) -> Result<TensorInfo, GgufError> {
    let dims = read_dims(c, field)?;
    let type_at = c.pos as u64;
    let type_id = c.u32(field)?;
    let ggml_type = GgmlType::from_u32(type_id).ok_or_else(|| {
        GgufError::malformed(c.path, type_at, field, format!("unknown ggml type id {type_id}"))
    })?;
    let offset = c.u64(field)?;
    let n_elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    let n_bytes = n_elements.and_then(|n| ggml_type.bytes_for(n));
    if n_elements.is_none_or(|n| n > i64::MAX as u64) || n_bytes.is_none() {
        return Err(GgufError::malformed(c.path, at, field, "element count or byte size overflows"));
    }
    if !dims[0].is_multiple_of(ggml_type.block_size()) {
        return Err(GgufError::malformed(
            c.path,
            at,
            field,
            format!("row length {} is not a multiple of the {} block size {}", dims[0], ggml_type, ggml_type.block_size()),
        ));
    }
    if !offset.is_multiple_of(alignment) {
        return Err(GgufError::malformed(
            c.path,
            at,
            field,
            format!("data offset {offset} is not a multiple of the alignment {alignment}"),
        ));
    }
    Ok(TensorInfo { name, dims, ggml_type, offset })
}

/// The dimension count and the dimensions of one tensor (1 to `MAX_DIMS`, each 1 to i64::MAX).
fn read_dims(c: &mut Cursor, field: &str) -> Result<Vec<u64>, GgufError> {
    let n_dims = c.u32(field)?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(c.err(field, format!("has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        let d = c.u64(field)?;
        if d == 0 || d > i64::MAX as u64 {
            return Err(c.err(field, format!("dimension {d} is out of range")));
        }
        dims.push(d);
    }
    Ok(dims)
}

/// Every tensor's data lies inside the file, and no two overlap (checked on the sorted list).
fn check_data_extents(path: &Path, file_len: u64, header_end: u64, data_offset: u64, tensors: &[TensorInfo]) -> Result<(), GgufError> {
    if !tensors.is_empty() && data_offset > file_len {
        return Err(GgufError::malformed(path, header_end, "data section", "the file ends before the data section"));
    }
    let mut extents: Vec<(u64, u64, &str)> = Vec::with_capacity(tensors.len());
    for t in tensors {
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
    Ok(())
}
