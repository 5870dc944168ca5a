//! The `gatehouse` binary: parse the command line, set up logging, run the command.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use gatehouse::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc malloc: per-connection buffers come and go on every request, and
/// glibc's arenas keep freed memory fragmented under 10k idle connections (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.command.as_ref());
    let runtime = match build_runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(gatehouse::cli::run(cli))
}

/// The async runtime, shaped to the CPUs this process may use (its affinity mask and cgroup
/// quota, as `available_parallelism` reads them). On one CPU — a pinned container, the NGINX
/// `worker_processes 1` comparison — a current-thread runtime does the same work without the
/// work-stealing scheduler's cross-thread wakeups and atomics; with more, one worker per CPU.
fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()
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
