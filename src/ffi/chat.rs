//! Chat templates through llama.cpp's own template support (`llama_chat_apply_template`): the
//! model's `tokenizer.chat_template` names the format (llama.cpp recognises the common families —
//! ChatML/Qwen, Gemma, Llama 3, Mistral, … — by markers in the Jinja source) and llama.cpp renders
//! the messages. No Jinja engine runs, so a template's extras that llama.cpp's built-in formats
//! do not have (Qwen2.5's default system message, for one) are not added.

use std::ffi::{CString, c_char};

use llama_cpp_sys_2 as sys;

/// One chat turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The turn's text.
    pub content: String,
}

impl ChatMessage {
    /// A user turn.
    pub fn user(content: impl Into<String>) -> ChatMessage {
        ChatMessage { role: "user".into(), content: content.into() }
    }

    /// An assistant turn.
    pub fn assistant(content: impl Into<String>) -> ChatMessage {
        ChatMessage { role: "assistant".into(), content: content.into() }
    }
}

/// Why a chat template could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A template or message holds a NUL byte.
    #[error("the chat template or a message contains a NUL byte")]
    Nul,
    /// llama.cpp does not know the template's format.
    #[error("llama.cpp does not support this chat template (llama_chat_apply_template returned {0}); the model's template starts {1:?}")]
    Unsupported(i32, String),
    /// The rendering is not UTF-8.
    #[error("the rendered chat is not UTF-8")]
    NotUtf8,
}

/// Renders `messages` with `template` (a model's `tokenizer.chat_template`, or a built-in name
/// such as `chatml`); `add_assistant` ends the text with the opening of an assistant turn.
pub fn apply_template(template: &str, messages: &[ChatMessage], add_assistant: bool) -> Result<String, ChatError> {
    let tmpl = CString::new(template).map_err(|_| ChatError::Nul)?;
    let owned: Vec<(CString, CString)> = messages
        .iter()
        .map(|m| Ok((CString::new(m.role.as_str())?, CString::new(m.content.as_str())?)))
        .collect::<Result<_, std::ffi::NulError>>()
        .map_err(|_| ChatError::Nul)?;
    let raw: Vec<sys::llama_chat_message> = owned.iter().map(|(r, c)| sys::llama_chat_message { role: r.as_ptr(), content: c.as_ptr() }).collect();
    let mut cap = messages.iter().map(|m| m.role.len() + m.content.len()).sum::<usize>() * 2 + 256;
    loop {
        let mut buf = vec![0u8; cap];
        let len = i32::try_from(cap).unwrap_or(i32::MAX);
        // SAFETY: `tmpl` and every role/content pointer are NUL-terminated strings owned by
        // `tmpl` and `owned`, alive for the call; `raw` holds `raw.len()` messages; llama.cpp
        // writes at most `len` bytes into `buf` and returns the length it needs.
        let n = unsafe { sys::llama_chat_apply_template(tmpl.as_ptr(), raw.as_ptr(), raw.len(), add_assistant, buf.as_mut_ptr().cast::<c_char>(), len) };
        if n < 0 {
            return Err(ChatError::Unsupported(n, template.chars().take(60).collect()));
        }
        let n = n as usize;
        if n <= cap {
            buf.truncate(n);
            return String::from_utf8(buf).map_err(|_| ChatError::NotUtf8);
        }
        cap = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_renders_turns_and_the_assistant_opening() {
        let m = [ChatMessage::user("2+2?"), ChatMessage::assistant("4"), ChatMessage::user("3+3?")];
        let s = apply_template("chatml", &m, true).unwrap();
        assert_eq!(s, "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\n3+3?<|im_end|>\n<|im_start|>assistant\n");
        assert!(matches!(apply_template("no such format {{ x }}", &m, true), Err(ChatError::Unsupported(..))));
    }
}
