//! The GSM8K tasks: `gsm8k` (8-shot chain-of-thought generation, strict and flexible answer
//! extraction) and `gsm8k_nll` (per-token negative log-likelihood of the gold solutions).

use std::collections::BTreeMap;

use super::answer::{extract_flexible, extract_strict, gold_answer, is_correct};
use super::datasets::Gsm8kRecord;
use super::engine::{EngineError, GenerateOptions, Generation, Model, Session, Token};
use super::gsm8k_prompt::{MAX_NEW_TOKENS, STOP, cot_prefix, cot_prompt, cot_question, nll_context, nll_continuation};
use super::requests::{Prefix, build_group};
use super::task::{ItemResult, MetricSpec, TaskOutcome};
use crate::chat::ChatFormat;

/// The one-line description of the `gsm8k` setting.
pub const GSM8K_SETTING: &str = "lm-eval gsm8k_cot v3.0: 8 fixed CoT exemplars \"Q: ..\\nA: ..\", greedy, \
     ≤256 new tokens, stop at \"Q:\", \"</s>\", \"<|im_end|>\", blank line or end of generation; \
     strict-match (first \"The answer is N.\") and flexible-extract (last number); exact match \
     ignoring case, \",\", \"$\", a trailing \".\"";

/// How the GSM8K questions are decoded: all together sharing the exemplar prefix (the normal
/// path) or one at a time, each with its whole prompt (the naive baseline of the benchmark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gsm8kMode {
    /// Shared 8-shot prefix in the KV cache, up to `parallel` questions per batch.
    Batched {
        /// Questions decoding at once.
        parallel: usize,
    },
    /// One question at a time, full prompt each time, no sharing.
    Naive,
}

/// Generates answers for `records` (with their data indices) and scores them; the harness
/// allows [`MAX_NEW_TOKENS`] new tokens.
pub fn run_gsm8k(
    session: &mut Session<'_>,
    records: &[(usize, Gsm8kRecord)],
    n_available: usize,
    mode: Gsm8kMode,
    max_new_tokens: usize,
    progress: impl FnMut(usize),
) -> Result<TaskOutcome, EngineError> {
    run_gsm8k_with(session, records, n_available, mode, max_new_tokens, None, progress)
}

/// `run_gsm8k`, with `chat`: the prompts in the model's chat template, few-shot as multi-turn
/// (see `crate::chat`).
pub fn run_gsm8k_with(
    session: &mut Session<'_>,
    records: &[(usize, Gsm8kRecord)],
    n_available: usize,
    mode: Gsm8kMode,
    max_new_tokens: usize,
    chat: Option<&ChatFormat>,
    progress: impl FnMut(usize),
) -> Result<TaskOutcome, EngineError> {
    let prefix = match chat {
        Some(f) => f.gsm8k_prefix()?,
        None => cot_prefix(),
    };
    let prompts = records
        .iter()
        .map(|(_, r)| match chat {
            Some(f) => Ok(f.gsm8k_prompt(&r.question)?),
            None => Ok(cot_prompt(&r.question)),
        })
        .collect::<Result<Vec<String>, EngineError>>()?;
    let fewshot = FewShot { prefix: &prefix, prompts: &prompts, special: chat.is_some(), stop: &STOP, max_new_tokens };
    let outputs = generate_fewshot(session, &fewshot, mode, progress)?;
    let items = records.iter().zip(outputs).map(|((index, r), text)| score_generation(*index, r, &text)).collect();
    Ok(TaskOutcome {
        metrics: vec![MetricSpec::accuracy("strict-match"), MetricSpec::accuracy("flexible-extract")],
        items,
        n_available,
        setting: gsm8k_setting(chat.is_some(), max_new_tokens),
    })
}

/// Few-shot prompts for greedy generation: the whole prompt texts and the few-shot part they
/// share, how they are tokenized and where generation stops.
pub struct FewShot<'a> {
    /// The shared few-shot part every prompt starts with.
    pub prefix: &'a str,
    /// One whole prompt per item.
    pub prompts: &'a [String],
    /// Tokenize special tokens (chat-template prompts).
    pub special: bool,
    /// Stop strings.
    pub stop: &'a [&'a str],
    /// Most new tokens per answer.
    pub max_new_tokens: usize,
}

/// Generates greedily for every prompt of `fewshot` (GSM8K's engine path, shared by the other
/// generation tasks): in batched mode the prompts whose tokens start with the prefix's tokens
/// decode together on the prefix in the KV cache, the others with their whole prompt; in naive
/// mode one at a time. Returns the generated texts in prompt order.
pub fn generate_fewshot(session: &mut Session<'_>, fewshot: &FewShot<'_>, mode: Gsm8kMode, mut progress: impl FnMut(usize)) -> Result<Vec<String>, EngineError> {
    let (prefix, shared, alone) = split_prompts(session.model(), fewshot, mode)?;
    let parallel = match mode {
        Gsm8kMode::Batched { parallel } => parallel,
        Gsm8kMode::Naive => 1,
    };
    let options = GenerateOptions {
        max_new_tokens: fewshot.max_new_tokens,
        stop: fewshot.stop.iter().map(|s| s.to_string()).collect(),
        parallel,
    };
    let mut generations: Vec<Option<Generation>> = vec![None; fewshot.prompts.len()];
    let mut done = 0;
    if !shared.is_empty() {
        let prompts: Vec<Vec<Token>> = shared.iter().map(|(_, p)| p.clone()).collect();
        let out = session.generate(&prefix, &prompts, &options, |_, _| {
            done += 1;
            progress(done);
        })?;
        for ((k, _), g) in shared.iter().zip(out) {
            generations[*k] = Some(g);
        }
    }
    if !alone.is_empty() {
        match mode {
            Gsm8kMode::Naive => {
                for (k, prompt) in &alone {
                    let out = session.generate(&[], std::slice::from_ref(prompt), &options, |_, _| {})?;
                    generations[*k] = out.into_iter().next();
                    done += 1;
                    progress(done);
                }
            }
            Gsm8kMode::Batched { .. } => {
                let prompts: Vec<Vec<Token>> = alone.iter().map(|(_, p)| p.clone()).collect();
                let out = session.generate(&[], &prompts, &options, |_, _| {
                    done += 1;
                    progress(done);
                })?;
                for ((k, _), g) in alone.iter().zip(out) {
                    generations[*k] = Some(g);
                }
            }
        }
    }
    Ok(generations.into_iter().map(|g| g.expect("every prompt generated").text).collect())
}

