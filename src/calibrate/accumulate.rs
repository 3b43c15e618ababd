//! The capture accumulators: an [`ActivationSink`] that turns the matmul inputs of each decode
//! into per-text Σx² per column (f64), and, when a text ends, adds √(Σx²) to the weight's
//! `norm_sum` — the MathNeuro statistic A_j = Σ_s ‖X_s[:,j]‖₂. Pooled Σx² and token counts are
//! kept alongside for imatrix export.
//!
//! Rows of a decode belong to texts in contiguous runs (`Segment`s); each text in flight owns a
//! slot (its llama.cpp sequence id). Weights fed from the same activation tensor (q/k/v, gate/up)
//! share one pass over the rows.

use std::collections::HashMap;

use crate::ffi::llama::{ActivationSink, Activations, ExpertIds};
use crate::stats::{ActivationStats, WeightStats};

/// Shape of one captured weight.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightShape {
    /// Tensor name.
    pub name: String,
    /// Input width.
    pub n_in: usize,
    /// Experts (1 for a plain matrix).
    pub n_groups: usize,
}

/// A contiguous run of rows of the current decode belonging to one text slot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segment {
    /// Slot (sequence id) of the text.
    pub slot: usize,
    /// First row.
    pub start: usize,
    /// One past the last row.
    pub end: usize,
}

/// Running sums over everything measured so far, in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Totals {
    /// Per weight: Σ_s √(Σ_t x²), `n_in × n_groups`.
    pub norm_sum: Vec<Vec<f64>>,
    /// Per weight: pooled Σ x².
    pub sum_sq: Vec<Vec<f64>>,
    /// Per weight and group: rows seen.
    pub tokens: Vec<Vec<u64>>,
    /// Texts finished.
    pub samples: u64,
    /// Tokens measured.
    pub total_tokens: u64,
}

impl Totals {
    /// Zeros for `shapes`.
    pub fn zeros(shapes: &[WeightShape]) -> Totals {
        Totals {
            norm_sum: shapes.iter().map(|s| vec![0.0; s.n_in * s.n_groups]).collect(),
            sum_sq: shapes.iter().map(|s| vec![0.0; s.n_in * s.n_groups]).collect(),
            tokens: shapes.iter().map(|s| vec![0; s.n_groups]).collect(),
            samples: 0,
            total_tokens: 0,
        }
    }

    /// The f32 STATS view of these totals.
    pub fn to_stats(&self, shapes: &[WeightShape], model_fingerprint: &str) -> ActivationStats {
        let weights = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    s.name.clone(),
                    WeightStats {
                        n_in: s.n_in,
                        n_groups: s.n_groups,
                        norm_sum: self.norm_sum[i].iter().map(|v| *v as f32).collect(),
                        sum_sq: self.sum_sq[i].iter().map(|v| *v as f32).collect(),
                        tokens: self.tokens[i].clone(),
                    },
                )
            })
            .collect();
        ActivationStats {
            model_fingerprint: model_fingerprint.to_string(),
            samples: self.samples,
            tokens: self.total_tokens,
            datasets: Vec::new(),
            seeds: Vec::new(),
            weights,
        }
    }
}

