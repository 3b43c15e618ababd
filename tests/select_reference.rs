//! Selection equals a straightforward reference (dequantize, score, sort by (score desc, index
//! asc), take k) on generated matrices with planted ties and on real tensors of the default model;
//! the random baseline has mathneuro's count per matrix and is seeded; an expert tensor takes
//! each expert's own top k (a small expert too); STATS that do not match
//! the model are refused naming the tensor; masks round-trip through the mask file; the single
//! pass equals the exact three passes on every real target, and gives up when its sample misleads.

use crate::apply_support;

use std::collections::HashSet;

use mathneuro::ffi::ggml;
use mathneuro::gguf::synth::{SynthModel, encode_plain};
use mathneuro::gguf::{GgmlType, GgufFile, TensorInfo};
use mathneuro::select::maskfile::MaskFile;
use mathneuro::select::overlap::compare;
use mathneuro::select::matrix::{select_tensor, select_tensor_exact, top_k_count};
use mathneuro::select::{self, Method, SelectOptions, onepass};

fn reference_top_k(w: &[f32], a: &[f32], n_in: usize, k: u64) -> HashSet<u64> {
    let scores: Vec<f32> = w.iter().enumerate().map(|(i, v)| (v * a[i % n_in]).abs()).collect();
    let mut idx: Vec<u64> = (0..w.len() as u64).collect();
    idx.sort_by(|&x, &y| scores[y as usize].partial_cmp(&scores[x as usize]).unwrap().then(x.cmp(&y)));
    idx.into_iter().take(k as usize).collect()
}

fn reference(file: &GgufFile, t: &TensorInfo, a_math: &[f32], a_general: &[f32], opts: &SelectOptions) -> HashSet<u64> {
    let w = ggml::dequantize_to_vec(t.ggml_type, file.tensor_data(t), t.n_elements() as usize).unwrap();
    let k = top_k_count(t.n_elements(), opts.top_k_percent);
    let n_in = t.dims[0] as usize;
    let math = reference_top_k(&w, a_math, n_in, k);
    match opts.method {
        Method::Wanda => math,
        _ => {
            let general = reference_top_k(&w, a_general, n_in, k);
            math.difference(&general).copied().collect()
        }
    }
}

fn check_tensor(file: &GgufFile, t: &TensorInfo, a_math: &[f32], a_general: &[f32], opts: &SelectOptions) {
    let got = select_tensor(file, t, a_math, a_general, opts).unwrap();
    let want = reference(file, t, a_math, a_general, opts);
    let got_set: HashSet<u64> = got.mask.ones().collect();
    assert_eq!(got.selected as usize, want.len(), "{} {:?}: count", t.name, opts.method);
    assert!(got_set == want, "{} {:?}: selection differs from the sort-based reference", t.name, opts.method);
}

#[test]
fn planted_ties_on_generated_matrices_match_the_reference() {
    // Values on a coarse grid and A with repeated values: scores tie massively, also at the k-th.
    let mut m = SynthModel::new("toy");
    for (i, (n_in, n_out)) in [(64u64, 48u64), (40, 7), (96, 33)].into_iter().enumerate() {
        m = m.tensor(&format!("blk.{i}.ffn_up.weight"), &[n_in, n_out], GgmlType::F32, 10 + i as u64);
        let t = m.tensors.last_mut().unwrap();
        for v in &mut t.values {
            *v = (*v * 4.0).round() / 4.0;
        }
    }
    let file = GgufFile::from_bytes("toy.gguf", m.to_bytes(&encode_plain).unwrap()).unwrap();
    for t in &file.tensors {
        let n_in = t.dims[0] as usize;
        let a_math: Vec<f32> = (0..n_in).map(|j| [1.0, 2.0, 0.5][j % 3]).collect();
        let a_general: Vec<f32> = (0..n_in).map(|j| [2.0, 1.0][j % 2]).collect();
        for method in [Method::MathNeuro, Method::Wanda] {
            for top_k in [1.0, 5.0, 12.5, 50.0, 100.0] {
                check_tensor(&file, t, &a_math, &a_general, &SelectOptions { method, top_k_percent: top_k, seed: 0 });
            }
        }
    }
}

