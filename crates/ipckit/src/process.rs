//! Processes: watching them by descriptor, telling a live one from a reused pid, and facts
//! about this one.
//!
//! A pidfd names one process for its whole life (a reused pid is another process) and becomes
//! readable when it exits, so a parent can wait for its children in the same `epoll` as its
//! sockets and signals, with no `SIGCHLD` handler. Where a process is known only by a pid
//! written down earlier (a registry record, a state file), [`start_time`] and [`is_alive`]
//! tell it from a later process that reused the pid.

use crate::sys::proc;
use std::io;
use std::os::fd::OwnedFd;

pub use crate::sys::proc::{is_alive, start_time};

/// The number of descriptors this process has open (the entries of `/proc/self/fd`).
///
/// For tests (ipckit's own check that nothing leaks a descriptor); not part of the API.
///
/// # Errors
///
/// The error of reading `/proc/self/fd`.
#[doc(hidden)]
pub fn count_open_fds() -> io::Result<usize> {
    crate::sys::fd::count_open_fds()
}

/// The memory page size, in bytes (`sysconf(_SC_PAGESIZE)`): the unit the kernel maps,
/// copies on write and moves with `vmsplice`.
///
/// # References
///
/// sysconf(3).
#[doc(alias = "sysconf")]
#[doc(alias = "_SC_PAGESIZE")]
pub fn page_size() -> usize {
    crate::sys::fork::page_size()
}

/// A pidfd for `pid` (`pidfd_open(pid, 0)`): readable once the process has exited. It does
/// not reap: a child still has to be waited for.
///
/// # Errors
///
/// `NotFound` (`ESRCH`) if no such process exists, or another OS error (e.g. `ENOSYS` on
/// kernels before 5.3).
///
/// # References
///
/// pidfd_open(2).
#[doc(alias = "pidfd_open")]
pub fn pidfd(pid: u32) -> io::Result<OwnedFd> {
    proc::pidfd_open(pid).map_err(|e| io::Error::new(e.kind(), format!("pidfd_open({pid}): {e}")))
}

/// Makes this process die (`SIGKILL`) with its parent, a process started by `parent`: sets
/// `PR_SET_PDEATHSIG`, then checks that the parent is still `parent` — had it died before
/// the call, this process would have been handed to another (init or a subreaper) and the
/// death signal would never come.
///
/// A child calls it first thing after `exec`, with the pid its parent passed on (the
/// environment, an argument). The signal comes when the *thread* that forked this process
/// exits, so the parent should start children from a thread that lives as long as it does
/// (its main thread).
///
/// # Errors
///
/// `Other` naming both pids if the parent is already gone (the caller should exit), or the
/// error of `prctl`.
///
/// # References
///
/// prctl(2) (`PR_SET_PDEATHSIG`), getppid(2).
#[doc(alias = "PR_SET_PDEATHSIG")]
pub fn die_with_parent(parent: u32) -> io::Result<()> {
    proc::set_parent_death_kill()?;
    let now = std::os::unix::process::parent_id();
    if now != parent {
        return Err(io::Error::other(format!(
            "the parent process {parent} is gone (the parent is now {now})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epoll::{Epoll, Events, Interest};
    use std::time::Duration;

    #[test]
    fn a_pidfd_is_readable_once_the_child_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fd = pidfd(child.id()).unwrap();
        let ep = Epoll::new().unwrap();
        ep.add(&fd, 1, Interest::READABLE).unwrap();
        let mut ev = Events::with_capacity(1);
        assert_eq!(ep.try_wait(&mut ev).unwrap(), 0);
        child.kill().unwrap();
        assert_eq!(
            ep.wait_timeout(&mut ev, Duration::from_secs(20)).unwrap(),
            1
        );
        child.wait().unwrap();
        let e = pidfd(u32::MAX >> 2).unwrap_err();
        assert!(e.to_string().contains("pidfd_open"), "{e}");
    }
}
