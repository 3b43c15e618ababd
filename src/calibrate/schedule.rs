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
    /// Sequence id (slot) of the text: its index within the decode. A split text is always
    /// first in each of its decodes, so it keeps id 0 throughout.
    pub seq: usize,
}

/// Splits texts of `lengths` tokens into decodes of at most `n_batch` tokens and at most
/// `n_seq` texts each. Texts of length 0 are skipped.
///
/// A text is split only when it is longer than a whole decode, and then it always starts a new
/// decode: when its next piece runs, the KV cache holds nothing but its own earlier tokens, in
/// order. (llama.cpp's attention gives measurably different results — up to several percent on
/// Gemma 3 — when a continuing sequence's new cells land in holes left by removed sequences.)
/// A text that does not fit the room left in a decode starts the next decode; up to
/// `LOOKAHEAD` later texts that do fit are pulled forward to fill the room.
pub fn pack(lengths: &[usize], n_batch: usize, n_seq: usize) -> Vec<Vec<Piece>> {
    assert!(n_batch > 0 && n_seq > 0, "empty micro-batch");
    let mut decodes = Vec::new();
    let mut current: Vec<Piece> = Vec::new();
    let mut used = 0;
    let mut done = vec![false; lengths.len()];
    let whole = |text: usize, len: usize, seq: usize| Piece { text, start: 0, end: len, last: true, seq };
    for text in 0..lengths.len() {
        if done[text] || lengths[text] == 0 {
            continue;
        }
        let len = lengths[text];
        if len <= n_batch - used && current.len() < n_seq {
            current.push(whole(text, len, current.len()));
            used += len;
            done[text] = true;
            continue;
        }
        // Fill the room with later texts that fit, then close this decode.
        for later in text + 1..lengths.len().min(text + 1 + LOOKAHEAD) {
            if current.len() == n_seq {
                break;
            }
            if !done[later] && lengths[later] > 0 && lengths[later] <= n_batch - used {
                current.push(whole(later, lengths[later], current.len()));
                used += lengths[later];
                done[later] = true;
            }
        }
        if !current.is_empty() {
            decodes.push(std::mem::take(&mut current));
        }
        let mut pos = 0;
        while len - pos > n_batch {
            decodes.push(vec![Piece { text, start: pos, end: pos + n_batch, last: false, seq: 0 }]);
            pos += n_batch;
        }
        current.push(Piece { text, start: pos, end: len, last: true, seq: 0 });
        used = len - pos;
        done[text] = true;
    }
    if !current.is_empty() {
        decodes.push(current);
    }
    decodes
}

/// How many later texts may be pulled forward to fill a decode.
pub const LOOKAHEAD: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_short_texts_and_splits_long_ones() {
        let d = pack(&[3, 10, 2, 1], 4, 8);
        let per_decode: Vec<Vec<(usize, usize, usize, bool)>> = d.iter().map(|dec| dec.iter().map(|p| (p.text, p.start, p.end, p.last)).collect()).collect();
        // Text 3 is pulled forward to fill the first decode; text 1 starts its own decode and is
        // split; text 2 shares the decode of text 1's last piece.
        assert_eq!(
            per_decode,
            vec![vec![(0, 0, 3, true), (3, 0, 1, true)], vec![(1, 0, 4, false)], vec![(1, 4, 8, false)], vec![(1, 8, 10, true), (2, 0, 2, true)]]
        );
        // Every text is measured exactly once, in full.
        let mut covered: Vec<(usize, usize)> = d.iter().flatten().map(|p| (p.text, p.end - p.start)).collect();
        covered.sort();
        assert_eq!(covered.iter().map(|c| c.0).collect::<Vec<_>>(), vec![0, 1, 1, 1, 2, 3]);
        assert!(d.iter().all(|dec| dec.iter().map(|p| p.end - p.start).sum::<usize>() <= 4));
        // Sequence ids within one decode are distinct.
        for dec in &d {
            let mut seqs: Vec<usize> = dec.iter().map(|p| p.seq).collect();
            seqs.dedup();
            assert_eq!(seqs.len(), dec.len());
        }
    }

    #[test]
    fn split_texts_start_a_decode() {
        let d = pack(&[5, 7, 9, 2, 30, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1], 8, 4);
        for dec in &d {
            let seqs: Vec<usize> = dec.iter().map(|p| p.seq).collect();
            assert_eq!(seqs, (0..dec.len()).collect::<Vec<_>>(), "slots are 0..k in each decode");
        }
        for (i, dec) in d.iter().enumerate() {
            for (k, p) in dec.iter().enumerate() {
                if !p.last || p.start > 0 {
                    assert_eq!(k, 0, "decode {i}: a split text must come first: {dec:?}");
                }
            }
            if i + 1 < d.len() && dec.iter().any(|p| !p.last) {
                assert_eq!(dec.len(), 1, "a continuing text is alone in its decode");
            }
        }
        let total: usize = d.iter().flatten().map(|p| p.end - p.start).sum();
        assert_eq!(total, 5 + 7 + 9 + 2 + 30 + 3 + 9);
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
