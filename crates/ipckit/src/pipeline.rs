//! Shell-style pipelines without a shell: `a | b | c`, each stage's exit status collected,
//! the pipeline's status computed as bash computes it.
//!
//! A stage is an argv, or a string split with POSIX shell quoting by [`split`]. No shell
//! runs: globs, `$` expansions, redirections and the like are refused (they are a shell's job),
//! so a stage either means what it means in `bash -c` or is an error.
//!
//! # Examples
//!
//! ```
//! use ipckit::pipeline::Pipeline;
//! use std::io::Read;
//! use std::process::Stdio;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // seq 1 100000 | grep 7 | wc -l
//! let mut running = Pipeline::new()
//!     .stage_str("seq 1 100000")?
//!     .stage_str("grep 7")?
//!     .stage(["wc", "-l"])
//!     .stdout(Stdio::piped())
//!     .spawn()?;
//! let mut out = String::new();
//! running.take_stdout().unwrap().read_to_string(&mut out)?;
//! let outcome = running.wait()?;
//! assert_eq!(out.trim(), "40951");
//! assert_eq!(outcome.pipestatus(), [0, 0, 0]);
//!
//! // yes | head -n 3: `yes` dies of SIGPIPE once `head` has gone, as under a shell.
//! let outcome = Pipeline::new()
//!     .stage(["yes"])
//!     .stage(["head", "-n", "3"])
//!     .stdout(Stdio::null())
//!     .pipefail(true)
//!     .spawn()?
//!     .wait()?;
//! assert_eq!(outcome.pipestatus(), [141, 0]); // 128 + SIGPIPE
//! assert_eq!(outcome.status(), 141); // with pipefail; 0 without
//! # Ok(()) }
//! ```
//!
//! # What each stage gets
//!
//! - Its stdin is the previous stage's pipe (the first stage's is [`Pipeline::stdin`],
//!   inherited by default); its stdout the next stage's pipe (the last stage's is
//!   [`Pipeline::stdout`]); stderr is inherited.
//! - No other stage's pipe end. Every pipe is made with `pipe2(O_CLOEXEC)`, and Rust's
//!   standard library opens everything close-on-exec too, so the only descriptors that
//!   survive a stage's `exec` are the ones `dup2`'d onto its 0 and 1 (a `dup2` copy does not
//!   carry the flag). This process's copies of a stage's ends are closed right after that
//!   stage is spawned, so a reader sees end-of-file when its writers exit and a writer gets
//!   `SIGPIPE` when its readers do. A descriptor some other code in this process opened
//!   without close-on-exec would be inherited by every stage, as it would be under a shell.
//! - `SIGPIPE` at its default action (the standard library resets it in the child; Rust
//!   ignores it in this process) and an empty signal mask (cleared between `fork` and
//!   `exec`, since a thread that blocks signals would otherwise pass its mask on), so
//!   `yes | head` ends the way it ends under a shell. Other ignored signals stay ignored, as
//!   they would under a non-interactive shell.
//! - The programs are found on `PATH` the way `execvp` finds them, all before anything is
//!   spawned: a missing program means no stage starts. `argv[0]` is the name as written.
//!
//! # Status
//!
//! A stage's status is its exit code, or 128 + n if signal n killed it (bash's `$?` and
//! `PIPESTATUS`). The pipeline's status is the last stage's, or with [`Pipeline::pipefail`]
//! the rightmost non-zero one (0 if all are zero), as with bash's `set -o pipefail`.
//!
//! # References
//!
//! `pipe(7)` (I/O on pipes, `SIGPIPE`, capacity), `pipe2(2)`, `fcntl(2)` (`F_SETPIPE_SZ`),
//! `execvp(3)`, bash(1) "Pipelines" and the `PIPESTATUS` variable, `set -o pipefail`,
//! POSIX.1-2017 XCU 2.9.2 "Pipelines".

mod split;

pub use split::{split, SplitError, SplitErrorKind};

use crate::signal::Signal;
use crate::sys::pipe as syspipe;
use crate::sys::proc as sysproc;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A pipeline to run: its stages, in order, and how they are connected.
#[derive(Debug, Default)]
pub struct Pipeline {
    stages: Vec<Vec<OsString>>,
    pipe_size: Option<usize>,
    pipefail: bool,
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
}

