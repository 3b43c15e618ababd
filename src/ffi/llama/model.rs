//! [`Model`]: a GGUF model loaded by llama.cpp (CPU only, memory-mapped), with its vocabulary:
//! tokenization, token pieces and the special tokens generation needs.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use super::backend::init_backend;
use super::error::LlamaError;

/// A token id of the model's vocabulary.
pub type Token = i32;

/// A model loaded by llama.cpp (CPU). Immutable after loading, so shareable between threads.
pub struct Model {
    raw: NonNull<sys::llama_model>,
    vocab: *const sys::llama_vocab,
    path: PathBuf,
}

// SAFETY: a loaded llama_model (and its vocabulary) is read-only; llama.cpp supports several
// contexts on one model from different threads.
unsafe impl Send for Model {}
// SAFETY: as above.
unsafe impl Sync for Model {}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("path", &self.path).finish()
    }
}

impl Model {
    /// Loads `path` (memory-mapped by llama.cpp), after the validating GGUF reader has read it
    /// (llama.cpp reports a bad file only as a null model).
    pub fn load(path: &Path) -> Result<Model, LlamaError> {
        crate::model::check_loadable(path)?;
        init_backend();
        let c_path = path.to_str().and_then(|s| CString::new(s).ok()).ok_or_else(|| LlamaError::BadPath(path.to_path_buf()))?;
        // SAFETY: default params are plain data; the path is a valid C string for the call.
        let raw = unsafe {
            let mut params = sys::llama_model_default_params();
            // CPU only (this build has no GPU backend, so nothing would be offloaded anyway).
            params.n_gpu_layers = 0;
            sys::llama_model_load_from_file(c_path.as_ptr(), params)
        };
        let raw = NonNull::new(raw).ok_or_else(|| LlamaError::ModelLoad { path: path.to_path_buf(), arch: architecture_of(path) })?;
        // SAFETY: a loaded model; its vocabulary lives as long as the model.
        let vocab = unsafe { sys::llama_model_get_vocab(raw.as_ptr()) };
        Ok(Model { raw, vocab, path: path.to_path_buf() })
    }

    /// The file this model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw model, for contexts created on it.
    pub(super) fn raw(&self) -> *mut sys::llama_model {
        self.raw.as_ptr()
    }

    /// Vocabulary size (the length of a logit row).
    pub fn n_vocab(&self) -> usize {
        // SAFETY: the vocabulary lives as long as the model.
        unsafe { sys::llama_vocab_n_tokens(self.vocab) as usize }
    }

    /// Tokenizes `text`; `bos` adds the model's start token when its vocabulary asks for one.
    /// Special-token markup in `text` stays text.
    pub fn tokenize(&self, text: &str, bos: bool) -> Result<Vec<Token>, LlamaError> {
        self.tokenize_raw(text, bos, false)
    }

    /// `tokenize`, reading special-token markup (`<|im_start|>` …) as those tokens: for
    /// chat-templated texts (`--chat`).
    pub fn tokenize_special(&self, text: &str, bos: bool) -> Result<Vec<Token>, LlamaError> {
        self.tokenize_raw(text, bos, true)
    }

    fn tokenize_raw(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<Token>, LlamaError> {
        let len = i32::try_from(text.len()).map_err(|_| LlamaError::Tokenize(text.len()))?;
        let mut cap = text.len() + 8;
        loop {
            let mut out = vec![0; cap];
            let cap_i32 = i32::try_from(cap).map_err(|_| LlamaError::Tokenize(text.len()))?;
            // SAFETY: the vocabulary lives as long as the model; `text` is valid for `len` bytes
            // (llama_tokenize does not need NUL termination); the output buffer holds `cap`
            // tokens and llama.cpp writes at most that many (returning the negative need
            // otherwise).
            let n = unsafe { sys::llama_tokenize(self.vocab, text.as_ptr().cast(), len, out.as_mut_ptr(), cap_i32, add_special, parse_special) };
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

    fn check_token(&self, token: Token) -> Result<(), LlamaError> {
        let n_vocab = self.n_vocab();
        if token < 0 || token as usize >= n_vocab {
            return Err(LlamaError::BadToken { token, n_vocab });
        }
        Ok(())
    }

    /// The bytes one token stands for (special tokens render as nothing).
    pub fn token_bytes(&self, token: Token) -> Result<Vec<u8>, LlamaError> {
        self.check_token(token)?;
        let mut buf = vec![0u8; 16];
        loop {
            let cap = i32::try_from(buf.len()).unwrap_or(i32::MAX);
            // SAFETY: a token of the vocabulary (checked); the buffer holds `cap` bytes and
            // llama.cpp writes at most that many (returning the negative need otherwise).
            let n = unsafe { sys::llama_token_to_piece(self.vocab, token, buf.as_mut_ptr().cast(), cap, 0, false) };
            if n >= 0 {
                buf.truncate(n as usize);
                return Ok(buf);
            }
            if n == i32::MIN || (-n) as usize <= buf.len() {
                return Err(LlamaError::Piece(token));
            }
            buf.resize((-n) as usize, 0);
        }
    }

    /// The text of a token sequence (lossy for invalid UTF-8).
    pub fn detokenize(&self, tokens: &[Token]) -> Result<String, LlamaError> {
        let mut bytes = Vec::new();
        for &t in tokens {
            bytes.extend(self.token_bytes(t)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Whether `token` ends generation (end of sequence or end of turn).
    pub fn is_end_of_generation(&self, token: Token) -> bool {
        // SAFETY: the vocabulary lives as long as the model; llama.cpp looks the id up in a set.
        unsafe { sys::llama_vocab_is_eog(self.vocab, token) }
    }

    /// The start-of-sequence token.
    pub fn bos(&self) -> Token {
        // SAFETY: the vocabulary lives as long as the model.
        unsafe { sys::llama_vocab_bos(self.vocab) }
    }

    /// Whether the vocabulary asks for the start token at the beginning of a text
    /// (`tokenizer.ggml.add_bos_token`; false for Qwen2.5, true for Gemma and Llama).
    pub fn adds_bos(&self) -> bool {
        // SAFETY: the vocabulary lives as long as the model.
        unsafe { sys::llama_vocab_get_add_bos(self.vocab) }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: `raw` came from llama_model_load_from_file and contexts borrow the model, so
        // none outlives it.
        unsafe { sys::llama_model_free(self.raw.as_ptr()) }
    }
}

/// `general.architecture` of the GGUF at `path`, for the message of a failed load (`(none)`
/// when the key is missing; the file was read once already by `check_loadable`).
fn architecture_of(path: &Path) -> String {
    crate::gguf::GgufFile::open(path).ok().and_then(|f| f.architecture().map(str::to_string)).unwrap_or_else(|| "(none)".into())
}
