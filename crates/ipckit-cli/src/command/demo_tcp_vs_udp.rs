//! The `tcp-vs-udp` demo: a child sender and a parent receiver over loopback, with plain
//! sockets (no ipckit framing, which would hide what the protocols do):
//!
//! 1. boundaries: two writes on TCP can come out of one read (a byte stream); two UDP
//!    datagrams are two receives;
//! 2. the same flood on both, into a receiver busy for a moment: TCP's sender waits (flow
//!    control) and every byte arrives in order; UDP's datagrams that do not fit the receive
//!    buffer are dropped, counted here by sequence number;
//! 3. small messages written in two writes (a 4-byte length, then the payload), round trips
//!    with Nagle's algorithm and with `TCP_NODELAY`, and with Nagle but one write;
//! 4. the datagram limit: 65,507 bytes of UDP payload over IPv4, and `EMSGSIZE` above.

use super::{child_command, interrupt, ChildGuard};
use crate::cli::DemoArgs;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Messages in each flood.
const FLOOD: u64 = 20_000;
/// Bytes per flood message: an 8-byte sequence number and padding.
const MSG: usize = 64;
/// How long the receiver is "busy" before it starts reading a flood.
const BUSY: Duration = Duration::from_millis(100);
/// Longest any single read may wait before the demo calls the peer lost.
const STUCK: Duration = Duration::from_secs(10);
/// The end-of-flood datagram.
const END: &[u8] = b"END";

/// Nagle experiments: (label, Nagle on, message in two writes).
const NAGLE_RUNS: [(&str, bool, bool); 3] = [
    ("Nagle on, two writes", true, true),
    ("TCP_NODELAY, two writes", false, true),
    ("Nagle on, one write", true, false),
];

fn check_interrupt() -> anyhow::Result<()> {
    anyhow::ensure!(!interrupt::interrupted(), "interrupted");
    Ok(())
}

/// A read that timed out (or was interrupted) in a loop polling for Ctrl-C: `Ok` to try again,
/// unless Ctrl-C came or `until` passed (`what` names the wait); any other error as is.
fn nothing_yet(e: io::Error, until: Instant, what: &str) -> anyhow::Result<()> {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
            check_interrupt()?;
            anyhow::ensure!(Instant::now() < until, "{what} for {STUCK:?}");
            Ok(())
        }
        _ => Err(e.into()),
    }
}

/// Reads exactly `buf.len()` bytes, in slices, so Ctrl-C is noticed.
fn read_exact(s: &mut TcpStream, buf: &mut [u8]) -> anyhow::Result<()> {
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    let until = Instant::now() + STUCK;
    let mut off = 0;
    while off < buf.len() {
        match s.read(&mut buf[off..]) {
            Ok(0) => anyhow::bail!("the peer closed the connection early"),
            Ok(n) => off += n,
            Err(e) => nothing_yet(e, until, "no data")?,
        }
    }
    Ok(())
}

