//! A llama.cpp model and context driven through the raw `llama_cpp_sys_2` API, with the eval
//! callback (`cb_eval`) wrapped once, safely: the rest of the crate hands in an
//! [`ActivationSink`] and receives, for every matrix multiplication whose weight it asked for,
//! the input activations as a safe strided view ([`Activations`]), plus the expert ids of
//! mixture-of-experts multiplications ([`ExpertIds`]).
//!
//! The callback can also stop the graph after a named node (`result_norm`, the final norm): the
//! output head of a large-vocabulary model is most of the work of a forward pass and calibration
//! never needs its result. llama.cpp then copies the (unused) logits buffer as usual.
//!
//! llama.cpp's log output is filtered to errors unless `MATHNEURO_LLAMA_LOG=1` is set.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_void};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use llama_cpp_sys_2 as sys;

/// Why a llama.cpp call failed.
#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    /// The model file could not be loaded by llama.cpp.
    #[error("{}: llama.cpp could not load this model although its GGUF structure is valid (unsupported architecture or tensor layout?); run with MATHNEURO_LLAMA_LOG=1 to see why", .0.display())]
    ModelLoad(PathBuf),
    /// A path with an interior NUL byte or not valid UTF-8.
    #[error("{}: path cannot be passed to llama.cpp", .0.display())]
    BadPath(PathBuf),
    /// The context could not be created (usually: out of memory).
    #[error("llama.cpp could not create a context with n_ctx={n_ctx}, n_batch={n_batch}")]
    ContextInit {
        /// Context length asked for.
        n_ctx: u32,
        /// Micro-batch asked for.
        n_batch: u32,
    },
    /// The file is not a readable GGUF (checked before llama.cpp sees it).
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// Tokenization failed.
    #[error("llama.cpp could not tokenize a text of {0} bytes")]
    Tokenize(usize),
    /// A batch larger than the context's micro-batch, or with invalid sequence ids.
    #[error("batch of {n_tokens} tokens does not fit the micro-batch of {n_batch} (or a sequence id is out of range 0..{n_seq_max})")]
    BatchTooLarge {
        /// Tokens given.
        n_tokens: usize,
        /// The context's micro-batch.
        n_batch: usize,
        /// Sequences allowed.
        n_seq_max: usize,
    },
    /// `llama_decode` returned a non-zero status.
    #[error("llama_decode failed with status {0}")]
    Decode(i32),
    /// The eval callback met something it cannot read (reported from inside the callback).
    #[error("activation capture: {0}")]
    Capture(String),
}

/// Initializes llama.cpp once per process and installs the log filter. Harmless next to
/// `llama_cpp_2::LlamaBackend::init` (that only guards its own flag; the C init is idempotent).
pub fn init_backend() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let verbose = std::env::var_os("MATHNEURO_LLAMA_LOG").is_some_and(|v| !v.is_empty() && v != "0");
        // SAFETY: plain initialization calls; the log callback is a `'static` function that
        // ignores its user data.
        unsafe {
            sys::llama_backend_init();
            if !verbose {
                sys::llama_log_set(Some(log_errors_only), std::ptr::null_mut());
            }
        }
    });
}

unsafe extern "C" fn log_errors_only(level: sys::ggml_log_level, text: *const c_char, _user: *mut c_void) {
    if level == sys::GGML_LOG_LEVEL_ERROR && !text.is_null() {
        // SAFETY: llama.cpp passes a NUL-terminated message.
        let msg = unsafe { CStr::from_ptr(text) };
        eprint!("llama.cpp: {}", msg.to_string_lossy());
    }
}

/// A model loaded by llama.cpp (CPU). Immutable after loading, so shareable between threads.
pub struct Model {
    raw: *mut sys::llama_model,
    path: PathBuf,
}

// SAFETY: a loaded llama_model is read-only; llama.cpp supports several contexts on one model
// from different threads.
unsafe impl Send for Model {}
// SAFETY: as above.
unsafe impl Sync for Model {}