impl Pipeline {
    /// An empty pipeline; add stages with [`Pipeline::stage`] or [`Pipeline::stage_str`].
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Appends a stage given as an argv (the program, then its arguments), taken as is.
    pub fn stage<I, S>(mut self, argv: I) -> Pipeline
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.stages
            .push(argv.into_iter().map(|a| a.as_ref().to_owned()).collect());
        self
    }

    /// Appends a stage written as a shell would write it, split by [`split`].
    ///
    /// # Errors
    ///
    /// The [`SplitError`] for a stage that is empty, badly quoted, or uses a shell feature.
    pub fn stage_str(self, stage: &str) -> Result<Pipeline, SplitError> {
        Ok(self.stage(split(stage)?))
    }

    /// Sets every pipe's capacity in bytes (`F_SETPIPE_SZ`; the kernel rounds it up to a
    /// power-of-two number of pages). Default: the system's (64 KiB on Linux).
    #[doc(alias = "F_SETPIPE_SZ")]
    pub fn pipe_capacity(mut self, bytes: usize) -> Pipeline {
        self.pipe_size = Some(bytes);
        self
    }

    /// With `true`, the pipeline's status is the rightmost non-zero stage status, as with
    /// bash's `set -o pipefail`; otherwise the last stage's.
    pub fn pipefail(mut self, on: bool) -> Pipeline {
        self.pipefail = on;
        self
    }

    /// The first stage's stdin (default: inherited).
    pub fn stdin(mut self, stdin: Stdio) -> Pipeline {
        self.stdin = Some(stdin);
        self
    }

    /// The last stage's stdout (default: inherited).
    pub fn stdout(mut self, stdout: Stdio) -> Pipeline {
        self.stdout = Some(stdout);
        self
    }

    /// Finds every program, makes the pipes, and starts every stage.
    ///
    /// # Errors
    ///
    /// Before anything starts: `InvalidInput` for no stages or an empty one; `NotFound`
    /// ("stage 2: 'nosuchprog': command not found") or `PermissionDenied` for a program that
    /// cannot be run; `InvalidInput` for a pipe size over `/proc/sys/fs/pipe-max-size`; the
    /// `pipe2` or `fcntl` error. If a stage still fails to start (say, a script whose
    /// interpreter is missing, or `EMFILE`), the stages already started are killed and reaped,
    /// and the error names the stage.
    #[doc(alias = "pipe2")]
    #[doc(alias = "fork")]
    #[doc(alias = "execvp")]
    pub fn spawn(self) -> io::Result<Running> {
        let Pipeline {
            stages,
            pipe_size,
            pipefail,
            mut stdin,
            mut stdout,
        } = self;
        if stages.is_empty() {
            return Err(crate::error::invalid("a pipeline needs at least one stage"));
        }
        let mut programs = Vec::with_capacity(stages.len());
        for (i, argv) in stages.iter().enumerate() {
            let Some(name) = argv.first() else {
                return Err(crate::error::invalid(format!(
                    "stage {}: empty stage: there is no command to run",
                    i + 1
                )));
            };
            let program = resolve(name)
                .map_err(|e| io::Error::new(e.kind(), format!("stage {}: {e}", i + 1)))?;
            programs.push(program);
        }
        // pipes[i] connects stage i to stage i + 1: (read end, write end).
        let mut pipes = Vec::with_capacity(stages.len() - 1);
        for _ in 1..stages.len() {
            let (r, w) = syspipe::pipe2(false)?;
            pipes.push((Some(r), Some(w)));
        }
        // Checked against the system maximum even for a single stage, which has no pipe.
        let set = match pipe_size {
            Some(size) => Some(crate::stream::set_pipe_capacity_checked(
                pipes
                    .iter()
                    .filter_map(|(r, _)| r.as_ref().map(AsFd::as_fd)),
                size,
            )?),
            None => None,
        };
        let capacity = match pipes.first() {
            Some((Some(r), _)) => Some(set.map_or_else(|| syspipe::pipe_size(r.as_fd()), Ok)?),
            _ => None,
        };
        let mut running = Running {
            stages: Vec::with_capacity(stages.len()),
            pipefail,
            capacity,
        };
        let last = stages.len() - 1;
        for (i, (argv, program)) in stages.iter().zip(&programs).enumerate() {
            let mut cmd = Command::new(program);
            cmd.arg0(&argv[0]).args(&argv[1..]);
            sysproc::empty_signal_mask_in_child(&mut cmd);
            let input = if i == 0 {
                stdin.take().unwrap_or_else(Stdio::inherit)
            } else {
                end(pipes[i - 1].0.take())
            };
            let output = if i == last {
                stdout.take().unwrap_or_else(Stdio::inherit)
            } else {
                end(pipes[i].1.take())
            };
            cmd.stdin(input).stdout(output);
            let spawned = cmd.spawn();
            // Closes this process's copies of the stage's ends, now that it has its own.
            drop(cmd);
            match spawned {
                Ok(child) => running.stages.push(Stage {
                    child,
                    status: None,
                }),
                Err(e) => {
                    // Dropping `running` kills and reaps the stages already started.
                    drop(running);
                    return Err(io::Error::new(
                        e.kind(),
                        format!("stage {}: '{}': {e}", i + 1, argv[0].to_string_lossy()),
                    ));
                }
            }
        }
        Ok(running)
    }
}

