//! The registry test's peer (run by `tests/peers/bin.rs`).

use ipckit::connect::ChannelBuilder;
use ipckit::registry;
use ipckit::Mechanism;

/// The creator: makes a FIFO, a socket and two queues, says their names, waits to be killed.
pub fn run(role: &str) {
    assert_eq!(role, "creator");
    let dir = std::env::var("DIR").unwrap();
    let fifo = format!("{dir}/{}", registry::unique_name("orphan-fifo"));
    let sock = format!("{dir}/{}", registry::unique_name("orphan-sock"));
    let mq = format!("/{}", registry::unique_name("orphan-mq"));
    let key = format!("{}", 0x1c90_0000 | (std::process::id() & 0xffff) as i32);
    let _a = ChannelBuilder::new(Mechanism::Fifo)
        .create_receiver(&fifo)
        .unwrap();
    let _b = ChannelBuilder::new(Mechanism::UdsDgram)
        .create_receiver(&sock)
        .unwrap();
    let _c = ChannelBuilder::new(Mechanism::MqPosix)
        .create_receiver(&mq)
        .unwrap();
    let _d = ChannelBuilder::new(Mechanism::MqSysv)
        .create_receiver(&key)
        .unwrap();
    println!("{fifo}\n{sock}\n{mq}\n{key}\nready");
    std::thread::sleep(std::time::Duration::from_secs(60));
}
