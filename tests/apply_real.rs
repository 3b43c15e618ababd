//! `surgery::apply` on the real model with synthetic STATS: `--scale 1` leaves every tensor's
//! bytes identical and records provenance; `--prune` sets every selected entry to 0 (exactly for
//! Q8_0/Q5_0/Q6_K and floats; for Q4_K exactly where an encoding holds 0, else the nearest value
//! the block holds) and keeps every untouched block and every non-target tensor bit-identical
//! (float weights: every other entry); outputs are never written over the input or an existing
//! file without `force`.

use crate::apply_support;

use mathneuro::ffi::ggml;
use mathneuro::gguf::{GgmlType, GgufFile, MetaValue};
use mathneuro::select::maskfile::MaskFile;
use mathneuro::safety::OutputError;
use mathneuro::surgery::{self, ApplyError, ApplyOptions, Change, regrid};

#[test]
fn scale_one_is_byte_identical_and_records_provenance() {
    let model_path = apply_support::real_model();
    let model = GgufFile::open(&model_path).unwrap();
    let (math, general) = apply_support::stats_pair(&model);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gemma-mathneuro.gguf");
    let opts = ApplyOptions::new(Change::Scale(1.0), &out);
    let report = apply_support::two_threads(|| surgery::apply(&model, &math, &general, &opts)).unwrap();
    assert!(report.selected > 0);
    assert_eq!(report.totals.blocks_rewritten, 0, "scale 1 re-encodes nothing");

    let written = GgufFile::open(&out).unwrap();
    assert_eq!(written.tensors.len(), model.tensors.len());
    for (a, b) in model.tensors.iter().zip(&written.tensors) {
        assert_eq!((&a.name, &a.dims, a.ggml_type), (&b.name, &b.dims, b.ggml_type));
        assert!(model.tensor_data(a) == written.tensor_data(b), "{}: bytes differ", a.name);
    }
    // Original keys kept with their types (except the ones apply rewrites).
    for (k, v) in &model.metadata {
        if k == "general.name" || k == "general.tags" || k.starts_with("general.base_model.") {
            continue;
        }
        assert_eq!(written.get(k), Some(v), "{k}");
    }
    let name = model.get_str("general.name").unwrap();
    assert_eq!(written.get_str("general.name").unwrap(), format!("{name} mathneuro"));
    assert_eq!(written.get_str("general.base_model.0.name"), Some(name));
    assert_eq!(written.get("general.base_model.count"), Some(&MetaValue::U32(1)));
    let tags = written.get("general.tags").and_then(MetaValue::as_array).unwrap();
    assert!(tags.iter().any(|t| t.as_str() == Some("mathneuro")));
    assert_eq!(written.get_str("mathneuro.method"), Some("mathneuro"));
    assert_eq!(written.get_str("mathneuro.operation"), Some("scale"));
    assert_eq!(written.get("mathneuro.top_k"), Some(&MetaValue::F32(5.0)));
    assert_eq!(written.get("mathneuro.scale"), Some(&MetaValue::F32(1.0)));
    assert_eq!(written.get("mathneuro.math_samples"), Some(&MetaValue::U64(100)));
    assert_eq!(written.get("mathneuro.selected_count"), Some(&MetaValue::U64(report.selected)));
    assert!(written.get_str("mathneuro.tool_version").unwrap().starts_with("mathneuro "));
    let ds = written.get("mathneuro.general_datasets").and_then(MetaValue::as_array).unwrap();
    assert_eq!(ds[0].as_str(), Some("synthetic-general"));

    // Side files.
    let modelfile = std::fs::read_to_string(dir.path().join("Modelfile")).unwrap();
    assert!(modelfile.contains("FROM ./gemma-mathneuro.gguf"), "{modelfile}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("gemma-mathneuro.report.json")).unwrap()).unwrap();
    assert_eq!(json["tensors"].as_array().unwrap().len(), 126);
    assert_eq!(json["per_layer"].as_array().unwrap().len(), 18);
    let svg = std::fs::read_to_string(dir.path().join("gemma-mathneuro.heatmap.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("ffn_down"));
    let md = report.markdown();
    assert!(md.contains("Selected fraction per layer") && md.contains("| attn_q |"), "{md}");

    // Refusals: an existing output without force, and the input itself even with force.
    let again = surgery::apply(&model, &math, &general, &opts).unwrap_err();
    assert!(matches!(again, ApplyError::Output(OutputError::Exists(_))), "{again}");
    let onto_input = ApplyOptions { force: true, ..ApplyOptions::new(Change::Scale(1.0), &model_path) };
    let err = surgery::apply(&model, &math, &general, &onto_input).unwrap_err();
    assert!(matches!(err, ApplyError::Output(OutputError::IsInput { .. })), "{err}");
}

#[test]
fn prune_zeroes_selected_entries_and_keeps_untouched_blocks() {
    let model = GgufFile::open(apply_support::real_model()).unwrap();
    let (math, general) = apply_support::stats_pair(&model);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pruned.gguf");
    let mask_path = dir.path().join("pruned.mask.gguf");
    let opts = ApplyOptions { save_mask: Some(mask_path.clone()), write_modelfile: false, ..ApplyOptions::new(Change::Prune, &out) };
    let report = apply_support::two_threads(|| surgery::apply(&model, &math, &general, &opts)).unwrap();
    let written = GgufFile::open(&out).unwrap();
    let masks = MaskFile::load(&mask_path).unwrap();
    assert_eq!(masks.masks.len(), 126);
    assert_eq!(masks.masks.iter().map(|(_, m)| m.count()).sum::<u64>(), report.selected);

    let mut q4k_inexact = 0u64;
    for t in &model.tensors {
        let before = model.tensor_data(t);
        let after = written.tensor_data(written.tensor(&t.name).unwrap());
        let Some((_, mask)) = masks.masks.iter().find(|(n, _)| n == &t.name) else {
            assert!(before == after, "{}: a non-target tensor changed", t.name);
            continue;
        };
        let ty = t.ggml_type;
        let (bs, tb) = (ty.block_size() as usize, ty.type_size() as usize);
        let decoded = ggml::dequantize_to_vec(ty, after, t.n_elements() as usize).unwrap();
        for (b, (old, new)) in before.chunks(tb).zip(after.chunks(tb)).enumerate() {
            let start = (b * bs) as u64;
            if !mask.any_in(start, start + bs as u64) {
                assert_eq!(old, new, "{}: untouched block {b} changed", t.name);
                continue;
            }
            for j in 0..bs {
                if !mask.get(start + j as u64) {
                    continue;
                }
                let v = decoded[b * bs + j];
                match ty {
                    GgmlType::Q4_K => {
                        // The nearest value this block can hold.
                        let (s, o, lo, hi) = regrid::grid(regrid::GridType::Q4_K, new, j);
                        let nearest = (lo..=hi).map(|q| (s * q as f32 - o).abs()).fold(f32::INFINITY, f32::min);
                        assert!(v.abs() <= nearest * (1.0 + 1e-5) + 1e-12, "{} entry {}: {v} but {nearest} was possible", t.name, start + j as u64);
                        q4k_inexact += (v != 0.0) as u64;
                    }
                    _ => assert_eq!(v, 0.0, "{} ({ty}) entry {} not pruned", t.name, start + j as u64),
                }
            }
        }
    }
    assert_eq!(report.totals.selected, report.selected);
    assert_eq!(report.totals.selected - report.totals.selected_exact, q4k_inexact, "only Q4_K zeros may be inexact");
    assert!(report.achieved_fraction > 0.99, "{}", report.achieved_fraction);
}

#[test]
fn float_weights_prune_to_exact_zero_and_keep_every_other_entry() {
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("toy.gguf");
        mathneuro::gguf::synth::SynthModel::toy_transformer(1, 64, 96, 16, ty).write(&src, &mathneuro::gguf::synth::encode_plain).unwrap();
        let model = GgufFile::open(&src).unwrap();
        let (math, general) = apply_support::stats_pair(&model);
        let out = dir.path().join("toy-pruned.gguf");
        let mask_path = dir.path().join("mask.gguf");
        let opts = ApplyOptions { save_mask: Some(mask_path.clone()), ..ApplyOptions::new(Change::Prune, &out) };
        let report = surgery::apply(&model, &math, &general, &opts).unwrap();
        assert_eq!(report.totals.selected_exact, report.selected, "{ty}");
        assert_eq!(report.collateral_rms, 0.0, "{ty}: element-wise types have no collateral");
        let written = GgufFile::open(&out).unwrap();
        let masks = MaskFile::load(&mask_path).unwrap();
        for (name, mask) in &masks.masks {
            let t = model.tensor(name).unwrap();
            let before = ggml::dequantize_to_vec(ty, model.tensor_data(t), t.n_elements() as usize).unwrap();
            let after = ggml::dequantize_to_vec(ty, written.tensor_data(written.tensor(name).unwrap()), t.n_elements() as usize).unwrap();
            for i in 0..before.len() {
                if mask.get(i as u64) {
                    assert_eq!(after[i], 0.0, "{ty} {name} entry {i}");
                } else {
                    assert_eq!(after[i].to_bits(), before[i].to_bits(), "{ty} {name} entry {i}");
                }
            }
        }
    }
}
