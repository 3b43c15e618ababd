//! Benchmarks of the GGUF layer and ggml's codecs on the default model: how long parsing the
//! header takes (map + validate + metadata, 262144-token vocabulary included), and dequantize
//! throughput per tensor type present in the model, as GB/s of f32 output and of input bytes.
//!
//!   cargo bench --bench gguf                       # full run
//!   cargo bench --bench gguf -- --quick            # a quick look (the machine may be shared)
//!
//! Each dequantize benchmark decodes whole tensors of one type (one thread), several MB a pass.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mathneuro::ffi::ggml;
use mathneuro::gguf::{GgmlType, GgufFile, TensorInfo};

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/gemma-3-270m-q4_k_m.gguf");

fn model() -> GgufFile {
    assert!(Path::new(MODEL).exists(), "{MODEL} is missing: run models/fetch.sh");
    GgufFile::open(MODEL).unwrap()
}

/// Tensors of `ty` to decode per pass: whole tensors in file order, ~8M output values at most
/// (for Q8_0, rows of the token embedding, the model's only large Q8_0 tensor besides attn_v).
fn workload(f: &GgufFile, ty: GgmlType) -> Vec<(TensorInfo, std::ops::Range<u64>)> {
    const BUDGET: u64 = 8 << 20;
    let mut out = Vec::new();
    let mut n = 0;
    for t in f.tensors.iter().filter(|t| t.ggml_type == ty) {
        if n >= BUDGET {
            break;
        }
        let rows = ((BUDGET - n) / t.row_len()).min(t.n_rows()).max(1);
        n += rows * t.row_len();
        out.push((t.clone(), 0..rows));
    }
    out
}

fn parse(c: &mut Criterion) {
    c.bench_function("gguf/open_default_model", |b| b.iter(|| black_box(GgufFile::open(MODEL).unwrap())));
}

fn dequantize(c: &mut Criterion) {
    let f = model();
    for (label, per_output) in [("dequantize_out_f32", true), ("dequantize_in_bytes", false)] {
        let mut g = c.benchmark_group(label);
        for ty in [GgmlType::Q4_K, GgmlType::Q5_0, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::F32] {
            let work = workload(&f, ty);
            let values: u64 = work.iter().map(|(t, r)| (r.end - r.start) * t.row_len()).sum();
            let input: u64 = work.iter().map(|(t, r)| (r.end - r.start) * t.row_bytes()).sum();
            g.throughput(Throughput::BytesDecimal(if per_output { values * 4 } else { input }));
            let mut buf = vec![0f32; values as usize];
            g.bench_function(ty.name(), |b| {
                b.iter(|| {
                    let mut at = 0;
                    for (t, rows) in &work {
                        let n = ((rows.end - rows.start) * t.row_len()) as usize;
                        ggml::dequantize_rows_into(&f, t, rows.clone(), &mut buf[at..at + n]).unwrap();
                        at += n;
                    }
                    black_box(&buf);
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(20);
    targets = parse, dequantize
}
criterion_main!(benches);
