//! `ChildChannel`: a child spawned with a duplex channel inherits that channel, stdio and
//! what it was explicitly given, and nothing else, even a descriptor the parent left without
//! close-on-exec.

use super::util;
use ipckit::pipe::{self, ChildChannel, Duplex, CHANNEL_ENV};
use ipckit::{RecvError, Transport};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

/// A descriptor without close-on-exec, as a careless C library might leave one.
fn stray_fd() -> std::fs::File {
    let f = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: F_SETFD with an int argument, on a descriptor `f` owns; no pointers.
    assert_ne!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFD, 0) }, -1);
    f
}

/// The descriptor numbers the channel address on `cmd` names.
fn channel_fds(cmd: &std::process::Command) -> Vec<i32> {
    let addr = cmd
        .get_envs()
        .find(|(k, _)| *k == CHANNEL_ENV)
        .and_then(|(_, v)| v)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let nums = addr
        .strip_prefix("fd:")
        .or_else(|| addr.strip_prefix("sock:"))
        .unwrap();
    nums.split(',').map(|n| n.parse().unwrap()).collect()
}

fn child_inherits_only_its_channel(kind: Duplex) {
    util::init();
    let stray = stray_fd();
    let given = std::fs::File::open("/dev/zero").unwrap();
    let mut cmd = util::peer_command("channel", &[]);
    let (child, mut ch) = ChildChannel::new()
        .duplex(kind)
        .inherit(given.as_fd())
        .spawn(&mut cmd)
        .unwrap();
    let mut child = util::KillOnDrop(child);
    let mut buf = vec![0u8; ch.max_msg_size()];
    let n = ch.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap();
    let listing = String::from_utf8(buf[..n].to_vec()).unwrap();
    let mut got: Vec<i32> = listing
        .lines()
        .map(|l| l.split('=').next().unwrap().parse().unwrap())
        .collect();
    got.sort();
    let mut want = vec![0, 1, 2, given.as_raw_fd()];
    want.extend(channel_fds(&cmd));
    want.sort();
    assert_eq!(
        got,
        want,
        "the child's descriptors (stray one here: {}):\n{listing}",
        stray.as_raw_fd()
    );
    // The channel works both ways, and the child exits when we close our end.
    ch.send(b"ping").unwrap();
    let n = ch.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap();
    assert_eq!(&buf[..n], b"ping");
    drop(ch);
    let st = util::watchdog(20, move || {
        let st = child.0.wait().unwrap();
        drop(child);
        st
    });
    assert!(st.success(), "{st}");
}

#[test]
fn pipes_child_inherits_only_its_channel() {
    child_inherits_only_its_channel(Duplex::Pipes);
}

#[test]
fn socketpair_child_inherits_only_its_channel() {
    child_inherits_only_its_channel(Duplex::SocketPair);
}

/// The parent sees the child's death as `PeerGone`, never a hang: it holds no copy of the
/// child's ends after the spawn.
#[test]
fn a_killed_child_is_peer_gone() {
    util::init();
    for kind in [Duplex::Pipes, Duplex::SocketPair] {
        let mut cmd = util::peer_command("channel", &[]);
        let (child, mut ch) = ChildChannel::new().duplex(kind).spawn(&mut cmd).unwrap();
        let mut child = util::KillOnDrop(child);
        let mut buf = vec![0u8; ch.max_msg_size()];
        ch.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap(); // the listing
        child.0.kill().unwrap();
        let r = util::watchdog(20, move || ch.recv(&mut buf).map(|_| ()));
        assert!(matches!(r, Err(RecvError::PeerGone)), "{kind:?}: {r:?}");
    }
}

#[test]
fn open_from_env_refuses_what_is_not_a_channel() {
    util::init();
    // Not spawned with a channel: this test process has no IPCKIT_CHANNEL.
    if std::env::var_os(CHANNEL_ENV).is_none() {
        let e = ChildChannel::new().open_from_env().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(e.to_string().contains(CHANNEL_ENV), "{e}");
    }
    // A spawn with a capacity for a socketpair is refused before anything starts.
    let mut cmd = std::process::Command::new("/bin/true");
    let e = ChildChannel::new()
        .duplex(Duplex::SocketPair)
        .capacity(1 << 20)
        .spawn(&mut cmd)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    // A missing program: the spawn error (the channel's descriptors are closed with it).
    let mut cmd = std::process::Command::new("/nonexistent/ipckit-no-such-program");
    let e = ChildChannel::new()
        .duplex(Duplex::Pipes)
        .spawn(&mut cmd)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
}

/// The control for the tests above: a child spawned without the seal (a `PipePair` hands
/// down its ends but leaves the rest alone) does inherit the stray descriptor, so the
/// listing would catch a leak.
#[test]
fn control_without_the_seal_a_stray_descriptor_leaks() {
    util::init();
    let stray = stray_fd();
    let pair = pipe::PipeBuilder::new().create_pair().unwrap();
    let mut cmd = util::peer_command("channel", &[(CHANNEL_ENV, pair.address())]);
    pair.configure_child(&mut cmd);
    let child = util::KillOnDrop(cmd.spawn().unwrap());
    let mut ch = pair.into_parent().unwrap();
    let mut buf = vec![0u8; ch.max_msg_size()];
    let n = ch.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap();
    let listing = String::from_utf8(buf[..n].to_vec()).unwrap();
    let stray_n = stray.as_raw_fd().to_string();
    assert!(
        listing
            .lines()
            .any(|l| l.split('=').next() == Some(&stray_n)),
        "descriptor {stray_n} should have leaked:\n{listing}"
    );
    drop(ch);
    drop(child);
}
