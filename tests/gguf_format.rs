//! The GGUF layer against the format: a corpus of malformed files built byte by byte (each must
//! give a clear error naming the file, the field and the offset, never a panic), a proptest that
//! mutates and truncates a small valid file, v2 files, every metadata value type, the writer's
//! guarantees (edits keep types and order, size checks, atomic output, the input is never
//! overwritten), and a byte-identical round trip of the real default model.

use std::io::Write;
use std::path::Path;

use mathneuro::gguf::synth::{SynthModel, encode_plain};
use mathneuro::gguf::writer::array;
use mathneuro::gguf::{GgmlType, GgufError, GgufFile, GgufWriter, MetaType, MetaValue, TensorSpec};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use crate::common;

use common::real_model_path as real_model;

// ---------------------------------------------------------------------------------------------
// A byte-level GGUF builder: writes exactly what it is told, valid or not.

#[derive(Default)]
struct Raw {
    b: Vec<u8>,
}

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw::default();
        r.b.extend_from_slice(b"GGUF");
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Raw {
        self.b.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Raw {
        self.b.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Raw {
        self.b.extend_from_slice(v);
        self
    }
    fn str(&mut self, s: &[u8]) -> &mut Raw {
        self.u64(s.len() as u64).bytes(s)
    }
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Raw {
        self.str(key.as_bytes()).u32(MetaType::U32 as u32).u32(v)
    }
    fn kv_str(&mut self, key: &str, v: &str) -> &mut Raw {
        self.str(key.as_bytes()).u32(MetaType::String as u32).str(v.as_bytes())
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Raw {
        self.str(name.as_bytes()).u32(dims.len() as u32);
        for d in dims {
            self.u64(*d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads to `align` and appends `n` data bytes.
    fn data(&mut self, align: usize, n: usize) -> &mut Raw {
        let len = self.b.len().div_ceil(align) * align;
        self.b.resize(len, 0);
        self.b.extend(std::iter::repeat_n(0x11u8, n));
        self
    }
    fn done(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.b)
    }
}

/// A small valid file with two F32 tensors of 4 elements each.
fn two_tensor_file() -> Vec<u8> {
    Raw::header(3, 2, 1)
        .kv_str("general.architecture", "toy")
        .tensor("a", &[4], 0, 0)
        .tensor("b", &[4], 0, 32)
        .data(32, 48)
        .done()
}

/// A small valid file of several types, metadata of every kind (built by the writer).
fn small_valid_file() -> Vec<u8> {
    let zeros = |ty: GgmlType, v: &[f32]| -> Vec<u8> {
        match ty {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::I8 => encode_plain(ty, v),
            _ => vec![0u8; ty.bytes_for(v.len() as u64).unwrap() as usize],
        }
    };
    SynthModel::new("toy")
        .meta("toy.context_length", MetaValue::U32(64))
        .meta("general.alignment", MetaValue::U32(32))
        .meta("toy.flags", array(MetaType::Bool, vec![MetaValue::Bool(true), MetaValue::Bool(false)]))
        .meta(
            "tokenizer.ggml.tokens",
            array(MetaType::String, vec![MetaValue::string("a"), MetaValue::string("bc")]),
        )
        .tensor("norm.weight", &[4], GgmlType::F32, 1)
        .tensor("blk.0.attn_q.weight", &[32, 2], GgmlType::Q8_0, 2)
        .tensor("blk.0.attn_k.weight", &[8, 2], GgmlType::F16, 3)
        .tensor("blk.0.ffn_up.weight", &[256, 1], GgmlType::Q4_K, 4)
        .to_bytes(&zeros)
        .unwrap()
}

fn parse(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
    GgufFile::from_bytes("bad.gguf", bytes)
}

/// Asserts a Malformed error whose field contains `field` and whose text contains `problem`, and
/// that the message names the file and a byte offset.
#[track_caller]
fn expect_malformed(r: Result<GgufFile, GgufError>, field: &str, problem: &str) -> (u64, String) {
    let err = r.expect_err("a malformed file was accepted");
    let msg = err.to_string();
    match &err {
        GgufError::Malformed { field: f, problem: p, offset, path } => {
            assert!(f.contains(field), "field {f:?} should name {field:?}; message: {msg}");
            assert!(p.contains(problem), "problem {p:?} should say {problem:?}; message: {msg}");
            assert!(msg.contains(&path.display().to_string()), "message names the file: {msg}");
            assert!(msg.contains(&format!("at byte {offset}")), "message gives the offset: {msg}");
            (*offset, msg)
        }
        other => panic!("expected a Malformed error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The malformed corpus: every file is written to disk and opened through the memory map.

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    field: &'static str,
    problem: &'static str,
}

fn corpus() -> Vec<Case> {
    let huge = u64::MAX / 2;
    let mut cases = vec![
        Case { name: "bad_magic", bytes: b"GGML\x03\0\0\0".to_vec(), field: "magic", problem: "not a GGUF file" },
        Case { name: "version_1", bytes: Raw::header(1, 0, 0).done(), field: "version", problem: "v1" },
        Case { name: "version_4", bytes: Raw::header(4, 0, 0).done(), field: "version", problem: "version 4 is not supported" },
        Case {
            name: "big_endian",
            bytes: Raw::header(3u32.swap_bytes(), 0, 0).done(),
            field: "version",
            problem: "big-endian",
        },
        Case {
            name: "huge_tensor_count",
            bytes: Raw::header(3, huge, 0).done(),
            field: "tensor_count",
            problem: "only 0 are left",
        },
        Case {
            name: "huge_kv_count",
            bytes: Raw::header(3, 0, u64::MAX).done(),
            field: "metadata_kv_count",
            problem: "2^64+",
        },
        Case {
            name: "huge_key_length",
            bytes: Raw::header(3, 0, 1).u64(huge).bytes(&[0; 16]).done(),
            field: "metadata key #0",
            problem: "count",
        },
        Case {
            name: "huge_string_value",
            bytes: Raw::header(3, 0, 1).str(b"k").u32(MetaType::String as u32).u64(1 << 40).done(),
            field: "metadata \"k\"",
            problem: "only 0 are left",
        },
        Case {
            name: "huge_array_count",
            bytes: Raw::header(3, 0, 1)
                .str(b"k")
                .u32(MetaType::Array as u32)
                .u32(MetaType::U64 as u32)
                .u64(1 << 61)
                .bytes(&[0; 16])
                .done(),
            field: "metadata \"k\"",
            problem: "needs at least",
        },
        Case {
            name: "unknown_value_type",
            bytes: Raw::header(3, 0, 1).str(b"k").u32(13).u32(0).done(),
            field: "metadata \"k\"",
            problem: "unknown value type 13",
        },
        Case {
            name: "unknown_array_element_type",
            bytes: Raw::header(3, 0, 1).str(b"k").u32(MetaType::Array as u32).u32(99).u64(0).done(),
            field: "metadata \"k\"",
            problem: "unknown array element type 99",
        },
        Case {
            name: "bad_bool",
            bytes: Raw::header(3, 0, 1).str(b"k").u32(MetaType::Bool as u32).bytes(&[2]).done(),
            field: "metadata \"k\"",
            problem: "bool byte is 2",
        },
        Case {
            name: "duplicate_key",
            bytes: Raw::header(3, 0, 2).kv_u32("a.b", 1).kv_u32("a.b", 2).done(),
            field: "metadata key \"a.b\"",
            problem: "duplicate key",
        },
        Case {
            name: "non_utf8_key",
            bytes: Raw::header(3, 0, 1).str(b"ke\xffy").u32(MetaType::U8 as u32).bytes(&[0]).done(),
            field: "metadata key #0",
            problem: "not valid UTF-8",
        },
        Case {
            name: "alignment_not_power_of_two",
            bytes: Raw::header(3, 0, 1).kv_u32("general.alignment", 48).done(),
            field: "general.alignment",
            problem: "power of two",
        },
        Case {
            name: "alignment_zero",
            bytes: Raw::header(3, 0, 1).kv_u32("general.alignment", 0).done(),
            field: "general.alignment",
            problem: "power of two",
        },
        Case {
            name: "alignment_wrong_type",
            bytes: Raw::header(3, 0, 1).str(b"general.alignment").u32(MetaType::U64 as u32).u64(32).done(),
            field: "general.alignment",
            problem: "stored as u32",
        },
        Case {
            name: "unknown_tensor_type",
            bytes: Raw::header(3, 1, 0).tensor("t", &[32], 99, 0).data(32, 64).done(),
            field: "tensor \"t\"",
            problem: "unknown ggml type id 99",
        },
        Case {
            name: "removed_tensor_type_q4_2",
            bytes: Raw::header(3, 1, 0).tensor("t", &[32], 4, 0).data(32, 64).done(),
            field: "tensor \"t\"",
            problem: "unknown ggml type id 4",
        },
        Case {
            name: "duplicate_tensor_name",
            bytes: Raw::header(3, 2, 0).tensor("w", &[4], 0, 0).tensor("w", &[4], 0, 32).data(32, 48).done(),
            field: "tensor \"w\"",
            problem: "duplicate tensor name",
        },
        Case {
            name: "non_utf8_tensor_name",
            bytes: Raw::header(3, 1, 0).str(b"w\xc3").u32(1).u64(4).u32(0).u64(0).data(32, 16).done(),
            field: "tensor #0 name",
            problem: "not valid UTF-8",
        },
        Case {
            name: "tensor_name_too_long",
            bytes: Raw::header(3, 1, 0).tensor(&"x".repeat(64), &[4], 0, 0).data(32, 16).done(),
            field: "tensor \"xxxx",
            problem: "at most 63",
        },
        Case {
            name: "zero_dims",
            bytes: Raw::header(3, 1, 0).tensor("t", &[], 0, 0).bytes(&[0; 32]).done(),
            field: "tensor \"t\"",
            problem: "0 dimensions",
        },
        Case {
            name: "five_dims",
            bytes: Raw::header(3, 1, 0).tensor("t", &[1, 1, 1, 1, 1], 0, 0).data(32, 4).done(),
            field: "tensor \"t\"",
            problem: "5 dimensions",
        },
        Case {
            name: "zero_length_dimension",
            bytes: Raw::header(3, 1, 0).tensor("t", &[4, 0], 0, 0).data(32, 16).done(),
            field: "tensor \"t\"",
            problem: "dimension 0 is out of range",
        },
        Case {
            name: "row_not_whole_blocks",
            bytes: Raw::header(3, 1, 0).tensor("t", &[48, 2], GgmlType::Q8_0.to_u32(), 0).data(32, 102).done(),
            field: "tensor \"t\"",
            problem: "block size 32",
        },
        Case {
            name: "size_overflow",
            bytes: Raw::header(3, 1, 0).tensor("t", &[1 << 32, 1 << 32, 1 << 32], 0, 0).data(32, 16).done(),
            field: "tensor \"t\"",
            problem: "overflows",
        },
        Case {
            name: "unaligned_tensor_offset",
            bytes: Raw::header(3, 1, 0).tensor("t", &[4], 0, 8).data(32, 32).done(),
            field: "tensor \"t\"",
            problem: "not a multiple of the alignment 32",
        },
        Case {
            name: "offset_past_end",
            bytes: Raw::header(3, 1, 0).tensor("t", &[4], 0, 1 << 20).data(32, 16).done(),
            field: "tensor \"t\"",
            problem: "runs past the end of the file",
        },
        Case {
            name: "offset_overflows",
            bytes: Raw::header(3, 1, 0).tensor("t", &[4], 0, u64::MAX - 31).data(32, 16).done(),
            field: "tensor \"t\"",
            problem: "runs past the end of the file",
        },
        Case {
            name: "data_one_byte_short",
            bytes: Raw::header(3, 1, 0).tensor("t", &[4], 0, 0).data(32, 15).done(),
            field: "tensor \"t\"",
            problem: "runs past the end of the file",
        },
        Case {
            name: "no_data_section",
            bytes: Raw::header(3, 1, 0).tensor("t", &[4], 0, 0).done(),
            field: "data section",
            problem: "ends before the data section",
        },
        Case {
            name: "overlapping_tensors",
            bytes: Raw::header(3, 2, 0).tensor("a", &[16], 0, 0).tensor("b", &[4], 0, 32).data(32, 64).done(),
            field: "tensor \"b\"",
            problem: "overlaps tensor \"a\"",
        },
        Case {
            name: "same_offset_tensors",
            bytes: Raw::header(3, 2, 0).tensor("a", &[4], 0, 0).tensor("b", &[4], 0, 0).data(32, 16).done(),
            field: "tensor",
            problem: "overlaps tensor",
        },
    ];
    // Arrays nested deeper than the cap.
    let mut deep = Raw::header(3, 0, 1);
    deep.str(b"deep").u32(MetaType::Array as u32);
    for _ in 0..10 {
        deep.u32(MetaType::Array as u32).u64(1);
    }
    deep.u32(MetaType::U8 as u32).u64(0);
    cases.push(Case { name: "arrays_nested_too_deep", bytes: deep.done(), field: "metadata \"deep\"", problem: "nested deeper" });
    cases
}

#[test]
fn malformed_corpus_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = corpus();
    assert!(cases.len() >= 12);
    for case in cases {
        let path = dir.path().join(format!("{}.gguf", case.name));
        std::fs::write(&path, &case.bytes).unwrap();
        let err = GgufFile::open(&path).expect_err(case.name);
        let msg = err.to_string();
        match &err {
            GgufError::Malformed { field, problem, .. } => {
                assert!(field.contains(case.field), "{}: field {field:?} should name {:?} ({msg})", case.name, case.field);
                assert!(problem.contains(case.problem), "{}: {problem:?} should say {:?} ({msg})", case.name, case.problem);
            }
            other => panic!("{}: expected Malformed, got {other:?}", case.name),
        }
        assert!(msg.starts_with(&path.display().to_string()), "{}: names the file: {msg}", case.name);
        assert!(msg.contains("at byte "), "{}: gives the offset: {msg}", case.name);
    }
}

#[test]
fn empty_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let msg = GgufFile::open(&empty).unwrap_err().to_string();
    assert!(msg.contains("empty.gguf") && msg.contains("magic") && msg.contains("empty"), "{msg}");
    let missing = dir.path().join("missing.gguf");
    let err = GgufFile::open(&missing).unwrap_err();
    assert!(matches!(err, GgufError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.gguf"), "{err}");
}

#[test]
fn errors_point_at_the_right_offsets() {
    // The unknown value type tag sits right after header (24) + key (8 + 1).
    let (off, _) = expect_malformed(parse(Raw::header(3, 0, 1).str(b"k").u32(13).done()), "metadata \"k\"", "unknown value type");
    assert_eq!(off, 24 + 9);
    let (off, _) = expect_malformed(parse(Raw::header(3, u64::MAX, 0).done()), "tensor_count", "count");
    assert_eq!(off, 8);
    let (off, _) = expect_malformed(parse(Raw::header(3, 0, 1).kv_u32("general.alignment", 3).done()), "general.alignment", "power of two");
    assert_eq!(off, 24 + 8 + "general.alignment".len() as u64);
}

#[test]
fn truncation_at_every_byte_is_an_error() {
    for valid in [two_tensor_file(), small_valid_file()] {
        let full = parse(valid.clone()).expect("the untruncated file is valid");
        let data_offset = full.data_offset as usize;
        // Trailing padding after the last tensor is optional (llama.cpp's loader does not need
        // it either); every cut before the end of the last tensor's data must fail.
        let data_end = full.tensors.iter().map(|t| data_offset + (t.offset + t.n_bytes()) as usize).max().unwrap();
        for len in data_end..=valid.len() {
            assert!(parse(valid[..len].to_vec()).is_ok(), "cut at {len} inside the trailing padding");
        }
        let mut sections = std::collections::BTreeSet::new();
        for len in 0..data_end {
            let cut = valid[..len].to_vec();
            let err = parse(cut).expect_err("a truncated file was accepted");
            let GgufError::Malformed { field, problem, offset, .. } = &err else { panic!("{err:?}") };
            assert!(*offset <= valid.len() as u64, "offset {offset} beyond the file");
            if len < data_offset {
                // Inside the header: the reader ran out of bytes for some field, or a count no
                // longer fits what is left.
                assert!(
                    problem.contains("file ends") || problem.contains("are left") || problem.contains("data section"),
                    "cut at {len}: {field}: {problem}"
                );
            } else {
                assert!(problem.contains("runs past the end"), "cut at {len}: {field}: {problem}");
            }
            sections.insert(field.split(' ').next().unwrap().to_string());
        }
        // The cuts hit every section: magic, version, counts, metadata, tensor infos, data.
        for s in ["magic", "version", "tensor_count", "metadata_kv_count", "metadata", "tensor", "data"] {
            assert!(sections.contains(s), "no cut landed in {s}: {sections:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Valid files: v2, every value type, tensor rows.

fn every_value_type() -> Vec<(String, MetaValue)> {
    let nested = array(
        MetaType::Array,
        vec![
            array(MetaType::U32, vec![MetaValue::U32(1), MetaValue::U32(2)]),
            array(MetaType::U32, vec![]),
            array(MetaType::U32, vec![MetaValue::U32(u32::MAX)]),
        ],
    );
    vec![
        ("v.u8".into(), MetaValue::U8(200)),
        ("v.i8".into(), MetaValue::I8(-5)),
        ("v.u16".into(), MetaValue::U16(65000)),
        ("v.i16".into(), MetaValue::I16(-30000)),
        ("v.u32".into(), MetaValue::U32(7)),
        ("v.i32".into(), MetaValue::I32(-7)),
        ("v.f32".into(), MetaValue::F32(1.25)),
        ("v.bool".into(), MetaValue::Bool(true)),
        ("v.string".into(), MetaValue::string("héllo")),
        ("v.bytes_not_utf8".into(), MetaValue::String(vec![0xff, 0xfe, b'a'])),
        ("v.u64".into(), MetaValue::U64(u64::MAX)),
        ("v.i64".into(), MetaValue::I64(i64::MIN)),
        ("v.f64".into(), MetaValue::F64(-2.5e300)),
        ("v.empty_array".into(), array(MetaType::F64, vec![])),
        ("v.strings".into(), array(MetaType::String, vec![MetaValue::string("x"), MetaValue::string("")])),
        ("v.nested".into(), nested),
    ]
}

#[test]
fn every_value_type_round_trips_with_its_exact_type() {
    for version in [2, 3] {
        let mut w = GgufWriter::new();
        w.version = version;
        w.metadata = every_value_type();
        w.add_tensor(TensorSpec { name: "t".into(), dims: vec![4, 2], ggml_type: GgmlType::F32 });
        let bytes = w.write_to(Path::new("mem"), Vec::new(), |_, _, sink| sink.write_all(&[0u8; 32])).unwrap();
        let f = parse(bytes.clone()).unwrap();
        assert_eq!(f.version, version);
        assert_eq!(f.metadata, every_value_type(), "v{version}: values and types survive");
        assert_eq!(f.get("v.u32").unwrap().meta_type(), MetaType::U32);
        match f.get("v.empty_array").unwrap() {
            MetaValue::Array { elem, items } => assert!(*elem == MetaType::F64 && items.is_empty()),
            other => panic!("{other:?}"),
        }
        // Writing what was read gives the same bytes.
        let again = GgufWriter::from_file(&f)
            .write_to(Path::new("mem"), Vec::new(), |i, _, sink| sink.write_all(f.tensor_data(&f.tensors[i])))
            .unwrap();
        assert_eq!(again, bytes);
    }
}

#[test]
fn version_2_file_built_by_hand_is_read() {
    let bytes = Raw::header(2, 1, 2)
        .kv_str("general.architecture", "toy")
        .kv_u32("toy.context_length", 16)
        .tensor("w", &[8, 2], 0, 0)
        .data(32, 64)
        .done();
    let f = parse(bytes).unwrap();
    assert_eq!(f.version, 2);
    assert_eq!(f.architecture(), Some("toy"));
    assert_eq!(f.get("toy.context_length"), Some(&MetaValue::U32(16)));
    assert_eq!(f.tensor("w").unwrap().dims, vec![8, 2]);
    assert_eq!(f.data_offset % 32, 0);
}

#[test]
fn custom_alignment_is_honoured() {
    let mut w = GgufWriter::new();
    w.set("general.alignment", MetaValue::U32(64));
    w.add_tensor(TensorSpec { name: "a".into(), dims: vec![3], ggml_type: GgmlType::F32 });
    w.add_tensor(TensorSpec { name: "b".into(), dims: vec![5], ggml_type: GgmlType::F32 });
    let bytes = w.write_to(Path::new("mem"), Vec::new(), |_, s, sink| sink.write_all(&vec![1u8; s.n_bytes() as usize])).unwrap();
    let f = parse(bytes).unwrap();
    assert_eq!(f.alignment, 64);
    assert_eq!(f.data_offset % 64, 0);
    assert_eq!(f.tensor("b").unwrap().offset, 64);
}

#[test]
fn tensor_rows_slices_whole_rows_and_refuses_the_rest() {
    let f = parse(small_valid_file()).unwrap();
    let q = f.tensor("blk.0.attn_q.weight").unwrap().clone();
    assert_eq!(q.n_rows(), 2);
    let all = f.tensor_data(&q);
    assert_eq!(f.tensor_rows(&q, 0..2).unwrap(), all);
    assert_eq!(f.tensor_rows(&q, 1..2).unwrap(), &all[34..]);
    assert!(f.tensor_rows(&q, 1..1).unwrap().is_empty());
    let err = f.tensor_rows(&q, 1..3).unwrap_err().to_string();
    assert!(err.contains("blk.0.attn_q.weight") && err.contains("rows 1..3") && err.contains("has 2"), "{err}");
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 2..1;
    assert!(f.tensor_rows(&q, backwards).is_err());
    // An info that does not belong to this file is refused, not trusted.
    let mut foreign = q.clone();
    foreign.offset = 1 << 40;
    let err = f.tensor_rows(&foreign, 0..1).unwrap_err().to_string();
    assert!(err.contains("does not lie in this file"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Never panic on arbitrary bytes.

fn exercise(bytes: Vec<u8>) {
    if let Ok(f) = parse(bytes) {
        for t in &f.tensors {
            let data = f.tensor_data(t);
            assert_eq!(data.len() as u64, t.n_bytes());
            let rows = f.tensor_rows(t, 0..t.n_rows()).unwrap();
            assert_eq!(rows, data);
            // The codecs accept whatever bytes a valid table points at.
            if t.n_elements() <= 1 << 16 {
                let _ = mathneuro::ffi::ggml::dequantize_rows(&f, t, 0..t.n_rows());
            }
        }
        let _ = mathneuro::inspect::InspectReport::new(&f).to_text();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_files_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = small_valid_file();
        for (i, v) in edits {
            let at = i.index(bytes.len());
            bytes[at] = v;
        }
        exercise(bytes);
    }

    #[test]
    fn mutated_counts_and_lengths_never_panic(which in 0usize..64, value in prop_oneof![any::<u64>(), 0u64..4096, Just(u64::MAX), Just(1u64 << 32)]) {
        // Overwrite one 8-byte-aligned word of the header with a count-like value.
        let mut bytes = small_valid_file();
        let at = (8 + which * 8).min(bytes.len() - 8);
        bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        exercise(bytes);
    }

    #[test]
    fn truncated_and_mutated_files_never_panic(cut in any::<prop::sample::Index>(), i in any::<prop::sample::Index>(), v in any::<u8>()) {
        let mut bytes = small_valid_file();
        let at = i.index(bytes.len());
        bytes[at] = v;
        bytes.truncate(cut.index(bytes.len()));
        exercise(bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// The writer.

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.starts_with(".mathneuro-"))
        .collect()
}

#[test]
fn metadata_edits_keep_types_and_order() {
    let src = parse(small_valid_file()).unwrap();
    let mut w = GgufWriter::from_file(&src);
    w.set("toy.context_length", MetaValue::U32(128));
    w.set("mathneuro.version", MetaValue::string("test"));
    let out = w
        .write_to(Path::new("mem"), Vec::new(), |i, _, sink| sink.write_all(src.tensor_data(&src.tensors[i])))
        .unwrap();
    let f = parse(out).unwrap();
    let keys = |f: &GgufFile| f.metadata.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    let mut expected = keys(&src);
    expected.push("mathneuro.version".into());
    assert_eq!(keys(&f), expected, "replaced keys keep their place, new keys are appended");
    assert_eq!(f.get("toy.context_length"), Some(&MetaValue::U32(128)));
    for (k, v) in &src.metadata {
        if k != "toy.context_length" {
            assert_eq!(f.get(k), Some(v), "{k} unchanged");
        }
    }
    assert_eq!(f.tensors, src.tensors);
    for t in &src.tensors {
        assert_eq!(f.tensor_data(f.tensor(&t.name).unwrap()), src.tensor_data(t));
    }
}

#[test]
fn tensor_size_mismatch_is_an_error_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    let src = parse(small_valid_file()).unwrap();
    let w = GgufWriter::from_file(&src);
    let err = w
        .write_atomic(&out, None, |i, _, sink| {
            let d = src.tensor_data(&src.tensors[i]);
            sink.write_all(if i == 1 { &d[1..] } else { d })
        })
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("out.gguf") && msg.contains("blk.0.attn_q.weight") && msg.contains("67 bytes were supplied, 68 declared"), "{msg}");
    assert!(!out.exists(), "no partial output");
    assert_eq!(leftovers(dir.path()), Vec::<String>::new(), "no temp files left");
    // Too many bytes are refused too.
    let err = w.write_to(Path::new("mem"), Vec::new(), |_, s, sink| sink.write_all(&vec![0; s.n_bytes() as usize + 1])).unwrap_err();
    assert!(err.to_string().contains("declared"), "{err}");
}

#[test]
fn atomic_write_leaves_no_temp_files_and_refuses_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.gguf");
    std::fs::write(&input, small_valid_file()).unwrap();
    let before = sha256(&input);
    let src = GgufFile::open(&input).unwrap();
    let w = GgufWriter::from_file(&src);
    let copy = |i: usize, _: &TensorSpec, sink: &mut dyn Write| sink.write_all(src.tensor_data(&src.tensors[i]));

    let out = dir.path().join("out.gguf");
    w.write_atomic(&out, Some(&input), copy).unwrap();
    assert_eq!(sha256(&out), before, "an unedited copy is byte-identical");
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());

    // The same file under another name (a hard link) is still the input.
    let link = dir.path().join("link.gguf");
    std::fs::hard_link(&input, &link).unwrap();
    for target in [&input, &link] {
        let err = w.write_atomic(target, Some(&input), copy).unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite the input"), "{err}");
    }
    assert_eq!(sha256(&input), before, "the input is untouched");
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[test]
fn writer_refuses_files_the_reader_would_reject() {
    let ok = || {
        let mut w = GgufWriter::new();
        w.add_tensor(TensorSpec { name: "t".into(), dims: vec![32], ggml_type: GgmlType::Q8_0 });
        w
    };
    let check = |w: GgufWriter, want: &str| {
        let err = w.validate(Path::new("out.gguf")).unwrap_err().to_string();
        assert!(err.contains("out.gguf") && err.contains(want), "{err} should say {want:?}");
    };
    assert!(ok().validate(Path::new("out.gguf")).is_ok());
    let mut w = ok();
    w.metadata.push(("k".into(), MetaValue::U8(1)));
    w.metadata.push(("k".into(), MetaValue::U8(2)));
    check(w, "\"k\" appears twice");
    let mut w = ok();
    w.set("k", array(MetaType::U32, vec![MetaValue::U32(1), MetaValue::U64(2)]));
    check(w, "array of U32 holds a U64 at index 1");
    let mut w = ok();
    w.set("general.alignment", MetaValue::U64(32));
    check(w, "general.alignment");
    let mut w = ok();
    w.version = 1;
    check(w, "version 1");
    let mut w = ok();
    w.add_tensor(TensorSpec { name: "t".into(), dims: vec![32], ggml_type: GgmlType::F32 });
    check(w, "\"t\": appears twice");
    let mut w = ok();
    w.tensors[0].dims = vec![33];
    check(w, "not a multiple of the Q8_0 block size 32");
    let mut w = ok();
    w.tensors[0].dims = vec![];
    check(w, "0 dimensions");
    let mut w = ok();
    w.tensors[0].name = "n".repeat(64);
    check(w, "at most 63");
    let mut w = ok();
    w.tensors[0].dims = vec![32, 1 << 40, 1 << 40];
    check(w, "overflows");
}

// ---------------------------------------------------------------------------------------------
// The real default model.

#[test]
fn real_model_round_trip_is_byte_identical() {
    let input = real_model();
    let src = GgufFile::open(&input).unwrap();
    assert_eq!(src.tensors.len(), 236);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.gguf");
    GgufWriter::from_file(&src)
        .write_atomic(&out, Some(&input), |i, _, sink| sink.write_all(src.tensor_data(&src.tensors[i])))
        .unwrap();
    let copy = GgufFile::open(&out).unwrap();
    assert_eq!(copy.bytes().len(), src.bytes().len());
    assert!(copy.bytes() == src.bytes(), "read → write with no edits is byte-identical");
    // …and the copy has the pinned model's sha256 (so the input was the pinned model too).
    assert_eq!(sha256(&out), "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818");
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[test]
fn real_model_header_truncations_are_errors() {
    // Cut the real header at a spread of points, including inside the 262144-token array.
    let f = GgufFile::open(real_model()).unwrap();
    let header = f.data_offset as usize;
    let bytes = f.bytes()[..header].to_vec();
    let cuts = 40;
    for k in 0..cuts {
        let len = header * k / cuts + k % 7;
        let err = parse(bytes[..len].to_vec()).unwrap_err();
        assert!(matches!(err, GgufError::Malformed { .. }), "cut at {len}: {err}");
    }
}

/// Hex sha256 of `bytes`.
fn digest_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Resident KiB of the mappings of `path` in this process (from /proc/self/smaps).
fn mapped_rss_kib(path: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = path.to_str().unwrap();
    let mut in_map = false;
    let mut kib = 0;
    for line in smaps.lines() {
        if let Some(first) = line.split_whitespace().next()
            && first.contains('-')
            && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        {
            in_map = line.ends_with(name);
        } else if in_map && let Some(v) = line.strip_prefix("Rss:") {
            kib += v.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap();
        }
    }
    kib
}

#[test]
fn released_tensors_leave_the_resident_set_and_read_back_the_same() {
    // Big tensors (1 MiB each, F32) in a file of its own, so its map is this test's alone.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.gguf");
    let mut m = SynthModel::new("llama");
    for i in 0..8 {
        m = m.tensor(&format!("blk.{i}.ffn_up.weight"), &[512, 512], GgmlType::F32, i);
    }
    m.write(&path, &encode_plain).unwrap();
    let f = GgufFile::open(&path).unwrap();
    let before: Vec<String> = f.tensors.iter().map(|t| digest_hex(f.tensor_data(t))).collect();
    let touched = mapped_rss_kib(&path);
    assert!(touched >= 8 * 1024, "every tensor read: {touched} KiB resident");
    for t in &f.tensors {
        f.release(t);
    }
    let released = mapped_rss_kib(&path);
    assert!(released <= 64, "after release: {released} KiB still resident of {touched}");
    let after: Vec<String> = f.tensors.iter().map(|t| digest_hex(f.tensor_data(t))).collect();
    assert_eq!(before, after, "released tensors read back the same bytes");
    // An owned (unmapped) file ignores the call.
    let owned = GgufFile::from_bytes("owned", std::fs::read(&path).unwrap()).unwrap();
    owned.release(&owned.tensors[0]);
    assert_eq!(digest_hex(owned.tensor_data(&owned.tensors[0])), before[0]);
}
