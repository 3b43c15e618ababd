//! `mathneuro quantize` and the KL-divergence metric (issue 24): KLD against itself is 0, against
//! another model > 0, and equal to a plain full-logits computation; the quantizer's stock mixes
//! follow llama-quantize's recipe, allocations keep the stock size within 1 %, the same inputs
//! give the same bytes, a STATS mismatch is refused naming the tensor, and the output loads and
//! generates in llama.cpp.

use std::path::Path;

use mathneuro::eval::engine::{EngineOptions, Model, Session, Token};
use mathneuro::eval::kld::{DocStart, chunk_divergences, divergences, divergences_from_rows, divergences_of_each, master_rows, paired_difference, summarize};
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
    let same = divergences(&mut sa, &mut sb, &docs, windows, DocStart::Always, |_| {}).unwrap();
    assert_eq!(same.len(), tokens.len());
    assert!(same.iter().all(|d| d.kl <= 1e-6 && d.same_top1), "{same:?}");
    assert!(summarize(&same).mean <= 1e-6);

    let mut sq = Session::new(&quant, &engine()).unwrap();
    let whole = Windows { window: 512, stride: 256 };
    let diff = divergences(&mut sa, &mut sq, &docs, whole, DocStart::Always, |_| {}).unwrap();
    let s = summarize(&diff);
    assert!(s.mean > 0.0 && s.max > 0.0, "{s:?}");
    let naive = naive_kl(&master, &quant, &tokens);
    assert_eq!(naive.len(), diff.len());
    for (i, (d, n)) in diff.iter().zip(&naive).enumerate() {
        assert!((d.kl - n).abs() <= 1e-6 + 1e-6 * n.abs(), "token {i}: {} vs naive {n}", d.kl);
    }

    // The master's rows kept once (the sensitivity probes' measure) give exactly the lockstep
    // numbers, at any window geometry.
    for w in [whole, windows] {
        let kept = master_rows(&mut sa, &docs, w, DocStart::Always).unwrap();
        assert_eq!(kept.len(), tokens.len());
        assert_eq!(divergences_from_rows(&kept, Some(master.bos()), &mut sq, &docs, w).unwrap(), divergences(&mut sa, &mut sq, &docs, w, DocStart::Always, |_| {}).unwrap());
    }
    // Several models in one pass (`kld --against`): each list is what `divergences` gives alone,
    // token for token, so the two pair.
    let both = divergences_of_each(&mut sa, &mut [&mut sq, &mut sb], &docs, whole, DocStart::Always, |_| {}).unwrap();
    assert_eq!(both[0], diff);
    assert!(both[1].iter().all(|d| d.kl <= 1e-6));
    let pd = paired_difference(&both[1], &both[0]);
    assert_eq!(pd.tokens, tokens.len());
    assert!((pd.mean - (s.mean - summarize(&both[1]).mean)).abs() < 1e-12 && pd.ci95.0 < pd.mean && pd.mean < pd.ci95.1, "{pd:?}");
    // Gemma's vocabulary adds the start token, so reading documents "as the vocabulary asks" is
    // the same measure.
    assert_eq!(divergences(&mut sa, &mut sq, &docs, whole, DocStart::Vocab, |_| {}).unwrap(), diff);
    let short = master_rows(&mut sa, &docs, whole, DocStart::Always).unwrap()[1..].to_vec();
    assert!(divergences_from_rows(&short, Some(master.bos()), &mut sq, &docs, whole).unwrap_err().to_string().contains("rows"));

    // `kld --text`, llama-perplexity's protocol: a context [bos] + tokens[..15] scored on its
    // second half only — rows 8..15, the same numbers as the naive rows predicting tokens 8..15.
    let chunk: Vec<Token> = std::iter::once(master.bos()).chain(tokens[..15].iter().copied()).collect();
    let halves = chunk_divergences(&mut sa, &mut sq, &[chunk.clone(), chunk], |_| {}).unwrap();
    assert_eq!(halves.len(), 2 * 7);
    for (i, (d, n)) in halves.iter().zip(naive[8..15].iter().cycle()).enumerate() {
        assert!((d.kl - n).abs() <= 1e-6 + 1e-6 * n.abs(), "chunk row {i}: {} vs naive {n}", d.kl);
    }
}

