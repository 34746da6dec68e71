//! ftptrace: explains FTP disconnects from the kernel's point of view.

mod attribution;
mod btf;
mod check;
mod cli;
mod clock;
mod decode;
mod ebpf_loader;
mod event;
mod kernel_facts;
mod kernel_names;
mod output;
mod ports;
mod privileges;
mod probes;
mod prog_stats;
mod trace;
mod tracefs;
mod tracepoint_format;

use std::process::ExitCode;

use clap::Parser as _;

use crate::{
    cli::{Cli, Command},
    output::OutputClosed,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Trace(args)) => trace::run(args),
        Some(Command::Check(args)) => match check::run(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        None => trace::run(&cli.trace),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `ftptrace | head`: the reader has what it wanted.
        Err(error) if error.is::<OutputClosed>() => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ftptrace: {error:#}");
            ExitCode::FAILURE
        }
    }
}