/// A pipe end as a stage's stdin or stdout.
fn end(fd: Option<OwnedFd>) -> Stdio {
    // Each end is taken exactly once, by the one stage it belongs to.
    Stdio::from(fd.expect("a pipe end is handed to one stage only"))
}

/// Finds `name` as `execvp` would: a name with a `/` is a path, used as is; otherwise the
/// first executable regular file of that name in a `PATH` directory (an empty entry is the
/// current directory; no `PATH` means `/bin:/usr/bin`, glibc's default).
fn resolve(name: &OsStr) -> io::Result<PathBuf> {
    let shown = name.to_string_lossy();
    let not_found = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("'{shown}': command not found"),
        )
    };
    if name.is_empty() {
        return Err(not_found());
    }
    if name.as_bytes().contains(&b'/') {
        let path = Path::new(name);
        let meta = std::fs::metadata(path)
            .map_err(|e| io::Error::new(e.kind(), format!("'{shown}': {e}")))?;
        if meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("'{shown}': is a directory"),
            ));
        }
        if !sysproc::may_execute(path) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("'{shown}': permission denied (not executable)"),
            ));
        }
        return Ok(path.to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
    for dir in std::env::split_paths(&path) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(name);
        if candidate.metadata().is_ok_and(|m| m.is_file()) && sysproc::may_execute(&candidate) {
            return Ok(candidate);
        }
    }
    Err(not_found())
}

/// How one stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageStatus {
    /// It exited with this code.
    Exited(u8),
    /// This signal killed it.
    Signaled(Signal),
}

impl StageStatus {
    /// The status as a shell reports it: the exit code, or 128 + the signal's number.
    pub fn code(self) -> u8 {
        match self {
            StageStatus::Exited(c) => c,
            // Signal numbers are 1 to 64, so this is at most 192.
            StageStatus::Signaled(s) => 128 + s.number() as u8,
        }
    }

    fn from_exit(st: std::process::ExitStatus) -> StageStatus {
        if let Some(c) = st.code() {
            return StageStatus::Exited(c as u8);
        }
        match st.signal().map(Signal::new) {
            Some(Ok(s)) => StageStatus::Signaled(s),
            // Neither an exit nor a known signal cannot come from `wait`; report a failure.
            _ => StageStatus::Exited(255),
        }
    }
}

impl fmt::Display for StageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageStatus::Exited(c) => write!(f, "{c}"),
            StageStatus::Signaled(s) => write!(f, "{} (killed by {s})", self.code()),
        }
    }
}

/// How a whole pipeline ended: every stage's status, and the pipeline's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    stages: Vec<StageStatus>,
    pipefail: bool,
}

impl Outcome {
    /// Each stage's status, in pipeline order.
    pub fn stages(&self) -> &[StageStatus] {
        &self.stages
    }

    /// Each stage's status as a shell number, like bash's `PIPESTATUS` array.
    #[doc(alias = "PIPESTATUS")]
    pub fn pipestatus(&self) -> Vec<u8> {
        self.stages.iter().map(|s| s.code()).collect()
    }

    /// The pipeline's status (bash's `$?`): the last stage's, or with `pipefail` the
    /// rightmost non-zero one (0 if every stage succeeded).
    #[doc(alias = "pipefail")]
    pub fn status(&self) -> u8 {
        let mut codes = self.stages.iter().rev().map(|s| s.code());
        if self.pipefail {
            codes.find(|&c| c != 0).unwrap_or(0)
        } else {
            codes.next().unwrap_or(0)
        }
    }

