//! The `mathneuro` binary: parses arguments and maps the result of `cli::run` to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mathneuro::cli::Cli::parse();
    let result = mathneuro::cli::run(cli);
    // A broken pipe after the outputs were written is not a failure of the command.
    let broken_pipe = |err: &anyhow::Error| err.chain().any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe));
    mathneuro::safety::finish_command(result.as_ref().is_ok() || result.as_ref().is_err_and(broken_pipe));
    match result {
        Ok(code) => code,
        Err(err) => {
            // A closed pipe (`mathneuro inspect m.gguf | head`) is not an error worth reporting.
            if broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("mathneuro: error: {}", mathneuro::cli::error_message(&err));
            ExitCode::FAILURE
        }
    }
}
