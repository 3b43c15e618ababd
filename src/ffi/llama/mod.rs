//! llama.cpp through the raw `llama_cpp_sys_2` API: the crate's one door to llama.cpp. Every
//! stage that runs a model (calibration, evaluation, tuning) uses these types and nothing else.
//!
//! - `backend`: the one-time process-wide initialisation and the log filter.
//! - `model`: [`Model`], a loaded model with its vocabulary (tokenize, pieces, special tokens).
//! - `batch`: [`Batch`], the tokens of one decode, and the row-padding rule ([`ROW_MULTIPLE`]).
//! - `context`: [`Context`], a context on a model (decode, logits, KV-cache sequences).
//! - `capture`: the eval callback (`cb_eval`) wrapped safely: watched matmul inputs are
//!   reported to an [`ActivationSink`] as strided views.
//! - `imatrix`: reading an imatrix GGUF the way llama.cpp's own loader does (for tests).
//!
//! llama.cpp's log output is filtered to errors unless `MATHNEURO_LLAMA_LOG=1` is set.

mod backend;
mod batch;
mod capture;
mod context;
mod error;
mod imatrix;
mod model;

pub use backend::init_backend;
pub use batch::{Batch, ROW_MULTIPLE, round_up_rows};
pub use capture::{ActivationSink, Activations, CaptureError, ExpertIds, Watch};
pub use context::{Context, ContextParams, DecodeReport, FlashAttention};
pub use error::{DecodeStatus, LlamaError};
pub use imatrix::{ImatrixError, LoadedImatrix, load_imatrix_as_llama_cpp};
pub use model::{Model, Token};
