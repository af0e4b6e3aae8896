//! The control-message codec (`cmsg(3)`): the bytes `sendmsg` takes in `msg_control` and
//! `recvmsg` fills, for `SCM_RIGHTS`, `SCM_CREDENTIALS` and `SCM_PIDFD`, built and read by
//! hand, with the plain `Credentials` (`struct ucred`) they carry.
//!
//! It sits in the platform layer because `scm` and `socket` hand their control bytes to it,
//! but it makes no system calls and holds no `unsafe`. Its contract (any bytes decode without
//! a panic or a read past the slice) and the Linux layout it follows are documented on the
//! public [`crate::unix::ancillary`], which re-exports all of it.

use std::fmt;
use std::os::fd::RawFd;

/// Bytes of a `cmsghdr`: `size_t` length, `int` level, `int` type.
pub const CMSG_HEADER_LEN: usize = align(WORD + 4 + 4);

/// `size_t`: the width of `cmsg_len` and the alignment of every message.
const WORD: usize = std::mem::size_of::<usize>();

/// Bytes of one descriptor number in `SCM_RIGHTS` data.
const FD_LEN: usize = std::mem::size_of::<RawFd>();

/// Bytes of a `struct ucred`.
pub const UCRED_LEN: usize = 12;

/// `SCM_PIDFD` (Linux 6.5+, not in the libc crate yet): with `SO_PASSPIDFD` on, the kernel
/// installs a pidfd of the sender in the receiver and reports it in a message of this type.
pub const SCM_PIDFD: i32 = 0x04;

/// `SO_PASSPIDFD` (Linux 6.5+): the socket option that asks for [`SCM_PIDFD`] messages.
pub const SO_PASSPIDFD: i32 = 76;

/// The control-buffer bytes an `SCM_PIDFD` message occupies.
pub const fn pidfd_space() -> usize {
    cmsg_space(FD_LEN)
}

/// The most descriptors one message may carry (the kernel's `SCM_MAX_FD`); `sendmsg` fails
/// with `EINVAL` beyond it.
pub const MAX_FDS: usize = 253;

/// `CMSG_ALIGN`: `len` rounded up to a multiple of `sizeof(size_t)`. Saturates at the
/// largest aligned value instead of overflowing.
pub const fn align(len: usize) -> usize {
    match len.checked_add(WORD - 1) {
        Some(l) => l & !(WORD - 1),
        None => usize::MAX & !(WORD - 1),
    }
}

/// `CMSG_LEN`: the `cmsg_len` of a message with `data_len` bytes of data.
pub const fn cmsg_len(data_len: usize) -> usize {
    CMSG_HEADER_LEN.saturating_add(data_len)
}

/// `CMSG_SPACE`: the bytes a message with `data_len` bytes of data occupies, padding included.
pub const fn cmsg_space(data_len: usize) -> usize {
    CMSG_HEADER_LEN.saturating_add(align(data_len))
}

/// The control-buffer bytes an `SCM_RIGHTS` message of `n` descriptors occupies.
pub const fn rights_space(n: usize) -> usize {
    cmsg_space(n.saturating_mul(FD_LEN))
}

/// The control-buffer bytes an `SCM_CREDENTIALS` message occupies.
pub const fn credentials_space() -> usize {
    cmsg_space(UCRED_LEN)
}

/// A process's identity as the kernel reports it (`struct ucred`): in `SCM_CREDENTIALS`
/// messages and from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// Process id, in the receiver's pid namespace (0 if the process is not visible there).
    pub pid: i32,
    /// Effective user id (mapped into the receiver's user namespace).
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// One decoded control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmsg {
    /// `SOL_SOCKET`/`SCM_RIGHTS`: descriptor numbers the kernel installed in the receiver.
    Rights(Vec<RawFd>),
    /// `SOL_SOCKET`/`SCM_CREDENTIALS`: the sender's pid, uid and gid.
    Credentials(Credentials),
    /// `SOL_SOCKET`/[`SCM_PIDFD`]: a pidfd of the sender the kernel installed in the receiver.
    Pidfd(RawFd),
    /// Any other message (for example `SCM_SECURITY`), skipped.
    Unknown {
        /// `cmsg_level`.
        level: i32,
        /// `cmsg_type`.
        ty: i32,
        /// Bytes of data (`cmsg_len` less the header).
        len: usize,
    },
}