/// Accepts the child's next connection.
fn accept(l: &TcpListener) -> anyhow::Result<TcpStream> {
    l.set_nonblocking(true)?;
    let until = Instant::now() + STUCK;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                check_interrupt()?;
                anyhow::ensure!(Instant::now() < until, "the child never connected");
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What the UDP flood delivered.
struct UdpTally {
    received: u64,
    reordered: u64,
    duplicates: u64,
}

fn receive_udp_flood(u: &UdpSocket) -> anyhow::Result<UdpTally> {
    u.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut seen = vec![false; FLOOD as usize];
    let mut t = UdpTally {
        received: 0,
        reordered: 0,
        duplicates: 0,
    };
    let mut highest: Option<u64> = None;
    let mut buf = [0u8; 2048];
    let until = Instant::now() + STUCK;
    loop {
        match u.recv(&mut buf) {
            Ok(n) if &buf[..n] == END => return Ok(t),
            Ok(n) if n == MSG => {
                let seq = u64::from_le_bytes(buf[..8].try_into()?);
                anyhow::ensure!(seq < FLOOD, "datagram with sequence {seq} out of range");
                if std::mem::replace(&mut seen[seq as usize], true) {
                    t.duplicates += 1;
                    continue;
                }
                t.received += 1;
                if highest.is_some_and(|h| seq < h) {
                    t.reordered += 1;
                }
                highest = highest.max(Some(seq));
            }
            Ok(n) => anyhow::bail!("unexpected {n}-byte datagram"),
            Err(e) => nothing_yet(e, until, "the UDP flood never ended")?,
        }
    }
}

/// The parent's side: the receiver.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let me = std::process::id();
    let nagle_trips: u32 = if args.short { 3 } else { 10 };
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    let (tport, uport) = (listener.local_addr()?.port(), udp.local_addr()?.port());
    say!("[parent {me}] listening on TCP 127.0.0.1:{tport} and bound UDP 127.0.0.1:{uport} (the kernel's default socket buffers)");
    let mut cmd = child_command("tcp-vs-udp", &format!("{tport}:{uport}:{nagle_trips}"))?;
    let mut child = ChildGuard(cmd.spawn()?);
    say!("[parent {me}] started child {} as the sender", child.pid());
    let mut ctl = accept(&listener)?;
    ctl.set_nodelay(true)?;

    // 1. Message boundaries.
    say!("\n-- 1. message boundaries --");
    // The child writes on TCP first, then sends the datagrams: once both datagrams are here,
    // both TCP writes are (normally) waiting in our receive buffer.
    let mut buf = [0u8; 64];
    udp.set_read_timeout(Some(STUCK))?;
    let mut got = Vec::new();
    for _ in 0..2 {
        let n = udp.recv(&mut buf)?;
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    std::thread::sleep(Duration::from_millis(20));
    ctl.set_read_timeout(Some(STUCK))?;
    let n = ctl.read(&mut buf)?;
    say!(
        "[parent {me}] TCP: the child wrote \"hello\" and \"world\" with two write()s (TCP_NODELAY: two segments); one read(64) returned {n} bytes: \"{}\". A byte stream keeps no boundaries: a protocol must frame its messages",
        String::from_utf8_lossy(&buf[..n])
    );
    if n < 10 {
        read_exact(&mut ctl, &mut buf[n..10])?;
    }
    say!(
        "[parent {me}] UDP: the child sent \"hello\" and \"world\" as two datagrams; two recv(64) returned \"{}\" and \"{}\": one datagram per receive, boundaries kept",
        got[0], got[1]
    );

    // 2. The same flood on both.
    say!(
        "\n-- 2. the same flood, into a receiver busy for {} ms --",
        BUSY.as_millis()
    );
    ctl.write_all(b"T")?;
    std::thread::sleep(BUSY);
    let mut flood = vec![0u8; FLOOD as usize * MSG];
    read_exact(&mut ctl, &mut flood)?;
    let in_order = flood
        .chunks_exact(MSG)
        .enumerate()
        .all(|(i, m)| m[..8] == (i as u64).to_le_bytes());
    anyhow::ensure!(in_order, "TCP delivered the flood out of order");
    say!(
        "[parent {me}] TCP: {FLOOD} messages of {MSG} B sent, {FLOOD} received, all in order: while we were busy the buffers filled and the child's write() waited (flow control)"
    );
    ctl.write_all(b"U")?;
    std::thread::sleep(BUSY);
    let t = receive_udp_flood(&udp)?;
    ctl.write_all(b"A")?; // the END datagram arrived: the child may stop repeating it
    let lost = FLOOD - t.received;
    let pct = lost as f64 * 100.0 / FLOOD as f64;
    let rcvbuf = std::fs::read_to_string("/proc/sys/net/core/rmem_default")
        .map(|s| format!("{} B", s.trim()))
        .unwrap_or_else(|_| "the default".into());
    say!(
        "[parent {me}] UDP: {FLOOD} datagrams of {MSG} B sent, {} received, {lost} lost ({pct:.1}%), {} reordered, {} duplicated: the receive buffer (SO_RCVBUF {rcvbuf}, and each datagram is charged its whole kernel buffer, several hundred bytes, not {MSG} B) overflowed while we were busy, and the kernel dropped the rest without telling either side: every send() succeeded",
        t.received, t.reordered, t.duplicates
    );
    if t.reordered == 0 {
        say!("[parent {me}] nothing reordered: loopback delivers through one queue; on a network, packets taking different paths or NIC queues can arrive out of order");
    }
    say!(
        "[parent {me}] sent = received + lost: {FLOOD} = {} + {lost}",
        t.received
    );

    // 3. Nagle.
    say!("\n-- 3. Nagle and TCP_NODELAY: round trips of a 64-byte message (a 4-byte length, then 60 bytes) --");
    let mut per_trip = Vec::new();
    for (label, nagle, split) in NAGLE_RUNS {
        let mut s = accept(&listener)?;
        s.set_nodelay(!nagle)?;
        let mut msg = [7u8; MSG];
        msg[..4].copy_from_slice(&(MSG as u32 - 4).to_le_bytes());
        let mut back = [0u8; MSG];
        let trips = if nagle && split { nagle_trips } else { 200 };
        let start = Instant::now();
        for _ in 0..trips {
            if split {
                s.write_all(&msg[..4])?;
                s.write_all(&msg[4..])?;
            } else {
                s.write_all(&msg)?;
            }
            read_exact(&mut s, &mut back)?;
            anyhow::ensure!(back == msg, "the echo differs");
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(trips);
        say!("[parent {me}] {label:<24}: {us:>9.1} µs per round trip ({trips} trips)");
        per_trip.push(us);
    }
    if per_trip[0] > 10.0 * per_trip[1].max(per_trip[2]) {
        say!(
            "[parent {me}] with Nagle, the second small write waits until the first is acknowledged, and the receiver delays that ACK (Linux: at least 40 ms) hoping to send it with a reply, which cannot come before the whole message: write-write-read stalls. With one write per message (ipckit's framing uses one sendmsg), or TCP_NODELAY, nothing waits"
        );
    } else {
        say!(
            "[parent {me}] no write-write-read stall this time: the receiver acknowledged the first write at once (Linux does while it is in quick-ACK mode) instead of delaying the ACK"
        );
    }

    // 4. The datagram limit.
    say!("\n-- 4. the UDP datagram limit --");
    let a = UdpSocket::bind("127.0.0.1:0")?;
    a.connect(a.local_addr()?)?;
    a.set_read_timeout(Some(STUCK))?;
    let big = vec![0x42u8; 65_508];
    a.send(&big[..65_507])?;
    let mut rbuf = vec![0u8; 65_536];
    let n = a.recv(&mut rbuf)?;
    say!("[parent {me}] send(65,507 B) succeeded; recv returned {n} B in one datagram (65,535 - 8 UDP header - 20 IPv4 header)");
    let too_big = match a.send(&big) {
        Ok(_) => anyhow::bail!("a 65,508-byte datagram was accepted"),
        Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => e,
        Err(e) => return Err(e.into()),
    };
    let mtu = std::fs::read_to_string("/sys/class/net/lo/mtu")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    say!("[parent {me}] send(65,508 B) failed: {too_big} (EMSGSIZE), nothing sent. Loopback's MTU is {mtu} B, so even 65,507 B is one packet here; on a 1500-byte Ethernet link it would leave as 45 IP fragments, and one lost fragment loses the datagram");

    drop(ctl);
    child.wait(Duration::from_secs(10))?;
    say!("\n[parent {me}] child exited; sockets close with their processes, nothing to remove");
    say!(
        "result: same flood, busy receiver: TCP {FLOOD}/{FLOOD} in order; UDP {}/{FLOOD} (lost {lost} = {pct:.1}%, reordered {}); small two-write messages: {:.1} ms per round trip with Nagle vs {:.1} µs with TCP_NODELAY; UDP payload limit 65,507 B (65,508: EMSGSIZE)",
        t.received,
        t.reordered,
        per_trip[0] / 1e3,
        per_trip[1]
    );
    Ok(())
}

/// The child's side: the sender. `role` is `TCP_PORT:UDP_PORT:NAGLE_TRIPS`.
pub(super) fn child(role: &str) -> anyhow::Result<()> {
    let me = std::process::id();
    let parts: Vec<&str> = role.split(':').collect();
    let &[tport, uport, trips] = &parts[..] else {
        anyhow::bail!("bad child role '{role}'");
    };
    let (tport, uport, trips): (u16, u16, u32) = (tport.parse()?, uport.parse()?, trips.parse()?);
    let mut ctl = TcpStream::connect(("127.0.0.1", tport))?;
    ctl.set_nodelay(true)?;
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    udp.connect(("127.0.0.1", uport))?;

    // 1. Boundaries: TCP first, then UDP (see the parent).
    ctl.write_all(b"hello")?;
    ctl.write_all(b"world")?;
    udp.send(b"hello")?;
    udp.send(b"world")?;

    // 2. Floods, each when the parent says.
    let mut go = [0u8; 1];
    read_exact(&mut ctl, &mut go)?;
    let mut all = vec![0u8; FLOOD as usize * MSG];
    for (i, m) in all.chunks_exact_mut(MSG).enumerate() {
        m[..8].copy_from_slice(&(i as u64).to_le_bytes());
    }
    for m in all.chunks_exact(MSG) {
        ctl.write_all(m)?;
    }
    say!("[child  {me}] TCP: wrote {FLOOD} messages (write() blocked whenever the buffers were full)");
    read_exact(&mut ctl, &mut go)?;
    let mut failed = 0u64;
    for m in all.chunks_exact(MSG) {
        if udp.send(m).is_err() {
            failed += 1;
        }
    }
    say!("[child  {me}] UDP: sent {FLOOD} datagrams, {failed} send errors; repeating the end marker until the parent has it");
    ctl.set_read_timeout(Some(Duration::from_millis(10)))?;
    let until = Instant::now() + STUCK;
    loop {
        udp.send(END)?;
        match ctl.read(&mut go) {
            Ok(1) => break,
            Ok(_) => anyhow::bail!("the parent closed the connection"),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                anyhow::ensure!(
                    Instant::now() < until,
                    "the parent never saw the end marker"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }

    // 3. Echo servers, one connection per Nagle experiment, replying as the parent writes.
    for (label, nagle, split) in NAGLE_RUNS {
        let mut s = TcpStream::connect(("127.0.0.1", tport))?;
        s.set_nodelay(!nagle)?;
        let n = if nagle && split { trips } else { 200 };
        let mut m = [0u8; MSG];
        for _ in 0..n {
            read_exact(&mut s, &mut m)?;
            if split {
                s.write_all(&m[..4])?;
                s.write_all(&m[4..])?;
            } else {
                s.write_all(&m)?;
            }
        }
        say!("[child  {me}] echoed {n} round trips ({label})");
    }
    // Wait for the parent to close the control connection.
    ctl.set_read_timeout(Some(STUCK))?;
    let _ = ctl.read(&mut go);
    Ok(())
}