#[test]
fn real_tensors_of_every_type_match_the_reference() {
    let file = GgufFile::open(apply_support::real_model()).unwrap();
    let targets = mathneuro::model::target_weights(&file);
    let mut seen = HashSet::new();
    let (math, general) = apply_support::stats_pair(&file);
    for t in targets {
        if !seen.insert(t.ggml_type) {
            continue;
        }
        let n_in = t.dims[0] as usize;
        // A constant A makes the math score |W| itself: quantized weights tie everywhere.
        let flat = vec![1.0f32; n_in];
        check_tensor(&file, t, &flat, &general.weights[&t.name].norm_sum, &SelectOptions::default());
        check_tensor(&file, t, &math.weights[&t.name].norm_sum, &general.weights[&t.name].norm_sum, &SelectOptions::default());
    }
    assert!(seen.len() >= 4, "expected Q5_0, Q4_K, Q6_K and Q8_0 targets, saw {seen:?}");
}

fn toy() -> GgufFile {
    let m = SynthModel::toy_transformer(2, 64, 128, 32, GgmlType::Q8_0);
    GgufFile::from_bytes("toy.gguf", m.to_bytes(&|ty, v| ggml::quantize(ty, v, 64.min(v.len()), None).unwrap_or_else(|_| encode_plain(ty, v))).unwrap()).unwrap()
}

#[test]
fn random_baseline_matches_mathneuro_counts_and_is_seeded() {
    let file = toy();
    let (math, general) = apply_support::stats_pair(&file);
    let run = |method, seed| select::select(&file, &math, &general, &SelectOptions { method, top_k_percent: 5.0, seed }).unwrap();
    let mn = run(Method::MathNeuro, 0);
    let r1 = run(Method::Random, 7);
    let r1again = run(Method::Random, 7);
    let r2 = run(Method::Random, 8);
    assert_eq!(r1, r1again, "same seed, same selection");
    assert_ne!(r1.tensors, r2.tensors, "another seed, another selection");
    for (a, b) in mn.tensors.iter().zip(&r1.tensors) {
        assert_eq!(a.selected, b.selected, "{}", a.name);
    }
    assert!(mn.selected() > 0);
    let wanda = run(Method::Wanda, 0);
    for t in &wanda.tensors {
        assert_eq!(t.selected, t.k, "{}: wanda selects exactly k", t.name);
    }

    // Masks round-trip through the mask file; Jaccard of a mask with itself is 1.
    let dir = tempfile::tempdir().unwrap();
    let fp = mathneuro::model::fingerprint(&file);
    let (pa, pb) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
    MaskFile::from_selection(&r1, &fp).save(&pa, None).unwrap();
    MaskFile::from_selection(&r2, &fp).save(&pb, None).unwrap();
    let (ma, mb) = (MaskFile::load(&pa).unwrap(), MaskFile::load(&pb).unwrap());
    assert_eq!(ma.masks[0].1, r1.tensors[0].mask);
    assert_eq!(ma.method, "random");
    let (_, same) = compare(&ma, &ma).unwrap();
    assert_eq!(same.jaccard, 1.0);
    let (rows, overall) = compare(&ma, &mb).unwrap();
    assert_eq!(rows.len(), r1.tensors.len());
    assert!(overall.jaccard < 0.5, "independent random masks overlap little: {}", overall.jaccard);
    let raw = GgufFile::open(&pa).unwrap();
    let t = &raw.tensors[0];
    assert_eq!(t.name, format!("{}.mask", r1.tensors[0].name));
    assert_eq!(t.ggml_type, GgmlType::I8);
    let bytes = raw.tensor_data(t);
    for i in r1.tensors[0].mask.ones() {
        assert_eq!(bytes[(i / 8) as usize] >> (i % 8) & 1, 1, "bit {i} LSB-first");
    }
}