/// What an activation report got wrong (the graph does not match the tensor table).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccumulateError {
    /// An input activation is NaN or infinite: the model's weights hold NaN or its activations
    /// overflow, and STATS from it would be NaN (issue 27 case 12).
    #[error("{weight}: its input activations are not finite (NaN or infinite); the model's weights hold NaN or its activations overflow, so no STATS are written")]
    NotFinite {
        /// The first weight (in tensor-table order) whose input was not finite.
        weight: String,
    },
    /// Input rows of another width than the weight's columns (or a plain matmul of an expert
    /// weight).
    #[error("{weight}: input rows have {got} values, the weight has {columns} columns")]
    Width {
        /// The weight.
        weight: String,
        /// Values per input row.
        got: usize,
        /// The weight's columns.
        columns: usize,
    },
    /// Input rows other than the batch's tokens.
    #[error("{weight}: input has {got} rows, the batch has {tokens} tokens")]
    Rows {
        /// The weight.
        weight: String,
        /// Input rows.
        got: usize,
        /// Tokens in the batch.
        tokens: usize,
    },
    /// A mixture-of-experts input that does not match the weight or the batch.
    #[error("{weight}: expert input [{n_in}, {ne0}, {ne1}] and ids [{n_used}, {id_tokens}] do not match {columns} columns and {tokens} tokens")]
    ExpertShape {
        /// The weight.
        weight: String,
        /// Values per input row.
        n_in: usize,
        /// Input extent 1.
        ne0: usize,
        /// Input extent 2.
        ne1: usize,
        /// Experts per token.
        n_used: usize,
        /// Tokens of the ids.
        id_tokens: usize,
        /// The weight's columns.
        columns: usize,
        /// Tokens in the batch.
        tokens: usize,
    },
    /// An expert id outside the weight's experts.
    #[error("{weight}: expert id {id} outside 0..{n_experts}")]
    ExpertId {
        /// The weight.
        weight: String,
        /// The id.
        id: i32,
        /// Experts of the weight.
        n_experts: usize,
    },
    /// Watched weights that no matmul of the forward pass used.
    #[error("{count} watched weight(s) were not multiplied in this forward pass (first: {first}); the model's graph does not match its tensor table")]
    Unseen {
        /// How many.
        count: usize,
        /// The first one.
        first: String,
    },
}

/// Accumulates activations of the texts in flight and folds finished texts into [`Totals`].
pub struct Accumulator {
    shapes: Vec<WeightShape>,
    offsets: Vec<usize>,
    per_text: usize,
    /// Per slot: Σx² of the text in flight, all weights concatenated.
    slots: Vec<Vec<f64>>,
    segments: Vec<Segment>,
    n_rows: usize,
    real_rows: usize,
    /// Per activation tensor of this decode: Σx² per (segment, column).
    partials: HashMap<usize, Vec<f64>>,
    /// Weights reported during this decode.
    seen: Vec<bool>,
    /// Everything finished so far.
    pub totals: Totals,
    error: Option<AccumulateError>,
}

impl Accumulator {
    /// An accumulator for `shapes` with `n_slots` texts in flight at most.
    pub fn new(shapes: Vec<WeightShape>, n_slots: usize) -> Accumulator {
        let mut offsets = Vec::with_capacity(shapes.len());
        let mut per_text = 0;
        for s in &shapes {
            offsets.push(per_text);
            per_text += s.n_in * s.n_groups;
        }
        let totals = Totals::zeros(&shapes);
        let seen = vec![false; shapes.len()];
        Accumulator {
            shapes,
            offsets,
            per_text,
            slots: (0..n_slots).map(|_| Vec::new()).collect(),
            segments: Vec::new(),
            n_rows: 0,
            real_rows: 0,
            partials: HashMap::new(),
            seen,
            totals,
            error: None,
        }
    }

    /// The weights measured.
    pub fn shapes(&self) -> &[WeightShape] {
        &self.shapes
    }

    /// Declares the rows of the next decode: `segments` of texts, then padding up to `n_rows`
    /// (rows outside every segment are ignored).
    pub fn begin_decode(&mut self, segments: &[Segment], n_rows: usize) {
        self.segments.clear();
        self.segments.extend_from_slice(segments);
        self.n_rows = n_rows;
        let real_rows: usize = segments.iter().map(|s| s.end - s.start).sum();
        self.partials.clear();
        self.seen.iter_mut().for_each(|s| *s = false);
        for seg in segments {
            let slot = &mut self.slots[seg.slot];
            if slot.is_empty() {
                slot.resize(self.per_text, 0.0);
            }
        }
        self.totals.total_tokens += real_rows as u64;
        self.real_rows = real_rows;
    }

