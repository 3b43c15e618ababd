//! ggml's codecs on the real default model: every tensor decodes to finite values, row ranges
//! decode like the whole tensor, and quantize(dequantize(rows)) gives back the original bytes for
//! Q5_0 and Q8_0, for all but a few Q4_K blocks (≥ 99.5 %, the rest within one 4-bit step), and
//! the original values for ≥ 99 % of Q6_K (see docs/BENCHMARKS-gguf.md for the measured counts).

use std::collections::BTreeMap;

use mathneuro::ffi::ggml::{self, CodecError};
use mathneuro::gguf::{GgmlType, GgufFile, TensorInfo};
use rayon::prelude::*;

use crate::common;

fn real_model() -> GgufFile {
    GgufFile::open(common::real_model_path()).expect("the default model parses")
}

/// Tests share the machine: two threads at most.
fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
}

/// Row chunks of at most ~1M values, so no tensor is decoded in one huge buffer.
fn row_chunks(t: &TensorInfo) -> Vec<std::ops::Range<u64>> {
    let per = ((1u64 << 20) / t.row_len()).max(1);
    (0..t.n_rows()).step_by(per as usize).map(|s| s..(s + per).min(t.n_rows())).collect()
}

#[test]
fn every_tensor_dequantizes_to_finite_values() {
    let f = real_model();
    let per_type: BTreeMap<GgmlType, usize> = f.tensors.iter().fold(BTreeMap::new(), |mut m, t| {
        *m.entry(t.ggml_type).or_default() += 1;
        m
    });
    let expected = [(GgmlType::F32, 109), (GgmlType::Q5_0, 81), (GgmlType::Q4_K, 27), (GgmlType::Q8_0, 10), (GgmlType::Q6_K, 9)];
    assert_eq!(per_type, expected.into_iter().collect(), "tensor types of the default model");

    let decoded: u64 = pool().install(|| {
        f.tensors
            .par_iter()
            .map(|t| {
                let mut buf = Vec::new();
                let mut n = 0u64;
                for rows in row_chunks(t) {
                    buf.resize(((rows.end - rows.start) * t.row_len()) as usize, f32::NAN);
                    ggml::dequantize_rows_into(&f, t, rows.clone(), &mut buf).unwrap();
                    if let Some(i) = buf.iter().position(|v| !v.is_finite()) {
                        panic!("{} ({}): value {} at row {} is not finite", t.name, t.ggml_type, buf[i], rows.start + i as u64 / t.row_len());
                    }
                    n += buf.len() as u64;
                }
                n
            })
            .sum()
    });
    assert_eq!(decoded, f.tensors.iter().map(|t| t.n_elements()).sum::<u64>());
    assert_eq!(decoded, 268_098_176, "every parameter of the model was decoded");
}

#[test]
fn f32_tensors_decode_to_their_own_bytes() {
    let f = real_model();
    let t = f.tensor("output_norm.weight").unwrap();
    let values = ggml::dequantize_rows(&f, t, 0..t.n_rows()).unwrap();
    let raw: Vec<f32> = f.tensor_data(t).chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(values, raw);
}

#[test]
fn row_ranges_decode_like_the_whole_tensor() {
    let f = real_model();
    for name in ["blk.3.attn_q.weight", "blk.3.attn_output.weight", "blk.3.ffn_down.weight", "blk.3.attn_v.weight", "blk.3.attn_norm.weight"] {
        let t = f.tensor(name).unwrap();
        let whole = ggml::dequantize_rows(&f, t, 0..t.n_rows()).unwrap();
        let n = t.n_rows();
        let row = t.row_len() as usize;
        for rows in [0..1, n / 3..n / 2, n - 1..n, 5.min(n - 1)..n] {
            let part = ggml::dequantize_rows(&f, t, rows.clone()).unwrap();
            assert_eq!(part, whole[rows.start as usize * row..rows.end as usize * row], "{name} rows {rows:?}");
        }
    }
    let t = f.tensor("blk.0.attn_q.weight").unwrap();
    let err = ggml::dequantize_rows(&f, t, 0..t.n_rows() + 1).unwrap_err();
    assert!(matches!(&err, CodecError::OutOfRange(m) if m.contains("blk.0.attn_q.weight") && m.contains("gemma-3-270m")), "{err}");
    let mut small = vec![0f32; 3];
    assert!(matches!(ggml::dequantize_rows_into(&f, t, 0..1, &mut small), Err(CodecError::OutOfRange(_))));
}

/// Rows to test: about 64 spread over the tensor, always the first and last.
fn sample_rows(t: &TensorInfo) -> Vec<u64> {
    let n = t.n_rows();
    let step = (n / 64).max(1);
    let mut rows: Vec<u64> = (0..n).step_by(step as usize).collect();
    if rows.last() != Some(&(n - 1)) {
        rows.push(n - 1);
    }
    rows
}

