//! Reading an imatrix GGUF with ggml's own GGUF parser, the way llama.cpp's
//! `common_imatrix_load` does, so a test can show that what mathneuro writes is what
//! llama-quantize reads.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use llama_cpp_sys_2 as sys;

use super::backend::init_backend;

/// Why llama.cpp's loader would refuse an imatrix file (its reasons, as data).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImatrixError {
    /// A path with an interior NUL byte or not valid UTF-8.
    #[error("{}: bad path", .0.display())]
    BadPath(PathBuf),
    /// `gguf_init_from_file` returned null.
    #[error("{}: ggml's GGUF parser rejected the file", .0.display())]
    Rejected(PathBuf),
    /// No tensors at all.
    #[error("no data in file")]
    NoData,
    /// `imatrix.chunk_count` or `imatrix.chunk_size` not u32.
    #[error("imatrix.chunk_count/chunk_size must be u32 (gguf_get_val_u32 would abort)")]
    ChunkKeyType,
    /// A weight with sums but no counts or the reverse.
    #[error("mismatched sums and counts for {0}")]
    Unpaired(String),
    /// Sums or counts not F32.
    #[error("sums and counts for {0} must be F32")]
    NotF32(String),
}

/// An importance matrix as llama.cpp's `common_imatrix_load` (common/imatrix-loader.cpp) reads
/// it: per weight, the Σx² values and the integer counts per matrix.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadedImatrix {
    /// Weight name → (sums, counts).
    pub entries: std::collections::BTreeMap<String, (Vec<f32>, Vec<i64>)>,
    /// `imatrix.datasets`.
    pub datasets: Vec<String>,
    /// `imatrix.chunk_count`.
    pub chunk_count: u32,
    /// `imatrix.chunk_size`.
    pub chunk_size: u32,
    /// All three metadata keys present.
    pub has_metadata: bool,
}

/// Reads an imatrix GGUF with ggml's own GGUF parser, following `common_imatrix_load` step by
/// step (same keys, same type checks, same `lround` of counts), so a test can show that what
/// mathneuro writes is what llama-quantize reads.
pub fn load_imatrix_as_llama_cpp(path: &Path) -> Result<LoadedImatrix, ImatrixError> {
    init_backend();
    let c_path = path.to_str().and_then(|s| CString::new(s).ok()).ok_or_else(|| ImatrixError::BadPath(path.to_path_buf()))?;
    let mut ctx: *mut sys::ggml_context = std::ptr::null_mut();
    // SAFETY: gguf_init_from_file reads the file into a new ggml context (no_alloc = false, so
    // tensor data is loaded); both contexts are freed below on every path. Every accessor is
    // called with ids it returned and with types checked first (the getters assert on type).
    unsafe {
        let params = sys::gguf_init_params { no_alloc: false, ctx: &mut ctx };
        let g = sys::gguf_init_from_file(c_path.as_ptr(), params);
        if g.is_null() {
            return Err(ImatrixError::Rejected(path.to_path_buf()));
        }
        let result = (|| {
            if sys::gguf_get_n_tensors(g) < 1 {
                return Err(ImatrixError::NoData);
            }
            let key = |k: &str| {
                let c = CString::new(k).expect("no NUL");
                sys::gguf_find_key(g, c.as_ptr())
            };
            let mut out = LoadedImatrix::default();
            let datasets_key = key("imatrix.datasets");
            let chunk_count_key = key("imatrix.chunk_count");
            let chunk_size_key = key("imatrix.chunk_size");
            if datasets_key != -1 && sys::gguf_get_kv_type(g, datasets_key) == sys::GGUF_TYPE_ARRAY && sys::gguf_get_arr_type(g, datasets_key) == sys::GGUF_TYPE_STRING {
                for i in 0..sys::gguf_get_arr_n(g, datasets_key) {
                    out.datasets.push(CStr::from_ptr(sys::gguf_get_arr_str(g, datasets_key, i)).to_string_lossy().into_owned());
                }
            }
            out.has_metadata = datasets_key != -1 && chunk_count_key != -1 && chunk_size_key != -1;
            for (k, dst) in [(chunk_count_key, &mut out.chunk_count), (chunk_size_key, &mut out.chunk_size)] {
                if k != -1 {
                    if sys::gguf_get_kv_type(g, k) != sys::GGUF_TYPE_UINT32 {
                        return Err(ImatrixError::ChunkKeyType);
                    }
                    *dst = sys::gguf_get_val_u32(g, k);
                }
            }
            let mut sums: HashMap<String, *mut sys::ggml_tensor> = HashMap::new();
            let mut counts: HashMap<String, *mut sys::ggml_tensor> = HashMap::new();
            let mut cur = sys::ggml_get_first_tensor(ctx);
            while !cur.is_null() {
                let name = CStr::from_ptr((*cur).name.as_ptr()).to_string_lossy().into_owned();
                if let Some(n) = name.strip_suffix(".in_sum2") {
                    sums.insert(n.to_string(), cur);
                } else if let Some(n) = name.strip_suffix(".counts") {
                    counts.insert(n.to_string(), cur);
                }
                cur = sys::ggml_get_next_tensor(ctx, cur);
            }
            for name in sums.keys().chain(counts.keys()) {
                let (Some(&s), Some(&c)) = (sums.get(name), counts.get(name)) else {
                    return Err(ImatrixError::Unpaired(name.clone()));
                };
                if (*s).type_ != sys::GGML_TYPE_F32 || (*c).type_ != sys::GGML_TYPE_F32 {
                    return Err(ImatrixError::NotF32(name.clone()));
                }
                let ns = sys::ggml_nelements(s) as usize;
                let nc = sys::ggml_nelements(c) as usize;
                let sv = std::slice::from_raw_parts((*s).data as *const f32, ns).to_vec();
                let cv = std::slice::from_raw_parts((*c).data as *const f32, nc).iter().map(|v| v.round() as i64).collect();
                out.entries.insert(name.clone(), (sv, cv));
            }
            Ok(out)
        })();
        sys::gguf_free(g);
        if !ctx.is_null() {
            sys::ggml_free(ctx);
        }
        result
    }
}

