//! ipckit's shared-memory ring pair as a [`Channel`] (copy API, or zero-copy with
//! `send_with`/`recv_with`): the `ipckit` side of every `shm` row, beside the reference ring
//! ([`crate::refring`]).

use crate::scenario::{self, Channel};
use ipckit::shm::ShmEndpoint;
use ipckit::{Deadline, RecvError, Transport};
use std::io;
use std::time::Duration;

/// ipckit's ring pair as a [`Channel`], statically dispatched. With `zero_copy`, messages
/// are written and verified in place (`loan`/`recv_ref`); otherwise they are copied through
/// the `Transport` calls.
#[derive(Debug)]
pub struct ShmChannel {
    /// The endpoint.
    pub ep: ShmEndpoint,
    /// Use the zero-copy API.
    pub zero_copy: bool,
}

impl Channel for ShmChannel {
    #[inline]
    fn send(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.ep.send(buf).map_err(io::Error::from)
    }

    #[inline]
    fn recv(&mut self, buf: &mut [u8], _expect: usize) -> io::Result<usize> {
        self.ep.recv(buf).map_err(io::Error::from)
    }

    fn recv_timeout(
        &mut self,
        buf: &mut [u8],
        _expect: usize,
        timeout: Duration,
    ) -> io::Result<Option<usize>> {
        match self.ep.recv_timeout(buf, timeout) {
            Ok(n) => Ok(Some(n)),
            Err(RecvError::Timeout) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    #[inline]
    fn send_with(
        &mut self,
        scratch: &mut [u8],
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> io::Result<()> {
        if self.zero_copy {
            let mut loan = self.ep.loan(len, Deadline::Never)?;
            fill(&mut loan);
            loan.commit();
            Ok(())
        } else {
            scenario::copy_send_with(self, scratch, len, fill)
        }
    }

    #[inline]
    fn recv_with<R>(
        &mut self,
        scratch: &mut [u8],
        expect: usize,
        look: impl FnOnce(&[u8]) -> R,
    ) -> io::Result<R> {
        if self.zero_copy {
            let m = self.ep.recv_ref(Deadline::Never)?;
            Ok(look(&m))
        } else {
            scenario::copy_recv_with(self, scratch, expect, look)
        }
    }
}
