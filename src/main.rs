//! The `mathneuro` binary: parses arguments and maps the result of `cli::run` to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mathneuro::cli::Cli::parse();
    match mathneuro::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // A closed pipe (`mathneuro inspect m.gguf | head`) is not an error worth reporting.
            if err.chain().any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) {
                return ExitCode::SUCCESS;
            }
            eprintln!("mathneuro: error: {}", mathneuro::cli::error_message(&err));
            ExitCode::FAILURE
        }
    }
}
