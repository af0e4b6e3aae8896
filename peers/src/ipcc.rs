//! ipc-channel (Servo's) through the harness's [`Channel`]: one `bytes_channel` each way.
//!
//! The parent makes an `IpcOneShotServer` and passes its name on the peer's command line; the
//! peer connects, makes the two byte channels, keeps its ends and sends the parent the other
//! two. Receives block (ipc-channel has no spinning receive; `try_recv` exists, but its
//! blocking `recv` is what users call). Its receive returns a fresh `Vec` per message, which
//! is copied into the harness's buffer; its send takes the harness's buffer as it is.

use ipc_channel::ipc::{self, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcSender};
use ipckit_bench::scenario::Channel;
use std::io;
use std::time::Duration;

/// What the peer sends the parent: the sender of parent-to-peer messages and the receiver of
/// peer-to-parent ones.
type Handshake = (IpcBytesSender, IpcBytesReceiver);

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> io::Error {
    move |e| io::Error::other(format!("ipc-channel: {what}: {e}"))
}

/// One endpoint.
#[derive(Debug)]
pub struct IpcChan {
    tx: IpcBytesSender,
    rx: IpcBytesReceiver,
}

impl Channel for IpcChan {
    fn send(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.tx.send(buf)
    }

    fn recv(&mut self, buf: &mut [u8], _expect: usize) -> io::Result<usize> {
        let v = self.rx.recv().map_err(err("recv"))?;
        let dst = buf.get_mut(..v.len()).ok_or_else(|| {
            io::Error::other(format!(
                "ipc-channel: a {} B message exceeds the buffer",
                v.len()
            ))
        })?;
        dst.copy_from_slice(&v);
        Ok(v.len())
    }

    fn recv_timeout(
        &mut self,
        _buf: &mut [u8],
        _expect: usize,
        _timeout: Duration,
    ) -> io::Result<Option<usize>> {
        Err(io::Error::other(
            "ipc-channel rows are reliable: no receive with a timeout is needed",
        ))
    }
}

/// The parent's side before the peer connects.
pub struct Server(IpcOneShotServer<Handshake>);

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ipcc::Server")
    }
}

impl Server {
    /// A one-shot server and the name the peer connects to.
    pub fn new() -> io::Result<(Server, String)> {
        let (s, name) = IpcOneShotServer::new()?;
        Ok((Server(s), name))
    }

    /// Takes the peer's channels. Call it only once the peer said it is ready (it sent them
    /// before): `accept` itself waits forever.
    pub fn accept(self) -> io::Result<IpcChan> {
        let (_rx, (tx, rx)) = self.0.accept().map_err(err("accept"))?;
        Ok(IpcChan { tx, rx })
    }
}

/// The peer's side: connects to the parent's server `name` and hands it its channel ends.
pub fn connect(name: &str) -> io::Result<IpcChan> {
    let hello: IpcSender<Handshake> = IpcSender::connect(name.to_string())?;
    let (to_peer_tx, to_peer_rx) = ipc::bytes_channel()?;
    let (to_parent_tx, to_parent_rx) = ipc::bytes_channel()?;
    hello
        .send((to_peer_tx, to_parent_rx))
        .map_err(err("handshake"))?;
    Ok(IpcChan {
        tx: to_parent_tx,
        rx: to_peer_rx,
    })
}