impl Model {
    /// Loads `path` (memory-mapped by llama.cpp).
    pub fn load(path: &Path) -> Result<Model, LlamaError> {
        crate::model::check_loadable(path)?;
        init_backend();
        let c_path = path.to_str().and_then(|s| CString::new(s).ok()).ok_or_else(|| LlamaError::BadPath(path.to_path_buf()))?;
        // SAFETY: default params are plain data; the path is a valid C string for the call.
        let raw = unsafe {
            let params = sys::llama_model_default_params();
            sys::llama_model_load_from_file(c_path.as_ptr(), params)
        };
        if raw.is_null() {
            return Err(LlamaError::ModelLoad(path.to_path_buf()));
        }
        Ok(Model { raw, path: path.to_path_buf() })
    }

    /// The file this model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tokenizes `text`, adding the model's BOS token when its vocabulary asks for one.
    pub fn tokenize(&self, text: &str) -> Result<Vec<i32>, LlamaError> {
        let len = i32::try_from(text.len()).map_err(|_| LlamaError::Tokenize(text.len()))?;
        // SAFETY: the vocab pointer lives as long as the model; `text` is valid for `len` bytes
        // (llama_tokenize does not need NUL termination); the output buffer holds `cap` tokens
        // and llama.cpp writes at most that many (returning the negative need otherwise).
        unsafe {
            let vocab = sys::llama_model_get_vocab(self.raw);
            let mut cap = text.len() + 8;
            loop {
                let mut out = vec![0i32; cap];
                let n = sys::llama_tokenize(vocab, text.as_ptr().cast(), len, out.as_mut_ptr(), cap as i32, true, false);
                if n >= 0 {
                    out.truncate(n as usize);
                    return Ok(out);
                }
                if n == i32::MIN || (-n) as usize <= cap {
                    return Err(LlamaError::Tokenize(text.len()));
                }
                cap = (-n) as usize;
            }
        }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: `raw` came from llama_model_load_from_file and contexts borrow the model, so
        // none outlives it.
        unsafe { sys::llama_model_free(self.raw) }
    }
}

/// A strided, read-only view of a matmul's F32 input activations: `ne[0]` values per row, rows
/// indexed by (i1, i2, i3).
pub struct Activations<'a> {
    data: &'a [f32],
    /// Values per row (the weight's input width).
    pub n_in: usize,
    /// Extents of dimensions 1..3.
    pub ne: [usize; 3],
    strides: [usize; 3],
}

impl Activations<'_> {
    /// Rows in all (`ne[0]·ne[1]·ne[2]`).
    pub fn n_rows(&self) -> usize {
        self.ne[0] * self.ne[1] * self.ne[2]
    }

    /// The row at (i1, i2, i3).
    pub fn row(&self, i1: usize, i2: usize, i3: usize) -> &[f32] {
        let start = i1 * self.strides[0] + i2 * self.strides[1] + i3 * self.strides[2];
        &self.data[start..start + self.n_in]
    }

    /// The `r`-th row counting dimension 1 fastest.
    pub fn row_flat(&self, r: usize) -> &[f32] {
        let i1 = r % self.ne[0];
        let i2 = (r / self.ne[0]) % self.ne[1];
        let i3 = r / (self.ne[0] * self.ne[1]);
        self.row(i1, i2, i3)
    }
}

/// The expert ids of a MUL_MAT_ID: `n_used` experts per token.
pub struct ExpertIds<'a> {
    data: &'a [i32],
    /// Experts used per token.
    pub n_used: usize,
    /// Tokens.
    pub n_tokens: usize,
    stride: usize,
}

impl ExpertIds<'_> {
    /// The `k`-th expert chosen for token `t`.
    pub fn get(&self, k: usize, t: usize) -> i32 {
        self.data[t * self.stride + k]
    }
}

/// Receives activations from the eval callback during one `decode`.
pub trait ActivationSink {
    /// A plain matmul of weight number `weight` (index into the context's watch list). `input`
    /// rows are tokens, in batch order. `input_id` identifies the activation tensor within this
    /// decode: several weights fed from the same tensor (q/k/v) report the same id.
    fn matmul(&mut self, weight: usize, input_id: usize, input: &Activations<'_>);
    /// A mixture-of-experts matmul: token `t`, slot `k` uses expert `ids.get(k, t)` on input row
    /// `input.row(k % input.ne[0], t, 0)`.
    fn matmul_id(&mut self, weight: usize, input: &Activations<'_>, ids: &ExpertIds<'_>);
}

/// What a context's callback watches.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    /// Weight tensor names whose matmul inputs are reported, in this order (indices are passed
    /// to the sink).
    pub weights: Vec<String>,
    /// Stop the graph after the node with this name (e.g. `result_norm`) — skips the head.
    pub stop_after: Option<String>,
}

