//! [`Session::score`]: log-likelihoods of continuations given contexts, many groups per decode,
//! each group's context decoded once for all its continuations.

use crate::eval::logits::{LogSoftmaxRow, row_stats};

use super::{EngineError, PAD_CELLS, Session, Token};

/// One group of continuations sharing a context.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoreGroup {
    /// Whether the session's shared prefix comes before `context`.
    pub use_prefix: bool,
    /// Context tokens (after the prefix when `use_prefix`); must not be empty.
    pub context: Vec<Token>,
    /// Continuations to score, each non-empty.
    pub continuations: Vec<Vec<Token>>,
}

/// The log-likelihood of one continuation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContinuationScore {
    /// log p(token | everything before) for each continuation token, natural log.
    pub token_logprobs: Vec<f64>,
    /// Whether every token was the argmax of its row (greedy decoding would produce it).
    pub greedy: bool,
}

impl ContinuationScore {
    /// Sum of the token log-probabilities.
    pub fn logprob(&self) -> f64 {
        self.token_logprobs.iter().sum()
    }
}

/// Where one logit row goes: the row predicts `target` as token `index` of continuation
/// `continuation` of group `group`.
#[derive(Debug, Clone, Copy)]
struct Target {
    group: usize,
    continuation: usize,
    index: usize,
    target: Token,
}

/// One token to feed into the batch.
#[derive(Debug, Clone)]
struct Feed {
    token: Token,
    pos: i32,
    seqs: Vec<i32>,
    targets: Vec<Target>,
}

/// Per-group progress through its feed list.
struct Active {
    feeds: Vec<Feed>,
    next: usize,
    seqs: Vec<i32>,
    cells: usize,
}

impl Active {
    fn finished(&self) -> bool {
        self.next == self.feeds.len()
    }
}

/// The groups in flight: a wave admitted into an empty cache, their sequences and cells.
struct Waves {
    active: Vec<Active>,
    free_seqs: Vec<i32>,
    next_group: usize,
    cells_in_use: usize,
    /// Cache cells the groups may use (the prefix and the padding rows kept out).
    budget: usize,
    prefix_len: usize,
    done: usize,
    done_in_wave: usize,
}

impl Session<'_> {
    /// Log-likelihoods of every continuation of every group; `prefix` (may be empty) is decoded
    /// once and shared by the groups that set `use_prefix`. `progress` is called with the
    /// number of groups finished so far.
    pub fn score(
        &mut self,
        prefix: &[Token],
        groups: &[ScoreGroup],
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<Vec<ContinuationScore>>, EngineError> {
        let mut results: Vec<Vec<ContinuationScore>> = groups
            .iter()
            .map(|g| {
                g.continuations
                    .iter()
                    .map(|c| ContinuationScore { token_logprobs: vec![0.0; c.len()], greedy: true })
                    .collect()
            })
            .collect();
        let prefix_len = if groups.iter().any(|g| g.use_prefix) && !prefix.is_empty() {
            self.load_prefix(prefix)?
        } else {
            self.clear_all();
            0
        };
        self.check_groups(groups, prefix_len)?;
        let mut waves = Waves {
            active: Vec::new(),
            free_seqs: (1..=self.max_sequences as i32).rev().collect(),
            next_group: 0,
            cells_in_use: 0,
            budget: self.n_ctx.saturating_sub(prefix_len + PAD_CELLS),
            prefix_len,
            done: 0,
            done_in_wave: 0,
        };
        while waves.next_group < groups.len() || !waves.active.is_empty() {
            if waves.active.is_empty() {
                self.admit_wave(groups, &mut waves);
            }
            if waves.active.is_empty() {
                return Err(EngineError::TooLong { tokens: group_cells(&groups[waves.next_group]), n_ctx: waves.budget });
            }
            let row_targets = self.fill_from(&mut waves.active)?;
            self.batch.decode_padded(&mut self.ctx)?;
            for (row, targets) in &row_targets {
                let logits = self.logits(*row, targets.first().map_or(0, |t| t.group))?;
                let stats: LogSoftmaxRow = row_stats(logits);
                for t in targets {
                    let score = &mut results[t.group][t.continuation];
                    score.token_logprobs[t.index] = stats.logprob(logits, t.target);
                    score.greedy &= stats.argmax == t.target as usize;
                }
            }
            self.retire(&mut waves, &mut progress);
        }
        self.clear_all();
        Ok(results)
    }

    /// Refuses malformed groups and groups that cannot fit the cache, before any decode.
    fn check_groups(&self, groups: &[ScoreGroup], prefix_len: usize) -> Result<(), EngineError> {
        for (gi, g) in groups.iter().enumerate() {
            if g.context.is_empty() {
                return Err(EngineError::EmptyContext { group: gi });
            }
            if g.continuations.is_empty() || g.continuations.iter().any(|c| c.is_empty()) {
                return Err(EngineError::EmptyContinuation { group: gi });
            }
            if g.continuations.len() > self.max_sequences {
                return Err(EngineError::TooManyContinuations { group: gi, continuations: g.continuations.len(), sequences: self.max_sequences });
            }
            let cells = group_cells(g) + if g.use_prefix { prefix_len } else { 0 };
            if cells + PAD_CELLS > self.n_ctx {
                return Err(EngineError::TooLong { tokens: cells, n_ctx: self.n_ctx });
            }
        }
        Ok(())
    }

    /// Admits a wave of groups while sequences and cache cells last. Groups are admitted only
    /// into an empty cache (besides the prefix) so each sequence's cells are allocated in
    /// position order, which keeps results independent of batching.
    fn admit_wave(&mut self, groups: &[ScoreGroup], w: &mut Waves) {
        while w.next_group < groups.len() {
            let g = &groups[w.next_group];
            let own_cells = group_cells(g);
            if g.continuations.len() > w.free_seqs.len() || w.cells_in_use + own_cells > w.budget {
                break;
            }
            let seqs: Vec<i32> = (0..g.continuations.len()).filter_map(|_| w.free_seqs.pop()).collect();
            let base = if g.use_prefix && w.prefix_len > 0 {
                for &s in &seqs {
                    self.ctx.copy_seq(0, s, w.prefix_len as i32);
                }
                w.prefix_len
            } else {
                0
            };
            w.active.push(Active { feeds: group_feeds(w.next_group, g, base, &seqs), next: 0, seqs, cells: own_cells });
            w.cells_in_use += own_cells;
            w.next_group += 1;
        }
    }

    /// Fills one batch from the active groups, in order; returns each output row's targets.
    fn fill_from(&mut self, active: &mut [Active]) -> Result<Vec<(usize, Vec<Target>)>, EngineError> {
        self.batch.clear();
        let mut row_targets = Vec::new();
        for a in active.iter_mut() {
            while let Some(f) = a.feeds.get(a.next) {
                let wants = !f.targets.is_empty();
                if !self.batch.fits(wants) {
                    return Ok(row_targets);
                }
                let row = self.batch.push(f.token, f.pos, &f.seqs, wants)?;
                if wants {
                    row_targets.push((row, f.targets.clone()));
                }
                a.next += 1;
            }
        }
        Ok(row_targets)
    }

    /// Reports finished groups; frees the wave's sequences once all of it is done (freeing
    /// earlier would let llama.cpp place later tokens into the holes, out of order).
    fn retire(&mut self, w: &mut Waves, progress: &mut impl FnMut(usize)) {
        let finished = w.active.iter().filter(|a| a.finished()).count();
        if finished > w.done_in_wave {
            for _ in w.done_in_wave..finished {
                w.done += 1;
                progress(w.done);
            }
            w.done_in_wave = finished;
        }
        if finished == w.active.len() {
            for a in w.active.drain(..) {
                for &s in &a.seqs {
                    self.remove_seq(s);
                    w.free_seqs.push(s);
                }
                w.cells_in_use -= a.cells;
            }
            w.done_in_wave = 0;
        }
    }
}

