//! The eval callback (`cb_eval`) wrapped once, safely: a context created with a [`Watch`] hands
//! every matmul whose weight it watches to an [`ActivationSink`], the input activations as a
//! safe strided view ([`Activations`]), plus the expert ids of mixture-of-experts
//! multiplications ([`ExpertIds`]).
//!
//! The callback can also stop the graph after a named node (`result_norm`, the final norm): the
//! output head of a large-vocabulary model is most of the work of a forward pass and calibration
//! never needs its result. llama.cpp then copies the (unused) logits buffer as usual.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_void};

use llama_cpp_sys_2 as sys;

use super::context::DecodeReport;

/// What the callback could not read (the decode then fails with it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// A watched matmul's input is not F32.
    #[error("input of weight #{weight} has ggml type {ggml_type} (F32 expected)")]
    InputNotF32 {
        /// Index of the weight in the watch list.
        weight: usize,
        /// The input's ggml type id.
        ggml_type: u32,
    },
    /// A watched matmul's input rows are not contiguous.
    #[error("input of weight #{weight} is not row-contiguous")]
    InputNotContiguous {
        /// Index of the weight in the watch list.
        weight: usize,
    },
    /// A MUL_MAT_ID without its ids tensor.
    #[error("MUL_MAT_ID of weight #{weight} has no ids")]
    NoExpertIds {
        /// Index of the weight in the watch list.
        weight: usize,
    },
    /// Expert ids that are not I32.
    #[error("expert ids of weight #{weight} have ggml type {ggml_type}")]
    ExpertIdsNotI32 {
        /// Index of the weight in the watch list.
        weight: usize,
        /// The ids' ggml type id.
        ggml_type: u32,
    },
    /// Expert ids that are not contiguous.
    #[error("expert ids of weight #{weight} are not contiguous")]
    ExpertIdsNotContiguous {
        /// Index of the weight in the watch list.
        weight: usize,
    },
    /// Expert ids shorter than their shape says.
    #[error("expert ids of weight #{weight} are shorter than their shape")]
    ExpertIdsShort {
        /// Index of the weight in the watch list.
        weight: usize,
    },
    /// The sink panicked (caught: unwinding into C would abort).
    #[error("panic inside the activation sink")]
    SinkPanicked,
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

impl<'a> Activations<'a> {
    /// A contiguous view: `data` holds rows of `n_in` values one after another (how tests hand
    /// a known activation matrix to a sink).
    pub fn contiguous(data: &'a [f32], n_in: usize) -> Activations<'a> {
        let rows = data.len() / n_in.max(1);
        Activations { data, n_in, ne: [rows, 1, 1], strides: [n_in, rows * n_in, rows * n_in] }
    }

    /// A contiguous 3-D view: rows of `n_in` values indexed by (i1, i2, i3) with i1 fastest — the
    /// shape of a MUL_MAT_ID input (`ne = [slots, tokens, 1]`), for tests of a sink.
    pub fn contiguous_3d(data: &'a [f32], n_in: usize, ne: [usize; 3]) -> Activations<'a> {
        Activations { data, n_in, ne, strides: [n_in, n_in * ne[0], n_in * ne[0] * ne[1]] }
    }

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

impl<'a> ExpertIds<'a> {
    /// Contiguous ids: `n_used` per token, tokens one after another (for tests of a sink).
    pub fn contiguous(data: &'a [i32], n_used: usize) -> ExpertIds<'a> {
        ExpertIds { data, n_used, n_tokens: data.len() / n_used.max(1), stride: n_used }
    }

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

/// What the callback works with, owned (boxed) by the context that installed it.
pub(super) struct CallbackState {
    weights: HashMap<String, usize>,
    stop_after: Option<CString>,
    /// `*mut &mut dyn ActivationSink`, set only for the duration of a decode.
    sink: *mut c_void,
    scratch: Vec<f32>,
    scratch_ids: Vec<i32>,
    input_ids: HashMap<usize, usize>,
    report: DecodeReport,
    error: Option<CaptureError>,
}

impl CallbackState {
    /// The state for a context watching `watch`.
    pub(super) fn new(watch: &Watch) -> CallbackState {
        CallbackState {
            weights: watch.weights.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect(),
            stop_after: watch.stop_after.as_ref().and_then(|s| CString::new(s.as_str()).ok()),
            sink: std::ptr::null_mut(),
            scratch: Vec::new(),
            scratch_ids: Vec::new(),
            input_ids: HashMap::new(),
            report: DecodeReport::default(),
            error: None,
        }
    }

    /// Prepares for one decode reporting to `sink` (a `*mut &mut dyn ActivationSink`, or null
    /// to count only).
    pub(super) fn begin(&mut self, sink: *mut c_void) {
        self.report = DecodeReport::default();
        self.error = None;
        self.input_ids.clear();
        self.sink = sink;
    }

    /// Ends a decode: what the callback reported and the first error it met.
    pub(super) fn end(&mut self) -> (DecodeReport, Option<CaptureError>) {
        self.sink = std::ptr::null_mut();
        (self.report, self.error.take())
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
unsafe fn deliver(st: &mut CallbackState, t: &sys::ggml_tensor, wi: usize) -> Result<(), CaptureError> {
    let x = t.src[1];
    // SAFETY: src[1] of a matmul is a live tensor, computed before this node.
    let xr = unsafe { &*x };
    if xr.type_ != sys::GGML_TYPE_F32 {
        return Err(CaptureError::InputNotF32 { weight: wi, ggml_type: xr.type_ });
    }
    let strides = strides_in::<f32>(xr).ok_or(CaptureError::InputNotContiguous { weight: wi })?;
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
        return Err(CaptureError::NoExpertIds { weight: wi });
    }
    // SAFETY: src[2] of MUL_MAT_ID is the live, computed I32 ids tensor.
    let idr = unsafe { &*ids };
    if idr.type_ != sys::GGML_TYPE_I32 {
        return Err(CaptureError::ExpertIdsNotI32 { weight: wi, ggml_type: idr.type_ });
    }
    let id_strides = strides_in::<i32>(idr).ok_or(CaptureError::ExpertIdsNotContiguous { weight: wi })?;
    // SAFETY: I32 tensor, size of i32.
    let id_data = unsafe { tensor_slice::<i32>(ids, &mut st.scratch_ids) };
    let expert_ids = ExpertIds { data: id_data, n_used: idr.ne[0] as usize, n_tokens: idr.ne[1] as usize, stride: id_strides[0] };
    if expert_ids.n_tokens == 0 || (expert_ids.n_tokens - 1) * expert_ids.stride + expert_ids.n_used > id_data.len() {
        return Err(CaptureError::ExpertIdsShort { weight: wi });
    }
    sink.matmul_id(wi, &acts, &expert_ids);
    Ok(())
}

/// The `cb_eval` trampoline: `user_data` is the context's [`CallbackState`].
pub(super) unsafe extern "C" fn eval_callback(t: *mut sys::ggml_tensor, ask: bool, user_data: *mut c_void) -> bool {
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
            st.error = Some(CaptureError::SinkPanicked);
            false
        }
    }
}