/// Context parameters.
#[derive(Clone, Debug)]
pub struct ContextParams {
    /// KV cache cells (all sequences together).
    pub n_ctx: u32,
    /// Tokens per decode; also the micro-batch, so each decode is one graph and rows keep the
    /// batch order.
    pub n_batch: u32,
    /// Sequences that may share one decode.
    pub n_seq_max: u32,
    /// CPU threads.
    pub threads: i32,
    /// Allow flash attention. Its CPU kernel's results depend on how tokens are batched (up to
    /// 20% apart on Gemma 3 activations), so calibration turns it off.
    pub flash_attn: bool,
    /// `None`: a plain context without callback (for baselines).
    pub watch: Option<Watch>,
}

/// What one decode did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DecodeReport {
    /// Matmuls reported to the sink.
    pub captured: usize,
    /// True when the graph was stopped at `stop_after`.
    pub stopped: bool,
}

/// One token of a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchToken {
    /// Token id.
    pub token: i32,
    /// Position within its sequence.
    pub pos: i32,
    /// Sequence id.
    pub seq: i32,
    /// Compute this row's logits (an output row). Calibration marks every row so that the
    /// last layer sees all of them.
    pub output: bool,
}

struct CallbackState {
    weights: HashMap<String, usize>,
    stop_after: Option<CString>,
    /// `*mut &mut dyn ActivationSink`, set only for the duration of a decode.
    sink: *mut c_void,
    scratch: Vec<f32>,
    scratch_ids: Vec<i32>,
    input_ids: HashMap<usize, usize>,
    report: DecodeReport,
    error: Option<String>,
}

/// A llama.cpp context on a [`Model`], optionally with the activation callback.
pub struct Context<'m> {
    raw: *mut sys::llama_context,
    batch: sys::llama_batch,
    state: *mut CallbackState,
    n_batch: usize,
    n_seq_max: usize,
    _model: &'m Model,
}

// SAFETY: the context is used from one thread at a time (`&mut self` for every call).
unsafe impl Send for Context<'_> {}