/// Cache cells a group occupies: its context plus every continuation.
fn group_cells(g: &ScoreGroup) -> usize {
    g.context.len() + g.continuations.iter().map(Vec::len).sum::<usize>()
}

/// The tokens to feed for one group: the context once, belonging to all its sequences (the
/// last context token's row predicts every continuation's first token), then each
/// continuation in its own sequence (each token's row predicts the next one; the last token
/// needs no row).
fn group_feeds(group: usize, g: &ScoreGroup, base: usize, seqs: &[i32]) -> Vec<Feed> {
    let mut feeds = Vec::with_capacity(group_cells(g));
    let n = g.context.len();
    for (i, &token) in g.context.iter().enumerate() {
        let targets = if i + 1 == n {
            g.continuations
                .iter()
                .enumerate()
                .map(|(c, cont)| Target { group, continuation: c, index: 0, target: cont[0] })
                .collect()
        } else {
            Vec::new()
        };
        feeds.push(Feed { token, pos: (base + i) as i32, seqs: seqs.to_vec(), targets });
    }
    for (c, cont) in g.continuations.iter().enumerate() {
        for (j, &token) in cont.iter().enumerate() {
            let targets = match cont.get(j + 1) {
                Some(&next) => vec![Target { group, continuation: c, index: j + 1, target: next }],
                None => Vec::new(),
            };
            feeds.push(Feed { token, pos: (base + n + j) as i32, seqs: vec![seqs[c]], targets });
        }
    }
    feeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_share_the_context_and_target_the_next_token() {
        let g = ScoreGroup { use_prefix: false, context: vec![1, 2], continuations: vec![vec![3, 4], vec![5]] };
        let feeds = group_feeds(0, &g, 10, &[7, 8]);
        assert_eq!(feeds.len(), 5);
        assert_eq!(feeds[0].seqs, vec![7, 8]);
        assert_eq!(feeds[1].pos, 11);
        let firsts: Vec<Token> = feeds[1].targets.iter().map(|t| t.target).collect();
        assert_eq!(firsts, vec![3, 5]);
        assert_eq!(feeds[2].seqs, vec![7]);
        assert_eq!(feeds[2].targets[0].target, 4);
        assert!(feeds[3].targets.is_empty() && feeds[4].targets.is_empty());
        assert_eq!(feeds[4].pos, 12);
    }
}
