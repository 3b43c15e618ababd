//! `apply` on weight types that have no in-grid edit and go through ggml's quantizer (the
//! i-quants IQ4_NL / IQ4_XS / IQ3_S / IQ2_S, and the K- and legacy quants Q2_K, Q3_K, Q5_K,
//! Q4_0, Q4_1, Q5_1), on a generated model: untouched blocks keep their bytes, a prune moves the
//! selected entries toward 0 (most of the intended change achieved), a ×1.5 scale moves them
//! outward, every value stays finite, and the output reads back with the same table.

use crate::apply_support;

use mathneuro::ffi::ggml;
use mathneuro::gguf::synth::SynthModel;
use mathneuro::gguf::{GgmlType, GgufFile};
use mathneuro::surgery::{ApplyOptions, Change, apply};

const TYPES: [GgmlType; 10] = [
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::IQ3_S,
    GgmlType::IQ2_S,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q5_K,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_1,
];

fn model(dir: &std::path::Path) -> std::path::PathBuf {
    let n_in = 256u64;
    let mut m = SynthModel::new("types").tensor("token_embd.weight", &[n_in, 16], GgmlType::F32, 1);
    for (i, ty) in TYPES.iter().enumerate() {
        m = m.tensor(&format!("blk.{i}.ffn_up.weight"), &[n_in, 64], *ty, 10 + i as u64);
    }
    let imatrix = vec![1.0f32; n_in as usize];
    let bytes = m
        .to_bytes(&|ty, v| {
            let n = if ty == GgmlType::F32 { v.len() } else { n_in as usize };
            ggml::quantize(ty, v, n, ggml::requires_imatrix(ty).then_some(imatrix.as_slice())).unwrap()
        })
        .unwrap();
    let path = dir.join("types.gguf");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn types_without_an_in_grid_edit_are_re_encoded_by_ggml() {
    let dir = tempfile::tempdir().unwrap();
    let src = model(dir.path());
    let file = GgufFile::open(&src).unwrap();
    let (math, general) = apply_support::stats_pair(&file);
    for change in [Change::Prune, Change::Scale(1.5)] {
        let out = dir.path().join(format!("out-{}.gguf", change.factor()));
        let mut opts = ApplyOptions::new(change, &out);
        opts.progress = false;
        opts.select.top_k_percent = 1.0;
        let report = apply_support::two_threads(|| apply(&file, &math, &general, &opts)).unwrap();
        let selection = mathneuro::select::select(&file, &math, &general, &opts.select).unwrap();
        let written = GgufFile::open(&out).unwrap();
        assert_eq!(written.tensors.len(), file.tensors.len());
        for (i, ty) in TYPES.iter().enumerate() {
            let name = format!("blk.{i}.ffn_up.weight");
            let (a, b) = (file.tensor(&name).unwrap(), written.tensor(&name).unwrap());
            assert_eq!((a.ggml_type, &a.dims), (b.ggml_type, &b.dims), "{name}");
            let tr = report.tensors.iter().find(|t| t.name == name).unwrap();
            let mask = &selection.get(&name).unwrap().mask;
            assert_eq!(tr.tally.selected, mask.count(), "{ty}");
            assert!(tr.tally.selected > 0 && tr.tally.blocks_rewritten > 0, "{ty}: nothing was rewritten");
            // Untouched blocks: byte-identical.
            let (bs, ts) = (ty.block_size(), ty.type_size() as usize);
            let (old, new) = (file.tensor_data(a), written.tensor_data(b));
            let mut untouched = 0;
            for (blk, (o, n)) in old.chunks(ts).zip(new.chunks(ts)).enumerate() {
                let start = blk as u64 * bs;
                let touched = mask.any_in(start, start + bs);
                if !touched {
                    assert_eq!(o, n, "{ty}: untouched block {blk} changed");
                    untouched += 1;
                }
            }
            assert!(untouched > 0, "{ty}: every block was touched; the test would prove nothing");
            let after = ggml::dequantize_to_vec(b.ggml_type, new, b.n_elements() as usize).unwrap();
            assert!(after.iter().all(|v| v.is_finite()), "{ty}: non-finite values");
            // The selected entries moved the intended way for most of the intended change.
            assert!(tr.achieved_fraction > 0.5, "{ty} {change:?}: only {:.2} of the intended change achieved", tr.achieved_fraction);
        }
        assert!(mathneuro::gguf::GgufFile::open(&out).is_ok());
    }
}
