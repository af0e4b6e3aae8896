//! The private platform layer: the only place in the crate that calls libc.
//!
//! What it provides, by file:
//! - `fd`: `cvt`/`cvt_r` (errno to `io::Result`, EINTR retried in one place), `poll`,
//!   `O_NONBLOCK`/`FD_CLOEXEC` control, `FIONREAD`, `F_GETFL`, `fstat`, `readv`/`writev`,
//!   `OwnedFd` construction.
//! - `epoll`: `epoll_create1`, `epoll_ctl`, `epoll_wait`.
//! - `pipe`: `pipe2`, `F_GETPIPE_SZ`/`F_SETPIPE_SZ`, `eventfd`.
//! - `cmsg`: the pure control-message codec (no system calls), public as `unix::ancillary`.
//! - `scm`: `sendmsg`/`recvmsg` with control data (`SCM_RIGHTS`, `SCM_CREDENTIALS`, encoded by
//!   `cmsg`), received descriptors owned at once; `SO_PASSCRED`.
//! - `socket`: `socket`/`bind`/`listen`/`accept4`/`connect` for `AF_UNIX` (paths and the
//!   abstract namespace) including `SOCK_SEQPACKET`, `socketpair`, `send`/`recv` with flags,
//!   `SO_PEERCRED`, `SO_PEERGROUPS`, `fchmod` of a socket before `bind`, address checks.
//! - `proc`: `pidfd_open`, a process's start time from `/proc`, `boot_id`, `access(X_OK)`,
//!   `pre_exec` steps for a child (what it inherits, with `close_range(CLOSE_RANGE_CLOEXEC)`
//!   sealing the rest; an empty signal mask), and the checked adoption of an inherited
//!   descriptor.
//! - `sched`: `sched_setaffinity`/`sched_getaffinity`, `sched_setscheduler`, `RLIMIT_RTPRIO`,
//!   `mlockall`/`munlockall`, `move_pages` (a page's NUMA node).
//! - `mq`: POSIX message queues (`mq_open`, `mq_send`, `mq_receive`, `mq_unlink`, ...).
//! - `shm`: `shm_open`, `memfd_create`, `mmap` (the [`shm::Mapping`] owner), `futex`.
//! - `zerocopy`: `vmsplice`, `splice`, `tee`, `sendfile`, `send(MSG_ZEROCOPY)`, the socket
//!   error queue (`recvmsg(MSG_ERRQUEUE)`), page-aligned anonymous buffers (`mmap`).
//! - `sysv`: System V message queues (`msgget`, `msgsnd`, `msgrcv`, `msgctl`).
//! - `fork`: a forked child that `pwrite`s a buffer to a file and `_exit`s (async-signal-safe
//!   calls only), `wait4` with the child's usage, `getrusage`, `pidfd_send_signal`.
//! - `signal`: `sigaction` with the one async-signal-safe handler, `pthread_sigmask`,
//!   `signalfd`, `kill`, `sigqueue`, `RLIMIT_SIGPENDING`.
//! - `fs`: `openat2` with `RESOLVE_*` flags (opening a path that cannot escape a directory),
//!   and the directory-relative calls (`O_PATH` handles, `fstatat`, `unlinkat`, `mkfifoat`,
//!   `fchmodat`, `openat`).
//! - `tcp`: a TCP listener with `SO_REUSEADDR`/`SO_REUSEPORT` set before `bind`.
//! - `async_fd` (feature `tokio`): registering an owned descriptor with tokio's reactor.
//!
//! Why libc and not rustix: the mechanisms ipckit covers need `mq_*`, `msg*`, `sigaction` and
//! `sched_setaffinity`, which only libc has, and the crate keeps one syscall crate, not two.
//!
//! # Safety
//!
//! Every function here is safe to call. Each one keeps its `unsafe` blocks to a single FFI
//! call whose pointer arguments come from live Rust references with the lengths the kernel is
//! told, and turns every new file descriptor into an `OwnedFd` the moment the call returns.
//! The one call with more to it, `fork`, is argued in `fork.rs`: its child runs a fixed
//! routine of async-signal-safe calls and ends in `_exit`, never returning into Rust code.
#![allow(unsafe_code)]

#[cfg(feature = "tokio")]
pub(crate) mod async_fd;
pub(crate) mod cmsg;
pub(crate) mod epoll;
pub(crate) mod fd;
pub(crate) mod fork;
pub(crate) mod fs;
pub(crate) mod mq;
pub(crate) mod pipe;
pub(crate) mod proc;
pub(crate) mod sched;
pub(crate) mod scm;
pub(crate) mod shm;
pub(crate) mod signal;
pub(crate) mod socket;
pub(crate) mod sysv;
pub(crate) mod tcp;
pub(crate) mod zerocopy;
