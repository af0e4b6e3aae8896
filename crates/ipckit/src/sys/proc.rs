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
    let Some(close) = stat.rfind(')') else { return false };
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
