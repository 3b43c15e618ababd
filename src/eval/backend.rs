//! The process-wide llama.cpp backend. llama.cpp may be initialised once per process only, yet
//! `mathneuro run` evaluates two models (and calibrates) in one process, so every stage takes the
//! backend from here. llama.cpp's own logging is silenced so it does not flood stderr.

use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::{LlamaCppError, LogOptions, send_logs_to_tracing};

static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();

/// The llama.cpp backend, initialised (with logging silenced) on first use.
///
/// When something else in the process already initialised llama.cpp through
/// `LlamaBackend::init`, the backend is reused: `LlamaBackend` is only a proof of initialisation,
/// and the one kept here lives in a static, so it is never dropped (which would free llama.cpp).
pub fn shared_backend() -> Result<&'static LlamaBackend, LlamaCppError> {
    if let Some(backend) = BACKEND.get() {
        return Ok(backend);
    }
    send_logs_to_tracing(LogOptions::default().with_logs_enabled(false));
    let backend = match LlamaBackend::init() {
        Ok(backend) => backend,
        Err(LlamaCppError::BackendAlreadyInitialized) => LlamaBackend {},
        Err(other) => return Err(other),
    };
    // A concurrent first caller may have won the race; its value is equivalent, and a losing
    // value must not be dropped (its Drop would free the backend), hence `forget`.
    if let Err(lost) = BACKEND.set(backend) {
        std::mem::forget(lost);
    }
    Ok(BACKEND.get().expect("backend was just set"))
}
