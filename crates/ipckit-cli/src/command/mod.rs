//! One module per command; each is thin: turn arguments into a call, print the result.

pub mod bench;
pub mod clean;
pub mod compare;
pub mod demo;
pub mod list;
pub mod pipeline;
pub mod recommend;
pub mod recv;
pub mod report;
pub mod send;
pub mod serve;
pub mod signal;

use crate::cli::{Cli, Command};
use std::process::ExitCode;

/// Runs the parsed command. Most commands succeed or fail; `pipeline` exits with the
/// status of the pipeline it ran, as a shell does, so every command returns its exit code.
pub fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    match &cli.command {
        Command::Bench(a) => done(bench::run(a)),
        Command::Send(a) => done(send::run(a)),
        Command::Recv(a) => done(recv::run(a)),
        Command::List(a) => done(list::run(a)),
        Command::Clean(a) => done(clean::run(a)),
        Command::Demo(a) => done(demo::run(a)),
        Command::Signal(a) => done(signal::run(a)),
        Command::Pipeline(a) => pipeline::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Recommend(a) => recommend::run(a),
        Command::Compare(a) => done(compare::run(a)),
        Command::Report(a) => done(report::run(a)),
    }
}
