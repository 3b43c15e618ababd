//! Checkpoints of an interrupted calibration: the f64 running totals after the first `done`
//! samples, written atomically as a GGUF beside the output (`OUT.partial.gguf`). A run resumed
//! from a checkpoint continues exactly where it stopped (the totals are kept in full precision and
//! packing restarts at checkpoint boundaries, so the final bytes equal an uninterrupted run with
//! the same `--checkpoint-every`). The `key` ties a checkpoint to its run's settings (and the
//! model's content, see `pipeline`); a sha256 over the counts and every value refuses a
//! checkpoint whose numbers were changed after it was written, finite or not (issue 27 case 10).

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::accumulate::{Totals, WeightShape};
use crate::gguf::{GgmlType, GgufError, GgufFile, GgufWriter, MetaValue, TensorSpec};

/// Why a checkpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Unreadable.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// Written by a run with other settings, or damaged.
    #[error("{}: {problem}", path.display())]
    Mismatch {
        /// The checkpoint.
        path: PathBuf,
        /// Why it does not fit.
        problem: String,
    },
}

/// The checkpoint path for output `out`.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".partial.gguf");
    PathBuf::from(s)
}

/// Writes `totals` after `done` samples.
pub fn save(path: &Path, key: &str, done: usize, shapes: &[WeightShape], totals: &Totals) -> Result<(), GgufError> {
    let mut w = GgufWriter::new();
    w.set("general.architecture", MetaValue::string("mathneuro-checkpoint"));
    w.set("mathneuro.kind", MetaValue::string("checkpoint"));
    w.set("mathneuro.checkpoint.key", MetaValue::string(key));
    w.set("mathneuro.checkpoint.done", MetaValue::U64(done as u64));
    w.set("mathneuro.samples", MetaValue::U64(totals.samples));
    w.set("mathneuro.tokens", MetaValue::U64(totals.total_tokens));
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    for (i, s) in shapes.iter().enumerate() {
        let n = (s.n_in * s.n_groups) as u64;
        for (suffix, v) in [("norm_sum", &totals.norm_sum[i]), ("sum_sq", &totals.sum_sq[i])] {
            w.add_tensor(TensorSpec { name: format!("{}.{suffix}", s.name), dims: vec![n], ggml_type: GgmlType::F64 });
            blobs.push(v.iter().flat_map(|x| x.to_le_bytes()).collect());
        }
        w.add_tensor(TensorSpec { name: format!("{}.tokens", s.name), dims: vec![2 * s.n_groups as u64], ggml_type: GgmlType::I32 });
        blobs.push(totals.tokens[i].iter().flat_map(|t| [(*t as u32).to_le_bytes(), ((*t >> 32) as u32).to_le_bytes()]).flatten().collect());
    }
    w.set("mathneuro.checkpoint.sha256", MetaValue::string(checksum(done as u64, totals.samples, totals.total_tokens, blobs.iter().map(Vec::as_slice))));
    w.write_atomic(path, None, |i, _spec, sink| sink.write_all(&blobs[i]))
}

