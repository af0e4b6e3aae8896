//! Unix datagram credentials across users (issue 14, row 4), at the library level: a sender
//! refuses a receiver of another uid from the credentials of the receiver's answer to its
//! hello, even one that would accept it, and sends nothing; with `allow_other_users` it
//! accepts it. The other user is this test binary run again as an unused uid (root gives it
//! with `setresuid`, through std's `Command::uid`), in the role `RECEIVER`.

use ipckit::connect::{ChannelBuilder, Receiver};
use ipckit::Mechanism;
use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the child: the abstract address to receive at.
const RECEIVER: &str = "IPCKIT_DGRAM_CREDS_RECEIVER";

/// The child's part: receive at `@name` accepting any uid, for a few seconds; exit 0 if a
/// message `yes` arrived and no `no`.
#[test]
fn zz_receiver_role() {
    let Ok(addr) = std::env::var(RECEIVER) else {
        return; // not the child
    };
    let opts = ChannelBuilder::new(Mechanism::UdsDgram).allow_other_users(true);
    let Receiver::Endpoint(mut rx) = opts.create_receiver(&addr).unwrap() else {
        panic!("datagram receivers are endpoints")
    };
    println!("ready");
    let mut b = vec![0u8; rx.max_msg_size()];
    let until = Instant::now() + Duration::from_secs(8);
    let mut got = Vec::new();
    while Instant::now() < until {
        if let Ok(n) = rx.recv_timeout(&mut b, Duration::from_millis(100)) {
            got.push(b[..n].to_vec());
            if got.last().is_some_and(|m| m == b"yes") {
                break;
            }
        }
    }
    std::process::exit(if got == [b"yes".to_vec()] { 0 } else { 1 });
}

#[test]
fn sender_checks_the_receivers_credentials() {
    if std::env::var_os(RECEIVER).is_some() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "needs root to act as another user, and CI must run it"
        );
        eprintln!("SKIPPED: needs root: sender_checks_the_receivers_credentials");
        return;
    }
    let uid = 61_000 + std::process::id() % 1000;
    let addr = format!("@ipckit-dgram-creds-{}", std::process::id());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "zz_receiver_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RECEIVER, &addr)
        .env_remove("IPCKIT_REGISTRY")
        .uid(uid)
        .gid(uid)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Wait for "ready".
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let start = Instant::now();
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let mut b = [0u8; 256];
        let n = std::io::Read::read(&mut out, &mut b).unwrap();
        assert!(
            n > 0,
            "the receiver ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&b[..n]);
        assert!(start.elapsed() < Duration::from_secs(20), "watchdog");
    }
    // By default another uid's receiver is refused from its answer's credentials.
    let e = ChannelBuilder::new(Mechanism::UdsDgram)
        .open_sender(&addr)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains(&format!("uid {uid}")), "{e}");
    // Allowed explicitly, it is accepted and the message arrives.
    let opts = ChannelBuilder::new(Mechanism::UdsDgram).allow_other_users(true);
    let mut tx = opts.open_sender(&addr).unwrap();
    tx.send(b"yes").unwrap();
    let st = child.wait().unwrap();
    eprintln!(
        "receiver of uid {uid} refused, then accepted when allowed: {st:?} after {:?}",
        start.elapsed()
    );
    assert!(
        st.success(),
        "the receiver got more than 'yes' or nothing: {st:?}"
    );
}