/// Why decoding stopped before the end of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A header's `cmsg_len` is smaller than the header itself.
    LengthTooSmall {
        /// Offset of the header in the buffer.
        offset: usize,
        /// The `cmsg_len` found.
        cmsg_len: usize,
    },
    /// A header's `cmsg_len` reaches past the end of the buffer (or overflows).
    LengthTooLarge {
        /// Offset of the header in the buffer.
        offset: usize,
        /// The `cmsg_len` found.
        cmsg_len: usize,
        /// Bytes left in the buffer from `offset`.
        available: usize,
    },
    /// `SCM_RIGHTS` data that is not a whole number of `int`s; the whole ones were kept.
    RaggedRights {
        /// Offset of the header in the buffer.
        offset: usize,
        /// Bytes of data.
        len: usize,
    },
    /// `SCM_PIDFD` data shorter than an `int`.
    ShortPidfd {
        /// Offset of the header in the buffer.
        offset: usize,
        /// Bytes of data.
        len: usize,
    },
    /// `SCM_CREDENTIALS` data shorter than a `struct ucred`.
    ShortCredentials {
        /// Offset of the header in the buffer.
        offset: usize,
        /// Bytes of data.
        len: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::LengthTooSmall { offset, cmsg_len } => write!(
                f,
                "control message at byte {offset}: cmsg_len {cmsg_len} is smaller than its \
                 {CMSG_HEADER_LEN}-byte header"
            ),
            DecodeError::LengthTooLarge {
                offset,
                cmsg_len,
                available,
            } => write!(
                f,
                "control message at byte {offset}: cmsg_len {cmsg_len} runs past the {available} \
                 bytes left in the buffer"
            ),
            DecodeError::RaggedRights { offset, len } => write!(
                f,
                "SCM_RIGHTS message at byte {offset}: {len} bytes of data are not a whole number \
                 of {FD_LEN}-byte descriptors"
            ),
            DecodeError::ShortPidfd { offset, len } => write!(
                f,
                "SCM_PIDFD message at byte {offset}: {len} bytes of data, a descriptor needs \
                 {FD_LEN}"
            ),
            DecodeError::ShortCredentials { offset, len } => write!(
                f,
                "SCM_CREDENTIALS message at byte {offset}: {len} bytes of data, a ucred needs \
                 {UCRED_LEN}"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A control message as it lies in the buffer, before interpretation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawCmsg<'a> {
    /// Offset of its header in the buffer.
    pub offset: usize,
    /// `cmsg_level`.
    pub level: i32,
    /// `cmsg_type`.
    pub ty: i32,
    /// Its data: `cmsg_len - CMSG_HEADER_LEN` bytes, a sub-slice of the buffer.
    pub data: &'a [u8],
}

/// Walks the messages of a control buffer (`CMSG_FIRSTHDR`/`CMSG_NXTHDR`): yields each one
/// whose header and data lie wholly in the buffer, and stops after the first error. Fewer
/// than [`CMSG_HEADER_LEN`] bytes left over at the end are padding and ignored, as glibc's
/// `CMSG_NXTHDR` does.
#[derive(Debug, Clone)]
pub struct RawIter<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

/// Iterates over the raw messages of `buf`; see [`RawIter`].
pub fn raw_messages(buf: &[u8]) -> RawIter<'_> {
    RawIter {
        buf,
        pos: 0,
        done: false,
    }
}

fn read_usize(b: &[u8]) -> usize {
    let mut w = [0u8; WORD];
    w.copy_from_slice(&b[..WORD]);
    usize::from_ne_bytes(w)
}

fn read_i32(b: &[u8]) -> i32 {
    i32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

impl<'a> Iterator for RawIter<'a> {
    type Item = Result<RawCmsg<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let offset = self.pos;
        // `pos <= buf.len()` always holds: it only advances to a checked, in-bounds value.
        let rest = &self.buf[offset..];
        if rest.len() < CMSG_HEADER_LEN {
            self.done = true;
            return None;
        }
        let len = read_usize(rest);
        let level = read_i32(&rest[WORD..]);
        let ty = read_i32(&rest[WORD + 4..]);
        if len < CMSG_HEADER_LEN {
            self.done = true;
            return Some(Err(DecodeError::LengthTooSmall {
                offset,
                cmsg_len: len,
            }));
        }
        if len > rest.len() {
            self.done = true;
            return Some(Err(DecodeError::LengthTooLarge {
                offset,
                cmsg_len: len,
                available: rest.len(),
            }));
        }
        let data = &rest[CMSG_HEADER_LEN..len];
        // The next header starts at the aligned end; if that is past the buffer, this was
        // the last message (`len <= rest.len()`, so `align(len)` cannot overflow usefully).
        match offset.checked_add(align(len)) {
            Some(next) if next <= self.buf.len() => self.pos = next,
            _ => self.done = true,
        }
        Some(Ok(RawCmsg {
            offset,
            level,
            ty,
            data,
        }))
    }
}