#[test]
fn stats_that_do_not_match_the_model_are_refused_naming_the_tensor() {
    let file = toy();
    let (math, general) = apply_support::stats_pair(&file);
    let opts = SelectOptions::default();
    let err = |m: &mathneuro::stats::ActivationStats| select::select(&file, m, &general, &opts).unwrap_err().to_string();

    let mut other = math.clone();
    other.model_fingerprint = "00".repeat(32);
    assert!(err(&other).contains("another model"), "{}", err(&other));

    let mut missing = math.clone();
    missing.weights.remove("blk.1.ffn_down.weight");
    assert!(err(&missing).contains("blk.1.ffn_down.weight"), "{}", err(&missing));

    let mut narrow = math.clone();
    let w = narrow.weights.get_mut("blk.0.attn_k.weight").unwrap();
    w.n_in = 32;
    w.norm_sum.truncate(32);
    w.sum_sq.truncate(32);
    let e = err(&narrow);
    assert!(e.contains("blk.0.attn_k.weight") && e.contains("n_in 32") && e.contains("n_in 64"), "{e}");

    let mut negative = math.clone();
    negative.weights.get_mut("blk.0.attn_q.weight").unwrap().norm_sum[3] = -1.0;
    assert!(err(&negative).contains("blk.0.attn_q.weight"), "{}", err(&negative));

    assert!(select::select(&file, &math, &general, &SelectOptions { top_k_percent: 0.0, ..opts }).is_err());
}

/// The top K % of `|W·A|` on one expert tensor, expert by expert: each expert's 2-D slice
/// (`n_out` rows of `n_in`) is one matrix scored with its own A and its own k.
fn reference_per_expert(w: &[f32], a: &[f32], n_in: usize, n_out: usize, experts: usize, k_percent: f64) -> HashSet<u64> {
    let per = n_in * n_out;
    let k = top_k_count(per as u64, k_percent);
    let mut out = HashSet::new();
    for e in 0..experts {
        let we = &w[e * per..(e + 1) * per];
        let math = reference_top_k(we, &a[e * n_in..(e + 1) * n_in], n_in, k);
        out.extend(math.into_iter().map(|i| i + (e * per) as u64));
    }
    out
}

