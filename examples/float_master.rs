//! Writes a float master of a quantized model (targets dequantized, see
//! `surgery::dequant::write_float_master`), for trying the master-precision flow:
//! `cargo run --release --example float_master -- MODEL.gguf OUT.gguf [f16|bf16|f32]`.

use mathneuro::gguf::GgufFile;
use mathneuro::surgery::dequant::write_float_master;
use mathneuro::surgery::edit::parse_type;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() >= 2, "usage: float_master MODEL.gguf OUT.gguf [f16|bf16|f32]");
    let ty = parse_type(args.get(2).map_or("f16", String::as_str)).ok_or_else(|| anyhow::anyhow!("unknown type {:?}", args.get(2)))?;
    let model = GgufFile::open(&args[0])?;
    write_float_master(&model, std::path::Path::new(&args[1]), ty)?;
    eprintln!("wrote {} ({} targets as {ty})", args[1], mathneuro::model::target_weights(&model).len());
    Ok(())
}