/// `kld --text FILE`: the file is scored in llama-perplexity's contexts; a model against itself
/// is 0 on every scored token; a file shorter than one context, or missing, is refused naming it.
#[test]
fn kld_text_scores_second_halves_of_contexts_and_names_a_file_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let model = apply_support::real_model();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did she sell altogether in April and May? ".repeat(4)).unwrap();
    let kld = |window: &str, file: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mathneuro"))
            .args(["kld", "-q", "--threads", "2", "--tokens", "20", "--window", window, "--text"])
            .arg(file)
            .arg("--master")
            .arg(&model)
            .arg(&model)
            .output()
            .unwrap()
    };
    let ok = kld("32", &text);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    // 20 tokens at 15 scored per context of 32: 2 contexts, 30 tokens, all KL 0.
    assert!(out.contains("| text | 30 | 0.000000"), "{out}");
    assert!(out.contains("the first 2 of") && out.contains("second halves scored"), "{out}");
    // --against: the second model on the same tokens, and the paired difference (0 here).
    let mut with = std::process::Command::new(env!("CARGO_BIN_EXE_mathneuro"));
    let paired = with.args(["kld", "-q", "--threads", "2", "--tokens", "20", "--window", "32", "--text"]).arg(&text).arg("--master").arg(&model).arg("--against").arg(&model).arg(&model).output().unwrap();
    let out = String::from_utf8_lossy(&paired.stdout);
    assert!(paired.status.success() && out.contains("text: minus") && out.contains("+0.000000") && out.contains("paired over 30 tokens"), "{out}");
    let short = kld("4096", &text);
    let err = String::from_utf8_lossy(&short.stderr);
    assert!(!short.status.success() && err.contains("t.txt") && err.contains("fewer than one context"), "{err}");
    let missing = kld("32", &dir.path().join("none.txt"));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && err.contains("none.txt"), "{err}");
}

/// `--gptq-memory` must be a positive number of GiB; a bad one is refused before any work and
/// leaves no output.
#[test]
fn a_gptq_memory_budget_that_is_not_positive_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.gguf");
    for bad in ["0", "-1", "nan"] {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_mathneuro"))
            .args(["quantize", "-q", "--threads", "2", "--type", "Q3_K_M", "--gptq", "embedded-math", &format!("--gptq-memory={bad}")])
            .arg(apply_support::real_model())
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && err.contains("--gptq-memory") && err.contains("GiB above 0"), "{bad}: {err}");
        assert!(!out.exists());
    }
}

mod quantizer {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use mathneuro::gguf::synth::{SynthModel, encode_plain};
    use mathneuro::gguf::{GgmlType, GgufFile, MetaValue};
    use mathneuro::quantize::{Allocation, Importance, QuantizeOptions, Scores, quantize};
    use mathneuro::select::synth::synthetic_stats;
    use mathneuro::surgery::Mix;
    use mathneuro::surgery::quantmix::mix_types;
    use mathneuro::ffi::ggml::dequantize_rows;
    use mathneuro::quantize::alloc::step;
    use mathneuro::quantize::sensitivity::{Direction, Measure, SensitivityOptions, journal_path, measure_sensitivity, probe_plan};

    use crate::apply_support;

    const LAYERS: usize = 16;

    /// A 16-layer toy master in F16 whose rows are whole 256-blocks; `gqa` heads per KV head.
    fn toy_master(dir: &Path, name: &str, n_ff: u64, gqa: u32) -> PathBuf {
        let path = dir.join(name);
        SynthModel::toy_transformer(LAYERS, 256, n_ff, 512, GgmlType::F16)
            .meta("toy.attention.head_count", MetaValue::U32(8))
            .meta("toy.attention.head_count_kv", MetaValue::U32(8 / gqa))
            .write(&path, &encode_plain)
            .unwrap();
        path
    }

    fn options(mix: Mix, output: PathBuf, allocation: Option<Allocation>) -> QuantizeOptions {
        QuantizeOptions { mix, importance: Importance::Mix(0.5), allocation, protect: None, gptq: None, output, force: false, progress: false }
    }

    fn mathneuro_allocation(share: f64) -> Option<Allocation> {
        Some(Allocation { scores: Scores::MathNeuro { top_k_percent: 5.0 }, promote_share: share })
    }

    /// The type llama-quantize's recipe (src/llama-quant.cpp, dense, not Falcon) gives
    /// `blk.{layer}.{kind}` of a 16-layer model, written out as a table per mix.
    fn recipe(mix: Mix, kind: &str, layer: usize, gqa: u32) -> GgmlType {
        use GgmlType::*;
        let more_bits = !(2..14).contains(&layer) || (layer as i64 - 2) % 3 == 2; // use_more_bits(i, 16)
        match (mix, kind) {
            (Mix::Q4KM, "attn_v" | "ffn_down") => if more_bits { Q6_K } else { Q4_K },
            (Mix::Q4KM, _) => Q4_K,
            (Mix::Q3KM, "attn_v") => if layer < 2 { Q5_K } else { Q4_K },
            (Mix::Q3KM, "ffn_down") => if layer < 1 { Q5_K } else { Q4_K },
            (Mix::Q3KM, "attn_output") => Q4_K,
            (Mix::Q3KM, _) => Q3_K,
            (Mix::Q2K, "attn_v") => if gqa >= 4 { Q4_K } else { Q3_K },
            (Mix::Q2K, "ffn_down" | "attn_output") => Q3_K,
            (Mix::Q2K, _) => Q2_K,
        }
    }