#[test]
fn expert_tensors_take_each_experts_top_k_and_prune_cleanly() {
    // blk.0.ffn_up_exps.weight: [n_in 64, n_out 16, 4 experts], Q8_0; A differs per expert, and
    // expert 2's weights are 1000× smaller than the others': over the whole tensor none of its
    // scores would reach the top K %, per expert it still gets its own K %.
    let (n_in, n_out, experts) = (64usize, 16usize, 4usize);
    let per = n_in * n_out;
    let mut m = SynthModel::new("toy").tensor("blk.0.ffn_up_exps.weight", &[64, 16, 4], GgmlType::Q8_0, 5).tensor("blk.0.attn_q.weight", &[64, 64], GgmlType::Q8_0, 6);
    for v in &mut m.tensors[0].values[2 * per..3 * per] {
        *v *= 1e-3;
    }
    let file = GgufFile::from_bytes("moe.gguf", m.to_bytes(&|ty, v| ggml::quantize(ty, v, 64, None).unwrap()).unwrap()).unwrap();
    let (math, general) = apply_support::stats_pair(&file);
    let t = file.tensor("blk.0.ffn_up_exps.weight").unwrap();
    assert_eq!(math.weights[&t.name].n_groups, 4);
    let (am, ag) = (&math.weights[&t.name].norm_sum, &general.weights[&t.name].norm_sum);
    let w = ggml::dequantize_to_vec(t.ggml_type, file.tensor_data(t), t.n_elements() as usize).unwrap();
    let k_e = top_k_count(per as u64, 5.0);
    let in_expert = |mask: &mathneuro::select::BitMask, e: usize| mask.ones().filter(|&i| i as usize / per == e).count() as u64;

    // Wanda: exactly k_e in every expert, the small one included; the top k_e of each expert.
    let wanda = select_tensor(&file, t, am, ag, &SelectOptions { method: Method::Wanda, ..SelectOptions::default() }).unwrap();
    assert_eq!(wanda.k, k_e * experts as u64, "k is the per-expert k summed");
    for e in 0..experts {
        assert_eq!(in_expert(&wanda.mask, e), k_e, "expert {e} gets its own top K %");
    }
    let top_math = reference_per_expert(&w, am, n_in, n_out, experts, 5.0);
    assert_eq!(wanda.mask.ones().collect::<HashSet<_>>(), top_math);
    // The whole-tensor rule (one top k over all experts) would give the small expert nothing.
    let whole: Vec<f32> = w.iter().enumerate().map(|(i, v)| (v * am[(i / per) * n_in + i % n_in]).abs()).collect();
    let mut idx: Vec<usize> = (0..whole.len()).collect();
    idx.sort_by(|&x, &y| whole[y].total_cmp(&whole[x]).then(x.cmp(&y)));
    assert!(idx[..k_e as usize * experts].iter().all(|&i| i / per != 2), "the test's small expert must be out of the whole-tensor top k");

    // MathNeuro: per expert, its math top k_e minus its general top k_e.
    let got = select_tensor(&file, t, am, ag, &SelectOptions::default()).unwrap();
    let top_general = reference_per_expert(&w, ag, n_in, n_out, experts, 5.0);
    let want: HashSet<u64> = top_math.difference(&top_general).copied().collect();
    assert_eq!(got.mask.ones().collect::<HashSet<_>>(), want);
    assert!(in_expert(&got.mask, 2) > 0, "the small expert has math-specific weights of its own");
    assert_eq!(got, select_tensor_exact(&file, t, am, ag, &SelectOptions::default()).unwrap(), "single pass = exact passes per expert");

    // Random: per expert as many as mathneuro selects there, seeded.
    let random = |seed| select_tensor(&file, t, am, ag, &SelectOptions { method: Method::Random, seed, ..SelectOptions::default() }).unwrap();
    let r7 = random(7);
    assert_eq!(r7, random(7), "same seed, same selection");
    assert_ne!(r7.mask, random(8).mask, "another seed, another selection");
    for e in 0..experts {
        assert_eq!(in_expert(&r7.mask, e), in_expert(&got.mask, e), "expert {e}: random has mathneuro's count");
    }

    // An expert no math token was routed to (its statistic all 0) selects nothing, by any method;
    // the other experts keep their selections.
    let mut am3 = am.clone();
    am3[3 * n_in..4 * n_in].fill(0.0);
    for method in [Method::MathNeuro, Method::Wanda, Method::Random] {
        let sel = select_tensor(&file, t, &am3, ag, &SelectOptions { method, seed: 7, ..SelectOptions::default() }).unwrap();
        assert_eq!(in_expert(&sel.mask, 3), 0, "{method:?}: the unrouted expert");
        let with = select_tensor(&file, t, am, ag, &SelectOptions { method, seed: 7, ..SelectOptions::default() }).unwrap();
        for e in 0..3 {
            assert_eq!(in_expert(&sel.mask, e), in_expert(&with.mask, e), "{method:?}: expert {e}");
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("moe.gguf");
    std::fs::write(&src, file.bytes()).unwrap();
    let model = GgufFile::open(&src).unwrap();
    let out = dir.path().join("moe-mathneuro.gguf");
    let report = mathneuro::surgery::apply(&model, &math, &general, &mathneuro::surgery::ApplyOptions::new(mathneuro::surgery::Change::Prune, &out)).unwrap();
    let written = GgufFile::open(&out).unwrap();
    let after = ggml::dequantize_to_vec(t.ggml_type, written.tensor_data(written.tensor(&t.name).unwrap()), t.n_elements() as usize).unwrap();
    for i in got.mask.ones() {
        assert_eq!(after[i as usize], 0.0, "entry {i}");
    }
    assert_eq!(report.tensors.iter().find(|r| r.name == t.name).unwrap().tally.selected, got.selected);
}

#[test]
fn single_pass_equals_the_exact_passes_on_every_real_target() {
    // The single pass (sample bracket + candidates) must give exactly the three-pass result on
    // every target weight of the default model, for small, default and large K, both rules.
    let file = GgufFile::open(apply_support::real_model()).unwrap();
    let (math, general) = apply_support::stats_pair(&file);
    for t in mathneuro::model::target_weights(&file) {
        let (am, ag) = (&math.weights[&t.name].norm_sum, &general.weights[&t.name].norm_sum);
        for (method, top_k) in [(Method::MathNeuro, 0.01), (Method::MathNeuro, 5.0), (Method::Wanda, 15.0)] {
            let opts = SelectOptions { method, top_k_percent: top_k, seed: 0 };
            let fast = select_tensor(&file, t, am, ag, &opts).unwrap();
            let exact = select_tensor_exact(&file, t, am, ag, &opts).unwrap();
            assert!(fast == exact, "{} {method:?} K={top_k}: single pass differs from the exact passes", t.name);
        }
    }
}

/// A matrix whose sampled rows (every second one, see `onepass::SamplePlan`) mislead the sample:
/// `sampled_large` makes them 100× the others, else 100× smaller.
fn misleading_matrix(sampled_large: bool) -> GgufFile {
    let (n_in, n_out) = (64u64, 4096u64);
    let plan = onepass::SamplePlan::new(n_out, n_in as usize, 1);
    assert_eq!(plan.row_step, 2, "the test assumes every second row is sampled");
    let mut m = SynthModel::new("toy").tensor("blk.0.ffn_up.weight", &[n_in, n_out], GgmlType::F32, 3);
    let t = m.tensors.last_mut().unwrap();
    for (i, v) in t.values.iter_mut().enumerate() {
        let sampled = (i as u64 / n_in).is_multiple_of(2);
        if sampled == sampled_large {
            *v *= 100.0;
        }
    }
    GgufFile::from_bytes("toy.gguf", m.to_bytes(&encode_plain).unwrap()).unwrap()
}

#[test]
fn a_misleading_sample_falls_back_to_the_exact_passes() {
    for sampled_large in [true, false] {
        let file = misleading_matrix(sampled_large);
        let t = &file.tensors[0];
        let n_in = t.dims[0] as usize;
        let a: Vec<f32> = (0..n_in).map(|j| 1.0 + (j % 5) as f32).collect();
        let a_general: Vec<f32> = (0..n_in).map(|j| 1.0 + (j % 3) as f32).collect();
        let w = ggml::dequantize_to_vec(t.ggml_type, file.tensor_data(t), t.n_elements() as usize).unwrap();
        let k = top_k_count(t.n_elements(), 5.0);
        // Sampled rows large: too few candidates; sampled rows small: too many (over the cap).
        let direct = onepass::one_pass(
            t.n_rows(),
            n_in,
            onepass::SamplePlan::new(t.n_rows(), n_in, 1),
            |r, start, buf: &mut [f32]| {
                let from = r as usize * n_in + start;
                buf.copy_from_slice(&w[from..from + buf.len()]);
                Ok::<usize, ()>(0)
            },
            &a,
            Some(&a_general),
            k,
        )
        .unwrap();
        assert!(direct.is_none(), "sampled rows large = {sampled_large}: the single pass must give up");
        // select_tensor then takes the exact passes, and still matches the reference.
        for method in [Method::MathNeuro, Method::Wanda] {
            check_tensor(&file, t, &a, &a_general, &SelectOptions { method, top_k_percent: 5.0, seed: 0 });
        }
    }
}
