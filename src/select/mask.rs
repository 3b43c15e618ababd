//! A selection of entries of one flattened weight, as a bit set packed LSB-first: entry `i` is
//! bit `i % 8` of byte `i / 8` (the layout of the `--save-mask` file).

/// A fixed-length bit set over a weight's flat indices (`row · n_in + column`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitMask {
    len: u64,
    bytes: Vec<u8>,
}

impl BitMask {
    /// `len` cleared bits.
    pub fn new(len: u64) -> BitMask {
        BitMask { len, bytes: vec![0; len.div_ceil(8) as usize] }
    }

    /// A mask from packed bytes; bits past `len` must be zero. `None` when the byte count does
    /// not fit `len` or a padding bit is set.
    pub fn from_bytes(len: u64, bytes: Vec<u8>) -> Option<BitMask> {
        if bytes.len() as u64 != len.div_ceil(8) {
            return None;
        }
        let tail = (len % 8) as u32;
        if tail != 0 && bytes.last().is_some_and(|b| b >> tail != 0) {
            return None;
        }
        Some(BitMask { len, bytes })
    }

    /// Number of entries covered (set or not).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the mask covers no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packed bytes, LSB-first.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether entry `i` is selected.
    #[inline]
    pub fn get(&self, i: u64) -> bool {
        self.bytes[(i / 8) as usize] >> (i % 8) & 1 == 1
    }

    /// Selects entry `i`.
    #[inline]
    pub fn set(&mut self, i: u64) {
        self.bytes[(i / 8) as usize] |= 1 << (i % 8);
    }

    /// Number of selected entries.
    pub fn count(&self) -> u64 {
        self.bytes.iter().map(|b| b.count_ones() as u64).sum()
    }

    /// True when any entry in `[start, end)` is selected (byte-wise when aligned).
    pub fn any_in(&self, start: u64, end: u64) -> bool {
        if start.is_multiple_of(8) && end.is_multiple_of(8) {
            return self.bytes[(start / 8) as usize..(end / 8) as usize].iter().any(|b| *b != 0);
        }
        (start..end).any(|i| self.get(i))
    }

    /// Offsets (from `start`) of the selected entries in `[start, end)`, in increasing order,
    /// appended to `out`. Walks whole bytes, skipping empty ones.
    pub fn ones_in(&self, start: u64, end: u64, out: &mut Vec<usize>) {
        let mut i = start;
        while i < end {
            let byte = self.bytes[(i / 8) as usize];
            if i.is_multiple_of(8) && end - i >= 8 {
                let mut b = byte;
                while b != 0 {
                    out.push((i - start) as usize + b.trailing_zeros() as usize);
                    b &= b - 1;
                }
                i += 8;
            } else {
                if byte >> (i % 8) & 1 == 1 {
                    out.push((i - start) as usize);
                }
                i += 1;
            }
        }
    }

    /// Selected indices in increasing order.
    pub fn ones(&self) -> impl Iterator<Item = u64> + '_ {
        self.bytes.iter().enumerate().flat_map(|(bi, &b)| {
            (0..8u64).filter(move |bit| b >> bit & 1 == 1).map(move |bit| bi as u64 * 8 + bit)
        })
    }

    /// Entries selected in both masks (`None` when the lengths differ).
    pub fn intersection_count(&self, other: &BitMask) -> Option<u64> {
        (self.len == other.len)
            .then(|| self.bytes.iter().zip(&other.bytes).map(|(a, b)| (a & b).count_ones() as u64).sum())
    }

    /// Entries selected in either mask (`None` when the lengths differ).
    pub fn union_count(&self, other: &BitMask) -> Option<u64> {
        (self.len == other.len)
            .then(|| self.bytes.iter().zip(&other.bytes).map(|(a, b)| (a | b).count_ones() as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_lsb_first() {
        let mut m = BitMask::new(10);
        m.set(0);
        m.set(9);
        m.set(3);
        assert_eq!(m.as_bytes(), &[0b0000_1001, 0b0000_0010]);
        assert_eq!(m.count(), 3);
        assert_eq!(m.ones().collect::<Vec<_>>(), vec![0, 3, 9]);
        assert!(m.any_in(8, 10) && !m.any_in(4, 8));
        for (start, end) in [(0, 10), (3, 10), (1, 9), (8, 10), (4, 8)] {
            let mut got = Vec::new();
            m.ones_in(start, end, &mut got);
            let want: Vec<usize> = m.ones().filter(|&i| i >= start && i < end).map(|i| (i - start) as usize).collect();
            assert_eq!(got, want, "[{start}, {end})");
        }
        assert!(BitMask::from_bytes(10, vec![0, 0b100]).is_none(), "padding bit set");
        assert_eq!(BitMask::from_bytes(10, m.as_bytes().to_vec()).unwrap(), m);
    }
}