impl<'m> Context<'m> {
    /// Creates a context.
    pub fn new(model: &'m Model, p: &ContextParams) -> Result<Context<'m>, LlamaError> {
        let state = p.watch.as_ref().map(|w| {
            Box::into_raw(Box::new(CallbackState {
                weights: w.weights.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect(),
                stop_after: w.stop_after.as_ref().and_then(|s| CString::new(s.as_str()).ok()),
                sink: std::ptr::null_mut(),
                scratch: Vec::new(),
                scratch_ids: Vec::new(),
                input_ids: HashMap::new(),
                report: DecodeReport::default(),
                error: None,
            }))
        });
        let state = state.unwrap_or(std::ptr::null_mut());
        // SAFETY: plain-data params; `state` (when non-null) stays valid until Drop, after the
        // context that calls back into it is freed.
        let (raw, batch) = unsafe {
            let mut cp = sys::llama_context_default_params();
            cp.n_ctx = p.n_ctx;
            cp.n_batch = p.n_batch;
            cp.n_ubatch = p.n_batch;
            cp.n_seq_max = p.n_seq_max;
            cp.n_threads = p.threads;
            cp.n_threads_batch = p.threads;
            cp.kv_unified = true;
            cp.no_perf = true;
            if std::env::var_os("DBG_F32KV").is_some() { cp.type_k = sys::GGML_TYPE_F32; cp.type_v = sys::GGML_TYPE_F32; }
            if !p.flash_attn {
                cp.flash_attn_type = sys::LLAMA_FLASH_ATTN_TYPE_DISABLED;
            }
            if !state.is_null() {
                cp.cb_eval = Some(eval_callback);
                cp.cb_eval_user_data = state.cast();
            }
            let raw = sys::llama_init_from_model(model.raw, cp);
            (raw, sys::llama_batch_init(p.n_batch as i32, 0, 1))
        };
        if raw.is_null() {
            if !state.is_null() {
                // SAFETY: allocated above by Box::into_raw and not shared.
                drop(unsafe { Box::from_raw(state) });
            }
            // SAFETY: allocated by llama_batch_init above.
            unsafe { sys::llama_batch_free(batch) };
            return Err(LlamaError::ContextInit { n_ctx: p.n_ctx, n_batch: p.n_batch });
        }
        Ok(Context { raw, batch, state, n_batch: p.n_batch as usize, n_seq_max: p.n_seq_max as usize, _model: model })
    }

    /// Tokens per decode.
    pub fn n_batch(&self) -> usize {
        self.n_batch
    }

    /// Forgets all sequences.
    pub fn clear(&mut self) {
        // SAFETY: valid context; the memory handle belongs to it.
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.raw), true) }
    }

    /// Forgets sequence `seq`.
    pub fn clear_seq(&mut self, seq: i32) {
        // SAFETY: valid context; removing a range of a (possibly empty) sequence is always allowed.
        unsafe {
            sys::llama_memory_seq_rm(sys::llama_get_memory(self.raw), seq, -1, -1);
        }
    }

    /// Runs one forward pass over `tokens`, reporting watched matmul
    /// inputs to `sink`.
    pub fn decode(&mut self, tokens: &[BatchToken], sink: Option<&mut dyn ActivationSink>) -> Result<DecodeReport, LlamaError> {
        if tokens.is_empty() {
            return Ok(DecodeReport::default());
        }
        if tokens.len() > self.n_batch || tokens.iter().any(|t| t.seq < 0 || t.seq as usize >= self.n_seq_max) {
            return Err(LlamaError::BatchTooLarge { n_tokens: tokens.len(), n_batch: self.n_batch, n_seq_max: self.n_seq_max });
        }
        // SAFETY: the batch arrays were allocated by llama_batch_init for n_batch tokens with one
        // sequence id each, and tokens.len() <= n_batch.
        unsafe {
            for (i, t) in tokens.iter().enumerate() {
                *self.batch.token.add(i) = t.token;
                *self.batch.pos.add(i) = t.pos;
                *self.batch.n_seq_id.add(i) = 1;
                **self.batch.seq_id.add(i) = t.seq;
                *self.batch.logits.add(i) = i8::from(t.output);
            }
        }
        self.batch.n_tokens = tokens.len() as i32;
        let mut fat: Option<&mut dyn ActivationSink> = sink;
        if !self.state.is_null() {
            // SAFETY: the state is only touched by the callback during llama_decode below, on
            // this thread's call; we reset it before any other use.
            let st = unsafe { &mut *self.state };
            st.report = DecodeReport::default();
            st.error = None;
            st.input_ids.clear();
            st.sink = match fat.as_mut() {
                Some(s) => (s as *mut &mut dyn ActivationSink).cast(),
                None => std::ptr::null_mut(),
            };
        }
        // SAFETY: valid context and a batch filled above; the callback state (if any) points to
        // `fat`, which lives until after the call.
        let rc = unsafe { sys::llama_decode(self.raw, self.batch) };
        let (report, error) = if self.state.is_null() {
            (DecodeReport::default(), None)
        } else {
            // SAFETY: the decode has returned; nothing else references the state now.
            let st = unsafe { &mut *self.state };
            st.sink = std::ptr::null_mut();
            (st.report, st.error.take())
        };
        if let Some(e) = error {
            return Err(LlamaError::Capture(e));
        }
        if rc != 0 {
            return Err(LlamaError::Decode(rc));
        }
        Ok(report)
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        // SAFETY: all three were created in `new`; the context is freed before the state its
        // callback points to.
        unsafe {
            sys::llama_free(self.raw);
            sys::llama_batch_free(self.batch);
            if !self.state.is_null() {
                drop(Box::from_raw(self.state));
            }
        }
    }
}

/// The tensor's name.
///
/// SAFETY (caller): `t` points to a live ggml tensor.
unsafe fn tensor_name<'a>(t: *const sys::ggml_tensor) -> &'a [u8] {
    // SAFETY: ggml names are NUL-terminated within the fixed-size array.
    unsafe { CStr::from_ptr((*t).name.as_ptr()).to_bytes() }
}

/// The index of the watched weight that `t` multiplies, if any.
fn watched_weight(st: &CallbackState, t: &sys::ggml_tensor) -> Option<usize> {
    if t.op != sys::GGML_OP_MUL_MAT && t.op != sys::GGML_OP_MUL_MAT_ID {
        return None;
    }
    let w = t.src[0];
    if w.is_null() {
        return None;
    }
    // SAFETY: src[0] of a graph node is a live tensor while the graph runs.
    let name = unsafe { tensor_name(w) };
    std::str::from_utf8(name).ok().and_then(|n| st.weights.get(n).copied())
}