    /// True if [`Outcome::status`] is 0.
    pub fn success(&self) -> bool {
        self.status() == 0
    }
}

/// A started pipeline. Dropping it before every stage has been waited for kills (`SIGKILL`)
/// and reaps the stages still running, so nothing is left behind.
#[derive(Debug)]
pub struct Running {
    stages: Vec<Stage>,
    pipefail: bool,
    capacity: Option<usize>,
}

#[derive(Debug)]
struct Stage {
    child: Child,
    /// Set once the stage has been reaped.
    status: Option<StageStatus>,
}

impl Running {
    /// Each stage's process id, in pipeline order.
    pub fn pids(&self) -> Vec<u32> {
        self.stages.iter().map(|s| s.child.id()).collect()
    }

    /// The capacity of the pipes between the stages, as the kernel set it (`F_GETPIPE_SZ`);
    /// `None` for a single stage.
    #[doc(alias = "F_GETPIPE_SZ")]
    pub fn pipe_capacity(&self) -> Option<usize> {
        self.capacity
    }

    /// The write end of the first stage's stdin, if [`Pipeline::stdin`] was
    /// `Stdio::piped()` (once).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stages.first_mut()?.child.stdin.take()
    }

    /// The read end of the last stage's stdout, if [`Pipeline::stdout`] was
    /// `Stdio::piped()` (once).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stages.last_mut()?.child.stdout.take()
    }

    /// Reaps the stages that have ended, without waiting; the outcome once all have.
    ///
    /// # Errors
    ///
    /// The `waitpid` error.
    pub fn try_wait(&mut self) -> io::Result<Option<Outcome>> {
        for s in self.stages.iter_mut().filter(|s| s.status.is_none()) {
            if let Some(st) = s.child.try_wait()? {
                s.status = Some(StageStatus::from_exit(st));
            }
        }
        Ok(self.outcome())
    }

    /// Waits for every stage to end.
    ///
    /// # Errors
    ///
    /// The `waitpid` error.
    #[doc(alias = "waitpid")]
    pub fn wait(&mut self) -> io::Result<Outcome> {
        for s in self.stages.iter_mut().filter(|s| s.status.is_none()) {
            s.status = Some(StageStatus::from_exit(s.child.wait()?));
        }
        Ok(self.outcome().expect("every stage was reaped"))
    }

    /// Waits at most `timeout` for every stage to end; `None` if some are still running.
    ///
    /// # Errors
    ///
    /// The `waitpid` or `poll` error.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<Outcome>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(o) = self.try_wait()? {
                return Ok(Some(o));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Sleep until the first stage still running exits: its pidfd becomes readable.
            // It is not reaped yet, so its pid still names it.
            let pid = self
                .stages
                .iter()
                .find(|s| s.status.is_none())
                .map(|s| s.child.id());
            match pid.map(sysproc::pidfd_open) {
                Some(Ok(fd)) => {
                    sysproc::pidfd_wait(fd.as_fd(), left)?;
                }
                // No pidfds (before Linux 5.3): wait in short slices.
                _ => std::thread::sleep(left.min(Duration::from_millis(10))),
            }
        }
    }

    /// Sends `sig` to every stage still running (for example, to pass on a `SIGTERM` this
    /// process received).
    ///
    /// # Errors
    ///
    /// The first `kill` error; the signal is still sent to the other stages.
    #[doc(alias = "kill")]
    pub fn signal(&mut self, sig: Signal) -> io::Result<()> {
        // Reap first: a stage that has been reaped must not be signalled (its pid may be
        // reused), and one not yet reaped, even a zombie, keeps its pid.
        self.try_wait()?;
        let mut first_err = None;
        for s in self.stages.iter().filter(|s| s.status.is_none()) {
            if let Err(e) = crate::signal::send(s.child.id(), sig) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Kills (`SIGKILL`) every stage still running and reaps them all.
    ///
    /// # Errors
    ///
    /// The `kill` or `waitpid` error.
    pub fn kill(&mut self) -> io::Result<Outcome> {
        for s in self.stages.iter_mut().filter(|s| s.status.is_none()) {
            s.child.kill()?;
        }
        self.wait()
    }

    fn outcome(&self) -> Option<Outcome> {
        Some(Outcome {
            stages: self
                .stages
                .iter()
                .map(|s| s.status)
                .collect::<Option<_>>()?,
            pipefail: self.pipefail,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for s in self.stages.iter_mut().filter(|s| s.status.is_none()) {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }
}
