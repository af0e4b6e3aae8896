//! The harness's own system calls over rustix: affinity, the shared clock, the peer's
//! start-up (death signal, inherited descriptors), descriptor flags, the plain I/O calls of
//! the reference loops, shared memory and futexes for the floor and the reference ring.
//! What rustix lacks is in [`crate::libc_only`].
//!
//! # Safety
//!
//! Every function here is safe to call except [`owned_from_inherited`]. The one mapping
//! ([`SharedPage`]) is unmapped only by its own `Drop`, and every view into it is checked
//! against its length.
#![allow(unsafe_code)]

use rustix::fs::{MemfdFlags, OFlags};
use rustix::io::FdFlags;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::net::{RecvFlags, SendFlags};
use rustix::process::{Pid, Signal};
use rustix::thread::futex;
use rustix::thread::CpuSet;
use rustix::time::{ClockId, Timespec};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// `CLOCK_MONOTONIC` in ns: the same clock in every process, so two processes can compare
/// their timestamps (`Instant` does not expose its value).
pub fn mono_ns() -> u64 {
    let ts = rustix::time::clock_gettime(ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The CPUs this process may run on (`sched_getaffinity`).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = rustix::thread::sched_getaffinity(None)?;
    Ok((0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect())
}

/// Pins the calling thread to one CPU (`sched_setaffinity`).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    set_affinity(&[cpu])
}

/// Restricts the calling thread to `cpus`.
pub fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    let mut set = CpuSet::new();
    for &c in cpus {
        if c >= CpuSet::MAX_CPU {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {c} out of range"),
            ));
        }
        set.set(c);
    }
    rustix::thread::sched_setaffinity(None, &set)?;
    Ok(())
}

/// The parent's pid: one `getppid` system call each time (rustix calls the kernel directly,
/// nothing is cached), so it is also the floor's syscall. Async-signal-safe.
pub fn getppid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
}

/// `prctl(PR_SET_PDEATHSIG, SIGKILL)`: async-signal-safe, for use between fork and exec.
pub fn set_parent_death_signal() -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    Ok(())
}

/// Clears `FD_CLOEXEC` so `fd` survives `exec` (async-signal-safe: one fcntl pair).
pub fn clear_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = rustix::io::fcntl_getfd(fd)?;
    rustix::io::fcntl_setfd(fd, flags - FdFlags::CLOEXEC)?;
    Ok(())
}

/// Sets or clears `O_NONBLOCK`.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    let new = if on {
        flags | OFlags::NONBLOCK
    } else {
        flags - OFlags::NONBLOCK
    };
    rustix::fs::fcntl_setfl(fd, new)?;
    Ok(())
}

/// Takes ownership of a descriptor this process inherited.
///
/// # Safety
///
/// `fd` must be open and owned by nobody else in this process.
pub unsafe fn owned_from_inherited(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller promises `fd` is open and unowned.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `read(2)` once.
#[inline]
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::io::read(fd, buf)?)
}

/// `write(2)` once.
#[inline]
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    Ok(rustix::io::write(fd, buf)?)
}

/// `send(2)` once with `MSG_NOSIGNAL`.
#[inline]
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(fd, buf, SendFlags::NOSIGNAL)?)
}

/// `recv(2)` once.
#[inline]
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::net::recv(fd, buf, RecvFlags::empty())?.0)
}

/// Memory shared between two processes through a memfd: one page for the floor, a ring pair
/// for the reference ring.
#[derive(Debug)]
pub struct SharedPage {
    ptr: NonNull<u8>,
    len: usize,
}

const PAGE: usize = 4096;

impl SharedPage {
    /// Creates a one-page memfd (close-on-exec; the spawner clears that for its child).
    pub fn create_fd() -> io::Result<OwnedFd> {
        Self::create_fd_len(PAGE)
    }

    /// Creates a memfd of `len` bytes.
    pub fn create_fd_len(len: usize) -> io::Result<OwnedFd> {
        let fd = rustix::fs::memfd_create(c"ipckit-floor", MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        Ok(fd)
    }

    /// Maps one page `MAP_SHARED`, read-write.
    pub fn map(fd: BorrowedFd<'_>) -> io::Result<SharedPage> {
        Self::map_len(fd, PAGE)
    }

    /// Maps `len` bytes `MAP_SHARED | MAP_POPULATE`, read-write.
    pub fn map_len(fd: BorrowedFd<'_>, len: usize) -> io::Result<SharedPage> {
        // SAFETY: a fresh mapping chosen by the kernel (no address asked for); no existing
        // memory is affected.
        let p = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::POPULATE,
                fd.as_fd(),
                0,
            )
        }?;
        Ok(SharedPage {
            ptr: NonNull::new(p.cast()).expect("mmap returned null"),
            len,
        })
    }

    /// The atomic at the start of cache line `line`.
    pub fn atomic(&self, line: usize) -> &AtomicU64 {
        self.atomic_at(line * 64)
    }

    /// The atomic at byte offset `off` (a multiple of 8).
    #[inline]
    pub fn atomic_at(&self, off: usize) -> &AtomicU64 {
        assert!(off + 8 <= self.len && off.is_multiple_of(8));
        // SAFETY: 1. the memory is mapped for as long as `self` lives, readable and writable;
        // 2. the offset is 8-byte aligned inside it (checked), so the u64 is aligned;
        // 3. the other process only touches it through atomics too.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(off).cast()) }
    }

    /// The 32-bit atomic at byte offset `off` (a multiple of 4), for futexes.
    #[inline]
    pub fn atomic32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off + 4 <= self.len && off.is_multiple_of(4));
        // SAFETY: as `atomic_at`.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(off).cast()) }
    }

    /// Copies `src` to offset `off`.
    #[inline]
    pub fn copy_in(&self, off: usize, src: &[u8]) {
        assert!(off + src.len() <= self.len);
        // SAFETY: in bounds (checked); `src` is a Rust slice, not inside the mapping; the
        // reference ring's protocol gives these bytes to the writer.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(off), src.len())
        }
    }

    /// Copies into `dst` from offset `off`.
    #[inline]
    pub fn copy_out(&self, off: usize, dst: &mut [u8]) {
        assert!(off + dst.len() <= self.len);
        // SAFETY: as `copy_in`, reading bytes the protocol published to us.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), dst.as_mut_ptr(), dst.len())
        }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map_len` with this length and is unmapped once,
        // here; no reference from `atomic` outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// `FUTEX_WAIT` on a shared word while it holds `expected`, at most `timeout_ms` (0: no
/// limit, and no timer to arm).
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout_ms: u64) {
    let ts = Timespec {
        tv_sec: (timeout_ms / 1000) as _,
        tv_nsec: ((timeout_ms % 1000) * 1_000_000) as _,
    };
    let tsp = (timeout_ms != 0).then_some(&ts);
    // Woken, timed out, interrupted or the word changed: the caller rechecks either way.
    let _ = futex::wait(word, futex::Flags::empty(), expected, tsp);
}

/// `FUTEX_WAKE` of every waiter on a shared word.
pub fn futex_wake(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
}

/// `kill(pid, SIGKILL)`.
pub fn kill_hard(pid: u32) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
    }
}
