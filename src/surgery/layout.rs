//! Byte layouts of the quant blocks that surgery edits in place, named after ggml-common.h
//! (`block_q8_0`, `block_q5_0`, `block_q6_K`, `block_q4_K`, and for issue 25 the legacy `block_q4_0`,
//! `block_q4_1`, `block_q5_1`, the K-quants `block_q5_K`, `block_q2_K`, `block_q3_K` and the
//! non-linear `block_iq4_nl`, `block_iq4_xs`). Offsets are in bytes from the start
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

/// `block_q4_0`: f16 `d`, then 16 bytes of nibble codes (entry j in byte j % 16, the high
/// nibble for j ≥ 16); value = d·(q − 8).
pub mod q4_0 {
    /// The f16 scale `d`.
    pub const D: usize = 0;
    /// The 16 bytes of nibble codes.
    pub const QS: usize = 2;
    /// Bytes per block.
    pub const SIZE: usize = 18;
}
const _: () = assert!(q4_0::QS == q4_0::D + 2 && q4_0::QS + 16 == q4_0::SIZE);

/// `block_q4_1`: f16 `d`, f16 `m`, then 16 bytes of nibble codes; value = d·q + m.
pub mod q4_1 {
    /// The f16 scale `d`.
    pub const D: usize = 0;
    /// The f16 minimum `m`.
    pub const M: usize = 2;
    /// The 16 bytes of nibble codes (entry j in byte j % 16, the high nibble for j ≥ 16).
    pub const QS: usize = 4;
    /// Bytes per block.
    pub const SIZE: usize = 20;
}
const _: () = assert!(q4_1::M == q4_1::D + 2 && q4_1::QS == q4_1::M + 2 && q4_1::QS + 16 == q4_1::SIZE);

/// `block_q5_1`: f16 `d`, f16 `m`, a u32 of fifth bits `qh`, then 16 bytes of low nibbles;
/// value = d·q + m.
pub mod q5_1 {
    /// The f16 scale `d`.
    pub const D: usize = 0;
    /// The f16 minimum `m`.
    pub const M: usize = 2;
    /// The little-endian u32 holding bit 4 of each of the 32 codes.
    pub const QH: usize = 4;
    /// The 16 bytes of low nibbles.
    pub const QS: usize = 8;
    /// Bytes per block.
    pub const SIZE: usize = 24;
}
const _: () = assert!(q5_1::M == q5_1::D + 2 && q5_1::QH == q5_1::M + 2 && q5_1::QS == q5_1::QH + 4 && q5_1::QS + 16 == q5_1::SIZE);

/// `block_q5_K`: f16 `d`, f16 `dmin`, 12 bytes of packed 6-bit scales and mins (as Q4_K), 32
/// bytes of fifth bits `qh`, then 128 bytes of low nibbles `qs`; value = d·sc·q − dmin·m.
pub mod q5_k {
    /// The f16 super-block scale `d`.
    pub const D: usize = 0;
    /// The f16 super-block min scale `dmin`.
    pub const DMIN: usize = 2;
    /// The packed scales and mins.
    pub const SCALES: usize = 4;
    /// The fifth bits: byte l holds bit 4 of entry 64c + l (bit 2c) and of 64c + 32 + l (bit 2c+1).
    pub const QH: usize = 16;
    /// The low nibbles, laid out as Q4_K's codes.
    pub const QS: usize = 48;
    /// Bytes per block.
    pub const SIZE: usize = 176;
}
const _: () = assert!(q5_k::DMIN == q5_k::D + 2 && q5_k::SCALES == q5_k::DMIN + 2 && q5_k::QH == q5_k::SCALES + 12 && q5_k::QS == q5_k::QH + 32 && q5_k::QS + 128 == q5_k::SIZE);

