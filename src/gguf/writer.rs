//! Writes GGUF v3 files as a stream: header, metadata, tensor infos, then each tensor's bytes at
//! its aligned offset, so a model is rewritten without holding it in memory.
//!
//! The writer is plain data (a metadata list and a tensor list, as gguf-py's GGUFWriter keeps
//! them) plus `write`, which asks a callback for each tensor's bytes in table order and checks
//! that exactly the declared number arrived. Files are written atomically: to a temporary file in
//! the target directory, fsync'd, then renamed over the target.

use std::collections::HashSet;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::error::GgufError;
use super::reader::{DEFAULT_ALIGNMENT, GgufFile, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_TENSOR_NAME};
use super::types::{GgmlType, MetaType, MetaValue, TensorInfo};

/// Name, shape and type of a tensor to write; its offset is computed by the writer.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Dimensions, innermost first (GGUF order).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
}

impl TensorSpec {
    /// Bytes of the tensor's data.
    pub fn n_bytes(&self) -> u64 {
        let n = self.dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        n.and_then(|n| self.ggml_type.bytes_for(n)).unwrap_or(u64::MAX)
    }
}

impl From<&TensorInfo> for TensorSpec {
    fn from(t: &TensorInfo) -> TensorSpec {
        TensorSpec { name: t.name.clone(), dims: t.dims.clone(), ggml_type: t.ggml_type }
    }
}

/// A GGUF file to be written: metadata and tensor table as plain data.
#[derive(Clone, Debug)]
pub struct GgufWriter {
    /// GGUF version written (3 for new files; kept from the source by `from_file`).
    pub version: u32,
    /// Metadata in the order it will be written.
    pub metadata: Vec<(String, MetaValue)>,
    /// Tensors in the order their infos and data will be written.
    pub tensors: Vec<TensorSpec>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter { version: 3, metadata: Vec::new(), tensors: Vec::new() }
    }
}

impl GgufWriter {
    /// An empty GGUF v3 file.
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// The same version, metadata and tensor table as `src`, ready for edits.
    pub fn from_file(src: &GgufFile) -> GgufWriter {
        GgufWriter {
            version: src.version,
            metadata: src.metadata.clone(),
            tensors: src.tensors.iter().map(TensorSpec::from).collect(),
        }
    }