fn is_stop_node(st: &CallbackState, t: &sys::ggml_tensor) -> bool {
    // SAFETY: `t` is a live node.
    st.stop_after.as_ref().is_some_and(|s| unsafe { tensor_name(t) } == s.as_bytes())
}

/// Bytes spanned by `t` (ggml_nbytes).
fn span_bytes(t: *const sys::ggml_tensor) -> usize {
    // SAFETY: `t` is a live tensor.
    unsafe { sys::ggml_nbytes(t) }
}

/// Makes `t`'s data readable as `&[T]`: directly when it lives in host memory, else copied into
/// `scratch` with ggml_backend_tensor_get.
///
/// SAFETY (caller): `t` is a live, computed tensor whose element type has the size of `T`.
unsafe fn tensor_slice<T: Copy + Default>(t: *const sys::ggml_tensor, scratch: &mut Vec<T>) -> &[T] {
    let n_bytes = span_bytes(t);
    let n = n_bytes / std::mem::size_of::<T>();
    // SAFETY: per the caller's contract; host buffers are directly addressable for n_bytes, and
    // the copy writes exactly n_bytes into a buffer of at least that size.
    unsafe {
        let buf = (*t).buffer;
        if !(*t).data.is_null() && (buf.is_null() || sys::ggml_backend_buffer_is_host(buf)) {
            std::slice::from_raw_parts((*t).data as *const T, n)
        } else {
            scratch.clear();
            scratch.resize(n, T::default());
            sys::ggml_backend_tensor_get(t, scratch.as_mut_ptr().cast(), 0, n * std::mem::size_of::<T>());
            &scratch[..]
        }
    }
}

fn strides_in<T>(t: &sys::ggml_tensor) -> Option<[usize; 3]> {
    let sz = std::mem::size_of::<T>();
    if t.nb[0] != sz || t.nb[1..].iter().any(|b| b % sz != 0) {
        return None;
    }
    Some([t.nb[1] / sz, t.nb[2] / sz, t.nb[3] / sz])
}

/// Reports the input of watched node `t` (weight `wi`) to the sink.
///
/// SAFETY (caller): `t` is a live, computed MUL_MAT/MUL_MAT_ID node, `st.sink` is null or valid.
unsafe fn deliver(st: &mut CallbackState, t: &sys::ggml_tensor, wi: usize) -> Result<(), String> {
    let x = t.src[1];
    // SAFETY: src[1] of a matmul is a live tensor, computed before this node.
    let xr = unsafe { &*x };
    if xr.type_ != sys::GGML_TYPE_F32 {
        return Err(format!("input of weight #{wi} has ggml type {} (F32 expected)", xr.type_));
    }
    let strides = strides_in::<f32>(xr).ok_or_else(|| format!("input of weight #{wi} is not row-contiguous"))?;
    let ne = [xr.ne[1] as usize, xr.ne[2] as usize, xr.ne[3] as usize];
    let n_in = xr.ne[0] as usize;
    let next_id = st.input_ids.len();
    let input_id = *st.input_ids.entry(x as usize).or_insert(next_id);
    st.report.captured += 1;
    if st.sink.is_null() {
        return Ok(());
    }
    // SAFETY: `sink` points to the `&mut dyn ActivationSink` living in `decode`.
    let sink: &mut dyn ActivationSink = unsafe { &mut **(st.sink as *mut &mut dyn ActivationSink) };
    // SAFETY: x is F32 (checked), computed, live.
    let data = unsafe { tensor_slice::<f32>(x, &mut st.scratch) };
    let last = (ne[0] - 1) * strides[0] + (ne[1] - 1) * strides[1] + (ne[2] - 1) * strides[2] + n_in;
    if ne.contains(&0) || last > data.len() {
        return Ok(());
    }
    let acts = Activations { data, n_in, ne, strides };
    if t.op == sys::GGML_OP_MUL_MAT {
        sink.matmul(wi, input_id, &acts);
        return Ok(());
    }
    let ids = t.src[2];
    if ids.is_null() {
        return Err(format!("MUL_MAT_ID of weight #{wi} has no ids"));
    }
    // SAFETY: src[2] of MUL_MAT_ID is the live, computed I32 ids tensor.
    let idr = unsafe { &*ids };
    if idr.type_ != sys::GGML_TYPE_I32 {
        return Err(format!("expert ids of weight #{wi} have ggml type {}", idr.type_));
    }
    let id_strides = strides_in::<i32>(idr).ok_or_else(|| format!("expert ids of weight #{wi} are not contiguous"))?;
    // SAFETY: I32 tensor, size of i32.
    let id_data = unsafe { tensor_slice::<i32>(ids, &mut st.scratch_ids) };
    let expert_ids = ExpertIds { data: id_data, n_used: idr.ne[0] as usize, n_tokens: idr.ne[1] as usize, stride: id_strides[0] };
    if expert_ids.n_tokens == 0 || (expert_ids.n_tokens - 1) * expert_ids.stride + expert_ids.n_used > id_data.len() {
        return Err(format!("expert ids of weight #{wi} are shorter than their shape"));
    }
    sink.matmul_id(wi, &acts, &expert_ids);
    Ok(())
}

