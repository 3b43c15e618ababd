//! The hyperparameters llama.cpp asserts on, checked before a model is handed to it (issue 27
//! case 7): llama.cpp aborts the whole process (`GGML_ASSERT`, or a division by zero) on a
//! `block_count` of 0, a NaN normalization epsilon or a head count of 0, where the reader
//! accepted the file. Each problem here is an error naming the file and the key.

use super::{GgufError, GgufFile, MetaValue};

/// llama.cpp's `LLAMA_MAX_LAYERS` (llama-hparams.h).
pub const MAX_LAYERS: u64 = 512;
/// llama.cpp's `LLAMA_MAX_EXPERTS` (llama-hparams.h).
pub const MAX_EXPERTS: u64 = 1024;
/// The rope scaling types llama.cpp knows (`LLAMA_ROPE_SCALING_TYPES`, llama-model.cpp).
const ROPE_SCALING: [&str; 4] = ["none", "linear", "yarn", "longrope"];

/// Checks the hyperparameters of `file`'s architecture (`general.architecture`); a file without
/// one (not a model) passes, and llama.cpp refuses it by itself.
pub fn check(file: &GgufFile) -> Result<(), GgufError> {
    let Some(arch) = file.architecture().map(str::to_string) else { return Ok(()) };
    let bad = |key: &str, problem: String| GgufError::Hparam { path: file.path().to_path_buf(), key: format!("{arch}.{key}"), problem };
    let get = |key: &str| file.get(&format!("{arch}.{key}"));
    // Scalars or per-layer arrays of integers: every value, or a type error.
    let ints = |key: &str| -> Result<Option<Vec<u64>>, GgufError> {
        let Some(v) = get(key) else { return Ok(None) };
        let items = v.as_array().map_or_else(|| vec![v.clone()], <[MetaValue]>::to_vec);
        items.iter().map(|i| i.as_u64().ok_or_else(|| bad(key, format!("is {}, not a non-negative integer", i.display_short())))).collect::<Result<Vec<_>, _>>().map(Some)
    };
    let one = |key: &str| -> Result<Option<u64>, GgufError> { Ok(ints(key)?.and_then(|v| v.into_iter().max())) };
    match one("block_count")? {
        Some(n) if n == 0 || n > MAX_LAYERS => return Err(bad("block_count", format!("is {n}; llama.cpp needs 1 to {MAX_LAYERS} layers"))),
        _ => {}
    }
    if one("context_length")? == Some(0) {
        return Err(bad("context_length", "is 0; a model needs a context of at least 1 token".into()));
    }
    if one("embedding_length")? == Some(0) {
        return Err(bad("embedding_length", "is 0".into()));
    }
    for key in ["attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon"] {
        if let Some(v) = get(key) {
            let eps = v.as_f64().ok_or_else(|| bad(key, format!("is {}, not a float", v.display_short())))?;
            if !eps.is_finite() || eps <= 0.0 {
                return Err(bad(key, format!("is {eps}; a normalization epsilon must be a positive finite number")));
            }
        }
    }
    check_heads(&ints, &one, &bad)?;
    check_experts(&one, &bad)?;
    if let Some(v) = get("rope.scaling.type") {
        let name = v.as_str().unwrap_or("");
        if !ROPE_SCALING.contains(&name) {
            return Err(bad("rope.scaling.type", format!("is {}; llama.cpp knows {}", v.display_short(), ROPE_SCALING.join(", "))));
        }
    }
    Ok(())
}

type Ints<'a> = dyn Fn(&str) -> Result<Option<Vec<u64>>, GgufError> + 'a;
type One<'a> = dyn Fn(&str) -> Result<Option<u64>, GgufError> + 'a;
type Bad<'a> = dyn Fn(&str, String) -> GgufError + 'a;

