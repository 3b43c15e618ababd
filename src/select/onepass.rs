//! Selection within one matrix in a single pass over its rows, for the common case: a fixed
//! sample of short row segments brackets each stream's k-th largest score from below (`lo`), one
//! pass collects every entry whose math score is ≥ `lo_math` (with its general score) and every
//! general score ≥ `lo_general`, and the exact thresholds are then taken among those candidates.
//!
//! Why it is exact: all entries at or above `lo` are collected, so when at least k were collected
//! the k-th largest score of the whole matrix is among them, and the top-k rule (larger score
//! first, **equal scores: lower flat index first**, as in `topk`) is decided by the candidates.
//! When the sample misleads (fewer than k collected, or more than the memory cap), `one_pass`
//! answers `None` and the caller runs the exact radix passes instead; the result is the same
//! either way, only the time differs. Memory: the candidates, capped at about one f32 matrix.

use wide::f32x8;

use super::mask::BitMask;
use super::topk::Threshold;

/// Sampled score entries aimed at per matrix: one short segment from each of many rows, since
/// entries of one row share its scale and a few whole rows would say little.
const SAMPLE_ENTRIES: u64 = 1 << 17;

/// Fewest rows sampled (all of them when the matrix has fewer).
const SAMPLE_ROWS_MIN: u64 = 256;

/// Standard errors of the sampled share kept as margin below the estimated k-th score.
const MARGIN_SIGMAS: f64 = 6.0;

/// Where the sample is taken: every `row_step`-th row, one segment of `len` columns each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplePlan {
    /// Row stride (1 = every row).
    pub row_step: u64,
    /// Columns per sampled segment (a multiple of the block size, at most n_in).
    pub len: usize,
    /// Block size of the weight's type (segments start on a block).
    pub block: usize,
}

impl SamplePlan {
    /// The plan for `n_rows` rows of `n_in` entries in blocks of `block`.
    pub fn new(n_rows: u64, n_in: usize, block: usize) -> SamplePlan {
        let len = block.max(64).div_ceil(block) * block;
        let len = if len > n_in { n_in } else { len };
        let rows_wanted = (SAMPLE_ENTRIES / len.max(1) as u64).max(SAMPLE_ROWS_MIN);
        SamplePlan { row_step: (n_rows / rows_wanted).max(1), len, block }
    }

    /// First column of the segment sampled from the `i`-th sampled row: spread over the row by a
    /// fixed stride (no randomness: the same matrix is always sampled alike).
    fn start(&self, i: u64, n_in: usize) -> usize {
        let blocks = (n_in / self.block) as u64;
        let start = ((i * 7919) % blocks.max(1)) as usize * self.block;
        start.min(n_in - self.len)
    }
}

/// Candidates larger than this many entries make the pass give up (memory bound: 16 bytes per
/// candidate, so about one f32 copy of the matrix).
fn candidate_cap(numel: u64) -> usize {
    (numel / 4).max(1 << 16) as usize
}

/// An entry whose math score reached `lo_math`.
#[derive(Clone, Copy)]
struct MathCandidate {
    index: u64,
    math: f32,
    general: f32,
}

/// Selects in one pass. `row(r, start, buf)` fills `buf` with the dequantized entries
/// `start..start + buf.len()` of row `r` (`start` on a block boundary) and returns the offset of
/// that row's group in the statistics (0 for a 2-D weight). `a_general` `None` means the math
/// top-k alone (Wanda). Returns `Ok(None)` when the sample's bracket missed (the caller must use
/// the exact passes).
pub fn one_pass<E>(
    n_rows: u64,
    n_in: usize,
    plan: SamplePlan,
    mut row: impl FnMut(u64, usize, &mut [f32]) -> Result<usize, E>,
    a_math: &[f32],
    a_general: Option<&[f32]>,
    k: u64,
) -> Result<Option<BitMask>, E> {
    let numel = n_rows * n_in as u64;
    let k = k.min(numel);
    if k == 0 {
        return Ok(Some(BitMask::new(numel)));
    }
    let cap = candidate_cap(numel);
    if k as usize > cap {
        return Ok(None);
    }
    let mut w = vec![0f32; n_in];

    // 1. The sample: each stream's lower bracket.
    let mut sample_math = Vec::new();
    let mut sample_general = Vec::new();
    let (mut r, mut i) = (0, 0);
    while r < n_rows {
        let start = plan.start(i, n_in);
        let seg = &mut w[..plan.len];
        let off = row(r, start, seg)? + start;
        sample_math.extend(seg.iter().zip(&a_math[off..off + plan.len]).map(|(w, a)| (w * a).abs()));
        if let Some(ag) = a_general {
            sample_general.extend(seg.iter().zip(&ag[off..off + plan.len]).map(|(w, a)| (w * a).abs()));
        }
        r += plan.row_step;
        i += 1;
    }
    let share = k as f64 / numel as f64;
    let lo_math = lower_bracket(&sample_math, plan.len, share);
    // A general stream that is absent never selects: +inf collects nothing and is never read.
    let lo_general = if a_general.is_some() { lower_bracket(&sample_general, plan.len, share) } else { f32::INFINITY };

    // 2. The pass: collect everything at or above the brackets, in flat order.
    // Candidate lists are kept per worker thread and reused from matrix to matrix: fresh
    // megabyte-sized vectors each time cost page faults and copies as they grow.
    CANDIDATES.with(|c| {
        let (math, general) = &mut *c.borrow_mut();
        math.clear();
        general.clear();
        let result = collect_and_select(n_rows, n_in, &mut row, a_math, a_general, k, cap, (lo_math, lo_general), &mut w, math, general);
        // A huge matrix (an untied head) would leave hundreds of MB held by this thread for the
        // rest of the run: buffers beyond the cap are given back instead of kept for reuse.
        if math.capacity() > KEPT_CANDIDATES {
            *math = Vec::new();
        }
        if general.capacity() > KEPT_CANDIDATES {
            *general = Vec::new();
        }
        result
    })
}