unsafe extern "C" fn eval_callback(t: *mut sys::ggml_tensor, ask: bool, user_data: *mut c_void) -> bool {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: user_data is the CallbackState installed in `Context::new`, alive while the
        // context is; `t` is a live graph node.
        let (st, t) = unsafe { (&mut *(user_data as *mut CallbackState), &*t) };
        if st.error.is_some() {
            return false;
        }
        let weight = watched_weight(st, t);
        if ask {
            if let Some(wi) = weight {
                // An input already delivered (k and v after q, up after gate) was computed in an
                // earlier range and stays allocated until its last consumer — this node — has
                // run: read it now and spare the graph a synchronization point.
                if t.op == sys::GGML_OP_MUL_MAT && st.input_ids.contains_key(&(t.src[1] as usize)) {
                    // SAFETY: as above, src[1] has been computed and is still live.
                    if let Err(e) = unsafe { deliver(st, t, wi) } {
                        st.error = Some(e);
                    }
                    return false;
                }
                return true;
            }
            return is_stop_node(st, t);
        }
        if let Some(wi) = weight {
            // SAFETY: data phase: `t` has been computed.
            if let Err(e) = unsafe { deliver(st, t, wi) } {
                st.error = Some(e);
                return false;
            }
        }
        if is_stop_node(st, t) {
            st.report.stopped = true;
            return false;
        }
        true
    }));
    match outcome {
        Ok(v) => v,
        Err(_) => {
            // SAFETY: as above; a panic inside the sink must not unwind into C.
            let st = unsafe { &mut *(user_data as *mut CallbackState) };
            st.error = Some("panic inside the activation sink".to_string());
            false
        }
    }
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
/// mathneuro writes is what llama-quantize reads. Errors carry llama.cpp's reason.
pub fn load_imatrix_as_llama_cpp(path: &Path) -> Result<LoadedImatrix, String> {
    init_backend();
    let c_path = path.to_str().and_then(|s| CString::new(s).ok()).ok_or_else(|| format!("{}: bad path", path.display()))?;
    let mut ctx: *mut sys::ggml_context = std::ptr::null_mut();
    // SAFETY: gguf_init_from_file reads the file into a new ggml context (no_alloc = false, so
    // tensor data is loaded); both contexts are freed below on every path. Every accessor is
    // called with ids it returned and with types checked first (the getters assert on type).
    unsafe {
        let params = sys::gguf_init_params { no_alloc: false, ctx: &mut ctx };
        let g = sys::gguf_init_from_file(c_path.as_ptr(), params);
        if g.is_null() {
            return Err(format!("{}: ggml's GGUF parser rejected the file", path.display()));
        }
        let result = (|| {
            if sys::gguf_get_n_tensors(g) < 1 {
                return Err("no data in file".to_string());
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
                        return Err("imatrix.chunk_count/chunk_size must be u32 (gguf_get_val_u32 would abort)".to_string());
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
                    return Err(format!("mismatched sums and counts for {name}"));
                };
                if (*s).type_ != sys::GGML_TYPE_F32 || (*c).type_ != sys::GGML_TYPE_F32 {
                    return Err(format!("sums and counts for {name} must be F32"));
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

