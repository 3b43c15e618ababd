//! Evaluates a base model once and compares several edited variants with it on identical items
//! (the paired comparison of `mathneuro eval BASE --compare OTHER`, without re-evaluating BASE
//! for every variant): `cargo run --release --example compare_many -- TASKS LIMIT OUT_DIR BASE
//! OTHER... [--threads=N] [--chat]`. Writes OUT_DIR/<other file stem>/report.{json,md} and prints
//! each table.

use std::path::PathBuf;

use mathneuro::data::dir::resolve_data_dir;
use mathneuro::eval::{self, EvalOptions, Task, compare_reports, report::render_comparison_markdown};

fn main() -> anyhow::Result<()> {
    let (flags, args): (Vec<String>, Vec<String>) = std::env::args().skip(1).partition(|a| a.starts_with("--"));
    anyhow::ensure!(args.len() >= 5, "usage: compare_many TASKS LIMIT OUT_DIR BASE OTHER... [--threads=N] [--chat]");
    let base = PathBuf::from(&args[3]);
    // `mathneuro eval`'s defaults, with these tasks and limit.
    let mut options = EvalOptions::new(Task::parse_list(&args[0])?, resolve_data_dir(None)?);
    options.limit = Some(args[1].parse()?);
    options.progress = false;
    for flag in &flags {
        match flag.split_once('=') {
            Some(("--threads", n)) => options.engine.threads = n.parse()?,
            None if flag == "--chat" => options.chat = true,
            _ => anyhow::bail!("unknown flag {flag} (known: --threads=N, --chat)"),
        }
    }
    let out = PathBuf::from(&args[2]);
    let t0 = std::time::Instant::now();
    let base_report = eval::evaluate(&base, &options)?;
    eprintln!("{}: {:.0} s", base.display(), t0.elapsed().as_secs_f64());
    for other in &args[4..] {
        let t = std::time::Instant::now();
        let other = PathBuf::from(other);
        let report = eval::evaluate(&other, &options)?;
        let comparison = compare_reports(&base_report, &report, options.bootstrap, options.seed)?;
        let stem = other.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        eval::write_outputs(&out.join(&stem), &base_report, Some(&comparison))?;
        println!("## {stem} ({:.0} s)\n\n{}", t.elapsed().as_secs_f64(), render_comparison_markdown(&comparison));
    }
    Ok(())
}
