//! Writes a large synthetic GGUF for scaling benchmarks of `mathneuro apply`:
//! `cargo run --release --example synth_model -- OUT.gguf [n_layer]` shapes it like a
//! 1B-parameter Llama (16 layers, n_embd 2048, GQA k/v 512, n_ff 8192, vocab 128256, all Q4_K);
//! `… -- OUT.gguf 1.5b` like a 1.5B Qwen2 in Q4_K_M (28 layers, n_embd 1536, k/v 256, n_ff 8960,
//! an untied 151 936-token head in Q6_K, attn_v/ffn_down in Q6_K where llama-quantize's
//! `use_more_bits` puts them, the rest Q4_K); `… -- OUT.gguf 8b` like Llama 3.1 8B in Q4_K_M
//! (32 layers, n_embd 4096, 32 heads, 8 k/v heads, n_ff 14 336, vocab 128 256, untied Q6_K head,
//! the same `use_more_bits` rule; ≈ 4.9 GB) with the complete llama metadata and a padded
//! vocabulary (`gguf::families`), so llama.cpp loads it and `calibrate` runs on it.
//!
//! Generating ~1.2 G values through ggml's Q4_K quantizer would take minutes, so 4096 distinct
//! blocks are quantized once (from seeded pseudo-random values of varied magnitude) and tiled in
//! a per-tensor pseudo-random order: every block is a genuine Q4_K block, the file is written as
//! a stream, and memory stays small.

use std::path::PathBuf;

use mathneuro::ffi::ggml;
use mathneuro::gguf::families::{Dims, Family};
use mathneuro::gguf::{GgmlType, GgufWriter, MetaValue, TensorSpec};

/// Distinct quantized blocks the tensors are tiled from.
const TEMPLATES: usize = 4096;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 2, "usage: synth_model OUT.gguf [n_layer | 1.5b | 8b]");
    let out = PathBuf::from(&args[1]);
    let shape = args.get(2).map(String::as_str);
    let (qwen, llama8) = (shape == Some("1.5b"), shape == Some("8b"));
    let n_layer: usize = match shape {
        Some("1.5b") => 28,
        Some("8b") => 32,
        _ => args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(16),
    };
    let (n_embd, n_kv, n_ff, n_vocab) = match shape {
        Some("1.5b") => (1536u64, 256u64, 8960u64, 151936u64),
        Some("8b") => (4096, 1024, 14336, 128256),
        _ => (2048, 512, 8192, 128256),
    };
    let mixed = qwen || llama8; // Q4_K_M: Q6_K head, use_more_bits layers
    let arch = if qwen { "qwen2" } else { "llama" };
    let more_bits = |l: usize| if mixed && mathneuro::surgery::quantmix::use_more_bits(l, n_layer) { GgmlType::Q6_K } else { GgmlType::Q4_K };

    let values: Vec<f32> = mathneuro::gguf::synth::pseudo_random_f32(5, TEMPLATES * 256)
        .iter()
        .enumerate()
        .map(|(i, v)| v * 0.02 * (1 + (i / 256) % 5) as f32)
        .collect();
    let templates = |ty: GgmlType| ggml::quantize(ty, &values, 256, None);
    let (t4, t6) = (templates(GgmlType::Q4_K)?, templates(GgmlType::Q6_K)?);

    let mut w = GgufWriter::new();
    w.set("general.architecture", MetaValue::string(arch));
    let name = match shape {
        Some("1.5b") => "synthetic 1.5B-shaped Q4_K_M",
        Some("8b") => "synthetic Llama-3.1-8B-shaped Q4_K_M",
        _ => "synthetic 1B-shaped Q4_K",
    };
    w.set("general.name", MetaValue::string(name));
    w.set(&format!("{arch}.block_count"), MetaValue::U32(n_layer as u32));
    w.set(&format!("{arch}.embedding_length"), MetaValue::U32(n_embd as u32));
    w.set(&format!("{arch}.feed_forward_length"), MetaValue::U32(n_ff as u32));
    if llama8 {
        let dims = Dims { n_embd, n_head: 32, n_head_kv: 8, n_ff };
        for (key, value) in Family::LlamaUntied.metadata(dims, n_layer as u64, n_vocab) {
            w.set(&key, value);
        }
    }
    let mut add = |name: String, dims: Vec<u64>, ty| w.add_tensor(TensorSpec { name, dims, ggml_type: ty });
    add("token_embd.weight".into(), vec![n_embd, n_vocab], GgmlType::Q4_K);
    for l in 0..n_layer {
        add(format!("blk.{l}.attn_norm.weight"), vec![n_embd], GgmlType::F32);
        add(format!("blk.{l}.attn_q.weight"), vec![n_embd, n_embd], GgmlType::Q4_K);
        add(format!("blk.{l}.attn_k.weight"), vec![n_embd, n_kv], GgmlType::Q4_K);
        add(format!("blk.{l}.attn_v.weight"), vec![n_embd, n_kv], more_bits(l));
        add(format!("blk.{l}.attn_output.weight"), vec![n_embd, n_embd], GgmlType::Q4_K);
        add(format!("blk.{l}.ffn_norm.weight"), vec![n_embd], GgmlType::F32);
        add(format!("blk.{l}.ffn_gate.weight"), vec![n_embd, n_ff], GgmlType::Q4_K);
        add(format!("blk.{l}.ffn_up.weight"), vec![n_embd, n_ff], GgmlType::Q4_K);
        add(format!("blk.{l}.ffn_down.weight"), vec![n_ff, n_embd], more_bits(l));
    }
    add("output_norm.weight".into(), vec![n_embd], GgmlType::F32);
    if mixed {
        add("output.weight".into(), vec![n_embd, n_vocab], GgmlType::Q6_K);
    }
    write_tiled(&w, &out, &t4, &t6)
}

/// Writes `w`'s file: F32 tensors as ones, quantized ones as template blocks in a seeded order.
fn write_tiled(w: &GgufWriter, out: &std::path::Path, t4: &[u8], t6: &[u8]) -> anyhow::Result<()> {
    w.write_atomic(out, None, |i, spec, sink| {
        if spec.ggml_type == GgmlType::F32 {
            let n: u64 = spec.dims.iter().product();
            return sink.write_all(&vec![1.0f32; n as usize].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        }
        let (templates, tb) = if spec.ggml_type == GgmlType::Q6_K { (t6, 210) } else { (t4, 144) };
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
