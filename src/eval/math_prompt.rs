//! The prompts of the `math` task: lm-evaluation-harness's `minerva_math` (task version 3.0),
//! the 4-shot Minerva prompt.
//!
//! Four fixed exemplars (`list_fewshot_samples`, sampler `first_n`), each
//! `"Problem:\n{problem}\n\nSolution: {solution}"` (doc_to_text `"Problem:\n" + problem +
//! "\n\nSolution:"`, target delimiter `" "`, the few-shot target is the exemplar's whole
//! solution), joined and followed by the few-shot delimiter `"\n\n"`, then the test problem's
//! `"Problem:\n{problem}\n\nSolution:"`. No description, no chat template. Greedy, stop at
//! `"Problem:"` (the task's `until`) or the model's end of generation, at most 256 new tokens
//! (the harness's default `max_gen_toks`).
//!
//! The exemplars are the harness's Python strings as Python reads them: where its source writes
//! `"\\\n"` inside `align*` the text holds one backslash and a newline (the older raw-string
//! prompt had two backslashes there).

/// The four Minerva exemplars: (problem, solution).
pub const EXEMPLARS: [(&str, &str); 4] = [
    (
        "Find the domain of the expression  $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.}",
        "The expressions inside each square root must be non-negative. Therefore, $x-2 \\ge 0$, so $x\\ge2$, and $5 - x \\ge 0$, so $x \\le 5$. Also, the denominator cannot be equal to zero, so $5-x>0$, which gives $x<5$. Therefore, the domain of the expression is $\\boxed{[2,5)}$.\nFinal Answer: The final answer is $[2,5)$. I hope it is correct.",
    ),
    (
        "If $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find $\\det (\\mathbf{A} \\mathbf{B}).$",
        "We have that $\\det (\\mathbf{A} \\mathbf{B}) = (\\det \\mathbf{A})(\\det \\mathbf{B}) = (2)(12) = \\boxed{24}.$\nFinal Answer: The final answer is $24$. I hope it is correct.",
    ),
    (
        "Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, how many times must Terrell lift them in order to lift the same total weight?",
        "If Terrell lifts two 20-pound weights 12 times, he lifts a total of $2\\cdot 12\\cdot20=480$ pounds of weight.  If he lifts two 15-pound weights instead for $n$ times, he will lift a total of $2\\cdot15\\cdot n=30n$ pounds of weight.  Equating this to 480 pounds, we can solve for $n$:\n\\begin{align*}\n30n&=480\\\n\\Rightarrow\\qquad n&=480/30=\\boxed{16}\n\\end{align*}\nFinal Answer: The final answer is $16$. I hope it is correct.",
    ),
    (
        "If the system of equations\n\n\\begin{align*}\n6x-4y&=a,\\\n6y-9x &=b.\n\\end{align*}has a solution $(x, y)$ where $x$ and $y$ are both nonzero,\nfind $\\frac{a}{b},$ assuming $b$ is nonzero.",
        "If we multiply the first equation by $-\\frac{3}{2}$, we obtain\n\n$$6y-9x=-\\frac{3}{2}a.$$Since we also know that $6y-9x=b$, we have\n\n$$-\\frac{3}{2}a=b\\Rightarrow\\frac{a}{b}=\\boxed{-\\frac{2}{3}}.$$\nFinal Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.",
    ),
];

/// Stop strings of generation (the task's `until`); generation also stops at the model's
/// end-of-generation token, as the harness adds it.
pub const STOP: [&str; 1] = ["Problem:"];

/// Greedy generation budget (the harness's default `max_gen_toks`).
pub const MAX_NEW_TOKENS: usize = 256;

/// The question part of a prompt: `"Problem:\n{problem}\n\nSolution:"`.
pub fn problem_text(problem: &str) -> String {
    format!("Problem:\n{problem}\n\nSolution:")
}

/// The shared 4-shot part of every prompt, ending with the delimiter before the test problem.
pub fn prefix() -> String {
    EXEMPLARS.iter().map(|(p, s)| format!("{} {s}\n\n", problem_text(p))).collect()
}

/// The whole 4-shot prompt for one test problem.
pub fn prompt(problem: &str) -> String {
    prefix() + &problem_text(problem)
}
