//! Never lose a user's file, never leave a file behind: the output-path policy every writing
//! command checks before it starts ([`OutputPlan`]), the refusal of non-regular input files
//! ([`inputs`]), the lock that keeps a second writer off the same outputs ([`lock`]), and the
//! registry of temporary files and outputs that a signal or a failure cleans up ([`tempfiles`]),
//! and the journal a long run resumes from ([`journal`]).

pub mod inputs;
pub mod journal;
pub mod lock;
pub mod outputs;
pub mod tempfiles;

pub use outputs::{OutputError, OutputPlan};


/// Set while a command of the binary runs (see [`start_command`]).
static IN_COMMAND: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks the start of a command of the binary: from now on a checked [`OutputPlan`] locks its
/// outputs and watches them for removal on failure. A library caller (a test, another program)
/// that never calls this gets the checks only, with no process-wide state.
pub fn start_command() {
    IN_COMMAND.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether a command of the binary runs (locks and watches apply).
pub fn in_command() -> bool {
    IN_COMMAND.load(std::sync::atomic::Ordering::SeqCst)
}

/// Ends a command's hold on its outputs: on failure (`ok` false) the outputs this run renamed into
/// place are removed again (said on stderr); the lock files are removed either way.
pub fn finish_command(ok: bool) {
    if !ok {
        for p in tempfiles::roll_back() {
            eprintln!("mathneuro: removed {}, written by this run before it failed", p.display());
        }
    }
    lock::release_all();
}
