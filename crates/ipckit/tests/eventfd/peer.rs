//! The eventfd test's peer (run by `tests/peers/bin.rs`).

use ipckit::eventfd::EventFd;
use ipckit::{Notify, Wait};

/// The notifier: five notifications of 1..=5, then it waits for the parent's answer, 15.
pub fn run(role: &str) {
    assert_eq!(role, "notifier");
    let ping = EventFd::open(&std::env::var("PING").unwrap(), Wait::Block).unwrap();
    let pong = EventFd::open(&std::env::var("PONG").unwrap(), Wait::Block).unwrap();
    // Five notifications of 1..=5, then wait for the parent's answer.
    for n in 1..=5 {
        ping.notify(n).unwrap();
    }
    let v = pong.wait().unwrap();
    std::process::exit(if v == 15 { 0 } else { 1 });
}
