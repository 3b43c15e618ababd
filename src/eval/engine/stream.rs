//! [`Session::extend`]: one sequence decoded piece by piece, every piece continuing the cache,
//! each token's logit row handed back. Used where two models must be read in lockstep (the
//! KL divergence of `eval::kld`): each decodes a piece, their rows are compared, and only one
//! piece of rows per model is held.

use super::{EngineError, PAD_CELLS, Session, Token};

impl Session<'_> {
    /// Empties the cache: the next [`Session::extend`] starts a sequence at position 0.
    pub fn restart(&mut self) {
        self.clear_all();
    }

    /// Most tokens one [`Session::extend`] call takes (rows of one padded decode that may all
    /// be outputs).
    pub fn piece_len(&self) -> usize {
        self.batch.rows().min(self.batch.max_outputs()).max(1)
    }

    /// Decodes `tokens` at positions `start..` of sequence 0, after what the cache already holds
    /// (positions `0..start`), and returns each token's logit row. At most
    /// [`Session::piece_len`] tokens per call; padded like every decode, so the rows do not
    /// depend on where the pieces split.
    pub fn extend(&mut self, tokens: &[Token], start: usize) -> Result<Vec<Vec<f32>>, EngineError> {
        if start + tokens.len() + PAD_CELLS > self.n_ctx {
            return Err(EngineError::TooLong { tokens: start + tokens.len(), n_ctx: self.n_ctx });
        }
        let mut rows = Vec::with_capacity(tokens.len());
        for (offset, piece) in (0..).step_by(self.piece_len()).zip(tokens.chunks(self.piece_len())) {
            self.batch.clear();
            for (i, &t) in piece.iter().enumerate() {
                self.batch.push(t, (start + offset + i) as i32, &[0], true)?;
            }
            self.batch.decode_padded(&mut self.ctx)?;
            for i in 0..piece.len() {
                rows.push(self.ctx.logits(i)?.to_vec());
            }
        }
        Ok(rows)
    }
}
