//! Control messages (`cmsg(3)`), encoded and decoded by hand: the bytes `sendmsg` takes in
//! `msg_control` and `recvmsg` fills, for `SCM_RIGHTS` (descriptors) and `SCM_CREDENTIALS`
//! (pid, uid, gid).
//!
//! The codec lives in the platform layer (`sys/cmsg.rs`), where the `sendmsg`/`recvmsg`
//! wrappers use it, and is re-exported here. It makes no system calls and holds no `unsafe`:
//! it turns descriptor numbers and credentials into bytes and back. The decoder takes any bytes at all (truncated headers,
//! lengths too small, too large or overflowing, garbage) and answers with the messages it
//! could read and an error for the first one it could not; it never panics and never reads
//! past the slice. Descriptor numbers it decodes are plain integers: turning them into
//! `OwnedFd` is the receiving code's job, done once for every number the kernel wrote,
//! whatever else went wrong (see [`crate::unix::recv_with_fds`]).
//!
//! # Layout (Linux)
//!
//! Each message is a header, `struct cmsghdr { size_t cmsg_len; int cmsg_level; int
//! cmsg_type; }` in native byte order, then its data, then padding up to a multiple of
//! `sizeof(size_t)` ([`align`], `CMSG_ALIGN`). `cmsg_len` counts the header and the data but
//! not the padding ([`cmsg_len`], `CMSG_LEN`); a message occupies [`cmsg_space`] bytes
//! (`CMSG_SPACE`). `SCM_RIGHTS` data is an array of `int`; `SCM_CREDENTIALS` data is a
//! `struct ucred { pid_t pid; uid_t uid; gid_t gid; }`.
//!
//! # Examples
//!
//! ```
//! use ipckit::unix::ancillary::{decode, encode, Cmsg, Credentials};
//! let creds = Credentials { pid: 42, uid: 1000, gid: 100 };
//! let bytes = encode(&[3, 4, 5], Some(creds));
//! let d = decode(&bytes);
//! assert!(d.error.is_none());
//! assert_eq!(d.messages, vec![Cmsg::Credentials(creds), Cmsg::Rights(vec![3, 4, 5])]);
//! ```
//!
//! # References
//!
//! `cmsg(3)`, `unix(7)` (`SCM_RIGHTS`, `SCM_CREDENTIALS`), `recvmsg(2)`.

pub use crate::sys::cmsg::{
    align, cmsg_len, cmsg_space, credentials_space, decode, encode, pidfd_space, raw_messages,
    rights_space, Cmsg, Credentials, DecodeError, Decoded, RawCmsg, RawIter, CMSG_HEADER_LEN,
    MAX_FDS, SCM_PIDFD, SO_PASSPIDFD, UCRED_LEN,
};
