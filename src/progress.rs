//! The one progress display of every command (calibrate, apply, eval, run, experiments): an
//! indicatif bar when stderr is a terminal; otherwise (a log file, CI, `2> file`) a plain line
//! `LABEL: done/total UNIT (pct), rate, ETA` on stderr after a short warm-up and then about every
//! 10 s, so a long job is never silent. `MATHNEURO_PROGRESS_SECS` changes the interval (tests).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Seconds between plain progress lines unless `MATHNEURO_PROGRESS_SECS` says otherwise.
pub const PLAIN_INTERVAL_SECS: f64 = 10.0;

/// A progress display over `total` units (see the module docs). Cheap to update from any thread.
#[derive(Debug)]
pub struct Progress {
    show: Show,
}

#[derive(Debug)]
enum Show {
    Hidden,
    Bar(ProgressBar),
    Plain(Mutex<Plain>),
}

#[derive(Debug)]
struct Plain {
    label: String,
    unit: &'static str,
    total: u64,
    pos: u64,
    /// Where counting started (a resumed job starts past 0): rates use only the new work.
    start_pos: u64,
    started: Instant,
    next_line: Instant,
    interval: Duration,
    warm_up_done: bool,
}

impl Progress {
    /// A display labelled `label` (e.g. "calibrating gsm8k") over `total` `unit`s ("tok",
    /// "items", "tensors"); nothing is shown when `enabled` is false.
    pub fn new(label: &str, total: u64, unit: &'static str, enabled: bool) -> Progress {
        let show = if !enabled {
            Show::Hidden
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template = format!("{{prefix}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit}, {{per_sec}}, {{elapsed}} elapsed, ETA {{eta}}");
            bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "));
            bar.set_prefix(label.to_string());
            Show::Bar(bar)
        } else {
            let interval = std::env::var("MATHNEURO_PROGRESS_SECS").ok().and_then(|s| s.parse::<f64>().ok()).filter(|s| s.is_finite() && *s > 0.0).unwrap_or(PLAIN_INTERVAL_SECS);
            let interval = Duration::from_secs_f64(interval);
            let now = Instant::now();
            // The first line comes after a warm-up of a third of the interval: early enough to
            // give an ETA for a long job, late enough for the rate to mean something.
            Show::Plain(Mutex::new(Plain { label: label.to_string(), unit, total, pos: 0, start_pos: 0, started: now, next_line: now + interval / 3, interval, warm_up_done: false }))
        };
        Progress { show }
    }

    /// Moves forward by `n` units.
    pub fn inc(&self, n: u64) {
        match &self.show {
            Show::Hidden => {}
            Show::Bar(b) => b.inc(n),
            Show::Plain(p) => lock(p).advance_to(None, n),
        }
    }

    /// Sets the units done so far.
    pub fn set_position(&self, pos: u64) {
        match &self.show {
            Show::Hidden => {}
            Show::Bar(b) => b.set_position(pos),
            Show::Plain(p) => lock(p).advance_to(Some(pos), 0),
        }
    }

    /// Starts at `pos` units already done (a resumed job); the rate counts only what follows.
    pub fn resume_at(&self, pos: u64) {
        match &self.show {
            Show::Hidden => {}
            Show::Bar(b) => {
                b.set_position(pos);
                b.reset_eta();
            }
            Show::Plain(p) => {
                let mut p = lock(p);
                p.pos = pos;
                p.start_pos = pos;
            }
        }
    }

    /// Ends the display (the bar is cleared; plain output just stops).
    pub fn finish_and_clear(&self) {
        if let Show::Bar(b) = &self.show {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish_and_clear();
    }
}

fn lock(p: &Mutex<Plain>) -> std::sync::MutexGuard<'_, Plain> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl Plain {
    fn advance_to(&mut self, pos: Option<u64>, inc: u64) {
        self.pos = pos.unwrap_or(self.pos + inc).min(self.total.max(self.pos));
        let now = Instant::now();
        if now < self.next_line {
            return;
        }
        self.next_line = now + self.interval;
        eprintln!("{}", self.line(now));
        self.warm_up_done = true;
    }

    fn line(&self, now: Instant) -> String {
        let secs = now.duration_since(self.started).as_secs_f64();
        let done = self.pos.saturating_sub(self.start_pos);
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let pct = if self.total > 0 { 100.0 * self.pos as f64 / self.total as f64 } else { 100.0 };
        let eta = if rate > 0.0 { format_secs(self.total.saturating_sub(self.pos) as f64 / rate) } else { "unknown".into() };
        let note = if self.warm_up_done { "" } else { " (first estimate)" };
        format!("{}: {}/{} {} ({pct:.1}%), {} {}/s, elapsed {}, ETA {eta}{note}", self.label, self.pos, self.total, self.unit, format_rate(rate), self.unit, format_secs(secs))
    }
}

fn format_rate(r: f64) -> String {
    if r >= 100.0 { format!("{r:.0}") } else { format!("{r:.2}") }
}

/// `75` → `1m15s`, `4000` → `1h06m40s`.
fn format_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_carry_done_total_rate_and_eta() {
        let t0 = Instant::now();
        let p = Plain { label: "calibrating x".into(), unit: "tok", total: 1000, pos: 250, start_pos: 0, started: t0, next_line: t0, interval: Duration::from_secs(10), warm_up_done: false };
        let line = p.line(t0 + Duration::from_secs(5));
        assert_eq!(line, "calibrating x: 250/1000 tok (25.0%), 50.00 tok/s, elapsed 5s, ETA 15s (first estimate)");
        assert_eq!(format_secs(4000.0), "1h06m40s");
        assert_eq!(format_secs(75.4), "1m15s");
    }
}
