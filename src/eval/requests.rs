//! Turning (prefix, context, continuations) strings into token groups for the engine, the
//! way lm-evaluation-harness tokenizes log-likelihood requests: trailing whitespace of the
//! context moves to the continuations; the context is tokenized alone (with the model's start
//! token) and each continuation is what tokenizing context+continuation adds after it. When the
//! context's tokens begin with the tokens of the shared prefix, the group reuses the prefix
//! decoded once in the KV cache.

use crate::ffi::llama::{LlamaError, Model};

use super::engine::{ScoreGroup, Token};

/// A tokenized shared prefix (few-shot exemplars, a task description).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prefix {
    /// The prefix text.
    pub text: String,
    /// Its tokens, with the start token.
    pub tokens: Vec<Token>,
}

impl Prefix {
    /// Tokenizes `text` (empty text gives an empty prefix).
    pub fn new(model: &Model, text: &str) -> Result<Self, LlamaError> {
        let tokens = if text.is_empty() { Vec::new() } else { model.tokenize(text, true)? };
        Ok(Self { text: text.to_string(), tokens })
    }
}

/// Builds the group scoring `continuations` after `prefix.text + context`.
pub fn build_group(model: &Model, prefix: &Prefix, context: &str, continuations: &[String]) -> Result<ScoreGroup, LlamaError> {
    let full_context = format!("{}{}", prefix.text, context);
    let trimmed = full_context.trim_end();
    let moved = &full_context[trimmed.len()..];
    let context_tokens = model.tokenize(trimmed, true)?;
    let continuations = continuations
        .iter()
        .map(|c| {
            let continuation = format!("{moved}{c}");
            let whole = model.tokenize(&format!("{trimmed}{continuation}"), true)?;
            let tail = whole.get(context_tokens.len()..).unwrap_or(&[]).to_vec();
            if tail.is_empty() { model.tokenize(&continuation, false) } else { Ok(tail) }
        })
        .collect::<Result<_, _>>()?;
    Ok(split_prefix(&prefix.tokens, context_tokens, continuations))
}

/// Uses the shared prefix when `context` starts with it and has tokens of its own after it.
pub fn split_prefix(prefix: &[Token], context: Vec<Token>, continuations: Vec<Vec<Token>>) -> ScoreGroup {
    if !prefix.is_empty() && context.len() > prefix.len() && context.starts_with(prefix) {
        ScoreGroup { use_prefix: true, context: context[prefix.len()..].to_vec(), continuations }
    } else {
        ScoreGroup { use_prefix: false, context, continuations }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_shared_only_when_it_is_a_strict_token_prefix() {
        let g = split_prefix(&[1, 2], vec![1, 2, 3], vec![vec![4]]);
        assert!(g.use_prefix);
        assert_eq!(g.context, vec![3]);
        let g = split_prefix(&[1, 2], vec![1, 2], vec![vec![4]]);
        assert!(!g.use_prefix);
        let g = split_prefix(&[1, 9], vec![1, 2, 3], vec![vec![4]]);
        assert!(!g.use_prefix && g.context == vec![1, 2, 3]);
    }
}
