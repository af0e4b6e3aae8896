//! `ipckit signal listen` and `ipckit signal send`.
//!
//! `listen` blocks its signals in `main` before anything else (see [`block_before_threads`]),
//! then reads them from a signalfd ([`ipckit::signal::Signals`]) in normal context: no code of
//! its own runs in a signal handler. SIGINT and SIGTERM end it: it reads what is still pending
//! (those two have lower numbers than the real-time signals, so they can be read first), then
//! prints a count per signal and exits 0.

use crate::cli::{Command, ListenArgs, SignalArgs, SignalCommand, SignalSendArgs};
use crate::UserError;
use ipckit::signal::{self, SigInfo, Signal, Signals};
use std::collections::BTreeMap;
use std::io::{self, Write};

/// Runs `ipckit signal`.
pub fn run(args: &SignalArgs) -> anyhow::Result<()> {
    match &args.command {
        SignalCommand::Listen(a) => listen(a),
        SignalCommand::Send(a) => send(a),
    }
}

/// The signals `listen` reads: the requested ones (or its defaults), then SIGINT and SIGTERM.
fn listened(args: &ListenArgs) -> Vec<Signal> {
    let mut sigs = if args.signals.is_empty() {
        let mut d = vec![Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2];
        d.extend((Signal::rtmin().number()..=Signal::rtmax().number()).flat_map(Signal::new));
        d
    } else {
        args.signals.clone()
    };
    for end in [Signal::SIGINT, Signal::SIGTERM] {
        if !sigs.contains(&end) {
            sigs.push(end);
        }
    }
    sigs
}

/// For `signal listen`, blocks its signals for the whole process; call first thing in `main`,
/// before any thread exists, so every thread inherits the mask. Other commands: nothing.
pub fn block_before_threads(cmd: &Command) -> anyhow::Result<()> {
    let Command::Signal(SignalArgs {
        command: SignalCommand::Listen(a),
    }) = cmd
    else {
        return Ok(());
    };
    signal::block_for_process(&listened(a)).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput => UserError::new(e.to_string()).into(),
        _ => anyhow::Error::from(e).context("blocking the signals to listen for"),
    })
}

fn listen(args: &ListenArgs) -> anyhow::Result<()> {
    let sigs = listened(args);
    let source = Signals::new(&sigs)?;
    let names: Vec<String> = sigs.iter().map(|s| s.name()).collect();
    eprintln!(
        "ipckit: receiving on signals {} as pid {}; SIGINT or SIGTERM prints a summary and exits",
        names.join(","),
        std::process::id()
    );
    let ends = |i: &SigInfo| i.signal == Signal::SIGINT || i.signal == Signal::SIGTERM;
    let explicit = |i: &SigInfo| args.signals.contains(&i.signal);
    let mut counts: BTreeMap<Signal, u64> = BTreeMap::new();
    let mut out = io::stdout().lock();
    loop {
        let info = source.read()?;
        // SIGINT/SIGTERM end the run unless the user asked to see them as ordinary signals too.
        if ends(&info) {
            if explicit(&info) {
                print_info(&mut out, &info, args.json)?;
                *counts.entry(info.signal).or_default() += 1;
            }
            // Whatever else is already pending was sent before the end: report it too.
            while let Some(i) = source.try_read()? {
                if !ends(&i) || explicit(&i) {
                    print_info(&mut out, &i, args.json)?;
                    *counts.entry(i.signal).or_default() += 1;
                }
            }
            break;
        }
        print_info(&mut out, &info, args.json)?;
        *counts.entry(info.signal).or_default() += 1;
    }
    let total: u64 = counts.values().sum();
    let mut summary = format!("summary: {total} signal(s) received\n");
    for (s, n) in &counts {
        summary.push_str(&format!("  {:<12} {n}\n", s.name()));
    }
    if args.json {
        // stdout stays one object per line with the six keys.
        eprint!("{summary}");
    } else {
        out.write_all(summary.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

fn print_info(out: &mut impl Write, i: &SigInfo, json: bool) -> io::Result<()> {
    if json {
        let v = serde_json::json!({
            "signal": i.signal.name(),
            "number": i.signal.number(),
            "pid": i.pid,
            "uid": i.uid,
            "code": i.code.name(),
            "value": i.value,
        });
        writeln!(out, "{v}")?;
    } else {
        let value = match i.value {
            Some(v) => format!(" value {v}"),
            None => String::new(),
        };
        writeln!(
            out,
            "{} ({}) from pid {} uid {} {}{value}",
            i.signal,
            i.signal.number(),
            i.pid,
            i.uid,
            i.code
        )?;
    }
    out.flush()
}

fn send(args: &SignalSendArgs) -> anyhow::Result<()> {
    let (pid, sig) = (args.pid, args.signal);
    for k in 0..args.count {
        let r = match args.value {
            Some(v) => signal::queue(pid, sig, v),
            None => signal::send(pid, sig),
        };
        if let Err(e) = r {
            let sent = if k > 0 {
                format!(" ({k} of {} sent)", args.count)
            } else {
                String::new()
            };
            return Err(match e.raw_os_error() {
                Some(libc::ESRCH) => UserError::new(format!("no process with pid {pid}{sent}")),
                Some(libc::EPERM) => UserError::new(format!(
                    "not permitted to send {sig} to pid {pid} (another user's process?){sent}"
                )),
                _ => return Err(anyhow::Error::from(e).context(format!("sending {sig}{sent}"))),
            }
            .into());
        }
    }
    Ok(())
}
