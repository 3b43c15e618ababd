//! Issue 25 §3: every common architecture, mixture-of-experts included, end to end on a generated
//! model (`gguf::families`: random weights, tiny shapes, complete metadata). For each family:
//! llama.cpp loads it, calibration captures exactly the target tensors (for a mixture of experts,
//! per expert, counting only the tokens routed to it), a prune edits them (every selected entry
//! exactly 0 in Q8_0), and the output loads and generates through llama.cpp. A family llama.cpp
//! does not know fails with an error naming it.

use std::collections::BTreeSet;
use std::path::Path;

use crate::apply_support;

use mathneuro::calibrate::{CalibrateOptions, Calibrator};
use mathneuro::ffi::ggml;
use mathneuro::ffi::llama::Model;
use mathneuro::gguf::families::{self, Dims, Family};
use mathneuro::gguf::{GgmlType, GgufFile, MetaValue};
use mathneuro::stats::{ActivationStats, WeightStats};
use mathneuro::surgery::{self, ApplyOptions, Change};

const MATH: &str = "Natalia sold 48 clips in April and half as many in May: 48 / 2 = 24, and 48 + 24 = 72 clips.";
const GENERAL: &str = "The French Revolution began in 1789 and reshaped the politics of Europe for a century.";

/// Encodes F32/F16 plainly and block types with ggml (rows are whole blocks).
fn encode(ty: GgmlType, v: &[f32]) -> Vec<u8> {
    if ty.block_size() == 1 { mathneuro::gguf::synth::encode_plain(ty, v) } else { ggml::quantize(ty, v, ty.block_size() as usize, None).unwrap() }
}

fn write_family(family: Family, dir: &Path) -> std::path::PathBuf {
    let path = dir.join(format!("{}.gguf", family.name()));
    family.model(GgmlType::Q8_0).write(&path, &encode).unwrap();
    path
}

/// llama-quantize's Q4_K_M recipe, simplified: Q6_K for `attn_v`, every `ffn_down` and the head,
/// the router F32 (llama-quantize keeps `ffn_gate_inp` in F32), Q4_K for the other targets.
fn q4_k_m(name: &str) -> GgmlType {
    if name.contains("ffn_gate_inp") {
        GgmlType::F32
    } else if name.contains("attn_v.") || name.contains("ffn_down") || name == "output.weight" {
        GgmlType::Q6_K
    } else {
        GgmlType::Q4_K
    }
}

fn write_q4_k_m(family: Family, dir: &Path) -> std::path::PathBuf {
    let path = dir.join(format!("{}-q4_k_m.gguf", family.name()));
    let mut m = family.model_with(Dims::K_QUANT, GgmlType::Q4_K);
    for t in m.tensors.iter_mut().filter(|t| t.spec.ggml_type == GgmlType::Q4_K) {
        t.spec.ggml_type = q4_k_m(&t.spec.name);
    }
    m.write(&path, &encode).unwrap();
    path
}

/// Targets per block: attention q/k/v/o (phi3: qkv/o), FFN gate/up/down (phi3: fused up, down;
/// mixtures: router and three expert tensors, qwen2moe also the shared expert's three).
fn expected_targets(family: Family) -> usize {
    let per_block = match family {
        Family::Phi3 => 4,
        Family::Mixtral | Family::Qwen3Moe => 8,
        Family::Qwen2Moe => 11,
        _ => 7,
    };
    per_block * families::N_LAYER as usize + usize::from(family.untied_head())
}

fn calibrate(path: &Path) -> (ActivationStats, ActivationStats) {
    let model = Model::load(path).unwrap_or_else(|e| panic!("{e}"));
    let opts = CalibrateOptions { threads: 2, max_tokens: 48, ..CalibrateOptions::default() };
    let mut cal = Calibrator::new(&model, &opts).unwrap();
    let math = cal.run(&[MATH.to_string(), "12 * 7 = 84, so the answer is 84.".to_string()]).unwrap();
    let general = cal.run(&[GENERAL.to_string()]).unwrap();
    (math, general)
}