    /// `path` rewritten with its tensors stored in name order (`blk.10` before `blk.2`), as some
    /// published GGUFs are (Qwen2.5-Coder-0.5B-Instruct's Q4_K_M).
    fn name_ordered_copy(path: &Path, out: PathBuf) -> PathBuf {
        let src = GgufFile::open(path).unwrap();
        let mut w = mathneuro::gguf::GgufWriter::from_file(&src);
        w.tensors.sort_by(|a, b| a.name.cmp(&b.name));
        w.write_atomic(&out, Some(path), |_, spec, sink| sink.write_all(src.tensor_data(src.tensor(&spec.name).unwrap()))).unwrap();
        out
    }

    #[test]
    fn the_stock_mixes_give_each_tensor_the_type_llama_quantize_picks() {
        let dir = tempfile::tempdir().unwrap();
        for gqa in [1, 4] {
            let path = toy_master(dir.path(), &format!("m{gqa}.gguf"), 512, gqa);
            // llama-quantize counts the i-th attn_v / ffn_down in layer order whatever order the
            // file stores them in (issue 24: the name-ordered 0.5B got 32 Q4_K_M types wrong).
            let by_name = name_ordered_copy(&path, dir.path().join(format!("m{gqa}-by-name.gguf")));
            let stored = GgufFile::open(&by_name).unwrap();
            let at = |prefix: &str| stored.tensors.iter().position(|t| t.name.starts_with(prefix)).unwrap();
            assert!(at("blk.10.") < at("blk.2."));
            for master in [GgufFile::open(&path).unwrap(), GgufFile::open(&by_name).unwrap()] {
                check_stock_types(&master, gqa);
            }
        }
    }

    fn check_stock_types(master: &GgufFile, gqa: u32) {
        for mix in Mix::ALL {
            let types = mix_types(master, mix);
            for t in &master.tensors {
                let want = if t.name.contains("_norm") {
                    t.ggml_type
                } else if t.name == "token_embd.weight" {
                    GgmlType::Q6_K // the tied head
                } else {
                    let layer: usize = t.name.split('.').nth(1).unwrap().parse().unwrap();
                    recipe(mix, t.name.split('.').nth(2).unwrap(), layer, gqa)
                };
                assert_eq!(types[&t.name], want, "{} {} gqa {gqa} ({})", mix.name(), t.name, master.path().display());
            }
        }
    }

