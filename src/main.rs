//! The `gatehouse` binary: parse the command line, set up logging, run the command.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use gatehouse::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.command.as_ref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(gatehouse::cli::run(cli))
}

/// JSON lines on stdout when serving (one access-log object per request); short human lines on
/// stderr for the demo and one-shot commands. `RUST_LOG` overrides the level.
fn init_logging(command: Option<&Command>) {
    let serving = matches!(command, None | Some(Command::Run { .. }));
    // rustls logs through `log` at WARN for things any client can send (an IP address as SNI),
    // once per handshake: quiet below ERROR unless RUST_LOG asks (SPEC §8.11).
    let default = if serving {
        "info,rustls=error"
    } else {
        "warn,rustls=error"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    if serving {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            // Colour codes are for people: piped into a file or a CI log they are noise.
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .with_env_filter(filter)
            .init();
    }
}