/// Per expert of a MUL_MAT_ID weight: a token routed to it adds its row (so the expert has
/// tokens exactly when it has a non-zero statistic), and every token is routed to exactly
/// `N_EXPERT_USED` experts: the experts' token counts and pooled Σx² add up to `N_EXPERT_USED`
/// times the router's, which sees every token once with the same input.
fn check_routed(family: Family, stats: &ActivationStats) {
    let used = families::N_EXPERT_USED as f64;
    for l in 0..families::N_LAYER {
        let w = |kind: &str| -> &WeightStats { &stats.weights[&format!("blk.{l}.{kind}.weight")] };
        let router = w("ffn_gate_inp");
        assert_eq!(router.n_groups, 1);
        for kind in ["ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"] {
            let e = w(kind);
            assert_eq!(e.n_groups, families::N_EXPERT as usize, "{kind}");
            assert_eq!(e.tokens.iter().sum::<u64>(), families::N_EXPERT_USED * router.tokens[0], "{} layer {l} {kind}: each token counted once per expert it is routed to", family.name());
            for g in 0..e.n_groups {
                let slice = &e.norm_sum[g * e.n_in..(g + 1) * e.n_in];
                assert_eq!(e.tokens[g] > 0, slice.iter().any(|v| *v > 0.0), "{kind} expert {g}: statistic without routed tokens (or the reverse)");
            }
        }
        let (gate, up) = (w("ffn_gate_exps"), w("ffn_up_exps"));
        assert_eq!(gate.sum_sq, up.sum_sq, "gate and up experts share their input");
        assert!(gate.tokens.iter().filter(|t| **t > 0).count() >= 2, "layer {l}: tokens reach several experts: {:?}", gate.tokens);
        for j in 0..router.n_in {
            let experts: f64 = (0..gate.n_groups).map(|g| gate.sum_sq[g * gate.n_in + j] as f64).sum();
            let want = used * router.sum_sq[j] as f64;
            assert!((experts - want).abs() <= 1e-4 * want.max(1e-6), "layer {l} column {j}: Σ over experts {experts} vs {want} = {used} × router");
        }
        if family == Family::Qwen2Moe {
            assert_eq!(w("ffn_gate_shexp").tokens, router.tokens, "the shared expert sees every token");
        }
    }
}

fn end_to_end(family: Family) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_family(family, dir.path());
    check_family(family, &path);
}

/// Loads, calibrates, prunes and generates from the model of `family` at `path`. Entries pruned
/// in a type whose grid holds 0 must be exactly 0 (all but Q4_K); Q4_K's count is printed.
fn check_family(family: Family, path: &Path) {
    let dir = path.parent().unwrap();
    let file = GgufFile::open(path).unwrap();
    assert_eq!(file.architecture(), Some(family.arch()));
    let targets: BTreeSet<String> = mathneuro::model::target_weights(&file).iter().map(|t| t.name.clone()).collect();
    assert_eq!(targets.len(), expected_targets(family), "{}: {targets:?}", family.name());

    let (math, general) = calibrate(path);
    let captured: BTreeSet<String> = math.weights.keys().cloned().collect();
    assert_eq!(captured, targets, "{}: calibration captures exactly the targets", family.name());
    for (name, w) in &math.weights {
        assert!(w.norm_sum.iter().all(|v| v.is_finite()) && w.norm_sum.iter().any(|v| *v > 0.0), "{name}");
        if w.n_groups == 1 {
            assert_eq!(w.tokens[0], math.tokens, "{name}: a plain matrix sees every token");
        }
    }
    if family.is_moe() {
        check_routed(family, &math);
        check_routed(family, &general);
    }

    let out = dir.join(format!("{}-pruned.gguf", family.name()));
    let mut opts = ApplyOptions { write_modelfile: false, write_report: false, progress: false, ..ApplyOptions::new(Change::Prune, &out) };
    opts.select.top_k_percent = 5.0;
    let report = apply_support::two_threads(|| surgery::apply(&file, &math, &general, &opts)).unwrap();
    assert!(report.selected > 0, "{}: nothing selected", family.name());
    let selection = mathneuro::select::select(&file, &math, &general, &opts.select).unwrap();
    let written = GgufFile::open(&out).unwrap();
    let (mut zeros, mut q4k_selected) = (0, 0);
    for ts in selection.tensors.iter().filter(|t| t.selected > 0) {
        let t = written.tensor(&ts.name).unwrap();
        assert_eq!(t.ggml_type, ts.ggml_type, "{}: keep keeps the type", ts.name);
        let after = ggml::dequantize_to_vec(t.ggml_type, written.tensor_data(t), t.n_elements() as usize).unwrap();
        let exact = (0..after.len()).filter(|&i| ts.mask.get(i as u64) && after[i] == 0.0).count() as u64;
        zeros += exact;
        if t.ggml_type == GgmlType::Q4_K {
            q4k_selected += ts.selected;
        } else {
            assert_eq!(exact, ts.selected, "{} ({}): every pruned entry exactly 0", ts.name, t.ggml_type);
        }
    }
    assert_eq!(report.totals.selected_exact, zeros, "{}: the report counts the exact zeros", family.name());
    let edited: Vec<&str> = selection.tensors.iter().filter(|t| t.selected > 0).map(|t| t.name.as_str()).collect();
    let q4k_exact = zeros - (report.selected - q4k_selected);
    eprintln!("{}: {} entries pruned in {} of {} targets; Q4_K: {q4k_exact} of {q4k_selected} exactly 0", family.name(), report.selected, edited.len(), targets.len());
    // Q4_K holds 0 only where an encoding with dmin = d·2^p exists (docs/apply.md): nearly all.
    assert!(q4k_exact as f64 >= 0.98 * q4k_selected as f64, "{}: Q4_K exact zeros {q4k_exact} of {q4k_selected}", family.name());
    // Deterministic (seeded weights, fixed texts): every target, the fused and expert ones
    // included, has math-specific entries at K = 5 %.
    assert_eq!(edited.len(), targets.len(), "{}: targets without a selected entry", family.name());
    apply_support::generate(&out, 6);
}

