//! The harness's own libc calls: affinity, CPU time, shared memory for the floor, and the
//! plain syscalls of the reference loops.
//!
//! # Safety
//!
//! Every function here is safe to call. Each `unsafe` block is one FFI call whose pointer
//! arguments come from live Rust references with the lengths the kernel is told; the one
//! mapping ([`SharedPage`]) is unmapped only by its own `Drop`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn cvt_size(rc: libc::ssize_t) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// User + system CPU time of the calling thread (`getrusage(RUSAGE_THREAD)`), in ns.
pub fn thread_cpu_ns() -> u64 {
    // SAFETY: `rusage` is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live, writable rusage the kernel fills.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    if rc != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// `CLOCK_MONOTONIC` in ns: the same clock in every process, so two processes can compare
/// their timestamps (`Instant` does not expose its value).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The CPUs this process may run on (`sched_getaffinity`).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: `cpu_set_t` is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is live and writable and its size is the one passed.
    cvt(unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) })?;
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: every index is below the set's capacity in bits.
    Ok((0..max)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins the calling thread to one CPU (`sched_setaffinity`).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    set_affinity(&[cpu])
}

/// Restricts the calling thread to `cpus`.
pub fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: as in `allowed_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    for &c in cpus {
        if c >= max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {c} out of range"),
            ));
        }
        // SAFETY: `c` is below the set's capacity (checked above).
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    cvt(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) })?;
    Ok(())
}

/// One `getppid` through `syscall(2)` (bypassing any libc caching): the syscall floor.
pub fn syscall_getppid() -> libc::c_long {
    // SAFETY: getppid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_getppid) }
}

/// `prctl(PR_SET_PDEATHSIG, SIGKILL)`: async-signal-safe, for use between fork and exec.
pub fn set_parent_death_signal() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    cvt(unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    Ok(())
}

/// The parent's pid (async-signal-safe).
pub fn getppid() -> u32 {
    // SAFETY: getppid takes no arguments and cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// Clears `FD_CLOEXEC` so `fd` survives `exec` (async-signal-safe: one fcntl pair).
pub fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an integer fd; an invalid fd yields EBADF.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) })?;
    Ok(())
}

/// Sets or clears `O_NONBLOCK`.
pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on an integer fd; an invalid fd yields EBADF.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, new) })?;
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

/// `poll` on one descriptor; `timeout_ms < 0` waits forever. True if ready.
pub fn poll_one(fd: RawFd, events: i16, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one live pollfd, count 1.
        let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(rc > 0);
    }
}

/// `read(2)` once.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is live and writable for `buf.len()` bytes.
    cvt_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// `write(2)` once.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is live and readable for `buf.len()` bytes.
    cvt_size(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

/// `send(2)` once with `MSG_NOSIGNAL`.
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is live and readable for `buf.len()` bytes.
    cvt_size(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) })
}

/// `recv(2)` once.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is live and writable for `buf.len()` bytes.
    cvt_size(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
}

/// `mq_send(3)` at priority 0.
pub fn mq_send(mqd: RawFd, buf: &[u8]) -> io::Result<()> {
    // SAFETY: `buf` is live and readable for `buf.len()` bytes; mqd is an integer.
    cvt(unsafe { libc::mq_send(mqd, buf.as_ptr().cast(), buf.len(), 0) })?;
    Ok(())
}

/// `mq_receive(3)`; `buf` must be at least the queue's `mq_msgsize`.
pub fn mq_receive(mqd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is live and writable for `buf.len()` bytes; priority pointer may be null.
    cvt_size(unsafe {
        libc::mq_receive(
            mqd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            std::ptr::null_mut(),
        )
    })
}

/// `msgsnd(2)`: `buf` holds the 8-byte `mtype` then `len` payload bytes.
pub fn msgsnd(id: i32, buf: &[u8], len: usize, nowait: bool) -> io::Result<()> {
    assert!(buf.len() >= 8 + len);
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    // SAFETY: `buf` is live for 8 + len bytes (asserted): a `long` mtype and the payload.
    cvt(unsafe { libc::msgsnd(id, buf.as_ptr().cast(), len, flags) })?;
    Ok(())
}

/// `msgrcv(2)` into `buf` (8-byte `mtype`, then the payload); returns the payload length.
pub fn msgrcv(id: i32, buf: &mut [u8], mtype: i64, nowait: bool) -> io::Result<usize> {
    assert!(buf.len() >= 8);
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    // SAFETY: `buf` is live and writable for 8 + (len - 8) bytes, as told to the kernel.
    cvt_size(unsafe {
        libc::msgrcv(
            id,
            buf.as_mut_ptr().cast(),
            buf.len() - 8,
            mtype as libc::c_long,
            flags,
        )
    })
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
        // SAFETY: the name is a NUL-terminated literal.
        let fd = cvt(unsafe { libc::memfd_create(c"ipckit-floor".as_ptr(), libc::MFD_CLOEXEC) })?;
        // SAFETY: memfd_create returned a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate on a descriptor we own.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) })?;
        Ok(fd)
    }

    /// Maps one page `MAP_SHARED`, read-write.
    pub fn map(fd: BorrowedFd<'_>) -> io::Result<SharedPage> {
        Self::map_len(fd, PAGE)
    }

    /// Maps `len` bytes `MAP_SHARED | MAP_POPULATE`, read-write.
    pub fn map_len(fd: BorrowedFd<'_>, len: usize) -> io::Result<SharedPage> {
        // SAFETY: a fresh mapping chosen by the kernel; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
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
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// `FUTEX_WAIT` on a shared word while it holds `expected`, at most `timeout_ms` (0: no
/// limit, and no timer to arm).
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout_ms: u64) {
    let ts = libc::timespec {
        tv_sec: (timeout_ms / 1000) as libc::time_t,
        tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
    };
    let tsp = if timeout_ms == 0 {
        std::ptr::null()
    } else {
        &ts as *const libc::timespec
    };
    // SAFETY: `word` is a live AtomicU32 in shared memory; `tsp` NULL or a live timespec.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            tsp,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// `FUTEX_WAKE` of every waiter on a shared word.
pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: as `futex_wait`; waking touches no memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// `kill(pid, SIGKILL)`.
pub fn kill_hard(pid: u32) {
    // SAFETY: kill with integer arguments; a stale pid at worst yields ESRCH.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// `setsockopt(fd, level, name, &val, sizeof(int))`.
pub fn set_sockopt_int(fd: RawFd, level: i32, name: i32, val: i32) -> io::Result<()> {
    // SAFETY: `val` is a live i32 and the kernel is told its size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&val as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `getsockopt(fd, level, name)` of an int option.
pub fn sockopt_int(fd: RawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live locals of the sizes the kernel is told.
    cvt(unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut i32).cast(), &mut len) })?;
    Ok(v)
}
