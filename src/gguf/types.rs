//! Plain-data description of the GGUF format: tensor element types, metadata value types and
//! values, and tensor infos. Nothing here touches a file; `reader` and `writer` do the I/O.
//!
//! Type ids and block geometry mirror ggml.h / ggml.c (`ggml_type`, `type_traits`), so the GGUF
//! layer can check tensor extents without linking the C library. A test in `ffi::ggml` checks
//! this table against ggml's own `ggml_blck_size`/`ggml_type_size`.

use std::fmt;

/// A ggml tensor element type (`enum ggml_type` in ggml.h). Unknown ids are rejected when a file
/// is read, so every tensor in a parsed file has one of these.
#[allow(non_camel_case_types, missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
    Q2_0,
}

/// (type, ggml id, name, elements per block, bytes per block) — from ggml.h and ggml.c.
const TYPE_TABLE: &[(GgmlType, u32, &str, u64, u64)] = &[
    (GgmlType::F32, 0, "F32", 1, 4),
    (GgmlType::F16, 1, "F16", 1, 2),
    (GgmlType::Q4_0, 2, "Q4_0", 32, 18),
    (GgmlType::Q4_1, 3, "Q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "Q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "Q5_1", 32, 24),
    (GgmlType::Q8_0, 8, "Q8_0", 32, 34),
    (GgmlType::Q8_1, 9, "Q8_1", 32, 36),
    (GgmlType::Q2_K, 10, "Q2_K", 256, 84),
    (GgmlType::Q3_K, 11, "Q3_K", 256, 110),
    (GgmlType::Q4_K, 12, "Q4_K", 256, 144),
    (GgmlType::Q5_K, 13, "Q5_K", 256, 176),
    (GgmlType::Q6_K, 14, "Q6_K", 256, 210),
    (GgmlType::Q8_K, 15, "Q8_K", 256, 292),
    (GgmlType::IQ2_XXS, 16, "IQ2_XXS", 256, 66),
    (GgmlType::IQ2_XS, 17, "IQ2_XS", 256, 74),
    (GgmlType::IQ3_XXS, 18, "IQ3_XXS", 256, 98),
    (GgmlType::IQ1_S, 19, "IQ1_S", 256, 50),
    (GgmlType::IQ4_NL, 20, "IQ4_NL", 32, 18),
    (GgmlType::IQ3_S, 21, "IQ3_S", 256, 110),
    (GgmlType::IQ2_S, 22, "IQ2_S", 256, 82),
    (GgmlType::IQ4_XS, 23, "IQ4_XS", 256, 136),
    (GgmlType::I8, 24, "I8", 1, 1),
    (GgmlType::I16, 25, "I16", 1, 2),
    (GgmlType::I32, 26, "I32", 1, 4),
    (GgmlType::I64, 27, "I64", 1, 8),
    (GgmlType::F64, 28, "F64", 1, 8),
    (GgmlType::IQ1_M, 29, "IQ1_M", 256, 56),
    (GgmlType::BF16, 30, "BF16", 1, 2),
    (GgmlType::TQ1_0, 34, "TQ1_0", 256, 54),
    (GgmlType::TQ2_0, 35, "TQ2_0", 256, 66),
    (GgmlType::MXFP4, 39, "MXFP4", 32, 17),
    (GgmlType::NVFP4, 40, "NVFP4", 64, 36),
    (GgmlType::Q1_0, 41, "Q1_0", 128, 18),
    (GgmlType::Q2_0, 42, "Q2_0", 64, 18),
];

impl GgmlType {
    fn row(self) -> &'static (GgmlType, u32, &'static str, u64, u64) {
        TYPE_TABLE.iter().find(|r| r.0 == self).expect("every GgmlType is in TYPE_TABLE")
    }
    /// Every type this crate knows, in id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        TYPE_TABLE.iter().map(|r| r.0)
    }
    /// The type with ggml id `id`, or `None` for an id ggml does not define (or removed).
    pub fn from_u32(id: u32) -> Option<GgmlType> {
        TYPE_TABLE.iter().find(|r| r.1 == id).map(|r| r.0)
    }
    /// The ggml id (`enum ggml_type`).
    pub fn to_u32(self) -> u32 {
        self.row().1
    }
    /// ggml's name for the type ("Q4_K").
    pub fn name(self) -> &'static str {
        self.row().2
    }
    /// Elements per quantization block (1 for plain number types).
    pub fn block_size(self) -> u64 {
        self.row().3
    }
    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        self.row().4
    }
    /// True for F32/F16/BF16/F64: element-wise types without blocks.
    pub fn is_float(self) -> bool {
        matches!(self, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::F64)
    }
    /// Bytes of `n_elements` elements, or `None` when `n_elements` is not a whole number of
    /// blocks or the size overflows.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        if !n_elements.is_multiple_of(self.block_size()) {
            return None;
        }
        (n_elements / self.block_size()).checked_mul(self.type_size())
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type tag of a metadata value (`enum gguf_type` in gguf.h).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetaType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl MetaType {
    /// The tag with GGUF id `id`, or `None` when the id is not defined.
    pub fn from_u32(id: u32) -> Option<MetaType> {
        use MetaType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }
    /// The GGUF id.
    pub fn to_u32(self) -> u32 {
        self as u32
    }
    /// Bytes of one value of a fixed-size type; `None` for String and Array.
    pub fn fixed_size(self) -> Option<usize> {
        use MetaType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }
}

