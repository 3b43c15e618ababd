//! Mask overlap between two selections of the same model: entries in both, in either, and the
//! Jaccard index |A∩B| / |A∪B| summed over every target matrix (not averaged per matrix, so big
//! matrices weigh as much as their entries).

use serde::Serialize;

use crate::select::Selection;
use crate::select::overlap::jaccard;

/// Overlap of two selections.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MaskOverlap {
    /// Which experiment.
    pub experiment: u8,
    /// First selection's label.
    pub a: String,
    /// Second selection's label.
    pub b: String,
    /// Entries selected in A.
    pub a_selected: u64,
    /// Entries selected in B.
    pub b_selected: u64,
    /// Entries in both.
    pub both: u64,
    /// Entries in either.
    pub either: u64,
    /// both / either (1 when both are empty).
    pub jaccard: f64,
    /// The Jaccard index two independent random masks of these sizes would have on average.
    pub chance: f64,
}

/// Errors: the two selections do not describe the same matrices.
#[derive(Debug, thiserror::Error)]
pub enum OverlapError {
    /// A tensor of one selection is missing in the other.
    #[error("tensor {0} is in one selection but not the other")]
    Missing(String),
    /// Same name, different sizes.
    #[error("tensor {name}: masks of {a} and {b} entries")]
    Length {
        /// Tensor.
        name: String,
        /// A's length.
        a: u64,
        /// B's length.
        b: u64,
    },
}

/// The expected Jaccard index of two independent uniform masks with `a` and `b` entries out
/// of `n`: E|A∩B| = ab/n, so J ≈ (ab/n) / (a + b − ab/n).
fn chance_jaccard(a: u64, b: u64, n: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let both = a as f64 * b as f64 / n as f64;
    let either = a as f64 + b as f64 - both;
    if either <= 0.0 { 1.0 } else { both / either }
}

/// Overlap of two selections over all their matrices.
pub fn overlap(experiment: u8, a_label: &str, a: &Selection, b_label: &str, b: &Selection) -> Result<MaskOverlap, OverlapError> {
    let (mut both, mut either, mut n) = (0u64, 0u64, 0u64);
    for ta in &a.tensors {
        let tb = b.get(&ta.name).ok_or_else(|| OverlapError::Missing(ta.name.clone()))?;
        let length = || OverlapError::Length { name: ta.name.clone(), a: ta.mask.len(), b: tb.mask.len() };
        both += ta.mask.intersection_count(&tb.mask).ok_or_else(length)?;
        either += ta.mask.union_count(&tb.mask).ok_or_else(length)?;
        n += ta.mask.len();
    }
    if let Some(extra) = b.tensors.iter().find(|t| a.get(&t.name).is_none()) {
        return Err(OverlapError::Missing(extra.name.clone()));
    }
    let (sa, sb) = (a.selected(), b.selected());
    Ok(MaskOverlap {
        experiment,
        a: a_label.to_string(),
        b: b_label.to_string(),
        a_selected: sa,
        b_selected: sb,
        both,
        either,
        jaccard: jaccard(both, either),
        chance: chance_jaccard(sa, sb, n),
    })
}

/// Mean, min and max Jaccard index of a list of overlaps (`None` when empty).
pub fn summary(overlaps: &[&MaskOverlap]) -> Option<(f64, f64, f64)> {
    if overlaps.is_empty() {
        return None;
    }
    let xs: Vec<f64> = overlaps.iter().map(|o| o.jaccard).collect();
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    Some((mean, xs.iter().cloned().fold(f64::INFINITY, f64::min), xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgmlType;
    use crate::select::mask::BitMask;
    use crate::select::{Method, SelectOptions, TensorSelection};

    fn selection(masks: &[(&str, u64, &[u64])]) -> Selection {
        let tensors = masks
            .iter()
            .map(|(name, len, ones)| {
                let mut mask = BitMask::new(*len);
                for &i in *ones {
                    mask.set(i);
                }
                TensorSelection { name: name.to_string(), dims: vec![*len], ggml_type: GgmlType::F32, k: 0, selected: ones.len() as u64, mask }
            })
            .collect();
        Selection { options: SelectOptions { method: Method::MathNeuro, top_k_percent: 5.0, seed: 0 }, tensors }
    }

    #[test]
    fn jaccard_sums_counts_over_matrices() {
        let a = selection(&[("x", 10, &[0, 1, 2]), ("y", 100, &[5])]);
        let b = selection(&[("x", 10, &[1, 2, 3]), ("y", 100, &[6])]);
        let o = overlap(4, "seed 1", &a, "seed 2", &b).unwrap();
        assert_eq!((o.a_selected, o.b_selected, o.both, o.either), (4, 4, 2, 6));
        assert!((o.jaccard - 2.0 / 6.0).abs() < 1e-12);
        // Chance: 4·4/110 shared of 8 − that.
        let shared = 16.0 / 110.0;
        assert!((o.chance - shared / (8.0 - shared)).abs() < 1e-12);
        assert_eq!(overlap(4, "a", &a, "a", &a).unwrap().jaccard, 1.0);
        let (mean, min, max) = summary(&[&o, &overlap(4, "a", &a, "a", &a).unwrap()]).unwrap();
        assert!((mean - (1.0 + 1.0 / 3.0) / 2.0).abs() < 1e-12 && min < max);
    }

    #[test]
    fn mismatched_selections_are_errors_not_panics() {
        let a = selection(&[("x", 10, &[0])]);
        let b = selection(&[("z", 10, &[0])]);
        assert!(matches!(overlap(3, "a", &a, "b", &b), Err(OverlapError::Missing(_))));
        let c = selection(&[("x", 12, &[0])]);
        assert!(matches!(overlap(3, "a", &a, "c", &c), Err(OverlapError::Length { a: 10, b: 12, .. })));
        assert_eq!(jaccard(0, 0), 1.0);
        assert_eq!(chance_jaccard(0, 0, 0), 0.0);
    }
}
