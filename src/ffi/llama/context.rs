//! [`Context`]: a llama.cpp context on a [`Model`] — decodes of a [`Batch`], the logits of its
//! output rows, and the KV-cache operations on sequences — optionally with the activation
//! callback of `capture`.

use std::ffi::c_void;
use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use super::batch::Batch;
use super::capture::{ActivationSink, CallbackState, Watch, eval_callback};
use super::error::{DecodeStatus, LlamaError};
use super::model::Model;

/// Whether the context may use flash attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashAttention {
    /// Always (evaluation: its numbers are batch-invariant below 64 rows, see
    /// `eval::batch::MAX_UBATCH`).
    Enabled,
    /// Never (calibration: the CPU kernel's results depend on how tokens are batched, up to
    /// 20% apart on Gemma 3 activations).
    Disabled,
}

impl FlashAttention {
    /// The `llama_flash_attn_type` value (llama.h).
    fn to_raw(self) -> sys::llama_flash_attn_type {
        match self {
            FlashAttention::Enabled => sys::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            FlashAttention::Disabled => sys::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        }
    }
}

/// Context parameters.
#[derive(Clone, Debug)]
pub struct ContextParams {
    /// KV cache cells (all sequences together, one unified cache); 0: the model's own length.
    pub n_ctx: u32,
    /// Tokens per decode; also the micro-batch, so each decode is one graph and rows keep the
    /// batch order.
    pub n_batch: u32,
    /// Sequences that may share one decode.
    pub n_seq_max: u32,
    /// CPU threads.
    pub threads: i32,
    /// Flash attention on or off.
    pub flash_attn: FlashAttention,
    /// `None`: a plain context without callback.
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

/// A llama.cpp context on a [`Model`], optionally with the activation callback.
pub struct Context<'m> {
    raw: NonNull<sys::llama_context>,
    /// The callback's state; null without a watch. Boxed so its address stays fixed for C.
    state: *mut CallbackState,
    n_batch: usize,
    n_seq_max: usize,
    model: &'m Model,
}

// SAFETY: the context is used from one thread at a time (`&mut self` for every call).
unsafe impl Send for Context<'_> {}

