//! Structure-aware fuzzing of the GGUF reader on stable Rust (cargo-fuzz needs nightly).
//! proptest builds a GGUF file field by field — header, metadata of every value type with nested
//! arrays and the keys this tool reads, tensor infos of real and random types and shapes, the
//! alignment, the data — and then damages some of them (byte overwrites, bit flips, inflated
//! counts and lengths, truncation). Every file must parse to `Ok` or a `GgufError`: no panic, no
//! hang, no allocation sized by a hostile count. When it parses, every consumer of a parsed file
//! runs on it too (tensor data and rows, the codecs, targets and fingerprint, the STATS reader,
//! `inspect`), and an undamaged file must parse.
//!
//! `cargo test --release --test fuzz_gguf` runs a quick round (a few thousand files);
//! `MATHNEURO_FUZZ_SECS=600 nice -n 10 cargo test --release --test fuzz_gguf -- --nocapture`
//! keeps drawing fresh seeds for that many seconds and prints how many files it tried.

use std::time::{Duration, Instant};

use mathneuro::gguf::{GgmlType, GgufFile};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

// GGUF value type ids (gguf.h).
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

/// A metadata value as it is serialized: type id plus payload.
#[derive(Clone, Debug)]
enum Value {
    Fixed(u32, Vec<u8>),
    Str(Vec<u8>),
    Array(u32, Vec<Value>),
    /// An unknown type id with arbitrary bytes after it.
    Bogus(u32, Vec<u8>),
}

#[derive(Clone, Debug)]
struct Tensor {
    name: Vec<u8>,
    dims: Vec<u64>,
    ty: u32,
    /// `None`: placed right after the previous tensor (aligned), as a writer would.
    offset: Option<u64>,
}

#[derive(Clone, Debug)]
enum Damage {
    Set(prop::sample::Index, u8),
    Flip(prop::sample::Index, u8),
    /// Overwrites 8 bytes with a boundary value (a count or a length, often).
    Word(prop::sample::Index, u64),
    Truncate(prop::sample::Index),
}

#[derive(Clone, Debug)]
struct File {
    magic: [u8; 4],
    version: u32,
    kvs: Vec<(Vec<u8>, Value)>,
    tensors: Vec<Tensor>,
    /// Added to the true counts (wrapping): 0 most of the time.
    extra_kv: u64,
    extra_tensors: u64,
    data_len: Option<usize>,
    damage: Vec<Damage>,
}

fn fixed(ty: u32) -> BoxedStrategy<Value> {
    let n = match ty {
        T_U8 | T_I8 => 1,
        T_U16 | T_I16 => 2,
        T_U32 | T_I32 | T_F32 => 4,
        _ => 8,
    };
    prop::collection::vec(any::<u8>(), n).prop_map(move |b| Value::Fixed(ty, b)).boxed()
}

/// Values the format allows.
fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::sample::select(vec![T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_U64, T_I64, T_F64]).prop_flat_map(fixed),
        1 => prop_oneof![Just(0u8), Just(1u8)].prop_map(|b| Value::Fixed(T_BOOL, vec![b])),
        2 => "[a-z._0-9 ]{0,24}".prop_map(|s| Value::Str(s.into_bytes())),
        1 => prop::sample::select(vec!["llama", "gemma3", "qwen2", "stats", "checkpoint", "mask", "mathneuro-stats"]).prop_map(|s| Value::Str(s.as_bytes().to_vec())),
    ]
    .boxed()
}

fn value() -> BoxedStrategy<Value> {
    scalar()
        .prop_recursive(3, 48, 8, |inner| {
            prop_oneof![
                (prop::sample::select(vec![T_U8, T_I32, T_F32, T_U64, T_STRING]), 0usize..8).prop_flat_map(|(t, n)| {
                    let item = if t == T_STRING { "[a-z]{0,8}".prop_map(|s| Value::Str(s.into_bytes())).boxed() } else { fixed(t) };
                    prop::collection::vec(item, n).prop_map(move |items| Value::Array(t, items))
                }),
                // Arrays of arrays: keep only the inner arrays, so the file stays valid.
                prop::collection::vec(inner, 0..4).prop_map(|items| Value::Array(T_ARRAY, items.into_iter().filter(|v| matches!(v, Value::Array(..))).collect())),
            ]
        })
        .boxed()
}

