//! The `ftptrace` command.

use std::process::ExitCode;

use clap::Parser as _;
use ftptrace::{
    check,
    cli::{Cli, Command},
    diagnostics,
    output::OutputClosed,
    replay, report, trace,
};

/// Every kernel event allocates a little on its way to a line (names,
/// FTP text, timeline entries) and most of it is freed at once: mimalloc's
/// per-thread free lists cut the pipeline's time a record by about a
/// tenth against glibc's malloc, and its resident bytes for 100k idle
/// sessions (`cargo xtask bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `bytes` on standard output; a reader that closed it (`| head`) had
/// what it wanted.
fn print_all(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| anyhow::anyhow!("cannot write to standard output: {e}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    diagnostics::init(cli.log_format, cli.log_level);
    let result = match &cli.command {
        Some(Command::Trace(args)) => trace::run(args),
        Some(Command::Check(args)) => match check::run(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Some(Command::Replay(args)) => replay::run(args),
        Some(Command::Report(args)) => report::run(args),
        Some(Command::Completions { shell }) => {
            let mut script = Vec::new();
            Cli::completions(*shell, &mut script);
            print_all(&script)
        }
        Some(Command::Man) => {
            let mut page = Vec::new();
            Cli::man_page(&mut page)
                .map_err(anyhow::Error::from)
                .and_then(|()| print_all(&page))
        }
        None => trace::run(&cli.trace),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `ftptrace | head`: the reader has what it wanted.
        Err(error) if error.is::<OutputClosed>() => ExitCode::SUCCESS,
        Err(error) => {
            log::error!(target: diagnostics::EXIT, "{error:#}");
            ExitCode::FAILURE
        }
    }
}
