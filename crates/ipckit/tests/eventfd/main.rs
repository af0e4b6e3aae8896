//! eventfd across two processes: notifications add up, a wait takes the sum.

#[path = "../util/mod.rs"]
mod util;

use ipckit::eventfd::EventFd;
use ipckit::{Notify, Wait};
use std::time::Duration;
use util::{peer_command, watchdog, KillOnDrop};

#[test]
fn counts_add_up_across_processes() {
    watchdog(20, || {
        util::init();
        let ping = EventFd::new(Wait::Block).unwrap();
        let pong = EventFd::new(Wait::Block).unwrap();
        let mut cmd = peer_command(
            "notifier",
            &[("PING", ping.address()), ("PONG", pong.address())],
        );
        ping.configure_child(&mut cmd);
        pong.configure_child(&mut cmd);
        let mut child = KillOnDrop(cmd.spawn().unwrap());
        let mut total = 0;
        while total < 15 {
            total += ping.wait_timeout(Duration::from_secs(5)).unwrap();
        }
        assert_eq!(total, 15, "notifications coalesce but never get lost");
        pong.notify(total).unwrap();
        assert!(child.0.wait().unwrap().success());
    });
}

#[test]
fn zero_and_max_increments_are_refused() {
    let ev = EventFd::new(Wait::Spin).unwrap();
    assert!(ev.notify(0).is_err());
    assert!(ev.notify(u64::MAX).is_err());
    assert_eq!(
        ev.try_wait().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
    assert_eq!(
        ev.wait_timeout(Duration::from_millis(5))
            .unwrap_err()
            .kind(),
        std::io::ErrorKind::TimedOut
    );
    assert!(EventFd::open("fd:notanumber", Wait::Block).is_err());
    assert!(
        EventFd::open("fd:1", Wait::Block).is_err(),
        "stdio is not an inherited eventfd"
    );
}
