//! [`Batch`]: the tokens of one `llama_decode`, each with its position, its sequences and
//! whether its logits are wanted; and the one row-padding rule every decode of the crate keeps
//! ([`ROW_MULTIPLE`]).

use llama_cpp_sys_2 as sys;

use super::error::LlamaError;
use super::model::Token;

/// Every decode's row count (and, in evaluation, its output-row count) is padded to a multiple
/// of this. llama.cpp's repacked CPU matrix products (Q4_K here) take the rows of a micro-batch
/// four at a time (a gemm kernel, activations quantized in groups of four rows) and send the
/// `rows % 4` left over to a gemv kernel that rounds differently; the last-bit differences are
/// then amplified by the 8-bit quantization of later layers' activations (up to ~1% in Gemma 3's
/// last layers). Which tokens fell into that remainder depended on the batch layout: decoding a
/// shared prefix in calls of its own moved continuation log-likelihoods by 0.02 to 0.2 nats
/// against one single-sequence pass. With every product a whole number of 4-row groups, a row's
/// numbers no longer depend on the rows beside it: measured bit-identical across layouts
/// (examples/prefix_probe.rs; calibration's statistics likewise, tests/calibrate_real.rs).
pub const ROW_MULTIPLE: usize = 4;

/// `rows` rounded up to a whole number of [`ROW_MULTIPLE`] groups.
pub fn round_up_rows(rows: usize) -> usize {
    rows.div_ceil(ROW_MULTIPLE) * ROW_MULTIPLE
}

/// The tokens of one decode, in a `llama_batch` allocated once for `capacity` tokens of up to
/// `max_seqs` sequences each and refilled for every decode.
pub struct Batch {
    raw: sys::llama_batch,
    capacity: usize,
    max_seqs: usize,
}

// SAFETY: the batch owns its arrays; it is only touched through `&mut self` or read by a decode
// borrowing it.
unsafe impl Send for Batch {}

impl Batch {
    /// An empty batch with room for `capacity` tokens of at most `max_seqs` sequences each.
    pub fn new(capacity: usize, max_seqs: usize) -> Batch {
        let capacity = capacity.clamp(1, i32::MAX as usize);
        let max_seqs = max_seqs.clamp(1, i32::MAX as usize);
        // SAFETY: plain allocation; freed in Drop.
        let raw = unsafe { sys::llama_batch_init(capacity as i32, 0, max_seqs as i32) };
        Batch { raw, capacity, max_seqs }
    }

    /// Tokens in the batch.
    pub fn len(&self) -> usize {
        self.raw.n_tokens as usize
    }

    /// True when the batch holds no token.
    pub fn is_empty(&self) -> bool {
        self.raw.n_tokens == 0
    }

    /// Most tokens the batch holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Empties the batch (keeping its allocation).
    pub fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    /// Appends `token` at position `pos` of every sequence in `seqs`; `output` asks for its
    /// logits (or, in calibration, marks the row the last layer must compute).
    pub fn push(&mut self, token: Token, pos: i32, seqs: &[i32], output: bool) -> Result<(), LlamaError> {
        let i = self.len();
        if i >= self.capacity {
            return Err(LlamaError::BatchFull { capacity: self.capacity });
        }
        if seqs.len() > self.max_seqs {
            return Err(LlamaError::TooManySequences { n_seqs: seqs.len(), max: self.max_seqs });
        }
        // SAFETY: llama_batch_init allocated every array for `capacity` tokens and `max_seqs`
        // sequence ids per token; i < capacity and seqs.len() <= max_seqs (checked above).
        unsafe {
            *self.raw.token.add(i) = token;
            *self.raw.pos.add(i) = pos;
            *self.raw.n_seq_id.add(i) = seqs.len() as i32;
            let ids = *self.raw.seq_id.add(i);
            for (k, &s) in seqs.iter().enumerate() {
                *ids.add(k) = s;
            }
            *self.raw.logits.add(i) = i8::from(output);
        }
        self.raw.n_tokens += 1;
        Ok(())
    }

    /// The token of row `i`.
    pub fn token(&self, i: usize) -> Option<Token> {
        // SAFETY: rows below `len` were written by `push`.
        (i < self.len()).then(|| unsafe { *self.raw.token.add(i) })
    }

    /// Every sequence id of the batch's tokens (for the context's range check).
    pub(super) fn seq_ids(&self) -> impl Iterator<Item = i32> + '_ {
        (0..self.len()).flat_map(move |i| {
            // SAFETY: rows below `len` were written by `push`, with n_seq_id ids each.
            let (n, ids) = unsafe { (*self.raw.n_seq_id.add(i) as usize, *self.raw.seq_id.add(i)) };
            // SAFETY: as above.
            (0..n).map(move |k| unsafe { *ids.add(k) })
        })
    }

    /// The raw batch, for `llama_decode`.
    pub(super) fn raw(&self) -> sys::llama_batch {
        self.raw
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: allocated by llama_batch_init in `new`; n_tokens does not matter to the free.
        unsafe { sys::llama_batch_free(self.raw) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_up_to_whole_groups() {
        assert_eq!(round_up_rows(0), 0);
        assert_eq!(round_up_rows(1), 4);
        assert_eq!(round_up_rows(8), 8);
        assert_eq!(round_up_rows(9), 12);
    }

    #[test]
    fn a_batch_keeps_its_tokens_and_refuses_overflow() {
        let mut b = Batch::new(2, 2);
        b.push(5, 0, &[0, 1], true).unwrap();
        b.push(6, 1, &[1], false).unwrap();
        assert_eq!((b.len(), b.token(1), b.token(2)), (2, Some(6), None));
        assert_eq!(b.seq_ids().collect::<Vec<_>>(), vec![0, 1, 1]);
        assert!(matches!(b.push(7, 2, &[0], false), Err(LlamaError::BatchFull { capacity: 2 })));
        b.clear();
        assert!(b.is_empty());
        assert!(matches!(b.push(7, 0, &[0, 1, 2], false), Err(LlamaError::TooManySequences { n_seqs: 3, max: 2 })));
    }
}
