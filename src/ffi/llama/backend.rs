//! The one-time, process-wide llama.cpp initialisation. Every model load goes through here, so
//! the calibration and evaluation stages of one process (`mathneuro run`) share one backend.

use std::ffi::{CStr, c_char, c_void};
use std::sync::OnceLock;

use llama_cpp_sys_2 as sys;

/// Initializes llama.cpp once per process and installs the log filter (errors only, unless
/// `MATHNEURO_LLAMA_LOG` is set to something other than `0`).
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
