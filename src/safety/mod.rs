//! Never lose a user's file, never leave a file behind: the output-path policy every writing
//! command checks before it starts ([`OutputPlan`]), the refusal of non-regular input files
//! ([`inputs`]), the lock that keeps a second writer off the same outputs ([`lock`]), and the
//! registry of temporary files and outputs that a signal or a failure cleans up ([`tempfiles`]).

pub mod inputs;
pub mod lock;
pub mod outputs;
pub mod tempfiles;

pub use outputs::{OutputError, OutputPlan};


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
