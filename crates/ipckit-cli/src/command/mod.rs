//! One module per command; each is thin: turn arguments into a call, print the result.

pub mod bench;
pub mod clean;
pub mod demo;
pub mod list;
pub mod recv;
pub mod send;
pub mod signal;

use crate::cli::{Cli, Command};

/// Runs the parsed command.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Bench(a) => bench::run(a),
        Command::Send(a) => send::run(a),
        Command::Recv(a) => recv::run(a),
        Command::List(a) => list::run(a),
        Command::Clean(a) => clean::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Signal(a) => signal::run(a),
    }
}
