//! The signal tests' listener (run by `tests/peers/bin.rs`).

use ipckit::signal::{self, Signal, Signals};
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

/// The signals a listener peer blocks.
fn listened() -> Vec<Signal> {
    vec![Signal::SIGUSR1, Signal::SIGUSR2, Signal::rt(1).unwrap()]
}

/// The listener: waits for SIGUSR2 (the sender's "done"), then drains SIGUSR1 and SIGRTMIN+1,
/// printing one line per signal. With `SIGPENDING_LIMIT` it first lowers its own
/// RLIMIT_SIGPENDING.
pub fn run(role: &str) {
    assert_eq!(role, "listener");
    // First, while this process has no other thread that could take them: what
    // `block_for_process` at the top of `main` does in a real program.
    if signal::block_for_process(&listened()).is_err() {
        std::process::abort();
    }
    if let Ok(n) = std::env::var("SIGPENDING_LIMIT") {
        let n: u64 = n.parse().unwrap();
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `rl` is a live rlimit for getrlimit to fill and setrlimit to read.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_SIGPENDING, &mut rl), 0);
            rl.rlim_cur = n;
            assert_eq!(libc::setrlimit(libc::RLIMIT_SIGPENDING, &rl), 0);
        }
    }
    let go = Signals::new(&[Signal::SIGUSR2]).unwrap();
    let rest = Signals::new(&[Signal::SIGUSR1, Signal::rt(1).unwrap()]).unwrap();
    // Nothing is pending yet: a timed read times out, a try returns None.
    let e = rest.read_timeout(Duration::from_millis(5)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert_eq!(rest.try_read().unwrap(), None);
    println!("READY");
    if let Ok(n) = std::env::var("DRAIN") {
        // Read while the sender sends (its queue may be smaller than the whole run), keep
        // everything and print it only at the end, so a full stdout pipe cannot stall the drain.
        let n: usize = n.parse().unwrap();
        // With `DRAIN_PAUSE`, stall for that many ms before the first read and after every
        // thousandth, so a small queue surely fills and the sender meets `WouldBlock`.
        let pause = std::env::var("DRAIN_PAUSE")
            .ok()
            .map(|ms| Duration::from_millis(ms.parse().unwrap()));
        let mut all = Vec::with_capacity(n);
        while all.len() < n {
            if let Some(p) = pause.filter(|_| all.len() % 1000 == 0) {
                std::thread::sleep(p);
            }
            all.push(rest.read_timeout(Duration::from_secs(15)).unwrap());
        }
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for i in all {
            use std::io::Write;
            writeln!(
                out,
                "sig={} pid={} uid={} code={} value={:?}",
                i.signal, i.pid, i.uid, i.code, i.value
            )
            .unwrap();
        }
        drop(out);
        std::process::exit(0);
    }
    let mut all = vec![go.read_timeout(Duration::from_secs(15)).unwrap()];
    // Everything was sent before "done": the descriptor polls readable (as epoll, mio or
    // tokio would see it) unless nothing else was sent.
    let mut p = libc::pollfd {
        fd: rest.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one live pollfd; a zero timeout does not wait.
    let ready = unsafe { libc::poll(&mut p, 1, 0) } == 1 && p.revents & libc::POLLIN != 0;
    println!("POLLIN={ready}");
    while let Some(i) = rest.try_read().unwrap() {
        all.push(i);
    }
    for i in all {
        println!(
            "sig={} pid={} uid={} code={} value={:?}",
            i.signal, i.pid, i.uid, i.code, i.value
        );
    }
    std::process::exit(0);
}
