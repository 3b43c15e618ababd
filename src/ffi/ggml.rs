//! ggml's quantization codecs, wrapped safely: dequantize any run of whole blocks of any tensor
//! type to f32 (`ggml_get_type_traits(t).to_float`), and quantize f32 rows back to a type
//! (`ggml_quantize_chunk`, optionally guided by an importance vector). Block geometry is checked
//! against ggml's own `ggml_blck_size`/`ggml_type_size` before any pointer crosses into C.

use std::ops::Range;

use llama_cpp_sys_2 as sys;

use crate::gguf::{GgmlType, GgufFile, TensorInfo};

/// Why a codec call was refused (before reaching C).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CodecError {
    /// The byte count does not match the element count for this type.
    #[error("{ty}: {bytes} bytes do not hold {elements} elements ({per_block} per {block_bytes}-byte block)")]
    SizeMismatch {
        /// Tensor type.
        ty: GgmlType,
        /// Bytes given.
        bytes: usize,
        /// Elements wanted.
        elements: usize,
        /// Elements per block.
        per_block: u64,
        /// Bytes per block.
        block_bytes: u64,
    },
    /// ggml has no conversion to f32 for this type.
    #[error("{0}: ggml cannot convert this type to f32")]
    NoDequantizer(GgmlType),
    /// ggml cannot quantize to this type (or not without an importance matrix).
    #[error("{0}: ggml cannot quantize to this type{1}")]
    NoQuantizer(GgmlType, &'static str),
    /// Rows are not a whole number of blocks, or the input is not a whole number of rows.
    #[error("{ty}: {len} values are not whole rows of {n_per_row} (rows must be multiples of {block})")]
    BadRows {
        /// Tensor type.
        ty: GgmlType,
        /// Values given.
        len: usize,
        /// Row length asked for.
        n_per_row: usize,
        /// Block size of the type.
        block: u64,
    },
    /// Rows were asked for that the tensor (or the file) does not hold.
    #[error("{0}")]
    OutOfRange(String),
    /// The importance vector is not one weight per column.
    #[error("{ty}: importance vector has {got} entries, rows have {n_per_row}")]
    BadImatrix {
        /// Tensor type.
        ty: GgmlType,
        /// Entries given.
        got: usize,
        /// Row length.
        n_per_row: usize,
    },
}

fn raw(ty: GgmlType) -> sys::ggml_type {
    ty.to_u32() as sys::ggml_type
}

/// ggml's elements per block for `ty` (from the C library, for cross-checking the Rust table).
pub fn c_block_size(ty: GgmlType) -> u64 {
    // SAFETY: a pure lookup in ggml's static type table; every GgmlType is a valid id.
    unsafe { sys::ggml_blck_size(raw(ty)) as u64 }
}

/// ggml's bytes per block for `ty` (from the C library, for cross-checking the Rust table).
pub fn c_type_size(ty: GgmlType) -> u64 {
    // SAFETY: as `c_block_size`.
    unsafe { sys::ggml_type_size(raw(ty)) as u64 }
}

fn check_size(ty: GgmlType, bytes: usize, elements: usize) -> Result<(), CodecError> {
    if ty.bytes_for(elements as u64) == Some(bytes as u64) {
        Ok(())
    } else {
        Err(CodecError::SizeMismatch {
            ty,
            bytes,
            elements,
            per_block: ty.block_size(),
            block_bytes: ty.type_size(),
        })
    }
}

/// Decodes `bytes` (whole blocks of `ty`) into `out`; `out.len()` is the element count.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), CodecError> {
    check_size(ty, bytes.len(), out.len())?;
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes(c.try_into().expect("chunks of 4"));
            }
            return Ok(());
        }
        GgmlType::I8 => {
            for (o, b) in out.iter_mut().zip(bytes) {
                *o = *b as i8 as f32;
            }
            return Ok(());
        }
        _ => {}
    }
    // SAFETY: ggml_get_type_traits returns a pointer into a static table for any valid id.
    let to_float = unsafe { (*sys::ggml_get_type_traits(raw(ty))).to_float }.ok_or(CodecError::NoDequantizer(ty))?;
    if out.is_empty() {
        return Ok(());
    }
    // SAFETY: `bytes` holds exactly out.len()/blck blocks of `ty` (checked above), and `out`
    // has room for out.len() floats; to_float reads and writes exactly those.
    unsafe { to_float(bytes.as_ptr().cast(), out.as_mut_ptr(), out.len() as i64) };
    Ok(())
}

