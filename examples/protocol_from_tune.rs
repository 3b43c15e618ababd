//! The protocol comparison (`mathneuro protocol`'s analysis) computed from a `tune` journal that
//! already holds every answer of a full paired GSM8K test: `cargo run --release --example
//! protocol_from_tune -- JOURNAL SEED BASE_ID EDIT_ID... [--svg=FILE] [--average]`
//! (`--average`: the edits are calibration draws of one recipe; average them as the paper does). The journal stores scores
//! by position in tune's seeded test order; the positions are mapped back to GSM8K test-file
//! indices by rebuilding the same split (`tune::splits`, same seed), so the paper slice is the
//! first 200 questions in file order. Prints the Markdown report.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mathneuro::data::dir::resolve_data_dir;
use mathneuro::eval::protocol::{PairTable, Paired, ProtocolSettings, analyse, paper_average, tables};
use mathneuro::eval::protocol_report::{Coverage, EditResult, ProtocolReport, markdown, subsets_svg};
use mathneuro::tune::splits::{SplitSizes, Splits};

fn main() -> anyhow::Result<()> {
    let (flags, args): (Vec<String>, Vec<String>) = std::env::args().skip(1).partition(|a| a.starts_with("--"));
    anyhow::ensure!(args.len() >= 4, "usage: protocol_from_tune JOURNAL SEED BASE_ID EDIT_ID... [--svg=FILE] [--average]");
    let journal = PathBuf::from(&args[0]);
    let seed: u64 = args[1].parse()?;
    // Per model id: position → per-metric scores of the test GSM8K questions.
    let mut by_model: BTreeMap<String, BTreeMap<usize, Vec<(f64, f64)>>> = BTreeMap::new();
    for line in std::fs::read_to_string(&journal)?.lines().skip(1) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if v["measure"] != "test_cot" {
            continue;
        }
        let start = v["start"].as_u64().unwrap_or(0) as usize;
        let scores: Vec<Vec<(f64, f64)>> = serde_json::from_value(v["scores"].clone())?;
        let slot = by_model.entry(v["model"].as_str().unwrap_or_default().to_string()).or_default();
        for (k, s) in scores.into_iter().enumerate() {
            slot.insert(start + k, s);
        }
    }
    // tune's GSM8K test order: a seeded shuffle of the whole test file (none was dropped: the
    // calibration texts come from the train split).
    let sizes = SplitSizes { dev_gsm8k: 0, dev_general: 0, test_gsm8k: None, test_general: 0 };
    let splits = Splits::build(&resolve_data_dir(None)?, Vec::new(), sizes, seed)?;
    let file_index: Vec<usize> = splits.test.gsm8k.iter().map(|(i, _)| *i).collect();
    let take = |id: &str, metric: usize| -> anyhow::Result<Vec<(usize, bool)>> {
        let m = by_model.get(id).ok_or_else(|| anyhow::anyhow!("{}: no test answers of {id}", journal.display()))?;
        Ok(m.iter().map(|(&pos, s)| (file_index[pos], s[metric].0 > 0.5)).collect())
    };
    let settings = ProtocolSettings::default();
    let metrics = ["strict-match", "flexible-extract"];
    let mut edits = Vec::new();
    let mut papers: Vec<Vec<PairTable>> = vec![Vec::new(); metrics.len()];
    for id in &args[3..] {
        let mut gsm8k = Vec::new();
        for (m, name) in metrics.iter().enumerate() {
            let p = Paired::new(take(&args[2], m)?, take(id, m)?)?;
            let (full, paper) = tables(&p, settings.paper_n, true);
            gsm8k.push(analyse(name, &full, paper.as_ref(), &settings));
            papers[m].extend(paper);
        }
        edits.push(EditResult { model: PathBuf::from(id), gsm8k, general: Vec::new(), wall_seconds: 0.0, sha256: String::new() });
    }
    let report = ProtocolReport {
        base: PathBuf::from(&args[2]),
        base_wall_seconds: 0.0,
        gsm8k_n: edits[0].gsm8k[0].full.n,
        general_n: None,
        settings,
        // The edits of a tune journal are different recipes, not calibration draws of one: they
        // are not averaged (pass one id to see one).
        paper_average: if flags.iter().any(|f| f == "--average") { metrics.iter().zip(&papers).filter_map(|(m, t)| paper_average(m, t)).collect() } else { Vec::new() },
        edits,
        command: format!("cargo run --release --example protocol_from_tune -- {}", std::env::args().skip(1).collect::<Vec<_>>().join(" ")),
        coverage: Coverage { gsm8k_available: file_index.len(), ..Coverage::default() },
    };
    print!("{}", markdown(&report));
    for f in &flags {
        match f.split_once('=') {
            Some(("--svg", path)) => std::fs::write(path, subsets_svg(&report))?,
            None if f == "--average" => {}
            _ => anyhow::bail!("unknown flag {f} (known: --svg=FILE, --average)"),
        }
    }
    Ok(())
}
