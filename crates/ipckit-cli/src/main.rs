//! `ipckit`: every way Linux processes talk, from the command line.
//!
//! `main` first hands the hidden peer mode of the bench (`ipckit __peer <spec>`) to the
//! harness, then parses the command line and runs one command. A user's mistake is one line on
//! stderr and exit status 2 (return a [`UserError`] from a command, or an `io::Error` of a
//! kind that names the user's mistake: see [`is_user_error`]); any other failure exits 1;
//! a closed stdout (`ipckit bench | head`) is success. A command that succeeds may still choose
//! its exit status (`ipckit pipeline` exits with its pipeline's, as a shell does).
#![deny(unsafe_code)]

mod cli;
mod command;

use clap::Parser;
use std::fmt;
use std::io;
use std::process::ExitCode;

/// A mistake in what the user asked for. Commands return it (through `anyhow`) to get exit
/// status 2 and a single line on stderr:
///
/// ```ignore
/// return Err(crate::UserError::new(format!("unknown address '{addr}'")).into());
/// ```
#[derive(Debug)]
pub struct UserError(pub String);

impl UserError {
    /// A user error with this message.
    pub fn new(msg: impl Into<String>) -> UserError {
        UserError(msg.into())
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// Exit status for usage errors.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(ipckit_bench::PEER_ARG) {
        let code = ipckit_bench::peer_main(&args[2..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    return ExitCode::SUCCESS;
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    return ExitCode::from(EXIT_USAGE);
                }
                _ => {
                    let text = e.to_string();
                    let line = first_paragraph(&text);
                    let line = line.strip_prefix("error: ").unwrap_or(&line);
                    let possible = text
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("[possible values: "));
                    match possible {
                        Some(p) => eprintln!(
                            "ipckit: {line}; expected one of: {}",
                            p.trim_end_matches(']')
                        ),
                        None => eprintln!("ipckit: {line} (see 'ipckit --help')"),
                    }
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
    };
    // `signal listen` and `serve` block their signals here, before anything can start a thread.
    let r = command::signal::block_before_threads(&cli.command)
        .and_then(|()| command::serve::block_before_threads(&cli.command))
        .and_then(|()| command::run(&cli));
    match r {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            if let Some(u) = e.downcast_ref::<UserError>() {
                eprintln!("ipckit: {u}");
                return ExitCode::from(EXIT_USAGE);
            }
            // One line whatever the chain holds (a message with a newline in it included).
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("ipckit: {line}");
            if is_user_error(&e) {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The first paragraph of clap's message on one line: "the following required arguments
/// were not provided:" is followed by the arguments, one per indented line.
fn first_paragraph(text: &str) -> String {
    let para: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    if para.is_empty() {
        "invalid arguments".into()
    } else {
        para.join(" ")
    }
}

/// True if the failure is the user's to fix: the chain holds a [`UserError`], or an OS error
/// of a kind that says the request itself cannot be done as asked, whatever the machine's
/// state: a name the user gave that does not exist, may not be used by this user, is
/// malformed or too long, or is in use; or an input that is the wrong kind of file or too big.
/// Everything else (out of memory, a peer's I/O failing, a full disk) is a failure, exit 1.
fn is_user_error(e: &anyhow::Error) -> bool {
    use io::ErrorKind as K;
    e.chain().any(|c| {
        c.is::<UserError>()
            || c.downcast_ref::<io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    K::NotFound
                        | K::PermissionDenied
                        | K::InvalidInput
                        | K::InvalidFilename
                        | K::AlreadyExists
                        | K::AddrInUse
                        | K::AddrNotAvailable
                        | K::NotADirectory
                        | K::IsADirectory
                        | K::FileTooLarge
                        | K::ReadOnlyFilesystem
                )
            })
    })
}

/// True if the error chain holds an `EPIPE` (stdout closed by the reader).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}