    #[test]
    fn allocations_keep_the_stock_size_within_one_percent_and_the_same_inputs_give_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = toy_master(dir.path(), "master.gguf", 512, 4);
        let master = GgufFile::open(&path).unwrap();
        let (math, general) = (synthetic_stats(&master, 1, 100, "synthetic-math"), synthetic_stats(&master, 2, 100, "synthetic-general"));
        for mix in Mix::ALL {
            let stock_out = dir.path().join(format!("{}-stock.gguf", mix.name()));
            let stock = apply_support::two_threads(|| quantize(&master, Some(&math), Some(&general), &options(mix, stock_out.clone(), None))).unwrap();
            assert_eq!(stock.exchange.bytes, stock.exchange.stock_bytes);
            let stock_len = std::fs::metadata(&stock_out).unwrap().len() as f64;
            for share in [0.1, 0.25, 0.5] {
                let out = dir.path().join(format!("{}-{share}.gguf", mix.name()));
                let r = apply_support::two_threads(|| quantize(&master, Some(&math), Some(&general), &options(mix, out.clone(), mathneuro_allocation(share)))).unwrap();
                assert!(!r.exchange.promoted.is_empty() && !r.exchange.demoted.is_empty(), "{} {share}: {:?}", mix.name(), r.exchange);
                assert!(r.exchange.bytes <= r.exchange.stock_bytes);
                let len = std::fs::metadata(&out).unwrap().len() as f64;
                assert!((len / stock_len - 1.0).abs() <= 0.01, "{} share {share}: {len} vs stock {stock_len}", mix.name());
                let written = GgufFile::open(&out).unwrap();
                assert!(written.get("mathneuro.quantize.allocation").and_then(|v| v.as_str()).unwrap().starts_with("mathneuro-mass@K=5"));
                assert_eq!(written.get("mathneuro.quantize.importance").and_then(|v| v.as_str()), Some("mix=0.5"));
                assert_eq!(written.get("general.file_type").and_then(|v| v.as_u64()), Some(mix.file_type() as u64));
                let moved: HashMap<&str, GgmlType> = written.tensors.iter().map(|t| (t.name.as_str(), t.ggml_type)).collect();
                for name in &r.exchange.promoted {
                    assert_ne!(moved[name.as_str()].name(), stock.types[name], "{name} was promoted");
                }
            }
            let again = dir.path().join(format!("{}-again.gguf", mix.name()));
            apply_support::two_threads(|| quantize(&master, Some(&math), Some(&general), &options(mix, again.clone(), mathneuro_allocation(0.25)))).unwrap();
            let first = dir.path().join(format!("{}-0.25.gguf", mix.name()));
            assert!(std::fs::read(&first).unwrap() == std::fs::read(&again).unwrap(), "{}: two runs differ", mix.name());
        }
    }

    /// Σ over tensors of ‖dequant(model) − master‖² / ‖master‖²: a measure of a written model
    /// that needs no forward pass (the real stage measures math KLD with llama.cpp).
    fn weight_error(master: &GgufFile, model: &Path) -> f64 {
        weight_errors(master, model).iter().sum()
    }

    /// Each tensor's relative weight error: a measure over items, one item per tensor.
    fn weight_errors(master: &GgufFile, model: &Path) -> Vec<f64> {
        let m = GgufFile::open(model).unwrap();
        master
            .tensors
            .iter()
            .map(|t| {
                let (a, b) = (dequantize_rows(master, t, 0..t.n_rows()).unwrap(), dequantize_rows(&m, m.tensor(&t.name).unwrap(), 0..t.n_rows()).unwrap());
                let norm: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
                a.iter().zip(&b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>() / norm.max(1e-30)
            })
            .collect()
    }

    #[test]
    fn sensitivity_probes_move_one_tensor_a_step_and_write_the_file_the_allocation_reads_the_same_each_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = toy_master(dir.path(), "master.gguf", 512, 4);
        let master = GgufFile::open(&path).unwrap();
        let (math, general) = (synthetic_stats(&master, 1, 100, "m"), synthetic_stats(&master, 2, 100, "g"));
        let stock = mix_types(&master, Mix::Q3KM);
        let sens_opts = |name: &str, direction: Direction| SensitivityOptions {
            mix: Mix::Q3KM,
            importance: Importance::General,
            direction,
            only: vec![],
            output: dir.path().join(name),
            report: None,
            force: false,
            progress: false,
            resume: false,
            measure_key: "weight error".into(),
            noise_floor: 0.0,
        };
        let mut seen = Vec::new();
        let measure = |p: &Path, seen: &mut Vec<Vec<(String, GgmlType)>>| {
            // Every model measured differs from the stock mix in at most one tensor's type.
            let m = GgufFile::open(p).unwrap();
            let moved: Vec<(String, GgmlType)> = m.tensors.iter().filter(|t| t.ggml_type != stock[&t.name]).map(|t| (t.name.clone(), t.ggml_type)).collect();
            assert!(moved.len() <= 1, "{moved:?}");
            seen.push(moved);
            Ok(weight_error(&master, p))
        };
        let r = apply_support::two_threads(|| measure_sensitivity(&master, Some(&math), Some(&general), &sens_opts("down.json", Direction::Down), |p| measure(p, &mut seen))).unwrap();
        // First the stock mix, then one probe per movable tensor, each a step down.
        assert!(seen[0].is_empty());
        let plan = probe_plan(&master, &stock, Direction::Down, &[]);
        assert_eq!(seen.len(), plan.len() + 1);
        assert_eq!(plan.len(), LAYERS * 7 + 1, "every linear weight and the tied head");
        for ((i, ty), probe) in plan.iter().zip(&seen[1..]) {
            let name = &master.tensors[*i].name;
            assert_eq!(probe, &vec![(name.clone(), *ty)]);
            assert_eq!(Some(*ty), step(stock[name], false, master.tensors[*i].row_len()), "{name}");
        }
        assert!(r.probes.iter().all(|p| p.score > 0.0 && p.bytes_delta < 0), "a step down loses precision and bytes");
        // The file: a JSON object tensor → score, the same bytes on a second run.
        let text = std::fs::read_to_string(dir.path().join("down.json")).unwrap();
        let map: HashMap<String, f64> = serde_json::from_str(&text).unwrap();
        assert_eq!(map.len(), plan.len());
        // serde_json's parser may round the last digit.
        assert!(r.probes.iter().all(|p| (map[&p.tensor] - p.score).abs() <= 1e-12 * p.score.abs()));
        let again = apply_support::two_threads(|| measure_sensitivity(&master, Some(&math), Some(&general), &sens_opts("again.json", Direction::Down), |p| Ok(weight_error(&master, p)))).unwrap();
        assert_eq!(again.probes, r.probes);
        assert_eq!(std::fs::read(dir.path().join("again.json")).unwrap(), text.as_bytes());
        // No probe model is left behind.
        let mut left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["again.json", "down.json", "master.gguf"]);
        // `quantize --allocation sensitivity=FILE` reads it and keeps the stock size.
        let out = dir.path().join("sens.gguf");
        let alloc = Some(Allocation { scores: Scores::Sensitivity(dir.path().join("down.json")), promote_share: 0.25 });
        let q = apply_support::two_threads(|| quantize(&master, Some(&math), Some(&general), &options(Mix::Q3KM, out.clone(), alloc))).unwrap();
        assert!(!q.exchange.promoted.is_empty() && q.exchange.bytes <= q.exchange.stock_bytes);
        assert!((q.exchange.bytes as f64 / q.exchange.stock_bytes as f64) >= 0.99, "{:?}", q.exchange);
        let top = r.probes.iter().max_by(|a, b| a.score.total_cmp(&b.score)).unwrap();
        assert!(q.exchange.promoted.contains(&top.tensor), "the most sensitive tensor is promoted first");
        // Up: the gain of a step higher; a filter that names nothing is refused, as is an existing output.
        let only = SensitivityOptions { only: vec!["ffn_down".into()], ..sens_opts("up.json", Direction::Up) };
        let up = apply_support::two_threads(|| measure_sensitivity(&master, Some(&math), Some(&general), &only, |p| Ok(weight_error(&master, p)))).unwrap();
        assert_eq!(up.probes.len(), LAYERS);
        assert!(up.probes.iter().all(|p| p.score > 0.0 && p.bytes_delta > 0 && p.tensor.contains("ffn_down")));
        // `--allocation knapsack=DOWN,UP` spends both files by the byte, promotes only tensors
        // with a measured gain, and keeps the stock size.
        let out = dir.path().join("knap.gguf");
        let knap = Scores::Knapsack { down: dir.path().join("down.json"), up: Some(dir.path().join("up.json")) };
        let k = apply_support::two_threads(|| quantize(&master, Some(&math), Some(&general), &options(Mix::Q3KM, out.clone(), Some(Allocation { scores: knap, promote_share: 0.25 })))).unwrap();
        assert!(k.exchange.bytes <= k.exchange.stock_bytes && k.exchange.bytes as f64 >= 0.99 * k.exchange.stock_bytes as f64, "{:?}", k.exchange);
        assert!(k.exchange.promoted.iter().all(|n| n.contains("ffn_down")), "{:?}", k.exchange);
        // Its forecast: present exactly when something moved, and every move gained more than it cost.
        match k.exchange.forecast {
            Some(f) => assert!(!k.exchange.promoted.is_empty() && f.gain > f.loss, "{:?}", k.exchange),
            None => assert!(k.exchange.promoted.is_empty(), "{:?}", k.exchange),
        }
        assert!(k.allocation.starts_with("knapsack="), "{}", k.allocation);
        let none = SensitivityOptions { only: vec!["no_such".into()], ..sens_opts("none.json", Direction::Down) };
        let err = measure_sensitivity(&master, Some(&math), Some(&general), &none, |_| Ok(0.0)).unwrap_err().to_string();
        assert!(err.contains("no_such") && err.contains("256-blocks"), "{err}");
        let err = measure_sensitivity(&master, Some(&math), Some(&general), &sens_opts("down.json", Direction::Down), |_| Ok(0.0)).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.path().join("down.json")).unwrap(), text);
    }

    /// A stopped sensitivity run keeps its journal; `resume` measures only what is missing and
    /// writes the file an uninterrupted run writes; the journal is refused without `resume` or
    /// `--force`, and under another measure.
    #[test]
    fn an_interrupted_sensitivity_run_resumes_from_its_journal_to_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let master = GgufFile::open(toy_master(dir.path(), "master.gguf", 512, 4)).unwrap();
        let (math, general) = (synthetic_stats(&master, 1, 100, "m"), synthetic_stats(&master, 2, 100, "g"));
        let opts = |name: &str, resume: bool, key: &str| SensitivityOptions {
            mix: Mix::Q3KM,
            importance: Importance::General,
            direction: Direction::Down,
            only: vec!["ffn_down".into()],
            output: dir.path().join(name),
            report: None,
            force: false,
            progress: false,
            resume,
            measure_key: key.into(),
            noise_floor: 0.0,
        };
        let whole = apply_support::two_threads(|| measure_sensitivity(&master, Some(&math), Some(&general), &opts("a.json", false, "w"), |p| Ok(weight_error(&master, p)))).unwrap();
        assert_eq!(whole.probes.len(), LAYERS);
        assert!(!journal_path(&dir.path().join("a.json")).exists(), "the journal goes once the file is written");
        let expected = std::fs::read_to_string(dir.path().join("a.json")).unwrap();
        // Stopped at the sixth measure: the stock mix and four probes are journaled.
        let mut calls = 0;
        let stopped = measure_sensitivity(&master, Some(&math), Some(&general), &opts("b.json", false, "w"), |p| {
            calls += 1;
            if calls == 6 { Err("stopped".into()) } else { Ok(weight_error(&master, p)) }
        });
        assert!(stopped.unwrap_err().to_string().contains("stopped"));
        let journal = journal_path(&dir.path().join("b.json"));
        assert!(journal.exists() && !dir.path().join("b.json").exists());
        assert_eq!(std::fs::read_to_string(&journal).unwrap().lines().count(), 1 + 5, "header, stock mix, four probes");
        let err = measure_sensitivity(&master, Some(&math), Some(&general), &opts("b.json", false, "w"), |_| Ok(0.0)).unwrap_err().to_string();
        assert!(err.contains("--force") && err.contains("partial.jsonl"), "{err}");
        let err = measure_sensitivity(&master, Some(&math), Some(&general), &opts("b.json", true, "another measure"), |_| Ok(0.0)).unwrap_err().to_string();
        assert!(err.contains("other settings"), "{err}");
        let mut calls = 0;
        apply_support::two_threads(|| {
            measure_sensitivity(&master, Some(&math), Some(&general), &opts("b.json", true, "w"), |p| {
                calls += 1;
                Ok(weight_error(&master, p))
            })
        })
        .unwrap();
        assert_eq!(calls, LAYERS - 4, "only the probes the journal lacks are measured");
        assert_eq!(std::fs::read_to_string(dir.path().join("b.json")).unwrap(), expected);
        assert!(!journal.exists());

        // A measure over items (one per tensor) pairs every probe with the stock mix. A probe
        // changes one item of n, so its paired standard error equals its score, and with a noise
        // floor of 3 the file holds 3·se; a run resumed after the stock mix and two probes (the
        // stock mix's items journaled) writes the same bytes.
        let items = |p: &Path| Ok::<_, String>(Measure::of_items(weight_errors(&master, p)));
        let floored = |name: &str, resume: bool| SensitivityOptions { noise_floor: 3.0, ..opts(name, resume, "items") };
        let r = apply_support::two_threads(|| measure_sensitivity(&master, Some(&math), Some(&general), &floored("c.json", false), items)).unwrap();
        for p in &r.probes {
            let se = p.stderr.expect("a measure over items gives a standard error");
            assert!(se > 0.0 && (se - p.score).abs() <= 1e-9 * p.score, "{p:?}");
            assert!((p.written - 3.0 * se).abs() <= 1e-12 * p.written, "{p:?}");
        }
        let mut calls = 0;
        let stopped = measure_sensitivity(&master, Some(&math), Some(&general), &floored("d.json", false), |p| {
            calls += 1;
            if calls == 4 { Err("stopped".into()) } else { items(p) }
        });
        assert!(stopped.is_err());
        apply_support::two_threads(|| measure_sensitivity(&master, Some(&math), Some(&general), &floored("d.json", true), items)).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("d.json")).unwrap(), std::fs::read_to_string(dir.path().join("c.json")).unwrap());
    }

    #[test]
    fn stats_of_another_shape_are_refused_naming_the_tensor_and_outputs_are_guarded() {
        let dir = tempfile::tempdir().unwrap();
        let master = GgufFile::open(toy_master(dir.path(), "master.gguf", 512, 4)).unwrap();
        let other = GgufFile::open(toy_master(dir.path(), "other.gguf", 768, 4)).unwrap();
        let (math, general) = (synthetic_stats(&other, 1, 100, "m"), synthetic_stats(&other, 2, 100, "g"));
        let out = dir.path().join("out.gguf");
        let err = quantize(&master, Some(&math), Some(&general), &options(Mix::Q3KM, out.clone(), None)).unwrap_err().to_string();
        assert!(err.contains("blk.0.ffn_down.weight"), "{err}");
        assert!(!out.exists());
        let good = synthetic_stats(&master, 1, 100, "m");
        let err = quantize(&master, Some(&good), None, &options(Mix::Q3KM, out.clone(), mathneuro_allocation(0.25))).unwrap_err().to_string();
        assert!(err.contains("--general"), "{err}");
        let onto_input = options(Mix::Q3KM, master.path().to_path_buf(), None);
        assert!(quantize(&master, Some(&good), None, &QuantizeOptions { importance: Importance::Math, ..onto_input }).is_err());
        std::fs::write(&out, b"keep").unwrap();
        let err = quantize(&master, None, None, &QuantizeOptions { importance: Importance::None, ..options(Mix::Q2K, out.clone(), None) }).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        assert_eq!(std::fs::read(&out).unwrap(), b"keep");
    }
}