/// What re-encoding decoded blocks gave, over sampled rows of every tensor of one type.
#[derive(Default)]
struct Requant {
    blocks: usize,
    /// Blocks whose bytes differ from the original.
    byte_diffs: Vec<String>,
    /// Blocks whose decoded values differ from the original's.
    value_diffs: Vec<String>,
    /// Largest |Δvalue| / max|block value| over blocks whose values differ.
    worst_relative: f32,
}

/// For every tensor of `ty`, decodes sampled rows, encodes them again and compares block by
/// block.
fn requantize(f: &GgufFile, ty: GgmlType) -> Requant {
    let tensors: Vec<&TensorInfo> = f.tensors.iter().filter(|t| t.ggml_type == ty).collect();
    assert!(!tensors.is_empty(), "the model has {ty} tensors");
    let (bs, be) = (ty.type_size() as usize, ty.block_size() as usize);
    let parts: Vec<Requant> = pool().install(|| {
        tensors
            .par_iter()
            .map(|t| {
                let mut r = Requant::default();
                let row_len = t.row_len() as usize;
                for row in sample_rows(t) {
                    let original = f.tensor_rows(t, row..row + 1).unwrap();
                    let values = ggml::dequantize_rows(f, t, row..row + 1).unwrap();
                    let again = ggml::quantize(ty, &values, row_len, None).unwrap();
                    for (b, (old, new)) in original.chunks(bs).zip(again.chunks(bs)).enumerate() {
                        r.blocks += 1;
                        if old == new {
                            continue;
                        }
                        let here = format!("{} row {row} block {b}", t.name);
                        r.byte_diffs.push(here.clone());
                        let v_old = &values[b * be..(b + 1) * be];
                        let v_new = ggml::dequantize_to_vec(ty, new, be).unwrap();
                        if v_old != v_new.as_slice() {
                            r.value_diffs.push(here);
                            let max = v_old.iter().fold(0f32, |m, v| m.max(v.abs()));
                            let delta = v_old.iter().zip(&v_new).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                            r.worst_relative = r.worst_relative.max(delta / max);
                        }
                    }
                }
                r
            })
            .collect()
    });
    parts.into_iter().fold(Requant::default(), |mut acc, p| {
        acc.blocks += p.blocks;
        acc.byte_diffs.extend(p.byte_diffs);
        acc.value_diffs.extend(p.value_diffs);
        acc.worst_relative = acc.worst_relative.max(p.worst_relative);
        acc
    })
}

fn first<T: std::fmt::Debug>(v: &[T]) -> &[T] {
    &v[..v.len().min(5)]
}

#[test]
fn requantizing_q5_0_and_q8_0_reproduces_every_byte() {
    let f = real_model();
    for ty in [GgmlType::Q5_0, GgmlType::Q8_0] {
        let r = requantize(&f, ty);
        assert!(r.blocks >= 5_000, "{ty}: only {} blocks checked", r.blocks);
        assert!(r.byte_diffs.is_empty(), "{ty}: {} of {} blocks re-encode to other bytes, e.g. {:?}", r.byte_diffs.len(), r.blocks, first(&r.byte_diffs));
    }
}

/// Q4_K's quantizer searches scales and minimums; on decoded input it lands on the original
/// encoding for almost every block, but not all (measured over all 92160 blocks of the model:
/// 72 differ, each by at most 0.057 of the block's largest value — under one 4-bit step). A
/// rewrite must therefore copy the original bytes of blocks it does not change.
#[test]
fn requantizing_q4_k_reproduces_the_bytes_of_almost_every_block() {
    let f = real_model();
    let r = requantize(&f, GgmlType::Q4_K);
    assert!(r.blocks >= 5_000, "Q4_K: only {} blocks checked", r.blocks);
    let same = 1.0 - r.byte_diffs.len() as f64 / r.blocks as f64;
    assert!(same >= 0.995, "Q4_K: only {:.3}% of {} blocks re-encode to the same bytes, e.g. {:?}", same * 100.0, r.blocks, first(&r.byte_diffs));
    assert!(r.worst_relative < 1.0 / 15.0, "Q4_K: a re-encoded block moved by {} of its range (more than one 4-bit step)", r.worst_relative);
}

