//! Small synthetic GGUF files for tests and benchmarks, so they need not load the 270 MB model.
//!
//! `SynthModel` describes a toy transformer-shaped file (metadata plus `blk.N.*` weights); its
//! tensor bytes come from a caller-supplied encoder, so quantized types can be produced with
//! ggml's quantizer (see `ffi::ggml`) while this module stays free of C.

use std::io::Write;
use std::path::Path;

use super::error::GgufError;
use super::types::{GgmlType, MetaValue};
use super::writer::{GgufWriter, TensorSpec};

/// Deterministic pseudo-random f32 values in [-1, 1) (xorshift; no `rand` needed for fixtures).
pub fn pseudo_random_f32(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// One tensor of a synthetic file: spec plus its f32 values (encoded on write).
#[derive(Clone, Debug)]
pub struct SynthTensor {
    /// Name, dims and type.
    pub spec: TensorSpec,
    /// Values in row-major order (`dims[0]` fastest), `n_elements` long.
    pub values: Vec<f32>,
}

/// A synthetic GGUF file: metadata and tensors held as plain data.
#[derive(Clone, Debug, Default)]
pub struct SynthModel {
    /// Metadata, in order.
    pub metadata: Vec<(String, MetaValue)>,
    /// Tensors, in order.
    pub tensors: Vec<SynthTensor>,
}

impl SynthModel {
    /// An empty file with `general.architecture` set.
    pub fn new(arch: &str) -> SynthModel {
        SynthModel {
            metadata: vec![
                ("general.architecture".into(), MetaValue::string(arch)),
                ("general.name".into(), MetaValue::string("synthetic")),
            ],
            tensors: Vec::new(),
        }
    }

    /// Adds a tensor with pseudo-random values derived from `seed`.
    pub fn tensor(mut self, name: &str, dims: &[u64], ggml_type: GgmlType, seed: u64) -> SynthModel {
        let n: u64 = dims.iter().product();
        let values = pseudo_random_f32(seed, n as usize);
        self.tensors.push(SynthTensor {
            spec: TensorSpec { name: name.into(), dims: dims.to_vec(), ggml_type },
            values,
        });
        self
    }

    /// Adds a metadata key.
    pub fn meta(mut self, key: &str, value: MetaValue) -> SynthModel {
        self.metadata.push((key.into(), value));
        self
    }

    /// A toy transformer: `n_layer` blocks of q/k/v/o/gate/up/down linear weights of the given
    /// type (n_embd × n_embd attention, n_embd × n_ff MLP), F32 norms, and an F32 token
    /// embedding tied to the output (no `output.weight`).
    pub fn toy_transformer(n_layer: usize, n_embd: u64, n_ff: u64, n_vocab: u64, linear_type: GgmlType) -> SynthModel {
        let mut m = SynthModel::new("toy")
            .meta("toy.block_count", MetaValue::U32(n_layer as u32))
            .meta("toy.embedding_length", MetaValue::U32(n_embd as u32))
            .meta("toy.feed_forward_length", MetaValue::U32(n_ff as u32))
            .meta("toy.context_length", MetaValue::U32(128))
            .tensor("token_embd.weight", &[n_embd, n_vocab], GgmlType::F32, 1);
        let mut seed = 100;
        for l in 0..n_layer {
            let mut add = |m: SynthModel, name: &str, dims: &[u64], ty| {
                seed += 1;
                m.tensor(&format!("blk.{l}.{name}"), dims, ty, seed)
            };
            m = add(m, "attn_norm.weight", &[n_embd], GgmlType::F32);
            m = add(m, "attn_q.weight", &[n_embd, n_embd], linear_type);
            m = add(m, "attn_k.weight", &[n_embd, n_embd], linear_type);
            m = add(m, "attn_v.weight", &[n_embd, n_embd], linear_type);
            m = add(m, "attn_output.weight", &[n_embd, n_embd], linear_type);
            m = add(m, "ffn_norm.weight", &[n_embd], GgmlType::F32);
            m = add(m, "ffn_gate.weight", &[n_embd, n_ff], linear_type);
            m = add(m, "ffn_up.weight", &[n_embd, n_ff], linear_type);
            m = add(m, "ffn_down.weight", &[n_ff, n_embd], linear_type);
        }
        m.tensor("output_norm.weight", &[n_embd], GgmlType::F32, 7)
    }

    /// The writer for this file (metadata and table, no data).
    pub fn writer(&self) -> GgufWriter {
        GgufWriter {
            version: 3,
            metadata: self.metadata.clone(),
            tensors: self.tensors.iter().map(|t| t.spec.clone()).collect(),
        }
    }

    /// Encodes the file to bytes. `encode(type, values)` turns f32 values into the tensor's
    /// bytes; `encode_plain` covers F32/F16/BF16/I8 and pass `ffi::ggml` for quantized types.
    pub fn to_bytes(&self, encode: &dyn Fn(GgmlType, &[f32]) -> Vec<u8>) -> Result<Vec<u8>, GgufError> {
        self.writer().write_to(Path::new("<synthetic>"), Vec::new(), |i, _spec, sink: &mut dyn Write| {
            let t = &self.tensors[i];
            sink.write_all(&encode(t.spec.ggml_type, &t.values))
        })
    }

    /// Encodes and writes the file to `path` (atomically).
    pub fn write(&self, path: &Path, encode: &dyn Fn(GgmlType, &[f32]) -> Vec<u8>) -> Result<(), GgufError> {
        let bytes = self.to_bytes(encode)?;
        Ok(crate::atomic::write_bytes_atomic(path, &bytes)?)
    }
}

/// Encodes plain number types without ggml: F32, F16 and BF16 (round to nearest even), I8
/// (saturating). Panics on quantized types: use `ffi::ggml::quantize` for those.
pub fn encode_plain(ty: GgmlType, values: &[f32]) -> Vec<u8> {
    match ty {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values.iter().flat_map(|v| f32_to_f16(*v).to_le_bytes()).collect(),
        GgmlType::BF16 => values
            .iter()
            .flat_map(|v| {
                let b = v.to_bits();
                let rounded = b.wrapping_add(0x7FFF + ((b >> 16) & 1));
                ((rounded >> 16) as u16).to_le_bytes()
            })
            .collect(),
        GgmlType::I8 => values.iter().map(|v| v.round().clamp(-128.0, 127.0) as i8 as u8).collect(),
        other => panic!("encode_plain cannot encode {other}; use ffi::ggml::quantize"),
    }
}

/// IEEE half from f32, round to nearest even (finite inputs in half range; used for fixtures).
fn f32_to_f16(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let mant = b & 0x7f_ffff;
    if exp <= 0 {
        if exp < -10 {
            return sign;
        }
        let m = (mant | 0x80_0000) >> (1 - exp);
        let round = (m >> 12) & 1;
        return sign | ((m >> 13) + round) as u16;
    }
    if exp >= 31 {
        return sign | 0x7c00;
    }
    let half = sign as u32 | ((exp as u32) << 10) | (mant >> 13);
    let rem = mant & 0x1fff;
    let up = rem > 0x1000 || (rem == 0x1000 && (half & 1) == 1);
    (half + up as u32) as u16
}