/// Values the format forbids: unknown types, bad bools, non-UTF-8 strings, mixed arrays.
fn hostile_value() -> BoxedStrategy<Value> {
    prop_oneof![
        (13u32..64, prop::collection::vec(any::<u8>(), 0..16)).prop_map(|(t, b)| Value::Bogus(t, b)),
        (2u8..=255).prop_map(|b| Value::Fixed(T_BOOL, vec![b])),
        prop::collection::vec(any::<u8>(), 1..12).prop_map(|mut b| {
            b[0] = 0xff;
            Value::Str(b)
        }),
        prop::collection::vec(scalar(), 1..4).prop_map(|items| Value::Array(T_ARRAY, items)),
        (any::<u32>(), prop::collection::vec(any::<u8>(), 0..24)).prop_map(|(t, b)| Value::Array(t, vec![Value::Bogus(t, b)])),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "general.architecture",
            "general.name",
            "general.file_type",
            "mathneuro.kind",
            "mathneuro.samples",
            "mathneuro.tokens",
            "mathneuro.model_fingerprint",
            "mathneuro.datasets",
            "mathneuro.seeds",
            "tokenizer.ggml.tokens",
            "llama.block_count",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => "[a-z._0-9]{1,24}".prop_map(String::into_bytes),
    ]
    .boxed()
}

fn kv() -> BoxedStrategy<(Vec<u8>, Value)> {
    prop_oneof![
        6 => (key(), value()),
        1 => prop::sample::select(vec![1u32, 8, 32, 64, 256]).prop_map(|a| (b"general.alignment".to_vec(), Value::Fixed(T_U32, a.to_le_bytes().to_vec()))),
        1 => Just((b"mathneuro.kind".to_vec(), Value::Str(b"stats".to_vec()))),
    ]
    .boxed()
}

fn hostile_kv() -> BoxedStrategy<(Vec<u8>, Value)> {
    prop_oneof![
        (key(), hostile_value()),
        prop_oneof![Just(0u32), Just(48), any::<u32>()].prop_map(|a| (b"general.alignment".to_vec(), Value::Fixed(T_U32, a.to_le_bytes().to_vec()))),
        (key(), scalar()).prop_map(|(_, v)| (b"general.alignment".to_vec(), v)),
        (prop::collection::vec(any::<u8>(), 0..12), scalar()),
    ]
    .boxed()
}

/// Keeps the first of each key (a repeated key is a hostile case of its own).
fn dedup_keys(kvs: Vec<(Vec<u8>, Value)>) -> Vec<(Vec<u8>, Value)> {
    let mut seen = std::collections::HashSet::new();
    kvs.into_iter().filter(|(k, _)| seen.insert(k.clone())).collect()
}

fn tensor_name() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => (0u8..3, prop::sample::select(vec!["attn_q.weight", "ffn_down.weight", "ffn_up_exps.weight", "attn_norm.weight", "attn_q.weight.norm_sum", "attn_q.weight.sum_sq", "attn_q.weight.tokens", "attn_q.weight.mask"]))
            .prop_map(|(l, n)| format!("blk.{l}.{n}").into_bytes()),
        1 => prop::sample::select(vec!["output.weight", "token_embd.weight", "output_norm.weight"]).prop_map(|s| s.as_bytes().to_vec()),
        1 => "[a-z._0-9]{1,40}".prop_map(String::into_bytes),
    ]
    .boxed()
}

/// A tensor the format allows: a known type, 1–4 dimensions, whole blocks per row, small.
fn tensor() -> BoxedStrategy<Tensor> {
    let ty = prop::sample::select(GgmlType::all().collect::<Vec<_>>());
    (tensor_name(), ty, 1u64..3, prop::collection::vec(prop::sample::select(vec![1u64, 2, 3, 4, 8]), 0..4))
        .prop_map(|(name, ty, row_blocks, rest)| {
            let mut dims = vec![ty.block_size() * row_blocks];
            dims.extend(rest);
            Tensor { name, dims, ty: ty.to_u32(), offset: None }
        })
        .boxed()
}

