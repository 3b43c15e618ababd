//! [`RowBatch`]: the batch of one evaluation decode, which owns the padding rule. Every decode
//! is padded with throw-away rows of a padding sequence to at least [`MIN_ROWS`] rows and a
//! whole number of [`ROW_MULTIPLE`] groups, output rows included, so that a row's numbers do
//! not depend on the rows beside it; [`RowBatch::fits`] is the one "does one more row fit"
//! check.

use crate::ffi::llama::{Batch, Context, ROW_MULTIPLE, Token, round_up_rows};

use super::EngineError;

/// Most tokens per llama.cpp micro-batch. Below ggml's flash-attention query tile (64 rows),
/// the CPU kernel attends each query row on its own, visiting the row's unmasked KV cells in
/// cache order; with a sequence's cells kept in position order (see `Session::score`) a row's
/// result then does not depend on which other sequences share the batch. Gemma 3's large
/// activations turn the tiled kernel's different rounding into log-likelihood changes of
/// 0.1 nats and more, so batch invariance matters here.
pub const MAX_UBATCH: u32 = 60;

/// Fewest rows (and output rows) per decode. Decodes of four rows or fewer gave other numbers
/// than larger ones on Gemma 3 (single-token log-likelihoods moved by up to 0.3 nats; with
/// one row, ggml's CPU flash attention also switches to a KV-split kernel), so small batches
/// are padded with throw-away rows of a padding sequence.
pub const MIN_ROWS: usize = 8;

/// KV cells kept free for the padding rows of one decode (at most `MIN_ROWS - 1` output pads
/// plus `ROW_MULTIPLE - 1` more rows).
pub const PAD_CELLS: usize = MIN_ROWS + ROW_MULTIPLE;

/// Rows and output rows a decode of `tokens` real rows, `outputs` of them output rows, has
/// after padding: (total rows, padding rows that are outputs). See [`MIN_ROWS`] and
/// [`ROW_MULTIPLE`].
pub fn padded_shape(tokens: usize, outputs: usize) -> (usize, usize) {
    let round = |n: usize| round_up_rows(n.max(MIN_ROWS));
    let output_pads = if outputs > 0 { round(outputs) - outputs } else { 0 };
    (round(tokens + output_pads), output_pads)
}

/// The largest batch a decode may have: `requested` clamped to [`MIN_ROWS`]..=[`MAX_UBATCH`]
/// and rounded down to a whole number of row groups, so a padded decode always fits.
pub fn batch_rows(requested: usize) -> usize {
    requested.clamp(MIN_ROWS, MAX_UBATCH as usize) / ROW_MULTIPLE * ROW_MULTIPLE
}

/// One decode's rows, with room for their padding.
pub struct RowBatch {
    batch: Batch,
    /// Rows per decode, padding included.
    rows: usize,
    /// Output rows per decode, real ones only (each is n_vocab floats).
    max_outputs: usize,
    outputs: usize,
    pad_seq: i32,
    pad_token: Token,
}

impl RowBatch {
    /// A batch of `rows` rows (see [`batch_rows`]) of up to `max_seqs` sequences each, at most
    /// `max_outputs` of them output rows; padding rows are `pad_token` in sequence `pad_seq`.
    pub fn new(rows: usize, max_seqs: usize, max_outputs: usize, pad_seq: i32, pad_token: Token) -> RowBatch {
        RowBatch { batch: Batch::new(rows, max_seqs), rows, max_outputs: max_outputs.max(1), outputs: 0, pad_seq, pad_token }
    }

    /// Rows per decode, padding included.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Output rows per decode at most.
    pub fn max_outputs(&self) -> usize {
        self.max_outputs
    }

    /// Real rows so far.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Starts a new decode.
    pub fn clear(&mut self) {
        self.batch.clear();
        self.outputs = 0;
    }

    /// Whether one more row (an output row when `output`) fits, padding included.
    pub fn fits(&self, output: bool) -> bool {
        let outputs = self.outputs + usize::from(output);
        padded_shape(self.len() + 1, outputs).0 <= self.rows && outputs <= self.max_outputs
    }

    /// Adds a row; returns its index in the batch (where its logits are read).
    pub fn push(&mut self, token: Token, pos: i32, seqs: &[i32], output: bool) -> Result<usize, EngineError> {
        let row = self.len();
        self.batch.push(token, pos, seqs, output)?;
        self.outputs += usize::from(output);
        Ok(row)
    }

    /// Pads the rows (see [`padded_shape`]) with throw-away tokens of the padding sequence,
    /// decodes them on `ctx` and removes the padding sequence again.
    pub fn decode_padded(&mut self, ctx: &mut Context<'_>) -> Result<(), EngineError> {
        let (n_tokens, n_outputs) = (self.len(), self.outputs);
        let (total, output_pads) = padded_shape(n_tokens, n_outputs);
        if total > self.rows {
            return Err(EngineError::PaddedTooLarge { rows: n_tokens, outputs: n_outputs, padded: total, batch: self.rows });
        }
        let pads = total - n_tokens;
        for i in 0..pads {
            self.batch.push(self.pad_token, i as i32, &[self.pad_seq], i < output_pads)?;
        }
        let result = ctx.decode(&self.batch, None);
        if pads > 0 {
            ctx.clear_seq(self.pad_seq);
        }
        result?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_decodes_are_whole_groups_of_rows_and_outputs() {
        assert_eq!(padded_shape(1, 1), (8, 7));
        assert_eq!(padded_shape(30, 0), (32, 0));
        assert_eq!(padded_shape(9, 9), (12, 3));
        assert_eq!(padded_shape(10, 1), (20, 7));
        assert_eq!(padded_shape(57, 13), (60, 3));
        for tokens in 1..=60 {
            for outputs in 0..=tokens {
                let (total, output_pads) = padded_shape(tokens, outputs);
                assert!(total % ROW_MULTIPLE == 0 && total >= MIN_ROWS && total >= tokens);
                assert!(total - tokens < PAD_CELLS && output_pads <= total - tokens);
                let padded_outputs = outputs + output_pads;
                assert!(outputs == 0 || (padded_outputs % ROW_MULTIPLE == 0 && padded_outputs >= MIN_ROWS));
            }
        }
    }

    #[test]
    fn batch_rows_are_whole_groups_within_the_ubatch() {
        assert_eq!(batch_rows(1), MIN_ROWS);
        assert_eq!(batch_rows(1000), MAX_UBATCH as usize);
        assert_eq!(batch_rows(31), 28);
    }

    #[test]
    fn one_more_row_fits_only_with_its_padding() {
        let mut b = RowBatch::new(12, 1, 2, 3, 0);
        for pos in 0..9 {
            assert!(b.fits(false));
            b.push(1, pos, &[0], false).unwrap();
        }
        // 10 rows, 1 output: the output pads to 8 rows, 9 + 8 = 17 > 12.
        assert!(!b.fits(true));
        assert!(b.fits(false));
        b.clear();
        b.push(1, 0, &[0], true).unwrap();
        b.push(1, 1, &[0], true).unwrap();
        assert!(!b.fits(true), "max_outputs is 2");
        assert_eq!((b.len(), b.outputs), (2, 2));
    }
}