    /// Ends a decode; returns the first problem met, or the names of weights not reported.
    pub fn end_decode(&mut self) -> Result<(), AccumulateError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        for acc in &self.slots {
            if let Some(i) = acc.iter().position(|v| !v.is_finite()) {
                let w = self.offsets.iter().rposition(|off| *off <= i).unwrap_or(0);
                return Err(AccumulateError::NotFinite { weight: self.shapes[w].name.clone() });
            }
        }
        let missing: Vec<&str> = self.shapes.iter().zip(&self.seen).filter(|(_, s)| !**s).map(|(w, _)| w.name.as_str()).collect();
        if !missing.is_empty() {
            return Err(AccumulateError::Unseen { count: missing.len(), first: missing[0].to_string() });
        }
        Ok(())
    }

    /// The text in `slot` has ended: adds √(Σx²) per column to `norm_sum` and frees the slot.
    pub fn finish_text(&mut self, slot: usize) {
        let acc = std::mem::take(&mut self.slots[slot]);
        if acc.is_empty() {
            return;
        }
        for (w, off) in self.offsets.iter().enumerate() {
            let n = self.shapes[w].n_in * self.shapes[w].n_groups;
            for (dst, v) in self.totals.norm_sum[w].iter_mut().zip(&acc[*off..off + n]) {
                *dst += v.sqrt();
            }
        }
        self.totals.samples += 1;
        // Keep the allocation for the next text in this slot.
        let mut acc = acc;
        acc.iter_mut().for_each(|v| *v = 0.0);
        self.slots[slot] = acc;
    }

    fn fail(&mut self, e: AccumulateError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}

/// A plain matmul's input must be as wide as the weight's columns and have one row per token
/// of the decode (`n_rows`): the check every sink makes before it reads the rows.
pub(super) fn check_input(shape: &WeightShape, input: &Activations<'_>, n_rows: usize) -> Result<(), AccumulateError> {
    if input.n_in != shape.n_in {
        return Err(AccumulateError::Width { weight: shape.name.clone(), got: input.n_in, columns: shape.n_in });
    }
    if input.n_rows() != n_rows {
        return Err(AccumulateError::Rows { weight: shape.name.clone(), got: input.n_rows(), tokens: n_rows });
    }
    Ok(())
}

/// Σ x² per column over `rows` of `acts`, added into `out` (f64).
fn add_squares(acts: &Activations<'_>, rows: std::ops::Range<usize>, out: &mut [f64]) {
    for r in rows {
        let x = acts.row_flat(r);
        for (o, v) in out.iter_mut().zip(x) {
            let v = *v as f64;
            *o += v * v;
        }
    }
}

impl ActivationSink for Accumulator {
    fn matmul(&mut self, weight: usize, input_id: usize, input: &Activations<'_>) {
        let shape = &self.shapes[weight];
        let n_in = shape.n_in;
        if shape.n_groups != 1 {
            let e = AccumulateError::Width { weight: shape.name.clone(), got: input.n_in, columns: n_in };
            return self.fail(e);
        }
        if let Err(e) = check_input(shape, input, self.n_rows) {
            return self.fail(e);
        }
        self.seen[weight] = true;
        let segments = &self.segments;
        let partial = self.partials.entry(input_id).or_insert_with(|| {
            let mut p = vec![0.0; segments.len() * n_in];
            for (k, seg) in segments.iter().enumerate() {
                add_squares(input, seg.start..seg.end, &mut p[k * n_in..(k + 1) * n_in]);
            }
            p
        });
        let off = self.offsets[weight];
        for (k, seg) in self.segments.iter().enumerate() {
            let part = &partial[k * n_in..(k + 1) * n_in];
            for (d, p) in self.slots[seg.slot][off..off + n_in].iter_mut().zip(part) {
                *d += p;
            }
            for (d, p) in self.totals.sum_sq[weight].iter_mut().zip(part) {
                *d += p;
            }
        }
        self.totals.tokens[weight][0] += self.real_rows as u64;
    }

