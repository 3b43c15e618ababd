//! Packs tokenized texts into decodes: short texts share one decode as separate sequences, long
//! texts are split over consecutive decodes (the piece that continues keeps its sequence id and
//! its positions). A pure function, so the packing — and with it the numbers — depends only on
//! the token counts, the micro-batch and the sequence limit.

/// One text's share of a decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Index of the text.
    pub text: usize,
    /// First token of the text in this piece (its position).
    pub start: usize,
    /// One past the last token.
    pub end: usize,
    /// True when this piece holds the text's last token.
    pub last: bool,
    /// Sequence id (slot) of the text: `text % n_seq`.
    pub seq: usize,
}

/// Splits texts of `lengths` tokens into decodes of at most `n_batch` tokens and at most
/// `n_seq` texts each. Texts of length 0 are skipped.
pub fn pack(lengths: &[usize], n_batch: usize, n_seq: usize) -> Vec<Vec<Piece>> {
    assert!(n_batch > 0 && n_seq > 0, "empty micro-batch");
    let mut decodes = Vec::new();
    let mut current: Vec<Piece> = Vec::new();
    let mut used = 0;
    for (text, &len) in lengths.iter().enumerate() {
        let mut pos = 0;
        while pos < len {
            if used == n_batch || current.len() == n_seq {
                decodes.push(std::mem::take(&mut current));
                used = 0;
            }
            let take = (n_batch - used).min(len - pos);
            current.push(Piece { text, start: pos, end: pos + take, last: pos + take == len, seq: text % n_seq });
            used += take;
            pos += take;
        }
    }
    if !current.is_empty() {
        decodes.push(current);
    }
    decodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_short_texts_and_splits_long_ones() {
        let d = pack(&[3, 10, 2], 4, 8);
        let flat: Vec<(usize, usize, usize, bool)> = d.iter().flatten().map(|p| (p.text, p.start, p.end, p.last)).collect();
        assert_eq!(flat, vec![(0, 0, 3, true), (1, 0, 1, false), (1, 1, 5, false), (1, 5, 9, false), (1, 9, 10, true), (2, 0, 2, true)]);
        assert!(d.iter().all(|dec| dec.iter().map(|p| p.end - p.start).sum::<usize>() <= 4));
        // Sequence ids within one decode are distinct.
        for dec in &d {
            let mut seqs: Vec<usize> = dec.iter().map(|p| p.seq).collect();
            seqs.dedup();
            assert_eq!(seqs.len(), dec.len());
        }
    }

    #[test]
    fn respects_the_sequence_limit() {
        let d = pack(&[1; 10], 100, 4);
        assert_eq!(d.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        for dec in &d {
            let mut s: Vec<usize> = dec.iter().map(|p| p.seq).collect();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), dec.len());
        }
    }
}