/// Largest candidate buffer a worker thread keeps for the next matrix (4 Mi entries, 64 MiB):
/// every FFN or attention matrix of a 1–2B model fits; only a head-sized one is freed after use.
const KEPT_CANDIDATES: usize = 1 << 22;

/// A worker thread's candidate buffers: math candidates, and (index, score) general ones.
type CandidateBuffers = (Vec<MathCandidate>, Vec<(u64, f32)>);

thread_local! {
    static CANDIDATES: std::cell::RefCell<CandidateBuffers> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Steps 2 and 3 of `one_pass`: the pass over every row, then the exact rule on the candidates
/// (`rule_on_candidates`); `None` when the brackets let too many or too few through.
#[allow(clippy::too_many_arguments)]
fn collect_and_select<E>(
    n_rows: u64,
    n_in: usize,
    row: &mut impl FnMut(u64, usize, &mut [f32]) -> Result<usize, E>,
    a_math: &[f32],
    a_general: Option<&[f32]>,
    k: u64,
    cap: usize,
    (lo_math, lo_general): (f32, f32),
    w: &mut [f32],
    math: &mut Vec<MathCandidate>,
    general: &mut Vec<(u64, f32)>,
) -> Result<Option<BitMask>, E> {
    let (lo_m8, lo_g8) = (f32x8::splat(lo_math), f32x8::splat(lo_general));
    let zeros = vec![0f32; n_in];
    for r in 0..n_rows {
        let off = row(r, 0, w)?;
        let am = &a_math[off..off + n_in];
        let ag = a_general.map_or(&zeros[..], |g| &g[off..off + n_in]);
        let base = r * n_in as u64;
        let n8 = n_in / 8 * 8;
        for j0 in (0..n8).step_by(8) {
            let wv = f32x8::new(w[j0..j0 + 8].try_into().expect("8 lanes"));
            let sm = (wv * f32x8::new(am[j0..j0 + 8].try_into().expect("8 lanes"))).abs();
            let sg = (wv * f32x8::new(ag[j0..j0 + 8].try_into().expect("8 lanes"))).abs();
            // Lanes at or above the brackets; `<` is false for NaN, so a NaN lane is collected.
            let mut hit_m = !sm.simd_lt(lo_m8).to_bitmask() & 0xFF;
            let mut hit_g = !sg.simd_lt(lo_g8).to_bitmask() & 0xFF;
            if hit_m | hit_g == 0 {
                continue;
            }
            let (sm, sg) = (sm.to_array(), sg.to_array());
            while hit_m != 0 {
                let lane = hit_m.trailing_zeros() as usize;
                math.push(MathCandidate { index: base + (j0 + lane) as u64, math: sm[lane], general: sg[lane] });
                hit_m &= hit_m - 1;
            }
            while hit_g != 0 {
                let lane = hit_g.trailing_zeros() as usize;
                general.push((base + (j0 + lane) as u64, sg[lane]));
                hit_g &= hit_g - 1;
            }
        }
        // Bit order = value order for these non-negative scores (NaN above +inf, as in
        // `total_cmp`), so a NaN score is collected like the largest value.
        let mut collect = |j: usize| {
            let sm = (w[j] * am[j]).abs();
            let sg = (w[j] * ag[j]).abs();
            if sm.to_bits() >= lo_math.to_bits() {
                math.push(MathCandidate { index: base + j as u64, math: sm, general: sg });
            }
            if sg.to_bits() >= lo_general.to_bits() {
                general.push((base + j as u64, sg));
            }
        };
        for j in n8..n_in {
            collect(j);
        }
        if math.len() > cap || general.len() > cap {
            return Ok(None);
        }
    }
    if (math.len() as u64) < k || (a_general.is_some() && (general.len() as u64) < k) {
        return Ok(None);
    }
    Ok(Some(rule_on_candidates(n_rows * n_in as u64, math, a_general.is_some().then_some(&general[..]), k)))
}

/// Step 3 of `one_pass`: exact thresholds among the candidates, then the rule (in the math top
/// k and, when `general` candidates are given, not in the general top k) over `numel` entries.
fn rule_on_candidates(numel: u64, math: &[MathCandidate], general: Option<&[(u64, f32)]>, k: u64) -> BitMask {
    let mut mask = BitMask::new(numel);
    let t_math = threshold_of_bits(&mut math.iter().map(|c| c.math.to_bits()).collect::<Vec<_>>(), k);
    let last_math_tie = last_tie_index(math.iter().map(|c| (c.index, c.math)), t_math);
    let general_rule = general.map(|general| {
        let t = threshold_of_bits(&mut general.iter().map(|c| c.1.to_bits()).collect::<Vec<_>>(), k);
        (t, last_tie_index(general.iter().copied(), t))
    });
    for c in math.iter() {
        let in_math = member(c.math, c.index, t_math, last_math_tie);
        let in_general = general_rule.is_some_and(|(t, last)| member(c.general, c.index, t, last));
        if in_math && !in_general {
            mask.set(c.index);
        }
    }
    mask
}

/// The score that the sample says lies safely below the k-th largest (k = `share` of entries).
/// The sample is made of segments of `seg` entries, one per row; rows differ in scale, so the
/// standard error of the share above a value is measured between segments (cluster sampling),
/// and the bracket sits `MARGIN_SIGMAS` of them (plus the binomial error) below the estimate.
/// 0 (collect everything) when the sample is too small to say.
fn lower_bracket(sample: &[f32], seg: usize, share: f64) -> f32 {
    let n = sample.len();
    if n == 0 || seg == 0 {
        return 0.0;
    }
    // Bit patterns order like the values (non-negative scores) and compare faster.
    let mut sorted: Vec<u32> = sample.iter().map(|v| v.to_bits()).collect();
    let estimate_rank = ((n as f64 * share).ceil() as usize).clamp(1, n) - 1;
    let estimate = *sorted.select_nth_unstable_by(estimate_rank, |a, b| b.cmp(a)).1;
    // Share above the estimate in each segment, and its standard error over segments.
    let shares: Vec<f64> = sample
        .chunks(seg)
        .map(|c| c.iter().filter(|v| v.to_bits() >= estimate).count() as f64 / c.len() as f64)
        .collect();
    let m = shares.len() as f64;
    let mean = shares.iter().sum::<f64>() / m;
    let var = shares.iter().map(|p| (p - mean) * (p - mean)).sum::<f64>() / (m - 1.0).max(1.0);
    let cluster_se = (var / m).sqrt();
    let binomial_se = (share * (1.0 - share) / n as f64).sqrt();
    let margin = MARGIN_SIGMAS * (cluster_se + binomial_se);
    let rank = (n as f64 * (share + margin) + 8.0).ceil() as usize;
    if rank >= n {
        return 0.0;
    }
    // `sorted` is partitioned at the estimate, and rank ≥ estimate_rank: look only below it.
    let below = &mut sorted[estimate_rank..];
    f32::from_bits(*below.select_nth_unstable_by(rank - estimate_rank, |a, b| b.cmp(a)).1)
}

/// `topk::threshold` over the bit patterns of non-negative scores (their order as integers is
/// their order by `total_cmp`; integer comparisons make the selection several times cheaper).
fn threshold_of_bits(keys: &mut [u32], k: u64) -> Threshold {
    let k = k.min(keys.len() as u64) as usize;
    if k == 0 {
        return Threshold { value: None, ties_taken: 0 };
    }
    let (above, kth, _) = keys.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
    let kth = *kth;
    let greater = above.iter().filter(|&&x| x > kth).count();
    Threshold { value: Some(f32::from_bits(kth)), ties_taken: (k - greater) as u64 }
}

/// Flat index of the last entry equal to the threshold that the top k still takes (entries in
/// flat order); `None` when no tie is taken or k = 0.
fn last_tie_index(entries: impl Iterator<Item = (u64, f32)>, t: Threshold) -> Option<u64> {
    let value = t.value?;
    let mut taken = 0;
    for (index, score) in entries {
        if taken == t.ties_taken {
            break;
        }
        if score.to_bits() == value.to_bits() {
            taken += 1;
            if taken == t.ties_taken {
                return Some(index);
            }
        }
    }
    None
}

/// Whether an entry belongs to the top k described by `t` and its last taken tie.
#[inline]
fn member(score: f32, index: u64, t: Threshold, last_tie: Option<u64>) -> bool {
    let Some(value) = t.value else { return false };
    let (s, v) = (score.to_bits(), value.to_bits());
    s > v || (s == v && last_tie.is_some_and(|last| index <= last))
}
