//! Files written around the output model: the checks made before any work (never the input,
//! never an existing file without `--force`), the Ollama `Modelfile`, `OUT.report.json`,
//! `OUT.heatmap.svg`, and the markdown summary printed on stdout.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::report::{heatmap_svg, spread};
use super::{ApplyError, ApplyOptions, ApplyReport, Change, side_path};
use crate::atomic::{AtomicWriteError, write_bytes_atomic};
use crate::safety::OutputPlan;

/// First line of every Modelfile mathneuro writes; such a file may be replaced.
pub const MODELFILE_MARK: &str = "# Written by mathneuro";

/// The Modelfile beside `output`.
pub fn modelfile_path(output: &Path) -> PathBuf {
    output.with_file_name("Modelfile")
}

/// Every file `apply` writes for `opts` (output, mask, Modelfile, report, heat map) in one plan
/// over the input model; callers add their other inputs (the STATS files) before checking.
pub fn plan(command: &'static str, input: &Path, opts: &ApplyOptions) -> OutputPlan {
    let mut plan = OutputPlan::new(command, opts.force).input(input).file(&opts.output);
    if let Some(mask) = &opts.save_mask {
        plan = plan.file(mask);
    }
    if opts.write_modelfile {
        plan = plan.marked_file(modelfile_path(&opts.output), MODELFILE_MARK);
    }
    if opts.write_report {
        plan = plan.file(side_path(&opts.output, ".heatmap.svg")).file(side_path(&opts.output, ".report.json"));
    }
    plan
}

/// Refuses outputs that would overwrite the input or, without `force`, an existing file.
pub fn check_outputs(input: &Path, opts: &ApplyOptions) -> Result<(), ApplyError> {
    Ok(plan("apply", input, opts).check()?)
}

/// Writes the Modelfile, JSON report and heat map as `opts` asks, recording their paths.
pub fn write_side_files(report: &mut ApplyReport, opts: &ApplyOptions) -> Result<(), AtomicWriteError> {
    if opts.write_modelfile {
        let mf = modelfile_path(&opts.output);
        let file_name = opts.output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = format!(
            "{MODELFILE_MARK} ({}). Load with: ollama create <name> -f Modelfile\n\
             # The chat template and stop tokens are read from the GGUF's own metadata.\n\
             FROM ./{file_name}\n",
            super::metadata::TOOL_VERSION
        );
        write_bytes_atomic(&mf, text.as_bytes())?;
        report.modelfile = Some(mf);
    }
    if opts.write_report {
        let svg_path = side_path(&opts.output, ".heatmap.svg");
        let title = format!("{} {} top-{}%", report.output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), report.method, report.top_k_percent);
        write_bytes_atomic(&svg_path, heatmap_svg(&report.tensors, &title).as_bytes())?;
        report.heatmap_svg = Some(svg_path);
        let json_path = side_path(&opts.output, ".report.json");
        report.report_json = Some(json_path.clone());
        let json = serde_json::to_string_pretty(report).expect("report serializes");
        write_bytes_atomic(&json_path, json.as_bytes())?;
    }
    Ok(())
}

fn pct(x: f64) -> String {
    format!("{:.3}%", x * 100.0)
}

