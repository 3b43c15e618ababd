//! Writes a large synthetic Q4_K GGUF shaped like a 1B-parameter Llama (16 layers, n_embd 2048,
//! GQA k/v 512, n_ff 8192, vocab 128256) for scaling benchmarks of `mathneuro apply`:
//! `cargo run --release --example synth_model -- OUT.gguf [n_layer]`.
//!
//! Generating ~1.2 G values through ggml's Q4_K quantizer would take minutes, so 4096 distinct
//! blocks are quantized once (from seeded pseudo-random values of varied magnitude) and tiled in
//! a per-tensor pseudo-random order: every block is a genuine Q4_K block, the file is written as
//! a stream, and memory stays small.

use std::path::PathBuf;

use mathneuro::ffi::ggml;
use mathneuro::gguf::{GgmlType, GgufWriter, MetaValue, TensorSpec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 2, "usage: synth_model OUT.gguf [n_layer]");
    let out = PathBuf::from(&args[1]);
    let n_layer: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(16);
    let (n_embd, n_kv, n_ff, n_vocab) = (2048u64, 512u64, 8192u64, 128256u64);

    const TEMPLATES: usize = 4096;
    let values: Vec<f32> = mathneuro::gguf::synth::pseudo_random_f32(5, TEMPLATES * 256)
        .iter()
        .enumerate()
        .map(|(i, v)| v * 0.02 * (1 + (i / 256) % 5) as f32)
        .collect();
    let templates = ggml::quantize(GgmlType::Q4_K, &values, 256, None)?;
    let tb = GgmlType::Q4_K.type_size() as usize;

    let mut w = GgufWriter::new();
    w.set("general.architecture", MetaValue::string("llama"));
    w.set("general.name", MetaValue::string("synthetic 1B-shaped Q4_K"));
    w.set("llama.block_count", MetaValue::U32(n_layer as u32));
    w.set("llama.embedding_length", MetaValue::U32(n_embd as u32));
    w.set("llama.feed_forward_length", MetaValue::U32(n_ff as u32));
    let mut add = |name: String, dims: Vec<u64>, ty| w.add_tensor(TensorSpec { name, dims, ggml_type: ty });
    add("token_embd.weight".into(), vec![n_embd, n_vocab], GgmlType::Q4_K);
    for l in 0..n_layer {
        add(format!("blk.{l}.attn_norm.weight"), vec![n_embd], GgmlType::F32);
        add(format!("blk.{l}.attn_q.weight"), vec![n_embd, n_embd], GgmlType::Q4_K);
        add(format!("blk.{l}.attn_k.weight"), vec![n_embd, n_kv], GgmlType::Q4_K);
        add(format!("blk.{l}.attn_v.weight"), vec![n_embd, n_kv], GgmlType::Q4_K);
        add(format!("blk.{l}.attn_output.weight"), vec![n_embd, n_embd], GgmlType::Q4_K);
        add(format!("blk.{l}.ffn_norm.weight"), vec![n_embd], GgmlType::F32);
        add(format!("blk.{l}.ffn_gate.weight"), vec![n_embd, n_ff], GgmlType::Q4_K);
        add(format!("blk.{l}.ffn_up.weight"), vec![n_embd, n_ff], GgmlType::Q4_K);
        add(format!("blk.{l}.ffn_down.weight"), vec![n_ff, n_embd], GgmlType::Q4_K);
    }
    add("output_norm.weight".into(), vec![n_embd], GgmlType::F32);
    w.write_atomic(&out, None, |i, spec, sink| {
        if spec.ggml_type == GgmlType::F32 {
            let n: u64 = spec.dims.iter().product();
            return sink.write_all(&vec![1.0f32; n as usize].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        }
        let blocks = spec.n_bytes() as usize / tb;
        let mut s = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut buf = Vec::with_capacity(1 << 20);
        for _ in 0..blocks {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let t = (s >> 20) as usize % TEMPLATES;
            buf.extend_from_slice(&templates[t * tb..(t + 1) * tb]);
            if buf.len() >= 1 << 20 {
                sink.write_all(&buf)?;
                buf.clear();
            }
        }
        sink.write_all(&buf)
    })?;
    Ok(())
}
