//! llama.cpp model and context with the eval callback used for calibration (TODO: ffi helper).