#[test]
fn a_real_master_quantized_with_the_mathneuro_allocation_keeps_the_size_loads_generates_and_diverges() {
    use mathneuro::quantize::{Allocation, Importance, QuantizeOptions, Scores, quantize};
    use mathneuro::surgery::Mix;
    let dir = tempfile::tempdir().unwrap();
    let master_path = float_master(dir.path());
    let master = GgufFile::open(&master_path).unwrap();
    // STATS of the quantized sibling, matched to the master by name and shape.
    let (math, general) = apply_support::stats_pair(&GgufFile::open(apply_support::real_model()).unwrap());
    let run = |name: &str, allocation: Option<Allocation>| {
        let output = dir.path().join(name);
        let opts = QuantizeOptions { mix: Mix::Q3KM, importance: Importance::General, allocation, protect: None, gptq: None, output: output.clone(), force: false, progress: false };
        let report = apply_support::two_threads(|| quantize(&master, Some(&math), Some(&general), &opts)).unwrap();
        (output, report)
    };
    let (stock_path, stock) = run("stock.gguf", None);
    let alloc = Allocation { scores: Scores::MathNeuro { top_k_percent: 5.0 }, promote_share: 0.25 };
    let (out_path, out) = run("mathneuro.gguf", Some(alloc));
    assert!(!out.exchange.promoted.is_empty(), "{:?}", out.exchange);
    let (a, b) = (std::fs::metadata(&stock_path).unwrap().len() as f64, std::fs::metadata(&out_path).unwrap().len() as f64);
    assert!((b / a - 1.0).abs() <= 0.01 && b <= a, "{b} vs stock {a}");
    // Gemma's rows of 640 are not whole 256-blocks: llama.cpp's fallback makes Q3_K_M's Q5_K
    // attn_v a Q5_1 and its Q3_K default a Q4_0; ffn_down (rows of 2048) keeps the K-quants.
    assert_eq!(stock.types["blk.0.attn_v.weight"], "Q5_1");
    assert_eq!(stock.types["blk.0.attn_q.weight"], "Q4_0");
    assert_eq!(stock.types["blk.0.ffn_down.weight"], "Q5_K");
    // Those fallback types move along the 32-wide ladder (Q4_0 < Q4_1 < Q5_0 < Q5_1 < Q8_0).
    let moved_32 = out.exchange.promoted.iter().chain(&out.exchange.demoted).filter(|n| !n.contains("ffn_down")).count();
    assert!(moved_32 > 0, "{:?}", out.exchange);
    assert!(out.types.values().any(|t| t == "Q4_1" || t == "Q8_0"), "a Q4_0 went up a step, or a Q5_1 did");
    assert!(!apply_support::generate(&out_path, 6).trim().is_empty());

    let m = Model::load(&master_path).unwrap();
    let q = Model::load(&out_path).unwrap();
    let tokens = m.tokenize("Janet has 3 apples and buys 5 more. She gives 2 away, so she has 6 apples left.", false).unwrap();
    let (mut sm, mut sq) = (Session::new(&m, &engine()).unwrap(), Session::new(&q, &engine()).unwrap());
    let s = summarize(&divergences(&mut sm, &mut sq, &[tokens], Windows { window: 512, stride: 256 }, DocStart::Always, |_| {}).unwrap());
    assert!(s.mean > 0.0 && s.top1_agreement > 0.3, "{s:?}");
}

