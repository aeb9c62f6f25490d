//! The `rvq` command line: parses arguments and calls the library (the `rvq` crate,
//! `crates/rvq`). The handlers live in one module per group of commands.

mod archive_commands;
mod args;
mod bench;
mod classical;
mod compare;
mod info;
mod measure_commands;
mod names;
mod plot;
mod support;
mod sweep;
mod sweep_report;
mod train_commands;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// Mesa's Vulkan drivers look for a Wayland display while wgpu lists adapters, and libwayland
/// prints "error: XDG_RUNTIME_DIR is invalid or not set" when that variable is unset or
/// relative (headless machines, CI). rvq opens no window: an absolute folder with no display
/// socket in it makes that search fail quietly instead.
fn quiet_display_search() {
    let usable = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|v| Path::new(&v).is_absolute());
    if !usable {
        // SAFETY: the first thing main does, before any other thread exists.
        unsafe {
            std::env::set_var(
                "XDG_RUNTIME_DIR",
                std::env::temp_dir().join("rvq-no-display"),
            )
        };
    }
}

/// Output into a closed pipe (`rvq info a.rvq | head -1`) ends rvq as it ends other Unix
/// tools, by SIGPIPE, where Rust's runtime ignores the signal and `println!` then panics.
#[cfg(unix)]
fn default_sigpipe() {
    // SAFETY: the first thing main does, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    #[cfg(unix)]
    default_sigpipe();
    quiet_display_search();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train_commands::run_train(args, cli.verbose),
        Command::Encode(args) => archive_commands::run_encode(args, cli.verbose),
        Command::Decode(args) => archive_commands::run_decode(args, cli.verbose),
        Command::Info(args) => archive_commands::run_info(args),
        Command::Truncate(args) => archive_commands::run_truncate(args),
        Command::Merge(args) => archive_commands::run_merge(args),
        Command::Extend(args) => train_commands::run_extend(args, cli.verbose),
        Command::Export(args) => train_commands::run_export(args, cli.verbose),
        Command::Eval(args) => measure_commands::run_eval(args, cli.verbose),
        Command::Bench(args) => measure_commands::run_bench(args, cli.verbose),
        Command::Sweep(args) => train_commands::run_sweep(args, cli.verbose),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = one_line(&e);
            match hint(&e) {
                Some(h) => eprintln!("rvq: error: {line} ({h})"),
                None => eprintln!("rvq: error: {line}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, as `{:#}` writes them, but each once: a library error
/// that ends its message with its source's (`rvq::Error::Archive`: the path, then what the
/// reader found) is not followed by the source again.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// What to do about a library error, in the command line's terms (the library's messages name
/// no flags).
fn hint(e: &anyhow::Error) -> Option<&'static str> {
    use rvq::Error;
    Some(match e.downcast_ref::<Error>()? {
        Error::ModelMismatch { .. } => "pass the right --model",
        Error::Codebooks { .. } => "give --codebooks within the model's range",
        Error::DuplicateName { .. } => "encode them into separate archives or use --no-names",
        Error::NameNotUtf8 { .. } => "use --no-names",
        Error::Alpha { .. } => "refused because of --strict",
        Error::UnsafeName { .. } => "decode the others with --only NAME, or rename it",
        Error::SameTarget { .. } | Error::TargetInsideTarget { .. } => {
            "decode each with --only NAME into a folder of its own"
        }
        Error::Backend(_) => "use --backend cpu",
        Error::ResumeMismatch { .. } => "rerun with the flags the run was started with",
        _ => return None,
    })
}
