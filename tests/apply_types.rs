//! `apply --edit keep` on every type llama.cpp users commonly ship (issue 25 §2), on a generated
//! model per type: untouched blocks keep their bytes, a prune gives exact zeros where the type's
//! grid can hold 0 (Q4_0, Q5_0, Q8_0, Q3_K, Q6_K always; Q4_1, Q5_1, Q4_K by refitting the
//! block's min), every value stays finite, the output reads back with the same table, and the
//! achieved fraction and collateral of a prune and of ×1.1 are printed as the table of
//! docs/apply.md (`cargo test --release --test tests apply_types:: -- --nocapture`).
//! The codebook types (IQ1/IQ2/IQ3, TQ) are refused under `keep` with the tensor, its type and
//! `--edit promote=q8_0`, which works on them.

use crate::apply_support;
use crate::issue27_types::typed_model;

use mathneuro::ffi::ggml;
use mathneuro::gguf::{GgmlType, GgufFile};
use mathneuro::surgery::{ApplyOptions, Change, apply};

/// The types with an in-grid edit, and whether their prune must be exact everywhere.
const IN_GRID: [(GgmlType, bool); 12] = [
    (GgmlType::Q4_0, true),
    (GgmlType::Q4_1, true),
    (GgmlType::Q5_0, true),
    (GgmlType::Q5_1, true),
    (GgmlType::Q8_0, true),
    (GgmlType::Q2_K, false),
    (GgmlType::Q3_K, true),
    (GgmlType::Q4_K, false),
    (GgmlType::Q5_K, false),
    (GgmlType::Q6_K, true),
    (GgmlType::IQ4_NL, false),
    (GgmlType::IQ4_XS, false),
];

/// One apply of `change` on a model of `ty`; checks the bytes and returns the table row's cells
/// (exact fraction, achieved fraction, relative collateral, blocks rewritten / touched).
fn run(dir: &std::path::Path, ty: GgmlType, change: Change) -> (f64, f64, f64, u64, u64) {
    let src = typed_model(dir, ty, 2);
    let file = GgufFile::open(&src).unwrap();
    let (math, general) = apply_support::stats_pair(&file);
    let out = dir.join(format!("{}-{}.gguf", ty.name(), change.factor()));
    let mut opts = ApplyOptions::new(change, &out);
    opts.progress = false;
    // Few enough that most 256-entry blocks stay untouched.
    opts.select.top_k_percent = 0.3;
    let report = apply_support::two_threads(|| apply(&file, &math, &general, &opts)).unwrap();
    let selection = mathneuro::select::select(&file, &math, &general, &opts.select).unwrap();
    let written = GgufFile::open(&out).unwrap();
    assert_eq!(written.tensors.len(), file.tensors.len());
    let (bs, tb) = (ty.block_size(), ty.type_size() as usize);
    let mut untouched = 0;
    for ts in &selection.tensors {
        let (a, b) = (file.tensor(&ts.name).unwrap(), written.tensor(&ts.name).unwrap());
        assert_eq!((a.ggml_type, &a.dims), (b.ggml_type, &b.dims), "{}", ts.name);
        for (blk, (o, n)) in file.tensor_data(a).chunks(tb).zip(written.tensor_data(b).chunks(tb)).enumerate() {
            if !ts.mask.any_in(blk as u64 * bs, (blk as u64 + 1) * bs) {
                assert_eq!(o, n, "{ty}: untouched block {blk} of {} changed", ts.name);
                untouched += 1;
            }
        }
        let after = ggml::dequantize_to_vec(b.ggml_type, written.tensor_data(b), b.n_elements() as usize).unwrap();
        assert!(after.iter().all(|v| v.is_finite()), "{ty}: non-finite values");
    }
    assert!(untouched > 0 && report.selected > 0, "{ty}: the test would prove nothing");
    let t = &report.totals;
    (t.exact_fraction(), report.achieved_fraction, report.collateral_relative, t.blocks_rewritten, t.blocks_touched)
}

#[test]
fn every_common_type_is_edited_in_its_own_grid_and_prunes_to_exact_zeros_where_it_can() {
    let dir = tempfile::tempdir().unwrap();
    println!("| type | prune: exact zeros | prune: achieved | prune: collateral | ×1.1: achieved | ×1.1: collateral | ×1.1: blocks rewritten / touched |");
    println!("|---|---|---|---|---|---|---|");
    for (ty, exact) in IN_GRID {
        let (zeros, p_ach, p_col, _, _) = run(dir.path(), ty, Change::Prune);
        let (_, s_ach, s_col, rewritten, touched) = run(dir.path(), ty, Change::Scale(1.1));
        println!("| {ty} | {:.2}% | {p_ach:.4} | {:.3}% | {s_ach:.4} | {:.3}% | {rewritten} / {touched} |", zeros * 100.0, p_col * 100.0, s_col * 100.0);
        if exact {
            assert_eq!(zeros, 1.0, "{ty}: every pruned entry must be exactly 0");
        }
        // A prune removes nearly all of each selected weight, exact or not; ×1.1 never moves
        // the selected entries the wrong way.
        assert!(p_ach > 0.9, "{ty}: prune achieved only {p_ach}");
        assert!(s_ach >= 0.0, "{ty}: ×1.1 achieved {s_ach}");
    }
}

#[test]
fn codebook_types_are_refused_under_keep_naming_the_tensor_type_and_flag_and_promote_works() {
    let dir = tempfile::tempdir().unwrap();
    // IQ1_S is refused the same way; its quantizer needs ~13 s to build its grid, so it is left out.
    for ty in [GgmlType::IQ3_S, GgmlType::IQ2_S, GgmlType::TQ2_0] {
        let src = typed_model(dir.path(), ty, 1);
        let file = GgufFile::open(&src).unwrap();
        let (math, general) = apply_support::stats_pair(&file);
        let out = dir.path().join(format!("{}-out.gguf", ty.name()));
        let mut opts = ApplyOptions::new(Change::Prune, &out);
        opts.progress = false;
        opts.select.top_k_percent = 2.0;
        let err = apply_support::two_threads(|| apply(&file, &math, &general, &opts)).unwrap_err().to_string();
        assert!(err.contains("blk.0.") && err.contains(ty.name()) && err.contains("--edit promote=q8_0"), "{ty}: {err}");
        assert!(!out.exists(), "{ty}: a refused apply wrote its output");
        opts.edit = "promote=q8_0".parse().unwrap();
        let report = apply_support::two_threads(|| apply(&file, &math, &general, &opts)).unwrap();
        assert_eq!(report.totals.selected_exact, report.selected, "{ty}: promote=q8_0 prunes to exact zeros");
        let written = GgufFile::open(&out).unwrap();
        assert!(written.tensors.iter().any(|t| t.ggml_type == GgmlType::Q8_0), "{ty}");
    }
}