/// Entry-level protection (`quantize::protect`) on a generated tensor.
mod protect {
    use mathneuro::ffi::ggml;
    use mathneuro::gguf::{GgmlType, TensorInfo};
    use mathneuro::quantize::protect::encode_protected;
    use mathneuro::select::BitMask;

    #[test]
    fn protected_entries_move_less_and_unmasked_rows_are_ggmls_own_bytes() {
        let (n_in, n_rows) = (256usize, 16usize);
        let src = mathneuro::gguf::synth::pseudo_random_f32(11, n_in * n_rows);
        let f16 = ggml::quantize(GgmlType::F16, &src, n_in, None).unwrap();
        let vals = ggml::dequantize_to_vec(GgmlType::F16, &f16, src.len()).unwrap();
        let t = TensorInfo { name: "blk.0.ffn_up.weight".into(), dims: vec![n_in as u64, n_rows as u64], ggml_type: GgmlType::F16, offset: 0 };
        let cols: Vec<f32> = (0..n_in).map(|j| 1.0 + (j % 5) as f32).collect();
        // Every 7th entry of the first 8 rows is protected; the last 8 rows have none.
        let mut mask = BitMask::new(src.len() as u64);
        for i in (0..(8 * n_in) as u64).step_by(7) {
            mask.set(i);
        }
        let plain = ggml::quantize(GgmlType::Q3_K, &vals, n_in, Some(&cols)).unwrap();
        let prot = encode_protected(&t, &f16, GgmlType::Q3_K, Some(&cols), &mask, 100.0).unwrap();
        assert_eq!(prot.len(), plain.len());
        let half = plain.len() / 2;
        assert_eq!(prot[half..], plain[half..], "rows without protected entries are encoded as before");
        let (a, b) = (ggml::dequantize_to_vec(GgmlType::Q3_K, &plain, src.len()).unwrap(), ggml::dequantize_to_vec(GgmlType::Q3_K, &prot, src.len()).unwrap());
        let err = |q: &[f32], protected: bool| -> f64 {
            (0..8 * n_in).filter(|&i| mask.get(i as u64) == protected).map(|i| ((q[i] - vals[i]) as f64).powi(2) * cols[i % n_in] as f64).sum()
        };
        assert!(err(&b, true) < 0.5 * err(&a, true), "protected: {} vs {}", err(&b, true), err(&a, true));
        assert!(err(&b, false) >= err(&a, false), "the others pay for it");
        assert_eq!(encode_protected(&t, &f16, GgmlType::Q3_K, Some(&cols), &mask, 100.0).unwrap(), prot, "deterministic");
    }
}