/// The sha256 (hex) over the counts and the tensor bytes, in order.
fn checksum<'b>(done: u64, samples: u64, tokens: u64, blobs: impl Iterator<Item = &'b [u8]>) -> String {
    let mut h = Sha256::new();
    for n in [done, samples, tokens] {
        h.update(n.to_le_bytes());
    }
    for b in blobs {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a checkpoint written by `save` for the same `key` and weights: (totals, done).
pub fn load(path: &Path, key: &str, shapes: &[WeightShape]) -> Result<(Totals, usize), CheckpointError> {
    let f = GgufFile::open(path)?;
    let bad = |problem: String| CheckpointError::Mismatch { path: path.to_path_buf(), problem };
    if f.get_str("mathneuro.kind") != Some("checkpoint") {
        return Err(bad("not a mathneuro checkpoint".into()));
    }
    if f.get_str("mathneuro.checkpoint.key") != Some(key) {
        return Err(bad(format!(
            "written by a run with other settings (model, data, seed, samples, shard or batching); delete it or run without --resume\n  checkpoint: {}\n  this run:   {key}",
            f.get_str("mathneuro.checkpoint.key").unwrap_or("?")
        )));
    }
    let number = |k: &str| f.get(k).and_then(MetaValue::as_u64).ok_or_else(|| bad(format!("missing {k}")));
    let done = number("mathneuro.checkpoint.done")? as usize;
    let mut totals = Totals::zeros(shapes);
    totals.samples = number("mathneuro.samples")?;
    totals.total_tokens = number("mathneuro.tokens")?;
    let mut blobs: Vec<&[u8]> = Vec::new();
    for (i, s) in shapes.iter().enumerate() {
        let get = |suffix: &str, ty: GgmlType, n: u64| {
            let name = format!("{}.{suffix}", s.name);
            let t = f.tensor(&name).ok_or_else(|| bad(format!("missing tensor {name}")))?;
            if t.ggml_type != ty || t.dims != [n] {
                return Err(bad(format!("tensor {name} has type {} and shape {:?}", t.ggml_type, t.dims)));
            }
            Ok(f.tensor_data(t))
        };
        let n = (s.n_in * s.n_groups) as u64;
        let floats = |b: &[u8]| b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect::<Vec<f64>>();
        let (norm_sum, sum_sq, tokens) = (get("norm_sum", GgmlType::F64, n)?, get("sum_sq", GgmlType::F64, n)?, get("tokens", GgmlType::I32, 2 * s.n_groups as u64)?);
        blobs.extend([norm_sum, sum_sq, tokens]);
        totals.norm_sum[i] = floats(norm_sum);
        totals.sum_sq[i] = floats(sum_sq);
        let halves: Vec<u32> = tokens.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        totals.tokens[i] = halves.chunks_exact(2).map(|p| p[0] as u64 | (p[1] as u64) << 32).collect();
    }
    let stored = f.get_str("mathneuro.checkpoint.sha256").ok_or_else(|| bad("no checksum (mathneuro.checkpoint.sha256); delete it or run without --resume".into()))?;
    let actual = checksum(done as u64, totals.samples, totals.total_tokens, blobs.into_iter());
    if stored != actual {
        return Err(bad(format!("its values do not match their checksum (the file was changed after it was written); delete it or run without --resume\n  stored: {stored}\n  values: {actual}")));
    }
    Ok((totals, done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_key_check() {
        let shapes = vec![WeightShape { name: "blk.0.attn_q.weight".into(), n_in: 3, n_groups: 1 }, WeightShape { name: "blk.0.ffn_up_exps.weight".into(), n_in: 2, n_groups: 2 }];
        let mut t = Totals::zeros(&shapes);
        t.norm_sum[0] = vec![1.0 / 3.0, 2.0, 3.0];
        t.sum_sq[1] = vec![0.1, 0.2, 0.3, 0.4];
        t.tokens[1] = vec![5, 1 << 40];
        t.samples = 4;
        t.total_tokens = 99;
        let dir = tempfile::tempdir().unwrap();
        let p = checkpoint_path(&dir.path().join("out.gguf"));
        save(&p, "k1", 4, &shapes, &t).unwrap();
        let (back, done) = load(&p, "k1", &shapes).unwrap();
        assert_eq!((back, done), (t, 4));
        let err = load(&p, "k2", &shapes).unwrap_err().to_string();
        assert!(err.contains("other settings") && err.contains("out.gguf.partial.gguf"), "{err}");
    }

    #[test]
    fn a_finite_value_changed_in_place_fails_the_checksum() {
        let shapes = vec![WeightShape { name: "blk.0.attn_q.weight".into(), n_in: 3, n_groups: 1 }];
        let mut t = Totals::zeros(&shapes);
        t.norm_sum[0] = vec![1.0, 2.0, 3.0];
        let dir = tempfile::tempdir().unwrap();
        let p = checkpoint_path(&dir.path().join("out.gguf"));
        save(&p, "k", 1, &shapes, &t).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        let two = 2.0f64.to_le_bytes();
        let at = bytes.windows(8).position(|w| w == two).unwrap();
        bytes[at..at + 8].copy_from_slice(&2.5f64.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let err = load(&p, "k", &shapes).unwrap_err().to_string();
        assert!(err.contains("do not match their checksum") && err.contains("out.gguf.partial.gguf"), "{err}");
    }
}