    fn matmul_id(&mut self, weight: usize, input: &Activations<'_>, ids: &ExpertIds<'_>) {
        let shape = &self.shapes[weight];
        let (n_in, n_groups) = (shape.n_in, shape.n_groups);
        if input.n_in != n_in || ids.n_tokens != self.n_rows || input.ne[1] != ids.n_tokens || input.ne[0] == 0 {
            let e = AccumulateError::ExpertShape {
                weight: shape.name.clone(),
                n_in: input.n_in,
                ne0: input.ne[0],
                ne1: input.ne[1],
                n_used: ids.n_used,
                id_tokens: ids.n_tokens,
                columns: n_in,
                tokens: self.n_rows,
            };
            return self.fail(e);
        }
        self.seen[weight] = true;
        let off = self.offsets[weight];
        for seg in &self.segments {
            for t in seg.start..seg.end {
                for k in 0..ids.n_used {
                    let e = ids.get(k, t);
                    if e < 0 || e as usize >= n_groups {
                        let e = AccumulateError::ExpertId { weight: shape.name.clone(), id: e, n_experts: n_groups };
                        return self.fail(e);
                    }
                    let e = e as usize;
                    let x = input.row(k % input.ne[0], t, 0);
                    let slot = &mut self.slots[seg.slot][off + e * n_in..off + (e + 1) * n_in];
                    let pooled = &mut self.totals.sum_sq[weight][e * n_in..(e + 1) * n_in];
                    for ((s, p), v) in slot.iter_mut().zip(pooled.iter_mut()).zip(x) {
                        let sq = (*v as f64) * (*v as f64);
                        *s += sq;
                        *p += sq;
                    }
                    self.totals.tokens[weight][e] += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(name: &str) -> WeightShape {
        WeightShape { name: name.into(), n_in: 2, n_groups: 1 }
    }

    /// Two texts with a known activation matrix pin the statistic: A_j = Σ_s ‖X_s[:,j]‖₂ (per-text
    /// column norms summed, not the norm of the pooled rows), the pooled Σx², the token and
    /// sample counts; padding rows count nowhere; weights fed from one tensor (q/k) get the same.
    #[test]
    fn statistic_is_the_sum_over_texts_of_per_text_column_norms() {
        let mut acc = Accumulator::new(vec![shape("q"), shape("k")], 2);
        // Decode 1: row 0 is text A's first token, row 1 text B's only token, row 2 padding.
        let rows1 = [3.0, 0.0, 1.0, 2.0, 100.0, 100.0];
        acc.begin_decode(&[Segment { slot: 0, start: 0, end: 1 }, Segment { slot: 1, start: 1, end: 2 }], 3);
        for w in 0..2 {
            acc.matmul(w, 7, &Activations::contiguous(&rows1, 2));
        }
        acc.end_decode().unwrap();
        acc.finish_text(1);
        // Decode 2: text A's second token.
        let rows2 = [4.0, 1.0];
        acc.begin_decode(&[Segment { slot: 0, start: 0, end: 1 }], 1);
        for w in 0..2 {
            acc.matmul(w, 3, &Activations::contiguous(&rows2, 2));
        }
        acc.end_decode().unwrap();
        acc.finish_text(0);
        // A: X = [[3, 0], [4, 1]] → ‖·‖ = [5, 1]; B: X = [[1, 2]] → [1, 2].
        let t = &acc.totals;
        for w in 0..2 {
            assert_eq!(t.norm_sum[w], vec![6.0, 3.0], "A_j = 5 + 1, 1 + 2 (not √26, √5 of the pooled rows)");
            assert_eq!(t.sum_sq[w], vec![26.0, 5.0], "pooled Σx² = 9 + 1 + 16, 0 + 4 + 1");
            assert_eq!(t.tokens[w], vec![3]);
        }
        assert_eq!((t.samples, t.total_tokens), (2, 3));
        let stats = t.to_stats(acc.shapes(), "fp");
        assert_eq!(stats.weights["q"].norm_sum, vec![6.0f32, 3.0]);
        assert_eq!(stats.weights["k"].sum_sq, vec![26.0f32, 5.0]);
    }

    /// Mixture of experts: each expert's A_j counts only the tokens routed to it, per text.
    /// Three tokens (text A: 0 and 1, text B: 2), two of three experts each (ids 0 1 | 1 2 | 0 2);
    /// the gate/up input is one row per token (broadcast over the slots), the down input one row
    /// per (slot, token).
    #[test]
    fn experts_count_only_their_routed_tokens() {
        let experts = |name: &str, n_in| WeightShape { name: name.into(), n_in, n_groups: 3 };
        let mut acc = Accumulator::new(vec![experts("up_exps", 2), experts("down_exps", 1)], 2);
        acc.begin_decode(&[Segment { slot: 0, start: 0, end: 2 }, Segment { slot: 1, start: 2, end: 3 }], 3);
        let ids = [0, 1, 1, 2, 0, 2];
        let ids = ExpertIds::contiguous(&ids, 2);
        let up = [3.0, 0.0, 4.0, 1.0, 1.0, 2.0];
        acc.matmul_id(0, &Activations::contiguous_3d(&up, 2, [1, 3, 1]), &ids);
        // Row (slot k, token t) holds 10·t + k + 1.
        let down = [1.0, 2.0, 11.0, 12.0, 21.0, 22.0];
        acc.matmul_id(1, &Activations::contiguous_3d(&down, 1, [2, 3, 1]), &ids);
        acc.end_decode().unwrap();
        acc.finish_text(0);
        acc.finish_text(1);
        let t = &acc.totals;
        // Expert 0: A's token 0 and B's token 2 (two texts); expert 1: A's tokens 0 and 1 (one
        // text: one norm of two rows); expert 2: A's token 1 and B's token 2.
        assert_eq!(t.norm_sum[0], vec![3.0 + 1.0, 0.0 + 2.0, 5.0, 1.0, 4.0 + 1.0, 1.0 + 2.0]);
        assert_eq!(t.sum_sq[0], vec![10.0, 4.0, 25.0, 1.0, 17.0, 5.0]);
        assert_eq!(t.norm_sum[1], vec![1.0 + 21.0, 125f64.sqrt(), 12.0 + 22.0]);
        assert_eq!(t.sum_sq[1], vec![442.0, 125.0, 628.0]);
        assert_eq!(t.tokens[0], vec![2, 2, 2]);
        assert_eq!(t.tokens[1], vec![2, 2, 2]);
    }

    /// An expert id outside the weight's experts is an error naming the weight.
    #[test]
    fn an_expert_id_out_of_range_is_reported() {
        let mut acc = Accumulator::new(vec![WeightShape { name: "up_exps".into(), n_in: 1, n_groups: 2 }], 1);
        acc.begin_decode(&[Segment { slot: 0, start: 0, end: 1 }], 1);
        acc.matmul_id(0, &Activations::contiguous_3d(&[1.0], 1, [1, 1, 1]), &ExpertIds::contiguous(&[5], 1));
        let e = acc.end_decode().unwrap_err().to_string();
        assert!(e.contains("up_exps") && e.contains("expert id 5 outside 0..2"), "{e}");
    }

    /// A weight not multiplied in a decode is an error naming it.
    #[test]
    fn an_unseen_weight_is_reported() {
        let mut acc = Accumulator::new(vec![shape("q"), shape("k")], 1);
        acc.begin_decode(&[Segment { slot: 0, start: 0, end: 1 }], 1);
        acc.matmul(0, 0, &Activations::contiguous(&[1.0, 1.0], 2));
        assert!(acc.end_decode().unwrap_err().to_string().contains("first: k"));
    }
}
