//! A bounds-checked little-endian reader over a GGUF file's bytes: every read names its field
//! and byte offset when it fails, and counts that will size an allocation are checked against
//! the bytes that are left first.

use std::path::Path;

use super::error::GgufError;
use super::reader::MAX_ARRAY_DEPTH;
use super::types::{MetaType, MetaValue};

/// Vectors sized by a count read from the file reserve at most this many slots up front and grow
/// as items are actually read, so a lying count cannot make a large allocation by itself.
pub(super) const MAX_RESERVE: usize = 4096;

/// A bounds-checked reader over the file's bytes that knows its offset for error messages.
pub(super) struct Cursor<'a> {
    pub(super) path: &'a Path,
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn err(&self, field: &str, problem: impl Into<String>) -> GgufError {
        GgufError::malformed(self.path, self.pos as u64, field, problem)
    }
    pub(super) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
    pub(super) fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], GgufError> {
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
    pub(super) fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], GgufError> {
        Ok(self.take(N, field)?.try_into().expect("take returned N bytes"))
    }
    pub(super) fn u32(&mut self, field: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    pub(super) fn u64(&mut self, field: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    /// A count that will size an allocation: refused when `count * min_item_bytes` exceeds what
    /// is left of the file.
    pub(super) fn count(&mut self, field: &str, min_item_bytes: usize) -> Result<usize, GgufError> {
        let at = self.pos;
        let n = self.u64(field)?;
        self.check_count(at, n, field, min_item_bytes)
    }
    /// Checks a count read earlier at `at` against what is left of the file now.
    pub(super) fn check_count(&self, at: usize, n: u64, field: &str, min_item_bytes: usize) -> Result<usize, GgufError> {
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
    pub(super) fn string_bytes(&mut self, field: &str) -> Result<Vec<u8>, GgufError> {
        let len = self.count(field, 1)?;
        Ok(self.take(len, field)?.to_vec())
    }
    pub(super) fn utf8(&mut self, field: &str) -> Result<String, GgufError> {
        let at = self.pos;
        let raw = self.string_bytes(field)?;
        String::from_utf8(raw).map_err(|e| {
            GgufError::malformed(self.path, at as u64, field, format!("is not valid UTF-8 ({e})"))
        })
    }

    pub(super) fn value(&mut self, ty: MetaType, field: &str, depth: u32) -> Result<MetaValue, GgufError> {
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