/// Decodes into a new vector.
pub fn dequantize_to_vec(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>, CodecError> {
    let mut out = vec![0f32; n_elements];
    dequantize(ty, bytes, &mut out)?;
    Ok(out)
}

/// Decodes rows `rows` of tensor `t` of `file` into `out`, which must hold exactly
/// `rows.len() × t.row_len()` values (reuse one buffer when streaming a tensor in chunks).
pub fn dequantize_rows_into(file: &GgufFile, t: &TensorInfo, rows: Range<u64>, out: &mut [f32]) -> Result<(), CodecError> {
    let bytes = file.tensor_rows(t, rows.clone()).map_err(|e| CodecError::OutOfRange(e.to_string()))?;
    let want = (rows.end - rows.start).checked_mul(t.row_len()).and_then(|n| usize::try_from(n).ok());
    if want != Some(out.len()) {
        return Err(CodecError::OutOfRange(format!(
            "tensor {:?}: rows {}..{} hold {} values of {} per row, the output has room for {}",
            t.name,
            rows.start,
            rows.end,
            rows.end - rows.start,
            t.row_len(),
            out.len()
        )));
    }
    dequantize(t.ggml_type, bytes, out)
}

/// Decodes rows `rows` of tensor `t` of `file` into a new vector (`rows.len() × t.row_len()`
/// values, row after row). `dequantize_rows(f, t, 0..t.n_rows())` decodes the whole tensor.
pub fn dequantize_rows(file: &GgufFile, t: &TensorInfo, rows: Range<u64>) -> Result<Vec<f32>, CodecError> {
    let n = rows.end.saturating_sub(rows.start).checked_mul(t.row_len()).and_then(|n| usize::try_from(n).ok());
    // Check the range before allocating for it.
    file.tensor_rows(t, rows.clone()).map_err(|e| CodecError::OutOfRange(e.to_string()))?;
    let mut out = vec![0f32; n.ok_or_else(|| CodecError::OutOfRange(format!("tensor {:?}: too many values", t.name)))?];
    dequantize_rows_into(file, t, rows, &mut out)?;
    Ok(out)
}

/// True when ggml refuses to quantize to `ty` without an importance matrix (IQ2/IQ1 types).
pub fn requires_imatrix(ty: GgmlType) -> bool {
    // SAFETY: pure lookup for a valid type id.
    unsafe { sys::ggml_quantize_requires_imatrix(raw(ty)) }
}

/// True when `ggml_quantize_chunk` can produce `ty` (block types and F16/BF16/F32).
pub fn can_quantize(ty: GgmlType) -> bool {
    !matches!(ty, GgmlType::Q8_1 | GgmlType::Q8_K | GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64 | GgmlType::F64)
}

/// Encodes `src` (whole rows of `n_per_row` values) as `ty`. `imatrix`, when given, holds one
/// importance weight per column and guides the types that use one (k-quants, IQ types).
pub fn quantize(ty: GgmlType, src: &[f32], n_per_row: usize, imatrix: Option<&[f32]>) -> Result<Vec<u8>, CodecError> {
    if !can_quantize(ty) {
        return Err(CodecError::NoQuantizer(ty, ""));
    }
    if requires_imatrix(ty) && imatrix.is_none() {
        return Err(CodecError::NoQuantizer(ty, " without an importance matrix"));
    }
    let block = ty.block_size();
    if n_per_row == 0 || !(n_per_row as u64).is_multiple_of(block) || !src.len().is_multiple_of(n_per_row) {
        return Err(CodecError::BadRows { ty, len: src.len(), n_per_row, block });
    }
    if let Some(im) = imatrix
        && im.len() != n_per_row
    {
        return Err(CodecError::BadImatrix { ty, got: im.len(), n_per_row });
    }
    if ty == GgmlType::F32 {
        return Ok(src.iter().flat_map(|v| v.to_le_bytes()).collect());
    }
    let n_rows = src.len() / n_per_row;
    let n_bytes = ty.bytes_for(src.len() as u64).expect("whole blocks") as usize;
    let mut dst = vec![0u8; n_bytes];
    if n_rows == 0 {
        return Ok(dst);
    }
    let im_ptr = imatrix.map_or(std::ptr::null(), |m| m.as_ptr());
    // SAFETY: src holds n_rows × n_per_row floats, dst has room for exactly the bytes of that
    // many elements of `ty`, n_per_row is a multiple of the block size, and the importance
    // vector (when non-null) has n_per_row entries — the contract of ggml_quantize_chunk.
    let written = unsafe {
        sys::ggml_quantize_chunk(raw(ty), src.as_ptr(), dst.as_mut_ptr().cast(), 0, n_rows as i64, n_per_row as i64, im_ptr)
    };
    debug_assert_eq!(written, n_bytes);
    Ok(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_type_table_matches_ggml() {
        for ty in GgmlType::all() {
            assert_eq!(ty.block_size(), c_block_size(ty), "{ty} block size");
            assert_eq!(ty.type_size(), c_type_size(ty), "{ty} type size");
        }
    }

    #[test]
    fn round_trips_are_stable_for_common_types() {
        let src = crate::gguf::synth::pseudo_random_f32(3, 512);
        for ty in [GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
            let q = quantize(ty, &src, 256, None).unwrap();
            let deq = dequantize_to_vec(ty, &q, src.len()).unwrap();
            let rms = (src.iter().zip(&deq).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / src.len() as f32).sqrt();
            assert!(rms < 0.1, "{ty}: rms error {rms}");
            // Encoding what was decoded is a fixed point: the same values always, and the same
            // bytes for the types whose quantizer picks the scale deterministically from them.
            let again = quantize(ty, &deq, 256, None).unwrap();
            assert_eq!(dequantize_to_vec(ty, &again, src.len()).unwrap(), deq, "{ty} requantized values");
            if matches!(ty, GgmlType::Q4_K | GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::F16 | GgmlType::BF16) {
                assert_eq!(again, q, "{ty} requantized bytes");
            }
        }
    }

    #[test]
    fn size_errors_are_reported_not_passed_to_c() {
        let mut out = vec![0f32; 32];
        let err = dequantize(GgmlType::Q8_0, &[0u8; 33], &mut out).unwrap_err();
        assert!(matches!(err, CodecError::SizeMismatch { .. }));
        assert!(quantize(GgmlType::Q4_K, &[0.0; 100], 100, None).is_err());
    }
}