/// `--gptq` (error-compensated rounding against the input covariance of calibration texts) on
/// the real default model's float master: the same types and size as the stock mix, its
/// provenance recorded, the same bytes from the same inputs (H captured at once or in passes
/// within a memory budget), and on the texts H came from the quantized model stays closer to
/// the master than ggml's rounding with the same importance.
#[test]
fn gptq_keeps_the_mix_and_size_and_lowers_the_divergence_on_its_calibration_texts() {
    use mathneuro::calibrate::CalibrateOptions;
    use mathneuro::pipeline::{HessianPasses, Sampling, capture_hessians};
    use mathneuro::quantize::{Gptq, Importance, QuantizeOptions, gptq::DEFAULT_DAMP, quantize};
    use mathneuro::surgery::Mix;
    let dir = tempfile::tempdir().unwrap();
    let master_path = float_master(dir.path());
    let master = GgufFile::open(&master_path).unwrap();
    let set = mathneuro::data::calibration::load("embedded-math", None).unwrap();
    let sampling = Sampling { replacement: false, ..Sampling::new(set.texts.len(), 42) };
    let cal = CalibrateOptions { threads: 2, ..CalibrateOptions::default() };
    let capture = || capture_hessians(&master_path, &set, &sampling, &cal, None, false).unwrap();
    let first = std::sync::Arc::new(capture());
    assert!(first.tokens > 100 && first.get("blk.0.attn_q.weight").is_some());
    // q, k and v read one input: one matrix.
    assert_eq!(first.distinct(), 18 * 4);
    let g = std::sync::Arc::new(Gptq { hessians: Box::new(first.clone()), damp: DEFAULT_DAMP, source: "embedded-math".into() });
    let run = |name: &str, gptq: Option<std::sync::Arc<Gptq>>| {
        let output = dir.path().join(name);
        let opts = QuantizeOptions { mix: Mix::Q3KM, importance: Importance::None, allocation: None, protect: None, gptq, output: output.clone(), force: false, progress: false };
        let report = apply_support::two_threads(|| quantize(&master, None, None, &opts)).unwrap();
        (output, report)
    };
    let (plain_path, plain) = run("plain.gguf", None);
    let (gptq_path, out) = run("gptq.gguf", Some(g));
    // Within a memory budget H is captured in passes over consecutive tensors: the same bytes.
    let weights = mathneuro::pipeline::hessians::gptq_weights(&master);
    let all: u64 = weights.iter().map(|(_, n)| mathneuro::calibrate::hessian::Lower::bytes_for(*n)).sum();
    let passes = HessianPasses::plan(&master_path, set.clone(), sampling.clone(), cal.clone(), &weights, all / 3, false).unwrap();
    assert!(passes.groups() >= 3, "{} groups", passes.groups());
    let passes = std::sync::Arc::new(passes);
    let in_passes = Gptq { hessians: Box::new(passes.clone()), damp: DEFAULT_DAMP, source: "embedded-math".into() };
    let (passes_path, _) = run("gptq-passes.gguf", Some(std::sync::Arc::new(in_passes)));
    assert_eq!(passes.passes(), passes.groups(), "each group captured once");
    assert!(std::fs::read(&passes_path).unwrap() == std::fs::read(&gptq_path).unwrap(), "H in passes gave other bytes");
    assert_eq!((plain.types.clone(), plain.exchange.bytes), (out.types.clone(), out.exchange.bytes));
    assert!(out.gptq.starts_with("embedded-math, damp 0.01"), "{}", out.gptq);
    let written = GgufFile::open(&gptq_path).unwrap();
    assert_eq!(written.get("mathneuro.quantize.gptq").and_then(|v| v.as_str().map(String::from)).as_deref(), Some(out.gptq.as_str()));
    // The same texts give the same H (and `gptq::encode` the same bytes from the same H: its
    // unit test), so the same inputs give the same file.
    let again = capture();
    for name in ["blk.0.attn_k.weight", "blk.17.ffn_down.weight"] {
        assert!(again.get(name).unwrap() == first.get(name).unwrap(), "{name}: H differs between two captures");
    }

    let m = Model::load(&master_path).unwrap();
    let texts: Vec<Vec<Token>> = set.texts.iter().take(4).map(|t| m.tokenize(t, true).unwrap()).collect();
    let mean = |path: &Path| {
        let q = Model::load(path).unwrap();
        let (mut sm, mut sq) = (Session::new(&m, &engine()).unwrap(), Session::new(&q, &engine()).unwrap());
        summarize(&divergences(&mut sm, &mut sq, &texts, Windows { window: 512, stride: 256 }, DocStart::Always, |_| {}).unwrap()).mean
    };
    let (kp, kg) = (mean(&plain_path), mean(&gptq_path));
    assert!(kg < 0.8 * kp, "KLD on the calibration texts: gptq {kg} vs plain {kp}");
}