/// A tensor the format forbids or that does not fit: odd types, shapes, names and offsets.
fn hostile_tensor() -> BoxedStrategy<Tensor> {
    let dim = prop_oneof![3 => prop::sample::select(vec![1u64, 2, 4, 32, 64, 256]), 1 => any::<u64>(), 1 => Just(0u64), 1 => Just(1u64 << 32)];
    let ty = prop_oneof![2 => prop::sample::select(GgmlType::all().map(GgmlType::to_u32).collect::<Vec<_>>()), 1 => 0u32..64, 1 => any::<u32>()];
    let offset = prop_oneof![1 => Just(None), 1 => prop_oneof![Just(0u64), Just(32), Just(8), any::<u64>()].prop_map(Some)];
    let name = prop_oneof![3 => tensor_name(), 1 => prop::collection::vec(any::<u8>(), 0..12), 1 => Just(vec![b'x'; 64])];
    (name, prop::collection::vec(dim, 0..6), ty, offset).prop_map(|(name, dims, ty, offset)| Tensor { name, dims, ty, offset }).boxed()
}

fn damage() -> BoxedStrategy<Damage> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Set(i, b)),
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Damage::Flip(i, b)),
        (any::<prop::sample::Index>(), prop_oneof![Just(u64::MAX), Just(1u64 << 32), Just(1u64 << 62), Just(0u64), 0u64..4096]).prop_map(|(i, w)| Damage::Word(i, w)),
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
    ]
    .boxed()
}

/// Inserts each hostile item at an index-chosen place among the valid ones.
fn mix<T: Clone>(mut valid: Vec<T>, hostile: Vec<(prop::sample::Index, T)>) -> Vec<T> {
    for (at, item) in hostile {
        let i = at.index(valid.len() + 1);
        valid.insert(i, item);
    }
    valid
}

fn file() -> BoxedStrategy<File> {
    let header = (
        prop_oneof![12 => Just(*b"GGUF"), 1 => any::<[u8; 4]>()],
        prop_oneof![8 => Just(3u32), 3 => Just(2u32), 1 => any::<u32>()],
        prop_oneof![10 => Just(0u64), 1 => any::<u64>(), 1 => 1u64..4],
        prop_oneof![10 => Just(0u64), 1 => any::<u64>(), 1 => 1u64..4],
        prop_oneof![8 => Just(None), 1 => (0usize..4096).prop_map(Some)],
    );
    let kvs = (
        prop::collection::vec(kv(), 0..10).prop_map(dedup_keys),
        prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec((any::<prop::sample::Index>(), hostile_kv()), 1..3)],
    )
        .prop_map(|(v, h)| mix(v, h));
    let tensors = (
        prop::collection::vec(tensor(), 0..8).prop_map(|ts| {
            // Unique names (a repeated name is one of the hostile cases).
            let mut seen = std::collections::HashSet::new();
            ts.into_iter().enumerate().map(|(i, mut t)| {
                if !seen.insert(t.name.clone()) {
                    t.name.extend_from_slice(format!(".{i}").as_bytes());
                    seen.insert(t.name.clone());
                }
                t
            }).collect::<Vec<_>>()
        }),
        prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec((any::<prop::sample::Index>(), hostile_tensor()), 1..3)],
    )
        .prop_map(|(v, h)| mix(v, h));
    let damage = prop_oneof![3 => Just(Vec::new()), 2 => prop::collection::vec(damage(), 1..6)];
    (header, kvs, tensors, damage)
        .prop_map(|((magic, version, extra_kv, extra_tensors, data_len), kvs, tensors, damage)| File { magic, version, kvs, tensors, extra_kv, extra_tensors, data_len, damage })
        .boxed()
}

fn put_str(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s);
}

fn put_value(b: &mut Vec<u8>, v: &Value, with_type: bool) {
    let ty = match v {
        Value::Fixed(t, _) | Value::Bogus(t, _) => *t,
        Value::Str(_) => T_STRING,
        Value::Array(..) => T_ARRAY,
    };
    if with_type {
        b.extend_from_slice(&ty.to_le_bytes());
    }
    match v {
        Value::Fixed(_, bytes) | Value::Bogus(_, bytes) => b.extend_from_slice(bytes),
        Value::Str(s) => put_str(b, s),
        Value::Array(elem, items) => {
            b.extend_from_slice(&elem.to_le_bytes());
            b.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(b, item, false);
            }
        }
    }
}

