//! Issue 27 case 13: `--prune` on a Q4_1 model with the default `--edit keep` gives exact zeros
//! (the block is refit with m = −k·d so that 0 is on its grid), leaves untouched blocks
//! byte-identical, and the summary reports the exact-zero count it measured.

use crate::apply_support;

use mathneuro::ffi::ggml;
use mathneuro::gguf::synth::SynthModel;
use mathneuro::gguf::{GgmlType, GgufFile};
use mathneuro::surgery::{ApplyOptions, Change, apply};

/// A generated model with every target in `ty` (rows of 256).
pub fn typed_model(dir: &std::path::Path, ty: GgmlType, layers: usize) -> std::path::PathBuf {
    let n_in = 256u64;
    let mut m = SynthModel::new("types").tensor("token_embd.weight", &[n_in, 16], GgmlType::F32, 1);
    for i in 0..layers {
        m = m.tensor(&format!("blk.{i}.ffn_up.weight"), &[n_in, 64], ty, 10 + i as u64);
        m = m.tensor(&format!("blk.{i}.attn_q.weight"), &[n_in, 32], ty, 40 + i as u64);
    }
    let imatrix = vec![1.0f32; n_in as usize];
    let bytes = m
        .to_bytes(&|t, v| {
            let n = if t == GgmlType::F32 { v.len() } else { n_in as usize };
            ggml::quantize(t, v, n, ggml::requires_imatrix(t).then_some(imatrix.as_slice())).unwrap()
        })
        .unwrap();
    let path = dir.join(format!("{}.gguf", ty.name().to_ascii_lowercase()));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The number after "| exact zeros | " in the markdown summary.
fn summary_exact_zeros(markdown: &str) -> u64 {
    let line = markdown.lines().find(|l| l.starts_with("| exact zeros |")).unwrap_or_else(|| panic!("no exact-zero row in:\n{markdown}"));
    line["| exact zeros | ".len()..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn issue27_case13_prune_on_q4_1_gives_exact_zeros_and_an_honest_summary() {
    let dir = tempfile::tempdir().unwrap();
    let src = typed_model(dir.path(), GgmlType::Q4_1, 2);
    let file = GgufFile::open(&src).unwrap();
    let (math, general) = apply_support::stats_pair(&file);
    let out = dir.path().join("pruned.gguf");
    let mut opts = ApplyOptions::new(Change::Prune, &out);
    opts.progress = false;
    opts.select.top_k_percent = 2.0;
    let report = apply_support::two_threads(|| apply(&file, &math, &general, &opts)).unwrap();
    assert_eq!(report.edit, "keep");
    let selection = mathneuro::select::select(&file, &math, &general, &opts.select).unwrap();
    let written = GgufFile::open(&out).unwrap();
    let (mut selected, mut zeros, mut untouched) = (0u64, 0u64, 0u64);
    for ts in &selection.tensors {
        let (a, b) = (file.tensor(&ts.name).unwrap(), written.tensor(&ts.name).unwrap());
        assert_eq!(b.ggml_type, GgmlType::Q4_1, "{}: the type is kept", ts.name);
        let after = ggml::dequantize_to_vec(b.ggml_type, written.tensor_data(b), b.n_elements() as usize).unwrap();
        for i in 0..after.len() as u64 {
            if ts.mask.get(i) {
                selected += 1;
                zeros += (after[i as usize] == 0.0) as u64;
            }
        }
        for (blk, (o, n)) in file.tensor_data(a).chunks(20).zip(written.tensor_data(b).chunks(20)).enumerate() {
            let start = blk as u64 * 32;
            if !ts.mask.any_in(start, start + 32) {
                assert_eq!(o, n, "{}: untouched block {blk} changed", ts.name);
                untouched += 1;
            }
        }
    }
    assert!(selected > 100 && untouched > 0, "selected {selected}, untouched blocks {untouched}: the test would prove nothing");
    assert_eq!(zeros, selected, "every selected Q4_1 entry is exactly 0");
    // The summary states the measured count, and no "not exactly 0" row when there is none.
    let md = report.markdown();
    assert_eq!(summary_exact_zeros(&md), zeros, "{md}");
    assert_eq!(report.totals.selected_exact, zeros);
    assert!(!md.contains("| not exactly 0 |"), "{md}");
}

#[test]
fn issue27_case13_a_type_without_a_zero_says_which_flag_makes_zeros_exact() {
    // IQ4_NL's 16 values hold no 0: the summary must say how many are not 0 and name the flag.
    let dir = tempfile::tempdir().unwrap();
    let src = typed_model(dir.path(), GgmlType::IQ4_NL, 1);
    let file = GgufFile::open(&src).unwrap();
    let (math, general) = apply_support::stats_pair(&file);
    let out = dir.path().join("pruned.gguf");
    let mut opts = ApplyOptions::new(Change::Prune, &out);
    opts.progress = false;
    opts.select.top_k_percent = 2.0;
    let report = apply_support::two_threads(|| apply(&file, &math, &general, &opts)).unwrap();
    let selection = mathneuro::select::select(&file, &math, &general, &opts.select).unwrap();
    let written = GgufFile::open(&out).unwrap();
    let mut zeros = 0u64;
    for ts in &selection.tensors {
        let b = written.tensor(&ts.name).unwrap();
        let after = ggml::dequantize_to_vec(b.ggml_type, written.tensor_data(b), b.n_elements() as usize).unwrap();
        zeros += (0..after.len()).filter(|&i| ts.mask.get(i as u64) && after[i] == 0.0).count() as u64;
    }
    let md = report.markdown();
    assert_eq!(summary_exact_zeros(&md), zeros, "{md}");
    assert!(zeros < report.selected, "IQ4_NL cannot hold 0 in a block with a non-zero scale");
    assert!(md.contains("| not exactly 0 |") && md.contains("--edit promote=q8_0"), "{md}");
}