/// Head counts: per layer, the KV heads at least 1 and dividing the heads (llama.cpp divides
/// by them), and the embedding a multiple of the heads when no key length is given.
fn check_heads(ints: &Ints<'_>, one: &One<'_>, bad: &Bad<'_>) -> Result<(), GgufError> {
    let Some(heads) = ints("attention.head_count")? else { return Ok(()) };
    let kv = ints("attention.head_count_kv")?.unwrap_or_else(|| heads.clone());
    let max_heads = heads.iter().copied().max().unwrap_or(0);
    for (layer, &h) in heads.iter().enumerate() {
        let k = if kv.len() == 1 { kv[0] } else { kv.get(layer).copied().unwrap_or(h) };
        if h > 0 && k == 0 {
            return Err(bad("attention.head_count_kv", format!("is 0 for layer {layer} where head_count is {h}; llama.cpp divides by it")));
        }
        if h > 0 && h % k != 0 {
            return Err(bad("attention.head_count_kv", format!("is {k} for layer {layer}, which does not divide head_count {h}")));
        }
    }
    if max_heads > 0
        && one("attention.key_length")?.is_none()
        && let Some(embd) = one("embedding_length")?
        && embd % max_heads != 0
    {
        return Err(bad("attention.head_count", format!("is {max_heads}, which does not divide embedding_length {embd}")));
    }
    Ok(())
}

/// Experts: at most [`MAX_EXPERTS`], at least one used when there are any, never more used
/// than exist (llama.cpp's asserts in `load_hparams`).
fn check_experts(one: &One<'_>, bad: &Bad<'_>) -> Result<(), GgufError> {
    let n = one("expert_count")?.unwrap_or(0);
    let used = one("expert_used_count")?.unwrap_or(0);
    if n > MAX_EXPERTS {
        return Err(bad("expert_count", format!("is {n}; llama.cpp allows at most {MAX_EXPERTS}")));
    }
    if used > n {
        return Err(bad("expert_used_count", format!("is {used}, more than expert_count {n}")));
    }
    if n > 0 && used == 0 {
        return Err(bad("expert_used_count", format!("is 0 where expert_count is {n}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufWriter;

    fn file(meta: &[(&str, MetaValue)]) -> GgufFile {
        let mut w = GgufWriter::new();
        w.set("general.architecture", MetaValue::string("llama"));
        for (k, v) in meta {
            w.set(k, v.clone());
        }
        GgufFile::from_bytes("m.gguf", w.header_bytes()).unwrap()
    }

    fn err(meta: &[(&str, MetaValue)]) -> String {
        check(&file(meta)).unwrap_err().to_string()
    }

    #[test]
    fn the_values_llama_cpp_asserts_on_are_refused_by_key() {
        let good = [("llama.block_count", MetaValue::U32(2)), ("llama.embedding_length", MetaValue::U32(64)), ("llama.attention.head_count", MetaValue::U32(4)), ("llama.attention.head_count_kv", MetaValue::U32(2)), ("llama.attention.layer_norm_rms_epsilon", MetaValue::F32(1e-6))];
        check(&file(&good)).unwrap();
        let with = |k: &str, v: MetaValue| {
            let mut m: Vec<(&str, MetaValue)> = good.to_vec();
            m.retain(|(key, _)| *key != k);
            m.push((k, v));
            err(&m)
        };
        assert_eq!(with("llama.block_count", MetaValue::U32(0)), "m.gguf: llama.block_count: is 0; llama.cpp needs 1 to 512 layers");
        assert!(with("llama.attention.layer_norm_rms_epsilon", MetaValue::F32(f32::NAN)).contains("llama.attention.layer_norm_rms_epsilon: is NaN"));
        assert!(with("llama.attention.layer_norm_rms_epsilon", MetaValue::F32(f32::INFINITY)).contains("positive finite"));
        assert!(with("llama.attention.layer_norm_rms_epsilon", MetaValue::F32(0.0)).contains("positive finite"));
        assert!(with("llama.attention.layer_norm_epsilon", MetaValue::F32(-1.0)).contains("llama.attention.layer_norm_epsilon"));
        assert!(with("llama.attention.head_count_kv", MetaValue::U32(0)).contains("head_count_kv: is 0 for layer 0"));
        assert!(with("llama.attention.head_count_kv", MetaValue::U32(3)).contains("does not divide head_count 4"));
        assert!(with("llama.attention.head_count", MetaValue::U32(6)).contains("is 6, which does not divide embedding_length 64"));
        assert!(with("llama.context_length", MetaValue::U32(0)).contains("llama.context_length: is 0"));
        assert!(with("llama.expert_used_count", MetaValue::U32(2)).contains("more than expert_count 0"));
        assert!(with("llama.rope.scaling.type", MetaValue::string("cubic")).contains("llama.rope.scaling.type"));
    }
}
