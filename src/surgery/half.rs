//! IEEE half-precision conversions for the f16 scales stored in quant blocks: exact half → f32,
//! f32 → half rounded away from zero (a widened scale must cover its range), and reading and
//! writing a half at a byte offset of a block.

/// IEEE half → f32 (every half is exactly representable).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m · 2^-24.
            let v = m as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (31, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Reads the IEEE half at byte `at`.
pub fn half(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// f32 → IEEE half, rounded so that |half| ≥ |v| (for scales that must cover a range); `None`
/// when out of half range or not finite.
pub fn f32_to_f16_up(v: f32) -> Option<u16> {
    if !v.is_finite() || v.abs() > 65504.0 {
        return None;
    }
    // Start from truncation toward zero, then step up until the magnitude covers |v|.
    let sign: u16 = if v < 0.0 { 0x8000 } else { 0 };
    let a = v.abs();
    let mut h: u16 = if a < 2f32.powi(-14) {
        (a / 2f32.powi(-24)) as u16
    } else {
        let bits = a.to_bits();
        let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
        ((exp as u16) << 10) | ((bits >> 13) & 0x3ff) as u16
    };
    while f16_to_f32(h) < a {
        h += 1;
        if h >= 0x7c00 {
            return None;
        }
    }
    Some(sign | h)
}

/// Stores an IEEE half at byte `at`.
pub fn put_half(b: &mut [u8], at: usize, h: u16) {
    b[at..at + 2].copy_from_slice(&h.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_convert() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
    }

    #[test]
    fn halves_round_up() {
        for v in [1.0f32, 0.1, 3.3e-5, 1e-7, 65000.0, -0.7] {
            let h = f32_to_f16_up(v).unwrap();
            assert!(f16_to_f32(h).abs() >= v.abs() && f16_to_f32(h).abs() <= v.abs() * 1.001 + 6e-8, "{v} → {}", f16_to_f32(h));
            assert_eq!(f16_to_f32(h).signum(), v.signum());
        }
    }
}
