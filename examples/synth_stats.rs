//! Writes synthetic math and general STATS files for a model (benchmarks and demos without a
//! calibration run): `cargo run --release --example synth_stats -- MODEL.gguf OUT_DIR`.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 3, "usage: synth_stats MODEL.gguf OUT_DIR");
    let model = mathneuro::gguf::GgufFile::open(&args[1])?;
    let dir = PathBuf::from(&args[2]);
    std::fs::create_dir_all(&dir)?;
    for (seed, name) in [(1u64, "math"), (2, "general")] {
        let stats = mathneuro::select::synth::synthetic_stats(&model, seed, 100, &format!("synthetic-{name}"));
        stats.save(&dir.join(format!("{name}.gguf")), &[])?;
    }
    Ok(())
}
