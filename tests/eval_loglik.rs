//! The batched and prefix-shared scoring paths give the same log-likelihoods, to 1e-3 nats per
//! continuation, as a naive single-sequence pass over full logits, on the real model.

use std::path::Path;

use mathneuro::eval::engine::{EngineOptions, Model, ScoreGroup, Session, Token};
use mathneuro::eval::requests::{Prefix, build_group};

const MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";

fn model() -> Model {
    assert!(
        Path::new(MODEL).exists(),
        "{MODEL} is missing: run models/fetch.sh to download the test model"
    );
    Model::load(Path::new(MODEL)).expect("model loads")
}

fn options() -> EngineOptions {
    EngineOptions { threads: 2, n_ctx: 2048, max_sequences: 8, batch_tokens: 60, max_outputs: 16 }
}

/// Σ log-softmax(row)[token] over the continuation, from every position's full logits.
fn naive_logprob(rows: &[Vec<f32>], context_len: usize, continuation: &[Token]) -> f64 {
    continuation
        .iter()
        .enumerate()
        .map(|(j, &t)| {
            let row = &rows[context_len - 1 + j];
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let z: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            row[t as usize] as f64 - max - z.ln()
        })
        .sum()
}

#[test]
fn batched_and_prefix_shared_scores_match_the_naive_pass() {
    let model = model();
    let mut session = Session::new(&model, &options()).unwrap();
    let prefix = Prefix::new(&model, "Q: What is 2 + 3?\nA: 2 + 3 = 5. The answer is 5.\n\n").unwrap();
    let questions = [
        ("Q: Tom has 4 apples and eats one. How many are left?\nA:", [" He has 4 - 1 = 3 apples left. The answer is 3.", " The answer is 5."]),
        ("Q: What colour is the sky on a clear day?\nA:", [" Blue.", " It is green, because grass reflects upward."]),
        ("Q: Name a prime number larger than 10.\nA:", [" 11", " 12 is prime."]),
    ];
    let groups: Vec<ScoreGroup> = questions
        .iter()
        .map(|(q, conts)| build_group(&model, &prefix, q, &conts.map(String::from)).unwrap())
        .collect();
    assert!(groups.iter().all(|g| g.use_prefix), "the exemplar prefix is shared");
    let shared = session.score(&prefix.tokens, &groups, |_| {}).unwrap();
    // The same requests without the shared prefix: every group carries its whole context.
    let unshared_groups: Vec<ScoreGroup> = groups
        .iter()
        .map(|g| ScoreGroup {
            use_prefix: false,
            context: prefix.tokens.iter().chain(&g.context).copied().collect(),
            continuations: g.continuations.clone(),
        })
        .collect();
    let batched = session.score(&[], &unshared_groups, |_| {}).unwrap();
    // The naive reference: context+continuation of one sequence, every position's logits, in a
    // session of its own whose calls hold up to 60 tokens (the scoring session splits its work
    // into calls of at most 16 outputs). Like every decode of the engine, its calls are padded
    // to whole groups of 4 rows and outputs (at least 8): that is what makes llama.cpp's CPU
    // numbers independent of the batch layout (see `ffi::llama::ROW_MULTIPLE`); without it the
    // prefix-shared sums were 0.02 to 0.2 nats off.
    let mut naive = Session::new(&model, &EngineOptions { max_outputs: 60, ..options() }).unwrap();
    let mut compared = 0;
    let (mut worst_batched, mut worst_shared) = (0f64, 0f64);
    let mut failures = Vec::new();
    for (gi, g) in unshared_groups.iter().enumerate() {
        for (ci, cont) in g.continuations.iter().enumerate() {
            let tokens: Vec<Token> = g.context.iter().chain(cont).copied().collect();
            let rows = naive.full_logits(&tokens).unwrap();
            let reference = naive_logprob(&rows, g.context.len(), cont);
            let (b, s) = (batched[gi][ci].logprob(), shared[gi][ci].logprob());
            worst_batched = worst_batched.max((b - reference).abs());
            worst_shared = worst_shared.max((s - reference).abs());
            if (b - reference).abs() >= 1e-3 || (s - reference).abs() >= 1e-3 {
                failures.push(format!("group {gi} cont {ci}: naive {reference}, batched {b}, prefix-shared {s}"));
            }
            assert_eq!(batched[gi][ci].token_logprobs.len(), cont.len());
            compared += 1;
        }
    }
    assert_eq!(compared, 6);
    eprintln!("largest |difference| to the naive pass: batched {worst_batched:.2e}, prefix-shared {worst_shared:.2e} nats");
    assert!(failures.is_empty(), "log-likelihoods 1e-3 or more off the naive pass:\n{}", failures.join("\n"));
    // The same requests scored again give the same numbers: the scheduling is deterministic.
    let again = session.score(&prefix.tokens, &groups, |_| {}).unwrap();
    assert_eq!(again, shared);
    // Sanity: the right answers are more likely than the wrong ones here.
    assert!(shared[0][0].logprob() / 12.0 > shared[0][1].logprob() / 5.0 || shared[0][0].logprob() > -40.0);
}