/// The alignment the reader will use: a u32 `general.alignment`, else 32.
fn alignment(kvs: &[(Vec<u8>, Value)]) -> u64 {
    kvs.iter()
        .find(|(k, _)| k == b"general.alignment")
        .and_then(|(_, v)| match v {
            Value::Fixed(T_U32, b) => Some(u32::from_le_bytes(b[..4].try_into().unwrap()) as u64),
            _ => None,
        })
        .filter(|a| a.is_power_of_two())
        .unwrap_or(32)
}

fn tensor_bytes(t: &Tensor) -> u64 {
    let Some(ty) = GgmlType::from_u32(t.ty) else { return 64 };
    let n = t.dims.iter().try_fold(1u64, |a, d| a.checked_mul(*d)).unwrap_or(u64::MAX);
    ty.bytes_for(n).unwrap_or(64).min(1 << 16)
}

fn serialize(f: &File) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&f.magic);
    b.extend_from_slice(&f.version.to_le_bytes());
    b.extend_from_slice(&(f.tensors.len() as u64).wrapping_add(f.extra_tensors).to_le_bytes());
    b.extend_from_slice(&(f.kvs.len() as u64).wrapping_add(f.extra_kv).to_le_bytes());
    for (k, v) in &f.kvs {
        put_str(&mut b, k);
        put_value(&mut b, v, true);
    }
    let align = alignment(&f.kvs);
    let mut next = 0u64;
    for t in &f.tensors {
        put_str(&mut b, &t.name);
        b.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(&t.ty.to_le_bytes());
        let offset = t.offset.unwrap_or(next);
        b.extend_from_slice(&offset.to_le_bytes());
        next = offset.saturating_add(tensor_bytes(t)).div_ceil(align).saturating_mul(align);
    }
    while !(b.len() as u64).is_multiple_of(align) {
        b.push(0);
    }
    let data = f.data_len.unwrap_or(next.min(1 << 17) as usize);
    b.extend((0..data).map(|i| (i * 131 % 251) as u8));
    for d in &f.damage {
        if b.is_empty() {
            break;
        }
        match d {
            Damage::Set(i, v) => {
                let at = i.index(b.len());
                b[at] = *v;
            }
            Damage::Flip(i, bit) => {
                let at = i.index(b.len());
                b[at] ^= 1 << bit;
            }
            Damage::Word(i, w) => {
                let at = i.index(b.len());
                for (k, byte) in w.to_le_bytes().iter().enumerate() {
                    if let Some(slot) = b.get_mut(at + k) {
                        *slot = *byte;
                    }
                }
            }
            Damage::Truncate(i) => {
                let at = i.index(b.len());
                b.truncate(at);
            }
        }
    }
    b
}

/// Parses `bytes` and runs every consumer of a parsed file on the result.
fn exercise(bytes: Vec<u8>) -> bool {
    let Ok(f) = GgufFile::from_bytes("fuzz.gguf", bytes) else { return false };
    for t in &f.tensors {
        let data = f.tensor_data(t);
        assert_eq!(data.len() as u64, t.n_bytes(), "{}", t.name);
        assert_eq!(f.tensor_rows(t, 0..t.n_rows()).unwrap(), data);
        assert!(f.tensor_rows(t, 0..t.n_rows() + 1).is_err());
        if t.n_elements() <= 1 << 14 {
            let _ = mathneuro::ffi::ggml::dequantize_rows(&f, t, 0..t.n_rows());
        }
    }
    for (k, v) in &f.metadata {
        let _ = (f.get(k), f.get_str(k), v.display_short(), v.as_u64(), v.as_f64(), v.as_array(), mathneuro::inspect::meta_to_json(v));
    }
    let _ = mathneuro::model::fingerprint(&f);
    let _ = mathneuro::model::target_weights(&f).iter().map(|t| mathneuro::model::n_groups(t)).sum::<usize>();
    let _ = mathneuro::stats::ActivationStats::from_gguf(&f);
    let _ = mathneuro::inspect::InspectReport::new(&f).to_text();
    let _ = mathneuro::inspect::InspectReport::new(&f).to_json();
    true
}

