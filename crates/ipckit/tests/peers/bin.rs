//! The peer processes of the cross-process tests: one binary that plays any test's roles.
//!
//! A test spawns it through `util::peer_command`, which cargo's `CARGO_BIN_EXE_*` locates,
//! with the test's name in `IPCKIT_TEST_GROUP` and the role in `IPCKIT_TEST_ROLE`; each test
//! keeps its roles in its own `peer.rs`, compiled here as a module. A binary of its own rather
//! than the test binary re-executed, so no test in the count exists only to be a peer.

#[path = "../util/mod.rs"]
mod util;

#[path = "../conformance/peer.rs"]
mod conformance;
#[path = "../cow/peer.rs"]
mod cow;
#[path = "../eventfd/peer.rs"]
mod eventfd;
#[path = "../fd_passing/peer.rs"]
mod fd_passing;
#[path = "../fifo/peer.rs"]
mod fifo;
#[path = "../pipe/peer.rs"]
mod pipe;
#[path = "../registry/peer.rs"]
mod registry;
#[path = "../sched/peer.rs"]
mod sched;
#[path = "../shm/peer.rs"]
mod shm;
#[path = "../shm_mpsc/peer.rs"]
mod shm_mpsc;
#[path = "../shm_mutex/peer.rs"]
mod shm_mutex;
#[path = "../shutdown/peer.rs"]
mod shutdown;
#[path = "../signal/peer.rs"]
mod signal;
#[path = "../tokio/peer.rs"]
mod tokio;
#[path = "../unix_listener/peer.rs"]
mod unix_listener;
#[path = "../zerocopy/peer.rs"]
mod zerocopy;

fn main() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set: run by a test"));
    let group = var(util::GROUP);
    let role = var(util::ROLE);
    match group.as_str() {
        "conformance" => conformance::run(&role),
        "cow" => cow::run(&role),
        "eventfd" => eventfd::run(&role),
        "fd_passing" => fd_passing::run(&role),
        "fifo" => fifo::run(&role),
        "pipe" => pipe::run(&role),
        "registry" => registry::run(&role),
        "sched" => sched::run(&role),
        "shm" => shm::run(&role),
        "shm_mpsc" => shm_mpsc::run(&role),
        "shm_mutex" => shm_mutex::run(&role),
        "shutdown" => shutdown::run(&role),
        "signal" => signal::run(&role),
        "tokio" => tokio::run(&role),
        "unix_listener" => unix_listener::run(&role),
        "zerocopy" => zerocopy::run(&role),
        other => panic!("no peers for test {other}"),
    }
}