/// What [`decode`] found: every message it could read, in order, and why it stopped early,
/// if it did. Descriptors in `messages` are reported even when `error` is set, so the
/// receiver can take ownership of each of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decoded {
    /// The messages read, in buffer order.
    pub messages: Vec<Cmsg>,
    /// The first malformation met; nothing after it was read.
    pub error: Option<DecodeError>,
}

impl Decoded {
    /// Every descriptor number in the `SCM_RIGHTS` messages, in order.
    pub fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.messages
            .iter()
            .flat_map(|m| match m {
                Cmsg::Rights(fds) => fds.as_slice(),
                _ => &[],
            })
            .copied()
    }

    /// The descriptor of the first `SCM_PIDFD` message.
    pub fn pidfd(&self) -> Option<RawFd> {
        self.messages.iter().find_map(|m| match m {
            Cmsg::Pidfd(fd) => Some(*fd),
            _ => None,
        })
    }

    /// Every descriptor the buffer names: the `SCM_RIGHTS` ones, then the `SCM_PIDFD` ones,
    /// each once, as written. A receiver owns all of them.
    pub fn all_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.fds()
            .chain(self.messages.iter().filter_map(|m| match m {
                Cmsg::Pidfd(fd) => Some(*fd),
                _ => None,
            }))
    }

    /// The credentials of the first `SCM_CREDENTIALS` message.
    pub fn credentials(&self) -> Option<Credentials> {
        self.messages.iter().find_map(|m| match m {
            Cmsg::Credentials(c) => Some(*c),
            _ => None,
        })
    }
}

/// Decodes a control buffer: the first `msg_controllen` bytes of what `recvmsg` filled.
///
/// Never panics and never reads outside `buf`, whatever it holds. A malformed message ends
/// the walk with [`Decoded::error`] set; what came before it is kept. An `SCM_RIGHTS`
/// message with a ragged tail keeps its whole descriptors and sets the error.
pub fn decode(buf: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    for m in raw_messages(buf) {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                out.error = Some(e);
                break;
            }
        };
        match (m.level, m.ty) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                let chunks = m.data.chunks_exact(FD_LEN);
                let ragged = !chunks.remainder().is_empty();
                out.messages
                    .push(Cmsg::Rights(chunks.map(read_i32).collect()));
                if ragged {
                    out.error = Some(DecodeError::RaggedRights {
                        offset: m.offset,
                        len: m.data.len(),
                    });
                    break;
                }
            }
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                if m.data.len() < UCRED_LEN {
                    out.error = Some(DecodeError::ShortCredentials {
                        offset: m.offset,
                        len: m.data.len(),
                    });
                    break;
                }
                out.messages.push(Cmsg::Credentials(Credentials {
                    pid: read_i32(m.data),
                    uid: read_i32(&m.data[4..]) as u32,
                    gid: read_i32(&m.data[8..]) as u32,
                }));
            }
            (libc::SOL_SOCKET, SCM_PIDFD) => {
                if m.data.len() < FD_LEN {
                    out.error = Some(DecodeError::ShortPidfd {
                        offset: m.offset,
                        len: m.data.len(),
                    });
                    break;
                }
                out.messages.push(Cmsg::Pidfd(read_i32(m.data)));
            }
            (level, ty) => out.messages.push(Cmsg::Unknown {
                level,
                ty,
                len: m.data.len(),
            }),
        }
    }
    out
}

/// Appends one message (header, data, zero padding) to `out`.
fn push(out: &mut Vec<u8>, level: i32, ty: i32, data: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&cmsg_len(data.len()).to_ne_bytes());
    out.extend_from_slice(&level.to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.resize(start + CMSG_HEADER_LEN, 0);
    out.extend_from_slice(data);
    out.resize(start + cmsg_space(data.len()), 0);
}