/// The markdown summary of a report.
pub fn markdown(r: &ApplyReport) -> String {
    let mut s = String::new();
    let change = match r.change {
        Change::Scale(f) => format!("scale ×{f}"),
        Change::Prune => "prune (→ 0)".to_string(),
    };
    let _ = writeln!(s, "# mathneuro apply: {}\n", r.output.display());
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| input | {} |", r.input.display());
    let _ = writeln!(s, "| method | {} (top-k {}%, seed {}) |", r.method, r.top_k_percent, r.seed);
    let _ = writeln!(s, "| change | {change} |");
    let _ = writeln!(s, "| samples (math / general) | {} / {} |", r.samples.0, r.samples.1);
    let _ = writeln!(s, "| selected | {} of {} target entries ({}) |", r.selected, r.target_entries, pct(r.selected_fraction));
    let _ = writeln!(s, "| blocks touched / rewritten | {} / {} of {} |", r.totals.blocks_touched, r.totals.blocks_rewritten, r.totals.blocks);
    match r.change {
        // A prune is judged by its exact zeros: an entry a fraction of a step from 0 still
        // carries its sign and most of a small weight, whatever the projection says.
        Change::Prune => {
            let _ = writeln!(s, "| exact zeros | {} of {} selected entries are exactly 0 ({}) |", r.totals.selected_exact, r.totals.selected, pct(r.totals.exact_fraction()));
            if r.totals.selected_exact < r.totals.selected {
                let _ = writeln!(
                    s,
                    "| not exactly 0 | {} selected entries (largest |value| {:.3e}) sit on the grid value nearest 0 of a block whose type cannot hold 0 there; `--edit promote=q8_0` makes every pruned entry exactly 0 |",
                    r.totals.selected - r.totals.selected_exact,
                    r.totals.selected_max_abs_err
                );
            }
            let _ = writeln!(s, "| achieved change | {:.4} of intended (projection onto the intended change) |", r.achieved_fraction);
        }
        Change::Scale(_) => {
            let _ = writeln!(s, "| achieved change | {:.4} of intended ({} of selected entries exactly at the intended value) |", r.achieved_fraction, r.totals.selected_exact);
        }
    }
    let _ = writeln!(s, "| collateral RMS change | {:.3e} ({} relative) on {} non-selected entries in touched blocks |", r.collateral_rms, pct(r.collateral_relative), r.totals.collateral_entries);
    let _ = writeln!(s, "| edit | {} |", r.edit);
    let growth = if r.input_bytes == 0 { 0.0 } else { r.output_bytes as f64 / r.input_bytes as f64 - 1.0 };
    let _ = writeln!(s, "| file size | {} → {} bytes ({:+.2}%) |", r.input_bytes, r.output_bytes, growth * 100.0);
    let _ = writeln!(s, "| time | select {:.2} s, rewrite {:.2} s |", r.select_seconds, r.rewrite_seconds);
    for note in &r.notes {
        let _ = writeln!(s, "| note | {note} |");
    }
    let _ = writeln!(s, "\n## Per type\n\n| type | written as | tensors | achieved | collateral RMS (relative) | collateral entries |\n|---|---|---|---|---|---|");
    for g in &r.per_type {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.4} | {:.3e} ({}) | {} |",
            g.ggml_type,
            g.stored_type,
            g.tensors,
            g.achieved_fraction,
            g.collateral_rms,
            pct(g.collateral_relative),
            g.tally.collateral_entries
        );
    }
    let (mean, sd, lo, hi) = spread(&r.per_layer);
    let _ = writeln!(s, "\n## Selected fraction per layer (mean {}, sd {}, min {}, max {})\n", pct(mean), pct(sd), pct(lo), pct(hi));
    let _ = writeln!(s, "| layer | selected | fraction |\n|---|---|---|");
    for g in &r.per_layer {
        let _ = writeln!(s, "| {} | {} | {} |", g.group, g.selected, pct(g.fraction));
    }
    let _ = writeln!(s, "\n## Selected fraction per matrix kind\n\n| kind | selected | fraction |\n|---|---|---|");
    for g in &r.per_kind {
        let _ = writeln!(s, "| {} | {} | {} |", g.group, g.selected, pct(g.fraction));
    }
    let files: Vec<String> = [&Some(r.output.clone()), &r.modelfile, &r.report_json, &r.heatmap_svg, &r.mask]
        .into_iter()
        .flatten()
        .map(|p| p.display().to_string())
        .collect();
    let _ = writeln!(s, "\nFiles: {}", files.join(", "));
    s
}

impl ApplyReport {
    /// The markdown summary (what `mathneuro apply` prints on stdout).
    pub fn markdown(&self) -> String {
        markdown(self)
    }
}