/// Q6_K: bytes may differ (its scale search has ties), values almost always come back exactly
/// (measured: 211 of 46080 blocks differ, by at most 1/128 of the block's largest value).
#[test]
fn requantizing_q6_k_reproduces_the_values_of_almost_every_block() {
    let f = real_model();
    let r = requantize(&f, GgmlType::Q6_K);
    assert!(r.blocks >= 2_000, "Q6_K: only {} blocks checked", r.blocks);
    let same = 1.0 - r.value_diffs.len() as f64 / r.blocks as f64;
    assert!(same >= 0.99, "Q6_K: only {:.3}% of {} blocks decode to the same values, e.g. {:?}", same * 100.0, r.blocks, first(&r.value_diffs));
    assert!(r.worst_relative < 1.0 / 31.0, "Q6_K: a re-encoded block moved by {} of its range (more than one 6-bit step)", r.worst_relative);
}

/// The IQ1/IQ2/IQ3 quantizers first build search grids, a one-time cost of 0.2 s to 13 s per
/// type on this machine (IQ1_S is the worst); tests only decode these types.
const GRID_TYPES: [GgmlType; 7] = [
    GgmlType::IQ2_XXS,
    GgmlType::IQ2_XS,
    GgmlType::IQ2_S,
    GgmlType::IQ1_S,
    GgmlType::IQ1_M,
    GgmlType::IQ3_XXS,
    GgmlType::IQ3_S,
];

/// Every type ggml can encode (except the slow-to-initialise grid types) goes through a
/// generated GGUF file and decodes close to the source values; every other type decodes to
/// finite values or is refused with an error, never a crash.
#[test]
fn every_ggml_type_round_trips_through_a_generated_file() {
    use mathneuro::gguf::synth::{SynthModel, encode_plain};
    let (row, rows) = (256u64, 4u64);
    let quantizable: Vec<GgmlType> =
        GgmlType::all().filter(|t| ggml::can_quantize(*t) && !GRID_TYPES.contains(t)).collect();
    let mut model = SynthModel::new("codecs");
    for (i, ty) in quantizable.iter().enumerate() {
        model = model.tensor(&format!("t.{}", ty.name()), &[row, rows], *ty, i as u64 + 1);
    }
    let imatrix = vec![1.0f32; row as usize];
    let encode = |ty: GgmlType, v: &[f32]| -> Vec<u8> {
        let im = ggml::requires_imatrix(ty).then_some(imatrix.as_slice());
        ggml::quantize(ty, v, row as usize, im).unwrap_or_else(|e| panic!("{ty}: {e}"))
    };
    let bytes = model.to_bytes(&encode).unwrap();
    let f = GgufFile::from_bytes("codecs.gguf", bytes).unwrap();
    for (t, src) in f.tensors.iter().zip(&model.tensors) {
        let out = ggml::dequantize_rows(&f, t, 0..t.n_rows()).unwrap();
        assert!(out.iter().all(|v| v.is_finite()), "{}: non-finite values", t.ggml_type);
        let rms = (src.values.iter().zip(&out).map(|(a, b)| (a - b).powi(2)).sum::<f32>() / out.len() as f32).sqrt();
        // Ternary and 1–2 bit types are coarse on uniform noise; 4+ bit types are close.
        let bound = match t.ggml_type {
            GgmlType::TQ1_0 | GgmlType::TQ2_0 | GgmlType::Q1_0 => 0.7,
            GgmlType::Q2_K | GgmlType::Q2_0 => 0.45,
            GgmlType::Q3_K => 0.25,
            _ => 0.12,
        };
        assert!(rms < bound, "{}: rms error {rms} ≥ {bound}", t.ggml_type);
        // A middle row range decodes like the same rows of the whole tensor.
        let part = ggml::dequantize_rows(&f, t, 1..3).unwrap();
        assert_eq!(part, out[row as usize..3 * row as usize], "{}", t.ggml_type);
    }
    // Grid types and types ggml cannot encode: decoding zeroed blocks gives finite values, or
    // a clean error for types without a decoder.
    for ty in GgmlType::all().filter(|t| !quantizable.contains(t)) {
        let n = ty.block_size() as usize * 2;
        let bytes = if ty == GgmlType::I8 { encode_plain(ty, &vec![3.0; n]) } else { vec![0u8; ty.bytes_for(n as u64).unwrap() as usize] };
        match ggml::dequantize_to_vec(ty, &bytes, n) {
            Ok(v) => assert!(v.iter().all(|x| x.is_finite()), "{ty}"),
            Err(e) => assert_eq!(e, CodecError::NoDequantizer(ty)),
        }
        if !ggml::can_quantize(ty) {
            assert!(ggml::quantize(ty, &vec![0.0; n], n, None).is_err(), "{ty} cannot be encoded");
        } else if ggml::requires_imatrix(ty) {
            let err = ggml::quantize(ty, &vec![0.0; n], n, None).unwrap_err();
            assert!(err.to_string().contains("importance matrix"), "{ty}: {err}");
        }
    }
}