/// Prompts as tokens, (prompt index, tokens): those whose prompt starts with the shared
/// few-shot prefix hold only the tokens after it (batched mode), the others their whole
/// prompt.
type SplitPrompts = (Vec<Token>, Vec<(usize, Vec<Token>)>, Vec<(usize, Vec<Token>)>);

/// Tokenizes the few-shot prefix and every prompt, and splits the prompts into those sharing
/// the prefix and those decoded alone.
fn split_prompts(model: &Model, fewshot: &FewShot<'_>, mode: Gsm8kMode) -> Result<SplitPrompts, EngineError> {
    let tokenize = |text: &str| if fewshot.special { model.tokenize_special(text, true) } else { model.tokenize(text, true) };
    let prefix = tokenize(fewshot.prefix)?;
    let mut shared: Vec<(usize, Vec<Token>)> = Vec::new();
    let mut alone: Vec<(usize, Vec<Token>)> = Vec::new();
    for (k, text) in fewshot.prompts.iter().enumerate() {
        let full = tokenize(text)?;
        let splits = matches!(mode, Gsm8kMode::Batched { .. }) && full.len() > prefix.len() && full.starts_with(&prefix);
        if splits {
            shared.push((k, full[prefix.len()..].to_vec()));
        } else {
            alone.push((k, full));
        }
    }
    Ok((prefix, shared, alone))
}

/// The setting line of a GSM8K report.
fn gsm8k_setting(chat: bool, max_new_tokens: usize) -> String {
    let mut s = GSM8K_SETTING.to_string();
    if chat {
        s.push_str("; chat template (llama.cpp's rendering of the model's tokenizer.chat_template), exemplars as alternating user \"Q: ..\\nA:\" / assistant turns (lm-eval --apply_chat_template --fewshot_as_multiturn), stop also at the end-of-turn token");
    }
    if max_new_tokens != MAX_NEW_TOKENS {
        s.push_str(&format!("; NOTE: at most {max_new_tokens} new tokens instead of {MAX_NEW_TOKENS}"));
    }
    s
}

/// Scores one generated answer with both extractions.
pub fn score_generation(index: usize, record: &Gsm8kRecord, output: &str) -> ItemResult {
    let gold = gold_answer(&record.answer);
    let strict = extract_strict(output);
    let flexible = extract_flexible(output);
    let scores = vec![(is_correct(&strict, &gold) as u8 as f64, 1.0), (is_correct(&flexible, &gold) as u8 as f64, 1.0)];
    let mut extracted = BTreeMap::new();
    extracted.insert("strict-match".to_string(), strict);
    extracted.insert("flexible-extract".to_string(), flexible);
    ItemResult {
        index,
        prompt: cot_question(&record.question),
        output: output.to_string(),
        target: gold,
        extracted,
        scores,
    }
}

/// The one-line description of the `gsm8k_nll` setting.
pub const NLL_SETTING: &str = "−log p(\" {gold worked answer}\" | \"Question: {q}\\nAnswer:\") per token \
     (lm-eval gsm8k zero-shot format, BOS), summed over items then divided by their tokens";

/// Scores the gold solutions of `records`.
pub fn run_gsm8k_nll(
    session: &mut Session<'_>,
    records: &[(usize, Gsm8kRecord)],
    n_available: usize,
    progress: impl FnMut(usize),
) -> Result<TaskOutcome, EngineError> {
    let model = session.model();
    let none = Prefix::default();
    let groups: Vec<_> = records
        .iter()
        .map(|(_, r)| build_group(model, &none, &nll_context(&r.question), &[nll_continuation(&r.answer)]))
        .collect::<Result<_, _>>()?;
    let scores = session.score(&[], &groups, progress)?;
    let items = records
        .iter()
        .zip(scores)
        .map(|((index, r), s)| {
            let s = &s[0];
            let nll = -s.logprob();
            let n = s.token_logprobs.len() as f64;
            let mut extracted = BTreeMap::new();
            extracted.insert("tokens".to_string(), s.token_logprobs.len().to_string());
            ItemResult {
                index: *index,
                prompt: nll_context(&r.question),
                output: format!("{:.4}", nll / n),
                target: r.answer.clone(),
                extracted,
                scores: vec![(nll, n)],
            }
        })
        .collect();
    Ok(TaskOutcome {
        metrics: vec![MetricSpec::lower_ratio("nll_per_token")],
        items,
        n_available,
        setting: NLL_SETTING.to_string(),
    })
}
