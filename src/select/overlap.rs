//! The Jaccard index |A∩B| / |A∪B| of two selections, written once: per matrix and overall for
//! two mask files (`mathneuro mask compare`), and the counts rule the experiments use too.

use super::maskfile::MaskFile;

/// Jaccard index from counts: `both / either`, and 1 when the union is empty (two empty
/// selections agree completely). Every caller relies on this empty-union rule.
pub fn jaccard(both: u64, either: u64) -> f64 {
    if either == 0 { 1.0 } else { both as f64 / either as f64 }
}

/// Overlap of two selections of one matrix.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Overlap {
    /// Weight name.
    pub name: String,
    /// Entries selected in A.
    pub a: u64,
    /// Entries selected in B.
    pub b: u64,
    /// Entries selected in both.
    pub both: u64,
    /// Entries selected in either.
    pub either: u64,
    /// both / either (1 when neither selects anything).
    pub jaccard: f64,
}

/// Why two mask files could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A weight of both files has masks of different lengths.
    #[error("{name}: masks cover {a} and {b} entries")]
    Length {
        /// Weight name.
        name: String,
        /// A's mask length.
        a: u64,
        /// B's mask length.
        b: u64,
    },
    /// No weight name is in both files.
    #[error("the two mask files have no weight in common")]
    NothingInCommon,
}

/// Per-matrix overlaps (weights present in both, in A's order) and the overall one. A weight in
/// only one file is skipped here (mask files of different target sets can still be compared),
/// unlike the experiments' `overlap`, which refuses it.
pub fn compare(a: &MaskFile, b: &MaskFile) -> Result<(Vec<Overlap>, Overlap), CompareError> {
    let mut rows = Vec::new();
    for (name, ma) in &a.masks {
        let Some((_, mb)) = b.masks.iter().find(|(n, _)| n == name) else { continue };
        let both = ma.intersection_count(mb).ok_or_else(|| CompareError::Length { name: name.clone(), a: ma.len(), b: mb.len() })?;
        let either = ma.union_count(mb).expect("same length");
        rows.push(Overlap { name: name.clone(), a: ma.count(), b: mb.count(), both, either, jaccard: jaccard(both, either) });
    }
    if rows.is_empty() {
        return Err(CompareError::NothingInCommon);
    }
    let sum = |f: fn(&Overlap) -> u64| rows.iter().map(f).sum::<u64>();
    let (both, either) = (sum(|o| o.both), sum(|o| o.either));
    let total = Overlap { name: "overall".into(), a: sum(|o| o.a), b: sum(|o| o.b), both, either, jaccard: jaccard(both, either) };
    Ok((rows, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_union_counts_as_full_agreement() {
        assert_eq!(jaccard(0, 0), 1.0);
        assert_eq!(jaccard(1, 4), 0.25);
    }
}
