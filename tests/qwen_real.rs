//! The second real model, Qwen2.5-Coder-0.5B-Instruct Q4_K_M (qwen2: untied `output.weight`, q/k/v
//! biases, 24 layers): calibration captures all 169 targets including the head, `apply` with
//! real (short) STATS rewrites it in each edit mode, and llama.cpp loads and runs the outputs.
//! Two texts of 32 tokens keep it within CI's time.

use crate::apply_support;

use mathneuro::calibrate::{CalibrateOptions, Calibrator};
use mathneuro::ffi::llama::Model;
use mathneuro::gguf::{GgmlType, GgufFile};
use mathneuro::surgery::{self, ApplyOptions, Change, EditMode};

#[test]
fn calibrate_captures_169_targets_with_the_head_and_apply_output_loads() {
    let path = apply_support::qwen_model();
    let file = GgufFile::open(&path).unwrap();
    let targets: Vec<String> = mathneuro::model::target_weights(&file).iter().map(|t| t.name.clone()).collect();
    assert_eq!(targets.len(), 169);
    assert!(targets.iter().any(|t| t == "output.weight"), "the untied head is a target");

    let model = Model::load(&path).unwrap();
    let opts = CalibrateOptions { threads: 2, max_tokens: 32, ..CalibrateOptions::default() };
    let mut cal = Calibrator::new(&model, &opts).unwrap();
    assert!(!cal.head_skipped(), "an untied head must be computed to be measured");
    let math = cal.run(&["Natalia sold 48 clips in April and half as many in May. 48 / 2 = 24, 48 + 24 = 72.".to_string()]).unwrap();
    let general = cal.run(&["The French Revolution began in 1789 and reshaped the politics of Europe.".to_string()]).unwrap();
    drop(cal);
    drop(model);
    let mut names: Vec<&String> = math.weights.keys().collect();
    names.sort();
    let mut want: Vec<&String> = targets.iter().collect();
    want.sort();
    assert_eq!(names, want);
    let head = &math.weights["output.weight"];
    assert_eq!(head.n_in, 896);
    assert!(head.norm_sum.iter().all(|v| v.is_finite()) && head.norm_sum.iter().any(|v| *v > 0.0));

    let dir = tempfile::tempdir().unwrap();
    for (edit, name) in [(EditMode::Keep, "keep.gguf"), (EditMode::Promote(GgmlType::Q8_0), "promote.gguf")] {
        let out = dir.path().join(name);
        let opts = ApplyOptions { edit, write_modelfile: false, write_report: false, ..ApplyOptions::new(Change::Scale(1.1), &out) };
        let report = apply_support::two_threads(|| surgery::apply(&file, &math, &general, &opts)).unwrap();
        assert!(report.selected > 0 && report.tensors.len() == 169, "{name}");
        let head = report.tensors.iter().find(|t| t.name == "output.weight").unwrap();
        assert!(head.tally.selected > 0, "{name}: the head is edited too");
        assert!(!apply_support::generate(&out, 6).trim().is_empty(), "{name}");
        std::fs::remove_file(&out).unwrap();
    }
}

/// `--start-token`: Qwen2.5's vocabulary adds no start token, so calibration texts begin without
/// the `<|endoftext|>` that `eval`'s prompts and `kld`'s windows begin with; the option puts it
/// there (once), the statistics then count it, and the STATS file says so.
#[test]
fn start_token_begins_every_text_with_the_start_token_only_when_asked() {
    let path = apply_support::qwen_model();
    let model = Model::load(&path).unwrap();
    assert!(!model.adds_bos(), "Qwen2.5 adds no start token by itself");
    let bos = model.bos();
    let texts = vec!["Natalia sold 48 clips in April and half as many in May.".to_string(), "The French Revolution began in 1789.".to_string()];
    let plain = CalibrateOptions { threads: 2, max_tokens: 32, ..CalibrateOptions::default() };
    let with = CalibrateOptions { start_token: true, ..plain.clone() };
    let (a, b) = {
        let cal = Calibrator::new(&model, &plain).unwrap();
        let a = cal.tokenize(&texts).unwrap();
        let cal = Calibrator::new(&model, &with).unwrap();
        (a, cal.tokenize(&texts).unwrap())
    };
    for (x, y) in a.texts.iter().zip(&b.texts) {
        assert_ne!(x[0], bos);
        assert_eq!(y[0], bos);
        assert_eq!(&y[1..], &x[..], "the text's own tokens follow unchanged");
    }
    let s_plain = Calibrator::new(&model, &plain).unwrap().run(&texts).unwrap();
    let s_with = Calibrator::new(&model, &with).unwrap().run(&texts).unwrap();
    assert_eq!(s_with.tokens, s_plain.tokens + 2);
    let q = "blk.0.attn_q.weight";
    assert_ne!(s_with.weights[q].norm_sum, s_plain.weights[q].norm_sum, "the start token's activations are measured");

    let meta = |start_token| mathneuro::stats::Provenance { template: "t".into(), replacement: true, max_tokens: 32, truncated: 0, pack: 1, shard: "0/1".into(), head_skipped: false, start_token }.to_meta();
    assert!(meta(true).iter().any(|(k, _)| k == "mathneuro.start_token"));
    assert!(!meta(false).iter().any(|(k, _)| k == "mathneuro.start_token"), "files made without it keep their bytes");
}

/// `kld --start-token vocab`: Qwen2.5's documents are read after their own first token (which is
/// then not scored), as llama.cpp and `eval`'s generation prompts run the model; `always` reads
/// them after `<|endoftext|>` and scores every token. Same tokens predicted, other contexts.
#[test]
fn kld_reads_qwen_documents_after_their_own_first_token_when_the_vocabulary_adds_none() {
    use mathneuro::eval::engine::{EngineOptions, Session};
    use mathneuro::eval::kld::{DocStart, divergences};
    use mathneuro::eval::perplexity::Windows;
    let model = Model::load(&apply_support::qwen_model()).unwrap();
    let toks = model.tokenize("Natalia sold 48 clips in April and half as many in May.", false).unwrap();
    let engine = EngineOptions { threads: 2, n_ctx: 1024, max_sequences: 2, ..EngineOptions::default() };
    let (mut a, mut b) = (Session::new(&model, &engine).unwrap(), Session::new(&model, &engine).unwrap());
    let w = Windows { window: 512, stride: 256 };
    let always = divergences(&mut a, &mut b, std::slice::from_ref(&toks), w, DocStart::Always, |_| {}).unwrap();
    let vocab = divergences(&mut a, &mut b, std::slice::from_ref(&toks), w, DocStart::Vocab, |_| {}).unwrap();
    assert_eq!(always.len(), toks.len());
    assert_eq!(vocab.len(), toks.len() - 1);
    assert!(vocab.iter().all(|d| d.kl <= 1e-6), "a model against itself");
    assert_ne!(always[1].master_nll, vocab[0].master_nll, "token 1 predicted after `<|endoftext|> t0` vs after `t0` alone");
    assert_eq!(DocStart::Vocab.token(&model), None);
    assert_eq!(DocStart::Always.token(&model), Some(model.bos()));
}