/// One metadata value with its exact GGUF type kept, so a file can be written back unchanged.
/// Strings are kept as raw bytes: GGUF promises UTF-8, but tokenizer vocabularies do not always
/// keep that promise, and a faithful rewrite must not "repair" them.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(Vec<u8>),
    /// A typed array: `elem` is the element tag (kept even when the array is empty).
    Array { elem: MetaType, items: Vec<MetaValue> },
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    /// The value's type tag.
    pub fn meta_type(&self) -> MetaType {
        match self {
            MetaValue::U8(_) => MetaType::U8,
            MetaValue::I8(_) => MetaType::I8,
            MetaValue::U16(_) => MetaType::U16,
            MetaValue::I16(_) => MetaType::I16,
            MetaValue::U32(_) => MetaType::U32,
            MetaValue::I32(_) => MetaType::I32,
            MetaValue::F32(_) => MetaType::F32,
            MetaValue::Bool(_) => MetaType::Bool,
            MetaValue::String(_) => MetaType::String,
            MetaValue::Array { .. } => MetaType::Array,
            MetaValue::U64(_) => MetaType::U64,
            MetaValue::I64(_) => MetaType::I64,
            MetaValue::F64(_) => MetaType::F64,
        }
    }
    /// A string value from Rust text.
    pub fn string(s: impl AsRef<str>) -> MetaValue {
        MetaValue::String(s.as_ref().as_bytes().to_vec())
    }
    /// The value as text, when it is a string holding valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
    /// Any unsigned or non-negative signed integer value, widened.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v as u64),
            MetaValue::U16(v) => Some(v as u64),
            MetaValue::U32(v) => Some(v as u64),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    /// Any float value, widened.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v as f64),
            MetaValue::F64(v) => Some(v),
            _ => None,
        }
    }
    /// The items of an array value.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array { items, .. } => Some(items),
            _ => None,
        }
    }
    /// A short human-readable rendering; long arrays are summarised.
    pub fn display_short(&self) -> String {
        match self {
            MetaValue::String(b) => {
                let s = String::from_utf8_lossy(b);
                if s.chars().count() > 60 {
                    format!("{:?}…", s.chars().take(60).collect::<String>())
                } else {
                    format!("{s:?}")
                }
            }
            MetaValue::Array { elem, items } => format!("[{:?}; {}]", elem, items.len()),
            MetaValue::U8(v) => v.to_string(),
            MetaValue::I8(v) => v.to_string(),
            MetaValue::U16(v) => v.to_string(),
            MetaValue::I16(v) => v.to_string(),
            MetaValue::U32(v) => v.to_string(),
            MetaValue::I32(v) => v.to_string(),
            MetaValue::F32(v) => v.to_string(),
            MetaValue::Bool(v) => v.to_string(),
            MetaValue::U64(v) => v.to_string(),
            MetaValue::I64(v) => v.to_string(),
            MetaValue::F64(v) => v.to_string(),
        }
    }
}

/// One entry of the tensor table. `dims` are in GGUF order: `dims[0]` is the innermost
/// (contiguous) dimension, so a linear weight W (out × in) has `dims == [in, out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, innermost first.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Total number of elements (saturating: infos read from a file were checked not to
    /// overflow, hand-made ones give u64::MAX rather than a wrong small number).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).unwrap_or(u64::MAX)
    }
    /// Elements per row (the innermost dimension).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }
    /// Number of rows (product of all outer dimensions).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).try_fold(1u64, |acc, &d| acc.checked_mul(d)).unwrap_or(u64::MAX)
    }
    /// Bytes of the tensor's data (validated on read, so this does not overflow there).
    pub fn n_bytes(&self) -> u64 {
        self.ggml_type.bytes_for(self.n_elements()).unwrap_or(u64::MAX)
    }
    /// Bytes of one row.
    pub fn row_bytes(&self) -> u64 {
        self.ggml_type.bytes_for(self.row_len()).unwrap_or(u64::MAX)
    }
}