#[test]
fn llama_tied_head_calibrates_applies_and_generates() {
    end_to_end(Family::Llama);
}

#[test]
fn llama_untied_head_calibrates_applies_and_generates() {
    end_to_end(Family::LlamaUntied);
}

#[test]
fn mistral_sliding_window_calibrates_applies_and_generates() {
    end_to_end(Family::Mistral);
}

#[test]
fn phi3_fused_qkv_and_gate_up_calibrate_apply_and_generate() {
    end_to_end(Family::Phi3);
}

#[test]
fn gemma2_calibrates_applies_and_generates() {
    end_to_end(Family::Gemma2);
}

#[test]
fn qwen3_calibrates_applies_and_generates() {
    end_to_end(Family::Qwen3);
}

#[test]
fn mixtral_experts_are_captured_per_routed_token_applied_and_generate() {
    end_to_end(Family::Mixtral);
}

#[test]
fn qwen2moe_experts_are_captured_per_routed_token_applied_and_generate() {
    end_to_end(Family::Qwen2Moe);
}

#[test]
fn qwen3moe_experts_are_captured_per_routed_token_applied_and_generate() {
    end_to_end(Family::Qwen3Moe);
}

/// Every family in the layout most laptop files have (Q4_K_M: Q4_K and Q6_K targets, an F32
/// router) at rows of 256: loads, calibrates, prunes in place and generates.
#[test]
fn every_family_in_q4_k_m_calibrates_applies_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    for family in Family::ALL {
        let sub = dir.path().join(family.name());
        std::fs::create_dir(&sub).unwrap();
        check_family(family, &write_q4_k_m(family, &sub));
    }
}

/// An architecture llama.cpp does not know is refused by name (an error, not a panic or a file).
#[test]
fn an_unknown_architecture_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Family::Llama.model(GgmlType::F32);
    for (k, v) in m.metadata.iter_mut() {
        if k == "general.architecture" {
            *v = MetaValue::string("notanarch");
        } else if let Some(rest) = k.strip_prefix("llama.") {
            *k = format!("notanarch.{rest}");
        }
    }
    let path = dir.path().join("unknown.gguf");
    m.write(&path, &encode).unwrap();
    let e = Model::load(&path).unwrap_err().to_string();
    assert!(e.contains("\"notanarch\"") && e.contains("unknown.gguf"), "{e}");
}

/// The whole method through the binary on a mixture of experts: `run --prune` calibrates both
/// built-in sets (STATS files with per-expert statistics), selects, rewrites and writes a model
/// llama.cpp generates with.
#[test]
fn run_cli_prunes_a_mixture_of_experts_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_family(Family::Mixtral, dir.path());
    let out = dir.path().join("mixtral-run.gguf");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mathneuro"))
        .arg("run")
        .arg(&path)
        .args(["--prune", "--math", "embedded-math", "--general", "embedded-general", "--samples", "4", "--max-tokens", "32", "--threads", "2", "--quiet", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "run --prune failed: {}", String::from_utf8_lossy(&o.stderr));
    let written = GgufFile::open(&out).unwrap();
    assert!(written.get("mathneuro.selected_count").and_then(|v| v.as_u64()).is_some_and(|n| n > 0));
    // The STATS written beside the output keep one statistic per expert, and the routing rule.
    let math = ActivationStats::load(&dir.path().join("mixtral-run.math-stats.gguf")).unwrap();
    assert_eq!(math.weights["blk.1.ffn_down_exps.weight"].n_groups, families::N_EXPERT as usize);
    check_routed(Family::Mixtral, &math);
    apply_support::generate(&out, 6);
}
