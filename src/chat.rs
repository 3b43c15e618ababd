//! `--chat`: texts wrapped in the model's own chat template (`tokenizer.chat_template`, rendered
//! by llama.cpp through `ffi::chat`), for instruction-tuned models.
//!
//! - Calibration: each text becomes a user turn (its prompt part) and an assistant turn (the
//!   rest), see `CalibrationSet::turns`.
//! - GSM8K: the eight `gsm8k_cot` exemplars become alternating user/assistant turns and the test
//!   question the last user turn, as lm-evaluation-harness's `--apply_chat_template
//!   --fewshot_as_multiturn` builds it (user `Q: {question}\nA:`, assistant `{target}`), ending
//!   with the opening of the assistant's answer. Generation stops at the template's end-of-turn
//!   token (llama.cpp's end-of-generation set) as well as at the task's stop strings.
//! - `--task-file` generation items: the prompt as one user turn.

use std::path::Path;

use crate::eval::gsm8k_prompt::{COT_EXEMPLARS, cot_question};
use crate::ffi::chat::{ChatError, ChatMessage, apply_template};
use crate::gguf::GgufFile;

/// The metadata key of a model's chat template.
pub const TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// A model's chat template, ready to render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatFormat {
    /// The template source as stored in the model.
    pub template: String,
}

/// Why `--chat` cannot be used with a model.
#[derive(Debug, thiserror::Error)]
pub enum ChatFormatError {
    /// The model file could not be read.
    #[error("reading the chat template of {}: {source}", path.display())]
    Read {
        /// The model.
        path: std::path::PathBuf,
        /// The reader's error.
        source: crate::gguf::GgufError,
    },
    /// The model has no template.
    #[error("{}: has no {TEMPLATE_KEY}, so --chat cannot be used (it is probably a base model; drop --chat)", .0.display())]
    Missing(std::path::PathBuf),
    /// llama.cpp cannot render it.
    #[error("{}: {source}", path.display())]
    Render {
        /// The model.
        path: std::path::PathBuf,
        /// The rendering error.
        source: ChatError,
    },
}

impl ChatFormat {
    /// The chat template of the model at `path` (a split's first shard is fine), checked by
    /// rendering one turn.
    pub fn of_model(path: &Path) -> Result<ChatFormat, ChatFormatError> {
        let file = GgufFile::open_shard(path).map_err(|source| ChatFormatError::Read { path: path.to_path_buf(), source })?;
        let template = file.get_str(TEMPLATE_KEY).ok_or_else(|| ChatFormatError::Missing(path.to_path_buf()))?.to_string();
        let format = ChatFormat { template };
        format.render(&[ChatMessage::user("x")], true).map_err(|source| ChatFormatError::Render { path: path.to_path_buf(), source })?;
        Ok(format)
    }

    /// Renders `messages`, ending with an assistant opening when `add_assistant`.
    pub fn render(&self, messages: &[ChatMessage], add_assistant: bool) -> Result<String, ChatError> {
        apply_template(&self.template, messages, add_assistant)
    }

    /// A calibration text: a user turn and the assistant's reply.
    pub fn calibration_text(&self, user: &str, assistant: &str) -> Result<String, ChatError> {
        self.render(&[ChatMessage::user(user), ChatMessage::assistant(assistant)], false)
    }

    /// The 8-shot multi-turn messages of `gsm8k_cot` for `question`.
    pub fn gsm8k_messages(question: &str) -> Vec<ChatMessage> {
        let mut m: Vec<ChatMessage> = COT_EXEMPLARS.iter().flat_map(|(q, a)| [ChatMessage::user(cot_question(q)), ChatMessage::assistant(*a)]).collect();
        m.push(ChatMessage::user(cot_question(question)));
        m
    }

    /// The whole chat prompt of one GSM8K question.
    pub fn gsm8k_prompt(&self, question: &str) -> Result<String, ChatError> {
        self.render(&ChatFormat::gsm8k_messages(question), true)
    }

    /// The exemplar turns alone: the text every GSM8K chat prompt starts with (shared in the KV
    /// cache when the tokens agree).
    pub fn gsm8k_prefix(&self) -> Result<String, ChatError> {
        let mut m = ChatFormat::gsm8k_messages("");
        m.pop();
        self.render(&m, false)
    }

    /// One user turn and the assistant opening.
    pub fn user_prompt(&self, text: &str) -> Result<String, ChatError> {
        self.render(&[ChatMessage::user(text)], true)
    }
}

/// The calibration texts of `set` at `drawn`: as they are, or with `chat` wrapped in the chat
/// template of the model at `model`.
pub fn calibration_texts(set: &crate::data::calibration::CalibrationSet, drawn: &[usize], chat: bool, model: &Path) -> anyhow::Result<Vec<String>> {
    if !chat {
        return Ok(drawn.iter().map(|&i| set.texts[i].clone()).collect());
    }
    let format = ChatFormat::of_model(model)?;
    drawn
        .iter()
        .map(|&i| {
            let (user, assistant) = set.turns(i);
            format.calibration_text(user, assistant).map_err(|e| anyhow::anyhow!("{}: text {i} of {}: {e}", model.display(), set.name))
        })
        .collect()
}

/// The text template recorded in STATS files, marked when the chat template wrapped it.
pub fn template_note(template: &str, chat: bool) -> String {
    if chat { format!("chat({template})") } else { template.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm8k_chat_is_multi_turn_with_the_question_last() {
        let f = ChatFormat { template: "chatml".into() };
        let p = f.gsm8k_prompt("What is 1+1?").unwrap();
        assert_eq!(p.matches("<|im_start|>user\nQ: ").count(), 9);
        assert_eq!(p.matches("<|im_start|>assistant\n").count(), 9);
        assert!(p.starts_with(&f.gsm8k_prefix().unwrap()));
        assert!(p.ends_with("<|im_start|>user\nQ: What is 1+1?\nA:<|im_end|>\n<|im_start|>assistant\n"), "{p}");
        assert!(p.contains("<|im_start|>assistant\nThere are 15 trees originally."));
        assert_eq!(f.calibration_text("q", "a").unwrap(), "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n");
    }
}
