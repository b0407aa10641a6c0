//! `chronon`: the command that formats, inspects and (later) runs Chronon replicas.
//!
//! Output for people goes to stdout; logs go to stderr through `tracing` (`--log-level`), and
//! each error is one line on stderr saying what is wrong and what to do.

/// Prints a line to standard output. If the reader went away (`chronon inspect | head`), the
/// command stops quietly with the status a shell gives a process killed by SIGPIPE, instead of
/// panicking as `println!` would.
macro_rules! say {
    ($($arg:tt)*) => {
        crate::say_line(format_args!($($arg)*))
    };
}

mod data_dir;
mod dev;
mod disk;
mod format;
mod inspect;
mod inspect_report;
mod kv;
mod start;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "chronon",
    version,
    about = "Chronon: a replicated storage engine"
)]
struct Cli {
    /// Log level on stderr: error, warn, info, debug, trace, or a tracing filter directive.
    #[arg(long, global = true, value_name = "LEVEL", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a replica's data directory: one preallocated data file per shard.
    Format(format::FormatArgs),
    /// Verify every shard file of a data directory, read-only, and report what recovery
    /// would find and do. Exits non-zero on any corruption.
    Inspect(inspect::InspectArgs),
    /// Run this host's node: one thread per shard of the data directory.
    Start(start::StartArgs),
    /// Format (on first use) and run a local cluster on loopback; writes DIR/cluster.json once
    /// it serves, and stops it on Ctrl-C.
    Dev(dev::DevArgs),
    /// A small client: get, set or delete a key over the native protocol.
    Kv(kv::KvArgs),
}

pub(crate) fn say_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}").is_err() {
        std::process::exit(141);
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    if let Err(error) = init_logging(&cli.log_level) {
        eprintln!("error: {error:#}");
        return ExitCode::from(2);
    }
    let result = match &cli.command {
        Command::Format(args) => format::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Start(args) => start::run(args),
        Command::Dev(args) => dev::run(args),
        Command::Kv(args) => kv::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Commands join several problems with newlines; each becomes its own error line.
            for line in format!("{error:#}").lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Reports a command line clap refused. Missing arguments, which clap lists one per line under
/// a heading, become one line naming them with the command's usage, like every other error of
/// this command; help, version and the other refusals print as clap renders them.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let missing = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::Strings(names))
            if error.kind() == ErrorKind::MissingRequiredArgument =>
        {
            names.join(", ")
        }
        _ => {
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    let usage = match error.get(ContextKind::Usage) {
        Some(ContextValue::StyledStr(usage)) => usage.to_string(),
        _ => String::new(),
    };
    let usage = usage.trim().trim_start_matches("Usage:").trim();
    eprintln!("error: missing {missing}; usage: {usage} (see --help)");
    ExitCode::from(2)
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(level).map_err(|error| {
        anyhow::anyhow!(
            "--log-level {level:?} is not a level or filter ({error}): use error, warn, info, \
             debug or trace"
        )
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    Ok(())
}