fn run_round(seed: u64, cases: u32) -> (u64, u64, u64) {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let parsed = std::cell::Cell::new(0u64);
    let tried = std::cell::Cell::new(0u64);
    let checked = std::cell::Cell::new(0u64);
    let result = runner.run(&file(), |f| {
        tried.set(tried.get() + 1);
        let clean = f.damage.is_empty() && f.extra_kv == 0 && f.extra_tensors == 0 && f.data_len.is_none();
        let bytes = serialize(&f);
        let ok = exercise(bytes.clone());
        parsed.set(parsed.get() + ok as u64);
        // An undamaged file of known types, sane shapes and placed tensors must parse.
        if clean && well_formed(&f) {
            checked.set(checked.get() + 1);
            prop_assert!(ok, "a well-formed file was refused: {:?}", GgufFile::from_bytes("fuzz.gguf", bytes).err());
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
    (tried.get(), parsed.get(), checked.get())
}

/// True when the generated structure is one the format allows (so the reader must accept it).
fn well_formed(f: &File) -> bool {
    fn value_ok(v: &Value, depth: u32) -> bool {
        match v {
            Value::Fixed(T_BOOL, b) => b[0] <= 1,
            Value::Fixed(..) => true,
            Value::Str(s) => std::str::from_utf8(s).is_ok(),
            Value::Bogus(..) => false,
            Value::Array(elem, items) => {
                depth < 8
                    && items.iter().all(|i| {
                        let ty = match i {
                            Value::Fixed(t, _) | Value::Bogus(t, _) => *t,
                            Value::Str(_) => T_STRING,
                            Value::Array(..) => T_ARRAY,
                        };
                        ty == *elem && value_ok(i, depth + 1)
                    })
            }
        }
    }
    let mut keys = std::collections::HashSet::new();
    let mut names = std::collections::HashSet::new();
    let kvs_ok = f.kvs.iter().all(|(k, v)| {
        let alignment_ok = k != b"general.alignment" || matches!(v, Value::Fixed(T_U32, b) if u32::from_le_bytes(b[..4].try_into().unwrap()).is_power_of_two());
        std::str::from_utf8(k).is_ok() && keys.insert(k.clone()) && value_ok(v, 0) && alignment_ok
    });
    let tensors_ok = f.tensors.iter().all(|t| {
        let Some(ty) = GgmlType::from_u32(t.ty) else { return false };
        let n = t.dims.iter().try_fold(1u64, |a, d| a.checked_mul(*d));
        t.offset.is_none()
            && std::str::from_utf8(&t.name).is_ok()
            && t.name.len() <= 63
            && names.insert(t.name.clone())
            && (1..=4).contains(&t.dims.len())
            && t.dims.iter().all(|d| (1..=256).contains(d))
            && t.dims[0] % ty.block_size() == 0
            && n.and_then(|n| ty.bytes_for(n)).is_some_and(|b| b <= 1 << 16)
    });
    f.magic == *b"GGUF" && (2..=3).contains(&f.version) && kvs_ok && tensors_ok
}

#[test]
fn generated_and_damaged_gguf_files_never_panic() {
    let secs: Option<u64> = std::env::var("MATHNEURO_FUZZ_SECS").ok().and_then(|s| s.parse().ok());
    let Some(secs) = secs else {
        let (tried, parsed, checked) = run_round(1, 3000);
        assert!(parsed > tried / 10 && parsed < tried, "the generator should make both valid and invalid files: {parsed} of {tried} parsed");
        assert!(checked > tried / 20, "only {checked} of {tried} files were undamaged and well-formed");
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(secs);
    let seed0: u64 = std::env::var("MATHNEURO_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let (mut tried, mut parsed, mut checked, mut rounds) = (0u64, 0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        let (t, p, c) = run_round(seed0.wrapping_add(rounds), 2000);
        tried += t;
        parsed += p;
        checked += c;
        rounds += 1;
    }
    println!("fuzz: {tried} files in {rounds} rounds (seeds {seed0}..{}), {parsed} parsed, {} refused, {checked} undamaged well-formed files all parsed, no panic", seed0.wrapping_add(rounds), tried - parsed);
}