/// Encodes a control buffer for `sendmsg`: an `SCM_CREDENTIALS` message if `creds` is given,
/// then an `SCM_RIGHTS` message if `fds` is not empty. Its length is the `msg_controllen` to
/// pass ([`credentials_space`] + [`rights_space`]). An empty result means no control data.
///
/// The descriptor count is not limited here; the kernel refuses more than [`MAX_FDS`].
pub fn encode(fds: &[RawFd], creds: Option<Credentials>) -> Vec<u8> {
    let cap = creds.map_or(0, |_| credentials_space())
        + if fds.is_empty() {
            0
        } else {
            rights_space(fds.len())
        };
    let mut out = Vec::with_capacity(cap);
    if let Some(c) = creds {
        let mut d = [0u8; UCRED_LEN];
        d[..4].copy_from_slice(&c.pid.to_ne_bytes());
        d[4..8].copy_from_slice(&c.uid.to_ne_bytes());
        d[8..].copy_from_slice(&c.gid.to_ne_bytes());
        push(&mut out, libc::SOL_SOCKET, libc::SCM_CREDENTIALS, &d);
    }
    if !fds.is_empty() {
        let d: Vec<u8> = fds.iter().flat_map(|fd| fd.to_ne_bytes()).collect();
        push(&mut out, libc::SOL_SOCKET, libc::SCM_RIGHTS, &d);
    }
    debug_assert_eq!(out.len(), cap);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_on_this_target() {
        // x86_64 and aarch64: a 16-byte header, 8-byte alignment.
        assert_eq!(CMSG_HEADER_LEN, std::mem::size_of::<libc::cmsghdr>());
        assert_eq!(cmsg_len(4), CMSG_HEADER_LEN + 4);
        assert_eq!(cmsg_space(4), CMSG_HEADER_LEN + align(4));
        assert_eq!(rights_space(0), CMSG_HEADER_LEN);
        assert_eq!(align(usize::MAX) % WORD, 0);
        assert_eq!(cmsg_space(usize::MAX), usize::MAX);
    }

    #[test]
    fn empty_and_tiny_buffers_decode_to_nothing() {
        for n in 0..CMSG_HEADER_LEN {
            let d = decode(&vec![0xffu8; n]);
            assert_eq!(d, Decoded::default(), "{n} bytes");
        }
    }

    fn header(len: usize, level: i32, ty: i32) -> Vec<u8> {
        let mut v = len.to_ne_bytes().to_vec();
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v
    }

    #[test]
    fn malformed_lengths_are_errors_not_panics() {
        let small = header(3, libc::SOL_SOCKET, libc::SCM_RIGHTS);
        assert!(matches!(
            decode(&small).error,
            Some(DecodeError::LengthTooSmall {
                offset: 0,
                cmsg_len: 3
            })
        ));
        for len in [CMSG_HEADER_LEN + 1, usize::MAX, usize::MAX - 3] {
            let big = header(len, libc::SOL_SOCKET, libc::SCM_RIGHTS);
            assert!(matches!(
                decode(&big).error,
                Some(DecodeError::LengthTooLarge { .. })
            ));
        }
        // A zero-length SCM_RIGHTS message is an empty list.
        let zero = header(CMSG_HEADER_LEN, libc::SOL_SOCKET, libc::SCM_RIGHTS);
        assert_eq!(decode(&zero).messages, vec![Cmsg::Rights(vec![])]);
        // Ragged rights keep the whole descriptors.
        let mut ragged = header(CMSG_HEADER_LEN + 6, libc::SOL_SOCKET, libc::SCM_RIGHTS);
        ragged.extend_from_slice(&[7, 0, 0, 0, 1, 2]);
        let d = decode(&ragged);
        assert_eq!(d.messages, vec![Cmsg::Rights(vec![7])]);
        assert!(matches!(
            d.error,
            Some(DecodeError::RaggedRights { len: 6, .. })
        ));
        // Short credentials.
        let mut short = header(CMSG_HEADER_LEN + 8, libc::SOL_SOCKET, libc::SCM_CREDENTIALS);
        short.extend_from_slice(&[0; 8]);
        assert!(matches!(
            decode(&short).error,
            Some(DecodeError::ShortCredentials { len: 8, .. })
        ));
    }

    #[test]
    fn unknown_messages_are_skipped_and_the_walk_goes_on() {
        let mut buf = header(CMSG_HEADER_LEN + 3, 1234, 5);
        buf.extend_from_slice(&[1, 2, 3]);
        buf.resize(cmsg_space(3), 0xaa);
        buf.extend(encode(&[9, 10], None));
        let d = decode(&buf);
        assert_eq!(d.error, None);
        assert_eq!(
            d.messages,
            vec![
                Cmsg::Unknown {
                    level: 1234,
                    ty: 5,
                    len: 3
                },
                Cmsg::Rights(vec![9, 10])
            ]
        );
    }

    #[test]
    fn a_truncated_last_message_is_read_without_its_padding() {
        // The kernel may stop the buffer at cmsg_len, before the padding.
        let mut buf = encode(&[1, 2, 3], None);
        buf.truncate(cmsg_len(12));
        assert_eq!(decode(&buf).messages, vec![Cmsg::Rights(vec![1, 2, 3])]);
    }

    fn creds() -> impl Strategy<Value = Credentials> {
        (any::<i32>(), any::<u32>(), any::<u32>()).prop_map(|(pid, uid, gid)| Credentials {
            pid,
            uid,
            gid,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any bytes: no panic, and every message's data is a sub-slice of the buffer, with
        /// every descriptor list read from within it.
        #[test]
        fn arbitrary_bytes_never_panic_nor_escape(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            let lo = buf.as_ptr() as usize;
            let hi = lo + buf.len();
            let mut fds_raw = Vec::new();
            let mut pidfds = Vec::new();
            for m in raw_messages(&buf) {
                let Ok(m) = m else { break };
                if (m.level, m.ty) == (libc::SOL_SOCKET, SCM_PIDFD) && m.data.len() >= 4 {
                    pidfds.push(read_i32(m.data));
                }
                let a = m.data.as_ptr() as usize;
                prop_assert!(a >= lo + CMSG_HEADER_LEN && a + m.data.len() <= hi);
                prop_assert!(m.offset + CMSG_HEADER_LEN + m.data.len() <= buf.len());
                if (m.level, m.ty) == (libc::SOL_SOCKET, libc::SCM_RIGHTS) {
                    fds_raw.extend(m.data.chunks_exact(4).map(read_i32));
                }
            }
            let d = decode(&buf);
            // A walk that stopped at an error may have seen fewer; never more, never others.
            let got: Vec<_> = d.fds().collect();
            prop_assert!(fds_raw.starts_with(&got));
            let all: Vec<_> = d.all_fds().collect();
            prop_assert!(all.iter().all(|fd| fds_raw.contains(fd) || pidfds.contains(fd)));
        }

        /// Arbitrary bytes shaped like headers (plausible lengths and levels) reach the
        /// interesting branches more often than uniform noise.
        #[test]
        fn header_shaped_bytes_never_panic(
            parts in proptest::collection::vec(
                (0usize..80, prop_oneof![Just(libc::SOL_SOCKET), any::<i32>()],
                 prop_oneof![Just(libc::SCM_RIGHTS), Just(libc::SCM_CREDENTIALS), Just(SCM_PIDFD), any::<i32>()],
                 proptest::collection::vec(any::<u8>(), 0..40)),
                0..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut buf = Vec::new();
            for (len, level, ty, data) in parts {
                buf.extend(header(len, level, ty));
                buf.extend(data);
            }
            let n = if buf.is_empty() { 0 } else { cut.index(buf.len() + 1) };
            let d = decode(&buf[..n]);
            for fd in d.all_fds() {
                let bytes = fd.to_ne_bytes();
                prop_assert!(buf[..n].windows(4).any(|w| w == bytes));
            }
        }

        /// encode -> decode gives back the descriptors and credentials, with no error, and
        /// the length CMSG_SPACE arithmetic predicts.
        #[test]
        fn round_trip(fds in proptest::collection::vec(any::<i32>(), 0..MAX_FDS), c in proptest::option::of(creds())) {
            let buf = encode(&fds, c);
            let want_len = c.map_or(0, |_| credentials_space())
                + if fds.is_empty() { 0 } else { rights_space(fds.len()) };
            prop_assert_eq!(buf.len(), want_len);
            let d = decode(&buf);
            prop_assert_eq!(d.error, None);
            prop_assert_eq!(d.credentials(), c);
            prop_assert_eq!(d.fds().collect::<Vec<_>>(), fds.clone());
            let mut want = Vec::new();
            if let Some(c) = c { want.push(Cmsg::Credentials(c)); }
            if !fds.is_empty() { want.push(Cmsg::Rights(fds)); }
            prop_assert_eq!(d.messages, want);
        }
    }
}