    /// Sets `key`: replaced in place when present (keeping its position), else appended.
    pub fn set(&mut self, key: &str, value: MetaValue) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
    }

    /// Removes `key` if present.
    pub fn remove(&mut self, key: &str) {
        self.metadata.retain(|(k, _)| k != key);
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Appends a tensor to the table.
    pub fn add_tensor(&mut self, spec: TensorSpec) {
        self.tensors.push(spec);
    }

    /// The data alignment this file will use (`general.alignment` or 32).
    pub fn alignment(&self) -> u64 {
        match self.get("general.alignment") {
            Some(MetaValue::U32(a)) if *a != 0 && a.is_power_of_two() => *a as u64,
            _ => DEFAULT_ALIGNMENT,
        }
    }

    /// Offsets of each tensor's data relative to the data section: packed in table order, each
    /// rounded up to the alignment (what gguf-py and llama.cpp write).
    pub fn offsets(&self) -> Vec<u64> {
        let align = self.alignment();
        let mut next = 0u64;
        self.tensors
            .iter()
            .map(|t| {
                let here = next;
                next = (here + t.n_bytes()).div_ceil(align) * align;
                here
            })
            .collect()
    }

    /// The encoded header (everything before the data section, padding included).
    pub fn header_bytes(&self) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"GGUF");
        h.extend_from_slice(&self.version.to_le_bytes());
        h.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut h, key.as_bytes());
            h.extend_from_slice(&value.meta_type().to_u32().to_le_bytes());
            put_value(&mut h, value);
        }
        for (t, off) in self.tensors.iter().zip(self.offsets()) {
            put_str(&mut h, t.name.as_bytes());
            h.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&t.ggml_type.to_u32().to_le_bytes());
            h.extend_from_slice(&off.to_le_bytes());
        }
        let align = self.alignment() as usize;
        h.resize(h.len().div_ceil(align) * align, 0);
        h
    }

    /// Checks that the file this writer describes is one the reader (and llama.cpp) accepts:
    /// version 2 or 3, unique keys, `general.alignment` a power-of-two u32, arrays whose items
    /// all have the element type (nested at most `MAX_ARRAY_DEPTH`), unique tensor names of at
    /// most `MAX_TENSOR_NAME` bytes, 1 to 4 non-zero dimensions, rows of whole blocks and sizes
    /// that do not overflow. `write_to` calls it first, so nothing invalid is ever written.
    pub fn validate(&self, name: &Path) -> Result<(), GgufError> {
        let bad = |problem: String| GgufError::Write { path: name.to_path_buf(), problem };
        if self.version != 2 && self.version != 3 {
            return Err(bad(format!("GGUF version {} cannot be written (only 2 and 3)", self.version)));
        }
        let mut keys = HashSet::new();
        for (key, value) in &self.metadata {
            if !keys.insert(key.as_str()) {
                return Err(bad(format!("metadata key {key:?} appears twice")));
            }
            check_value(value, 0).map_err(|p| bad(format!("metadata {key:?}: {p}")))?;
        }
        if let Some(v) = self.get("general.alignment")
            && !matches!(v, MetaValue::U32(a) if *a != 0 && a.is_power_of_two())
        {
            return Err(bad(format!("general.alignment must be a non-zero power of two stored as u32, found {v:?}")));
        }
        let mut names = HashSet::new();
        for t in &self.tensors {
            let problem = if !names.insert(t.name.as_str()) {
                Some("appears twice".to_string())
            } else if t.name.len() > MAX_TENSOR_NAME {
                Some(format!("name is {} bytes long; ggml allows at most {MAX_TENSOR_NAME}", t.name.len()))
            } else if t.dims.is_empty() || t.dims.len() > MAX_DIMS as usize {
                Some(format!("has {} dimensions (1 to {MAX_DIMS} allowed)", t.dims.len()))
            } else if t.dims.iter().any(|&d| d == 0 || d > i64::MAX as u64) {
                Some(format!("dimensions {:?} are out of range", t.dims))
            } else if !t.dims[0].is_multiple_of(t.ggml_type.block_size()) {
                Some(format!(
                    "row length {} is not a multiple of the {} block size {}",
                    t.dims[0],
                    t.ggml_type,
                    t.ggml_type.block_size()
                ))
            } else if t.dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).and_then(|n| t.ggml_type.bytes_for(n)).is_none() {
                Some("element count or byte size overflows".to_string())
            } else {
                None
            };
            if let Some(p) = problem {
                return Err(bad(format!("tensor {:?}: {p}", t.name)));
            }
        }
        Ok(())
    }

    /// Streams the file to `out`. `data(i, spec, sink)` must write exactly `spec.n_bytes()`
    /// bytes of tensor `i`; padding is added here. `name` is used in error messages.
    pub fn write_to<W, F>(&self, name: &Path, out: W, mut data: F) -> Result<W, GgufError>
    where
        W: Write,
        F: FnMut(usize, &TensorSpec, &mut dyn Write) -> io::Result<()>,
    {
        self.validate(name)?;
        let io_err = |source| GgufError::Io { path: name.to_path_buf(), source };
        let mut out = CountingWriter { inner: out, written: 0 };
        let header = self.header_bytes();
        out.write_all(&header).map_err(io_err)?;
        let data_start = header.len() as u64;
        for (i, (t, off)) in self.tensors.iter().zip(self.offsets()).enumerate() {
            let pad = data_start + off - out.written;
            out.write_all(&vec![0u8; pad as usize]).map_err(io_err)?;
            let before = out.written;
            data(i, t, &mut out).map_err(io_err)?;
            let got = out.written - before;
            if got != t.n_bytes() {
                return Err(GgufError::Write {
                    path: name.to_path_buf(),
                    problem: format!("tensor {:?}: {} bytes were supplied, {} declared", t.name, got, t.n_bytes()),
                });
            }
        }
        // Trailing padding to the alignment, as gguf-py writes it.
        let align = self.alignment();
        if !self.tensors.is_empty() {
            let end = out.written.div_ceil(align) * align;
            out.write_all(&vec![0u8; (end - out.written) as usize]).map_err(io_err)?;
        }
        out.flush().map_err(io_err)?;
        Ok(out.inner)
    }

    /// Writes the file atomically to `path` (temp file beside it, fsync, rename). Refuses when
    /// `path` is the same file as `input` (the model being rewritten is never modified).
    pub fn write_atomic<F>(&self, path: &Path, input: Option<&Path>, data: F) -> Result<(), GgufError>
    where
        F: FnMut(usize, &TensorSpec, &mut dyn Write) -> io::Result<()>,
    {
        crate::atomic::write_atomic(path, input, |file| {
            let w = BufWriter::with_capacity(1 << 20, file);
            self.write_to(path, w, data)?
                .into_inner()
                .map_err(|e| GgufError::Io { path: path.to_path_buf(), source: e.into_error() })?;
            Ok(())
        })
    }
}

/// Counts bytes so each tensor can be placed at its offset and checked for its size.
struct CountingWriter<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Array items must all carry the array's element tag, at every nesting level.
fn check_value(v: &MetaValue, depth: u32) -> Result<(), String> {
    if let MetaValue::Array { elem, items } = v {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"));
        }
        for (i, item) in items.iter().enumerate() {
            if item.meta_type() != *elem {
                return Err(format!("array of {elem:?} holds a {:?} at index {i}", item.meta_type()));
            }
            check_value(item, depth + 1)?;
        }
    }
    Ok(())
}

fn put_str(h: &mut Vec<u8>, s: &[u8]) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s);
}

fn put_value(h: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => h.push(*x),
        MetaValue::I8(x) => h.push(*x as u8),
        MetaValue::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => h.push(*x as u8),
        MetaValue::String(s) => put_str(h, s),
        MetaValue::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Array { elem, items } => {
            h.extend_from_slice(&elem.to_u32().to_le_bytes());
            h.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                debug_assert_eq!(item.meta_type(), *elem, "array item type differs from its tag");
                put_value(h, item);
            }
        }
    }
}

/// A typed array value from Rust items (all must have type `elem`).
pub fn array(elem: MetaType, items: Vec<MetaValue>) -> MetaValue {
    MetaValue::Array { elem, items }
}