/// `block_q2_K`: 16 bytes of (4-bit scale | 4-bit min << 4), 64 bytes of 2-bit codes, f16 `d`,
/// f16 `dmin`; value = d·(sc & 15)·q − dmin·(sc >> 4).
pub mod q2_k {
    /// One byte per 16 entries: scale in the low, min in the high nibble.
    pub const SCALES: usize = 0;
    /// The 2-bit codes: entry 128n + 32i + 16h + l in byte 32n + 16h + l at bits 2i.
    pub const QS: usize = 16;
    /// The f16 super-block scale `d`.
    pub const D: usize = 80;
    /// The f16 super-block min scale `dmin`.
    pub const DMIN: usize = 82;
    /// Bytes per block.
    pub const SIZE: usize = 84;
}
const _: () = assert!(q2_k::QS == q2_k::SCALES + 16 && q2_k::D == q2_k::QS + 64 && q2_k::DMIN == q2_k::D + 2 && q2_k::DMIN + 2 == q2_k::SIZE);

/// `block_q3_K`: 32 bytes of high bits `hmask`, 64 bytes of low 2-bit codes, 12 bytes of packed
/// 6-bit scales (biased by 32), f16 `d`; value = d·(sc − 32)·(q − 4), q = low + 4·high in 0..8.
pub mod q3_k {
    /// The high bits: entry 128n + 32i + 16h + l in byte 16h + l at bit 4n + i.
    pub const HMASK: usize = 0;
    /// The low two bits, laid out as Q2_K's codes.
    pub const QS: usize = 32;
    /// The packed scales.
    pub const SCALES: usize = 96;
    /// The f16 super-block scale `d`.
    pub const D: usize = 108;
    /// Bytes per block.
    pub const SIZE: usize = 110;
}
const _: () = assert!(q3_k::QS == q3_k::HMASK + 32 && q3_k::SCALES == q3_k::QS + 64 && q3_k::D == q3_k::SCALES + 12 && q3_k::D + 2 == q3_k::SIZE);

/// `block_iq4_nl`: f16 `d`, then 16 bytes of nibble indices into `kvalues_iq4nl`.
pub mod iq4_nl {
    /// The f16 scale `d`.
    pub const D: usize = 0;
    /// The 16 bytes of indices (entry j in byte j % 16, the high nibble for j ≥ 16).
    pub const QS: usize = 2;
    /// Bytes per block.
    pub const SIZE: usize = 18;
}
const _: () = assert!(iq4_nl::QS == iq4_nl::D + 2 && iq4_nl::QS + 16 == iq4_nl::SIZE);

/// `block_iq4_xs`: f16 `d`, a u16 of high scale bits, 4 bytes of low scale nibbles, then 128
/// bytes of nibble indices into `kvalues_iq4nl` (16 per 32-entry sub-block, as IQ4_NL).
pub mod iq4_xs {
    /// The f16 super-block scale `d`.
    pub const D: usize = 0;
    /// Bits 4–5 of the 8 sub-block scales, 2 per sub-block.
    pub const SCALES_H: usize = 2;
    /// Bits 0–3 of the 8 sub-block scales, a nibble each.
    pub const SCALES_L: usize = 4;
    /// The indices.
    pub const QS: usize = 8;
    /// Bytes per block.
    pub const SIZE: usize = 136;
}
const _: () = assert!(iq4_xs::SCALES_H == iq4_xs::D + 2 && iq4_xs::SCALES_L == iq4_xs::SCALES_H + 2 && iq4_xs::QS == iq4_xs::SCALES_L + 4 && iq4_xs::QS + 128 == iq4_xs::SIZE);

/// ggml's `kvalues_iq4nl`: the 16 values IQ4_NL and IQ4_XS indices stand for (times the scale).
pub const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

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
        assert_eq!(GgmlType::Q4_0.type_size() as usize, q4_0::SIZE);
        assert_eq!(GgmlType::Q4_1.type_size() as usize, q4_1::SIZE);
        assert_eq!(GgmlType::Q5_1.type_size() as usize, q5_1::SIZE);
        assert_eq!(GgmlType::Q5_K.type_size() as usize, q5_k::SIZE);
        assert_eq!(GgmlType::Q2_K.type_size() as usize, q2_k::SIZE);
        assert_eq!(GgmlType::Q3_K.type_size() as usize, q3_k::SIZE);
        assert_eq!(GgmlType::IQ4_NL.type_size() as usize, iq4_nl::SIZE);
        assert_eq!(GgmlType::IQ4_XS.type_size() as usize, iq4_xs::SIZE);
    }
}
