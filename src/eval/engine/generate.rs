//! [`Session::generate`]: greedy generation for many prompts at once, with continuous
//! batching: a slot that finishes is refilled with the next prompt while the others keep
//! decoding.

use crate::eval::logits::row_stats;

use super::{EngineError, PAD_CELLS, Session, Token};

/// Greedy generation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Most new tokens per prompt.
    pub max_new_tokens: usize,
    /// Generation stops once the text contains one of these; the text is cut before it.
    pub stop: Vec<String>,
    /// Most prompts decoding at once (1 = one question at a time).
    pub parallel: usize,
}

/// The result of generating for one prompt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Generation {
    /// Generated text, cut before the first stop string.
    pub text: String,
    /// Number of tokens generated (including the one that completed a stop string).
    pub n_tokens: usize,
}

/// One prompt being generated for, in its own sequence.
struct Slot {
    prompt: usize,
    seq: i32,
    /// Prompt tokens fed so far.
    fed: usize,
    pos: i32,
    /// The token generated last, not yet fed back.
    last: Option<Token>,
    tokens: Vec<Token>,
    bytes: Vec<u8>,
}

impl Session<'_> {
    /// Greedy generation for every prompt; `prefix` (may be empty) is decoded once and shared by
    /// all prompts (each prompt holds only the tokens after it). `on_done(i, generation)` is
    /// called as prompt `i` finishes.
    pub fn generate(
        &mut self,
        prefix: &[Token],
        prompts: &[Vec<Token>],
        options: &GenerateOptions,
        mut on_done: impl FnMut(usize, &Generation),
    ) -> Result<Vec<Generation>, EngineError> {
        let parallel = options.parallel.clamp(1, self.max_sequences);
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let per_slot = longest + options.max_new_tokens + 1;
        if prefix.len() + per_slot + PAD_CELLS > self.n_ctx {
            return Err(EngineError::TooLong { tokens: prefix.len() + per_slot, n_ctx: self.n_ctx });
        }
        if let Some(prompt) = prompts.iter().position(Vec::is_empty) {
            return Err(EngineError::EmptyPrompt { prompt });
        }
        // As many slots as the cache holds at worst.
        let parallel = parallel.min((self.n_ctx - prefix.len() - PAD_CELLS) / per_slot).max(1);
        let prefix_len = if prefix.is_empty() {
            self.clear_all();
            0
        } else {
            self.load_prefix(prefix)?
        };
        let mut results: Vec<Option<Generation>> = vec![None; prompts.len()];
        let mut slots: Vec<Slot> = Vec::new();
        let mut next_prompt = 0;
        let mut free_seqs: Vec<i32> = (1..=parallel as i32).rev().collect();
        loop {
            while next_prompt < prompts.len() {
                let Some(seq) = free_seqs.pop() else { break };
                if prefix_len > 0 {
                    self.ctx.copy_seq(0, seq, prefix_len as i32);
                }
                slots.push(Slot { prompt: next_prompt, seq, fed: 0, pos: prefix_len as i32, last: None, tokens: Vec::new(), bytes: Vec::new() });
                next_prompt += 1;
            }
            if slots.is_empty() {
                break;
            }
            let reads = self.fill_slots(&mut slots, prompts)?;
            self.batch.decode_padded(&mut self.ctx)?;
            let mut finished = self.read_next_tokens(&mut slots, &reads, options)?;
            finished.sort_unstable_by(|a, b| b.cmp(a));
            for si in finished {
                let s = slots.swap_remove(si);
                self.remove_seq(s.seq);
                free_seqs.push(s.seq);
                let generation = Generation { text: cut_at_stop(&String::from_utf8_lossy(&s.bytes), &options.stop).to_string(), n_tokens: s.tokens.len() };
                on_done(s.prompt, &generation);
                results[s.prompt] = Some(generation);
            }
            slots.sort_by_key(|s| s.prompt);
        }
        self.clear_all();
        Ok(results.into_iter().map(|g| g.unwrap_or_default()).collect())
    }

    /// Fills one batch: decoding slots first (one token each, while they fit), then prompt
    /// tokens in the room left. Returns (slot index, batch row) of the slots whose next token is
    /// read from this decode.
    fn fill_slots(&mut self, slots: &mut [Slot], prompts: &[Vec<Token>]) -> Result<Vec<(usize, usize)>, EngineError> {
        self.batch.clear();
        let mut reads = Vec::new();
        for (si, s) in slots.iter_mut().enumerate() {
            let Some(t) = s.last else { continue };
            if !self.batch.fits(true) {
                break;
            }
            s.last = None;
            reads.push((si, self.batch.push(t, s.pos, &[s.seq], true)?));
            s.pos += 1;
        }
        for (si, s) in slots.iter_mut().enumerate() {
            let prompt = &prompts[s.prompt];
            while s.fed < prompt.len() {
                let last = s.fed + 1 == prompt.len();
                if !self.batch.fits(last) {
                    break;
                }
                let row = self.batch.push(prompt[s.fed], s.pos, &[s.seq], last)?;
                if last {
                    reads.push((si, row));
                }
                s.fed += 1;
                s.pos += 1;
            }
        }
        Ok(reads)
    }

    /// Takes each read slot's greedy next token; returns the slots that are done (end of
    /// generation, a stop string, or the token limit).
    fn read_next_tokens(&self, slots: &mut [Slot], reads: &[(usize, usize)], options: &GenerateOptions) -> Result<Vec<usize>, EngineError> {
        let model = self.ctx.model();
        let mut finished = Vec::new();
        for &(si, row) in reads {
            let next = row_stats(self.logits(row, slots[si].prompt)?).argmax as Token;
            let s = &mut slots[si];
            let end = model.is_end_of_generation(next);
            if !end {
                s.tokens.push(next);
                s.bytes.extend(model.token_bytes(next)?);
            }
            let text = String::from_utf8_lossy(&s.bytes);
            let stopped = options.stop.iter().any(|stop| text.contains(stop.as_str()));
            if end || stopped || s.tokens.len() >= options.max_new_tokens {
                finished.push(si);
            } else {
                s.last = Some(next);
            }
        }
        Ok(finished)
    }
}

/// `text` cut before the earliest occurrence of any stop string (the harness splits on each).
pub fn cut_at_stop<'a>(text: &'a str, stops: &[String]) -> &'a str {
    let end = stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min();
    &text[..end.unwrap_or(text.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_at_the_earliest_stop() {
        let stops = vec!["Q:".to_string(), "\n\n".to_string()];
        assert_eq!(cut_at_stop("a b\n\nQ: c", &stops), "a b");
        assert_eq!(cut_at_stop("a Q: b\n\n", &stops), "a ");
        assert_eq!(cut_at_stop("no stop", &stops), "no stop");
    }
}
