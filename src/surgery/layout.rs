//! Byte layouts of the quant blocks that surgery edits in place, named after ggml-common.h
//! (`block_q8_0`, `block_q5_0`, `block_q6_K`, `block_q4_K`). Offsets are in bytes from the start
//! of one block; the compile-time asserts check that the fields tile each block exactly, so a
//! wrong constant fails the build instead of corrupting a model.

/// `block_q8_0`: f16 `d`, then 32 signed 8-bit codes.
pub mod q8_0 {
    /// The f16 scale `d`.
    pub const D: usize = 0;
    /// The first of the 32 i8 codes.
    pub const QS: usize = 2;
    /// Bytes per block.
    pub const SIZE: usize = 34;
}
const _: () = assert!(q8_0::QS == q8_0::D + 2 && q8_0::QS + 32 == q8_0::SIZE);

/// `block_q5_0`: f16 `d`, a u32 of fifth bits `qh`, then 16 bytes of low nibbles `qs`.
pub mod q5_0 {
    /// The f16 scale `d`.
    pub const D: usize = 0;
    /// The little-endian u32 holding bit 4 of each of the 32 codes.
    pub const QH: usize = 2;
    /// The 16 bytes of low nibbles (entry j in byte j % 16, the high nibble for j ≥ 16).
    pub const QS: usize = 6;
    /// Bytes per block.
    pub const SIZE: usize = 22;
}
const _: () = assert!(q5_0::QH == q5_0::D + 2 && q5_0::QS == q5_0::QH + 4 && q5_0::QS + 16 == q5_0::SIZE);

/// Where Q8_0 and Q5_0 both keep their f16 scale `d` (code shared by the two types uses it).
pub const Q8_0_OR_Q5_0_D: usize = q8_0::D;
const _: () = assert!(q8_0::D == q5_0::D);

/// `block_q6_K`: 128 bytes of low nibbles `ql`, 64 bytes of high 2-bit pairs `qh`, 16 i8 unit
/// scales, then the f16 super-block scale `d`.
pub mod q6_k {
    /// The low nibbles of the 256 codes.
    pub const QL: usize = 0;
    /// The high two bits of the 256 codes, four per byte.
    pub const QH: usize = 128;
    /// The 16 i8 scales, one per 16 entries, in entry order.
    pub const SCALES: usize = 192;
    /// The f16 super-block scale `d`.
    pub const D: usize = 208;
    /// Bytes per block.
    pub const SIZE: usize = 210;
}
const _: () = assert!(q6_k::QL + 128 == q6_k::QH && q6_k::QH + 64 == q6_k::SCALES && q6_k::SCALES + 16 == q6_k::D && q6_k::D + 2 == q6_k::SIZE);

/// `block_q4_K`: f16 `d`, f16 `dmin`, 12 bytes of packed 6-bit scales and mins, then 128 bytes
/// of nibble codes (chunk c of 32 bytes holds sub-block 2c in its low, 2c+1 in its high nibbles).
pub mod q4_k {
    /// The f16 super-block scale `d`.
    pub const D: usize = 0;
    /// The f16 super-block min scale `dmin`.
    pub const DMIN: usize = 2;
    /// The packed scales and mins (`get_scale_min_k4` reads them): `SCALES..QS`.
    pub const SCALES: usize = 4;
    /// The 256 nibble codes.
    pub const QS: usize = 16;
    /// Bytes per block.
    pub const SIZE: usize = 144;

    /// The byte holding the code of entry `j` (0..256); the low nibble when `j % 64 < 32`.
    pub const fn code_byte(j: usize) -> usize {
        QS + 32 * (j / 64) + j % 32
    }
}
const _: () = assert!(q4_k::DMIN == q4_k::D + 2 && q4_k::SCALES == q4_k::DMIN + 2 && q4_k::QS == q4_k::SCALES + 12 && q4_k::QS + 128 == q4_k::SIZE);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgmlType;

    #[test]
    fn block_sizes_match_the_ggml_type_table() {
        assert_eq!(GgmlType::Q8_0.type_size() as usize, q8_0::SIZE);
        assert_eq!(GgmlType::Q5_0.type_size() as usize, q5_0::SIZE);
        assert_eq!(GgmlType::Q6_K.type_size() as usize, q6_k::SIZE);
        assert_eq!(GgmlType::Q4_K.type_size() as usize, q4_k::SIZE);
    }
}