impl<'m> Context<'m> {
    /// Creates a context.
    pub fn new(model: &'m Model, p: &ContextParams) -> Result<Context<'m>, LlamaError> {
        let state = p.watch.as_ref().map_or(std::ptr::null_mut(), |w| Box::into_raw(Box::new(CallbackState::new(w))));
        // SAFETY: plain-data params; `state` (when non-null) stays valid until Drop, after the
        // context that calls back into it is freed.
        let raw = unsafe {
            let mut cp = sys::llama_context_default_params();
            cp.n_ctx = p.n_ctx;
            cp.n_batch = p.n_batch;
            cp.n_ubatch = p.n_batch;
            cp.n_seq_max = p.n_seq_max;
            cp.n_threads = p.threads;
            cp.n_threads_batch = p.threads;
            cp.kv_unified = true;
            cp.no_perf = true;
            cp.flash_attn_type = p.flash_attn.to_raw();
            if !state.is_null() {
                cp.cb_eval = Some(eval_callback);
                cp.cb_eval_user_data = state.cast();
            }
            sys::llama_init_from_model(model.raw(), cp)
        };
        let Some(raw) = NonNull::new(raw) else {
            if !state.is_null() {
                // SAFETY: allocated above by Box::into_raw and not shared.
                drop(unsafe { Box::from_raw(state) });
            }
            return Err(LlamaError::ContextInit { n_ctx: p.n_ctx, n_batch: p.n_batch, n_seq_max: p.n_seq_max });
        };
        Ok(Context { raw, state, n_batch: p.n_batch as usize, n_seq_max: p.n_seq_max as usize, model })
    }

    /// The model this context runs.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Tokens per decode.
    pub fn n_batch(&self) -> usize {
        self.n_batch
    }

    /// KV-cache cells (the context length llama.cpp settled on).
    pub fn n_ctx(&self) -> usize {
        // SAFETY: valid context.
        unsafe { sys::llama_n_ctx(self.raw.as_ptr()) as usize }
    }

    fn memory(&self) -> sys::llama_memory_t {
        // SAFETY: valid context; the memory handle belongs to it.
        unsafe { sys::llama_get_memory(self.raw.as_ptr()) }
    }

    /// Forgets all sequences (metadata and data).
    pub fn clear(&mut self) {
        // SAFETY: the context's own memory handle.
        unsafe { sys::llama_memory_clear(self.memory(), true) }
    }

    /// Forgets sequence `seq`.
    pub fn clear_seq(&mut self, seq: i32) {
        // SAFETY: the context's own memory handle; removing a whole (possibly empty) sequence
        // always succeeds, so the returned flag says nothing.
        unsafe {
            sys::llama_memory_seq_rm(self.memory(), seq, -1, -1);
        }
    }

    /// Makes positions `0..len` of sequence `src` part of sequence `dst` too (a metadata-only
    /// copy in the unified cache).
    pub fn copy_seq(&mut self, src: i32, dst: i32, len: i32) {
        // SAFETY: the context's own memory handle.
        unsafe { sys::llama_memory_seq_cp(self.memory(), src, dst, 0, len) }
    }

    /// Runs one forward pass over `batch`, reporting watched matmul inputs to `sink`.
    pub fn decode(&mut self, batch: &Batch, sink: Option<&mut dyn ActivationSink>) -> Result<DecodeReport, LlamaError> {
        if batch.is_empty() {
            return Ok(DecodeReport::default());
        }
        if batch.len() > self.n_batch || batch.seq_ids().any(|s| s < 0 || s as usize >= self.n_seq_max) {
            return Err(LlamaError::BatchTooLarge { n_tokens: batch.len(), n_batch: self.n_batch, n_seq_max: self.n_seq_max });
        }
        let mut fat: Option<&mut dyn ActivationSink> = sink;
        if !self.state.is_null() {
            let sink_ptr: *mut c_void = match fat.as_mut() {
                Some(s) => (s as *mut &mut dyn ActivationSink).cast(),
                None => std::ptr::null_mut(),
            };
            // SAFETY: the state is only touched by the callback during llama_decode below, on
            // this thread's call.
            unsafe { &mut *self.state }.begin(sink_ptr);
        }
        // SAFETY: valid context and a batch filled by `Batch::push`; the callback state (if
        // any) points to `fat`, which lives until after the call.
        let rc = unsafe { sys::llama_decode(self.raw.as_ptr(), batch.raw()) };
        let (report, error) = if self.state.is_null() {
            (DecodeReport::default(), None)
        } else {
            // SAFETY: the decode has returned; nothing else references the state now.
            unsafe { &mut *self.state }.end()
        };
        if let Some(e) = error {
            return Err(LlamaError::Capture(e));
        }
        if let Some(status) = DecodeStatus::from_i32(rc) {
            return Err(LlamaError::Decode { tokens: batch.len(), status });
        }
        Ok(report)
    }

    /// The logits of row `row` of the last decode (an output row): `n_vocab` floats.
    pub fn logits(&self, row: usize) -> Result<&[f32], LlamaError> {
        let i = i32::try_from(row).map_err(|_| LlamaError::NoLogits(row))?;
        // SAFETY: valid context; llama.cpp returns null for a row without logits.
        let data = unsafe { sys::llama_get_logits_ith(self.raw.as_ptr(), i) };
        if data.is_null() {
            return Err(LlamaError::NoLogits(row));
        }
        // SAFETY: a non-null logits row holds n_vocab floats, valid until the next decode,
        // which needs `&mut self`.
        Ok(unsafe { std::slice::from_raw_parts(data, self.model.n_vocab()) })
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        // SAFETY: both were created in `new`; the context is freed before the state its
        // callback points to.
        unsafe {
            sys::llama_free(self.raw.as_ptr());
            if !self.state.is_null() {
                drop(Box::from_raw(self.state));
            }
        }
    }
}
