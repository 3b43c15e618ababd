//! Rewriting a whole tensor in another type: every row is decoded to f32, its selected entries
//! changed (×s, or 0), and the row encoded in the destination type with ggml's own quantizer
//! (`ggml_quantize_chunk`), guided by the importance vector for the types that take one, as
//! llama-quantize does with an imatrix. Used by `--edit promote=TYPE` (targets with selected
//! entries) and by the master-precision flow (`--quantize`: every tensor whose type changes).
//!
//! Unlike the in-grid edit every block is re-encoded, so the tallies count every block as
//! rewritten and every non-selected entry of the tensor as collateral (its move is the
//! destination type's own rounding). Rows are processed in chunks in parallel; only the output
//! bytes of the tensor and one chunk of f32 scratch per worker are held.

use rayon::prelude::*;

use super::blocks::{Change, accepts_importance};
use super::report::BlockTally;
use crate::ffi::ggml::{self, CodecError};
use crate::gguf::{GgmlType, TensorInfo};
use crate::select::BitMask;

/// About this many values per parallel work item: big enough that ggml's per-call overhead
/// vanishes, small enough that the scratch stays in cache.
const CHUNK_VALUES: usize = 1 << 16;

/// Encodes tensor `info` (whose bytes are `data`) as `dest`, changing the entries in `mask` by
/// `change` first. `importance` holds one weight per column and group (`n_in × groups`), used
/// when `dest` takes one. Returns the new bytes and the tallies (against the decoded source).
pub fn transcode_tensor(
    info: &TensorInfo,
    data: &[u8],
    mask: Option<&BitMask>,
    change: Change,
    dest: GgmlType,
    importance: Option<&[f32]>,
) -> Result<(Vec<u8>, BlockTally), CodecError> {
    let n_in = info.dims[0] as usize;
    let n_rows = info.n_rows() as usize;
    let groups = if info.dims.len() == 3 { info.dims[2] as usize } else { 1 };
    let rows_per_group = (n_rows / groups.max(1)).max(1);
    let dest_bs = dest.block_size() as usize;
    if n_in == 0 || !n_in.is_multiple_of(dest_bs) {
        return Err(CodecError::BadRows { ty: dest, len: n_in, n_per_row: n_in, block: dest.block_size() });
    }
    let src_row = info.row_bytes() as usize;
    let dest_row = dest.bytes_for(n_in as u64).expect("whole blocks") as usize;
    // Rows per chunk: a divisor of the rows per group, so that one chunk shares one importance
    // vector (experts have their own).
    let want = (CHUNK_VALUES / n_in).max(1);
    let chunk_rows = (1..=want.min(rows_per_group)).rev().find(|&r| rows_per_group.is_multiple_of(r)).unwrap_or(1);
    let use_importance = importance.filter(|_| accepts_importance(dest));
    let mut out = vec![0u8; dest_row * n_rows];
    let tally = out
        .par_chunks_mut(dest_row * chunk_rows)
        .zip(data.par_chunks(src_row * chunk_rows))
        .enumerate()
        .map(|(c, (dst, src))| {
            let first_row = c * chunk_rows;
            let rows = src.len() / src_row;
            let g = first_row / rows_per_group;
            let orig = ggml::dequantize_to_vec(info.ggml_type, src, rows * n_in)?;
            let mut target = orig.clone();
            let mut selected: Vec<Vec<usize>> = vec![Vec::new(); rows];
            if let Some(mask) = mask {
                for (r, sel) in selected.iter_mut().enumerate() {
                    let start = ((first_row + r) * n_in) as u64;
                    mask.ones_in(start, start + n_in as u64, sel);
                    for &j in sel.iter() {
                        target[r * n_in + j] = match change {
                            Change::Scale(f) => orig[r * n_in + j] * f,
                            Change::Prune => 0.0,
                        };
                    }
                }
            }
            let imp = use_importance.map(|v| &v[g * n_in..(g + 1) * n_in]);
            let bytes = ggml::quantize(dest, &target, n_in, imp)?;
            dst.copy_from_slice(&bytes);
            let new = ggml::dequantize_to_vec(dest, &bytes, rows * n_in)?;
            let mut tally = BlockTally::default();
            let mut sel_flags = vec![false; n_in];
            for (r, sel) in selected.iter().enumerate() {
                let row = r * n_in..(r + 1) * n_in;
                let blocks = (n_in / dest_bs) as u64;
                tally.blocks += blocks;
                tally.blocks_rewritten += blocks;
                let mut last_block = usize::MAX;
                for &j in sel {
                    sel_flags[j] = true;
                    if j / dest_bs != last_block {
                        tally.blocks_touched += 1;
                        last_block = j / dest_bs;
                    }
                }
                tally.record(&orig[row.clone()], &target[row.clone()], &new[row], &sel_flags, sel);
                for &j in sel {
                    sel_flags[j] = false;
                }
            }
            Ok(tally)
        })
        .collect::<Result<Vec<BlockTally>, CodecError>>()?
        .into_iter()
        // In chunk order, so the report's float totals do not depend on the thread count.
        .fold(BlockTally::default(), BlockTally::merge);
    Ok((out, tally))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(ty: GgmlType, dims: &[u64]) -> TensorInfo {
        TensorInfo { name: "blk.0.ffn_up.weight".into(), dims: dims.to_vec(), ggml_type: ty, offset: 0 }
    }

    #[test]
    fn promoted_entries_land_within_the_destination_step() {
        let (n_in, rows) = (256usize, 8usize);
        let src = crate::gguf::synth::pseudo_random_f32(5, n_in * rows);
        let q = ggml::quantize(GgmlType::Q4_K, &src, n_in, None).unwrap();
        let orig = ggml::dequantize_to_vec(GgmlType::Q4_K, &q, src.len()).unwrap();
        let mut mask = BitMask::new(src.len() as u64);
        for i in (0..src.len() as u64).step_by(37) {
            mask.set(i);
        }
        for dest in [GgmlType::Q8_0, GgmlType::F16, GgmlType::BF16, GgmlType::F32] {
            let t = info(GgmlType::Q4_K, &[n_in as u64, rows as u64]);
            let (bytes, tally) = transcode_tensor(&t, &q, Some(&mask), Change::Scale(1.1), dest, None).unwrap();
            let new = ggml::dequantize_to_vec(dest, &bytes, src.len()).unwrap();
            for (i, (&o, &n)) in orig.iter().zip(&new).enumerate() {
                let want = if mask.get(i as u64) { o * 1.1 } else { o };
                // Q8_0: half a step of the block's largest entry / 127 (plus the f16 rounding of
                // the step, up to 2^-11 of the value); floats: their own rounding.
                let block_max = orig[i / 32 * 32..i / 32 * 32 + 32].iter().fold(0f32, |m, v| m.max(v.abs())) * 1.1;
                let tol = match dest {
                    GgmlType::Q8_0 => 0.5 * block_max / 127.0 * 1.001 + want.abs() * 2f32.powi(-11) * 1.01 + 1e-9,
                    GgmlType::F16 => want.abs() * 2f32.powi(-11) + 1e-7,
                    GgmlType::BF16 => want.abs() * 2f32.powi(-8) + 1e-30,
                    _ => 0.0,
                };
                assert!((n - want).abs() <= tol, "{dest} entry {i}: {n} vs {want} (tol {tol})");
            }
            assert_eq!(tally.selected, mask.count());
            assert!(tally.achieved_fraction() > 0.97, "{dest}: {}", tally.achieved_fraction());
            assert_eq!(tally.blocks_rewritten, tally.blocks);
        }
    }

    #[test]
    fn importance_is_used_per_group_and_rows_must_be_whole_blocks() {
        let src = crate::gguf::synth::pseudo_random_f32(8, 256 * 4 * 2);
        let f16 = ggml::quantize(GgmlType::F16, &src, 256, None).unwrap();
        let t = TensorInfo { name: "blk.0.ffn_up_exps.weight".into(), dims: vec![256, 4, 2], ggml_type: GgmlType::F16, offset: 0 };
        let imp: Vec<f32> = (0..512).map(|i| 1.0 + (i % 7) as f32).collect();
        let (bytes, _) = transcode_tensor(&t, &f16, None, Change::Scale(1.0), GgmlType::Q4_K, Some(&imp)).unwrap();
        // The same as quantizing each expert with its own importance vector.
        let vals = ggml::dequantize_to_vec(GgmlType::F16, &f16, src.len()).unwrap();
        let mut want = ggml::quantize(GgmlType::Q4_K, &vals[..1024], 256, Some(&imp[..256])).unwrap();
        want.extend(ggml::quantize(GgmlType::Q4_K, &vals[1024..], 256, Some(&imp[256..])).unwrap());
        assert_eq!(bytes, want);
        let odd = info(GgmlType::F32, &[40, 2]);
        assert!(transcode_tensor(&odd, &[0u8; 320], None, Change::Scale(1.0), GgmlType::Q8_0, None).is_err());
    }
}
