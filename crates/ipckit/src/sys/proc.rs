//! Processes: pidfds, start times and the boot id.
//!
//! # Safety
//!
//! `pidfd_open` is a raw syscall taking two integers; its result becomes an `OwnedFd` at once.

use super::fd::{cvt, owned};
use std::io;
use std::os::fd::OwnedFd;

/// `pidfd_open(pid, 0)`: a descriptor that becomes readable when `pid` exits.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: the syscall takes a pid and flags, no pointers.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) })?;
    Ok(owned(fd as i32))
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat`, field 22). Together
/// with the pid it names one process for the whole uptime, so a reused pid is not mistaken for
/// the original owner.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: parse after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')' come field 3 (state) onwards; field 22 is index 19 here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True if a process with this pid and start time exists (and is not a zombie).
pub fn is_alive(pid: u32, start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let mut fields = stat[close + 1..].split_whitespace();
    let state = fields.next().unwrap_or("");
    if state == "Z" || state == "X" {
        return false;
    }
    fields.nth(18).and_then(|s| s.parse::<u64>().ok()) == Some(start)
}

/// This boot's id, so two processes can tell whether they share a kernel (and so whether a
/// pid from the other is meaningful here).
pub(crate) fn boot_id() -> [u8; 16] {
    let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let hex: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).take(16).enumerate() {
        let txt = std::str::from_utf8(pair).unwrap_or("0");
        out[i] = u8::from_str_radix(txt, 16).unwrap_or(0);
    }
    out
}

/// Pid of the calling process.
pub(crate) fn getpid() -> u32 {
    std::process::id()
}

/// Arranges for `fds` (close-on-exec in this process) to stay open across the exec of
/// `cmd`'s child, and only that child: the flag is cleared after the fork, in the child.
pub(crate) fn inherit_in_child(cmd: &mut std::process::Command, fds: Vec<std::os::fd::RawFd>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and calls only fcntl, which is
    // async-signal-safe; it allocates nothing (the Vec was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags == -1 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Adopts an inherited descriptor named by number (from an `fd:N` address).
pub(crate) fn adopt_inherited(fd: std::os::fd::RawFd) -> io::Result<OwnedFd> {
    if fd < 3 || !super::fd::is_open(fd) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "descriptor {fd} was not inherited (is this process the peer it was made for?)"
            ),
        ));
    }
    let owned = owned(fd);
    // Keep it from leaking into our own children.
    super::fd::set_cloexec(std::os::fd::AsFd::as_fd(&owned), true)?;
    Ok(owned)
}
