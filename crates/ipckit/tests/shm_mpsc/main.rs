//! The MPSC queue across real processes (the peer binary, `peer.rs`, as producers or as the
//! receiver): integrity from four producers under each wait strategy, a receiver killed
//! under a blocked producer, producers killed mid-stream and mid-send, bad input, and
//! nothing left behind.

#[path = "../util/mod.rs"]
mod util;

mod peer;

use ipckit::registry;
use ipckit::shm::{MpscBuilder, MpscReceiver, PairBuilder};
use ipckit::{RecvError, SendError, Wait};
use peer::{check, PER_PRODUCER, PRODUCERS};
use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{ChildStdout, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use util::{init, peer_command, watchdog, KillOnDrop};

// ---------------------------------------------------------------------------------------
// Helpers.

fn queue_name() -> String {
    init();
    format!("/{}", registry::unique_name("mpsc"))
}

struct Peer {
    child: KillOnDrop,
    out: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    fn spawn(role: &str, vars: &[(&str, String)]) -> Peer {
        let mut cmd = peer_command(role, vars);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = KillOnDrop(cmd.spawn().expect("spawn peer"));
        let out = BufReader::new(child.0.stdout.take().unwrap()).lines();
        Peer { child, out }
    }

    /// Waits for the line `want` (skipping the test harness's own output).
    fn expect(&mut self, want: &str) {
        for l in self.out.by_ref() {
            if l.unwrap() == want {
                return;
            }
        }
        panic!("peer exited before saying {want:?}");
    }

    fn say(&mut self, line: &str) {
        let stdin = self.child.0.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn kill(&mut self) {
        self.child.0.kill().unwrap();
        self.child.0.wait().unwrap();
    }

    fn exit_code(&mut self) -> Option<i32> {
        self.child.0.wait().unwrap().code()
    }
}

/// After the receiver is dropped, neither the object nor its registry record may remain.
fn assert_gone(name: &str) {
    let path = format!("/dev/shm/{}", name.trim_start_matches('/'));
    assert!(!std::path::Path::new(&path).exists(), "{path} left behind");
    let recs: Vec<_> = registry::list()
        .unwrap()
        .into_iter()
        .filter(|e| e.record.name == name)
        .collect();
    assert!(recs.is_empty(), "registry records left behind: {recs:?}");
}

// ---------------------------------------------------------------------------------------
// Integrity.

/// Four producer processes send 20,000 messages each, of random sizes up to the slot size,
/// into a 64-slot queue (so it is often full): each arrives once, in its producer's order,
/// intact; then the receiver sees PeerGone.
fn integrity(wait: Wait) {
    let _serial = wait.spins().then(util::scarce);
    let name = queue_name();
    let opts = MpscBuilder::new(&name).slots(64).slot_size(200).wait(wait);
    let mut rx = opts.create().unwrap();
    let mut peers: Vec<Peer> = (0..PRODUCERS)
        .map(|id| {
            Peer::spawn(
                "producer",
                &[
                    ("NAME", name.clone()),
                    ("ID", id.to_string()),
                    ("COUNT", PER_PRODUCER.to_string()),
                    ("WAIT", wait.name().into()),
                ],
            )
        })
        .collect();
    for p in &mut peers {
        p.expect("ready");
    }
    for p in &mut peers {
        p.say("go");
    }
    let mut next = vec![0u64; PRODUCERS as usize];
    let mut buf = vec![0u8; rx.max_msg_size()];
    let mut total = 0u64;
    let t = Instant::now();
    loop {
        match rx.recv(&mut buf) {
            Ok(n) => {
                let (id, seq) = check(&buf[..n]);
                assert_eq!(seq, next[id as usize], "producer {id} out of order");
                next[id as usize] += 1;
                total += 1;
            }
            Err(RecvError::PeerGone) => break,
            Err(e) => panic!("recv: {e}"),
        }
    }
    eprintln!(
        "{}: {total} messages from {PRODUCERS} producers in {:?}",
        wait.name(),
        t.elapsed()
    );
    assert_eq!(next, vec![PER_PRODUCER; PRODUCERS as usize]);
    assert_eq!(rx.dropped(), 0);
    for p in &mut peers {
        assert_eq!(p.exit_code(), Some(0), "a producer failed");
    }
    drop(rx);
    assert_gone(&name);
}

#[test]
fn four_producers_block() {
    watchdog(120, || integrity(Wait::Block));
}

#[test]
fn four_producers_adaptive() {
    watchdog(120, || integrity(Wait::ADAPTIVE));
}

#[test]
fn four_producers_spin() {
    watchdog(180, || integrity(Wait::Spin));
}

// ---------------------------------------------------------------------------------------
// A receiver that dies.

/// A producer blocked on a full queue whose receiver is SIGKILLed gets PeerGone (under each
/// wait strategy), and `ipckit clean` then removes what the receiver left.
#[test]
fn receiver_killed_under_a_blocked_producer() {
    watchdog(60, || {
        for wait in [Wait::Block, Wait::ADAPTIVE, Wait::Spin] {
            let _serial = wait.spins().then(util::scarce);
            let name = queue_name();
            let mut rx = Peer::spawn("receiver", &[("NAME", name.clone()), ("SLOTS", "8".into())]);
            rx.expect("ready");
            let mut tx = MpscBuilder::new(&name).wait(wait).open().unwrap();
            let mut n = 0;
            while tx.try_send(b"fill").is_ok() {
                n += 1;
            }
            assert_eq!(n, 8);
            assert!(matches!(tx.try_send(b"x"), Err(SendError::Full)));
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let sender = std::thread::spawn(move || {
                let r = tx.send(b"blocked");
                done_tx.send(Instant::now()).unwrap();
                (r, tx)
            });
            std::thread::sleep(Duration::from_millis(50)); // let it block (or spin)
            let killed = Instant::now();
            rx.kill();
            let noticed = done_rx.recv().unwrap();
            let (r, mut tx) = sender.join().unwrap();
            assert!(matches!(r, Err(SendError::PeerGone)), "{r:?}");
            eprintln!(
                "{}: producer noticed the receiver's death after {:?}",
                wait.name(),
                noticed.duration_since(killed)
            );
            // Every later call says so too, at once.
            assert!(matches!(tx.try_send(b"x"), Err(SendError::PeerGone)));
            drop(tx);
            // A queue whose receiver is gone refuses new producers.
            let e = MpscBuilder::new(&name).wait(wait).open().unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
            // The receiver could not unlink its segment: clean does, as its owner is dead.
            registry::clean(false).unwrap();
            assert_gone(&name);
        }
    });
}

/// A producer blocked on a full queue whose receiver is dropped gets PeerGone.
#[test]
fn receiver_dropped_under_a_blocked_producer() {
    watchdog(30, || {
        let name = queue_name();
        let opts = MpscBuilder::new(&name).slots(2);
        let rx = opts.create().unwrap();
        let mut tx = MpscBuilder::new(&name).wait(Wait::Block).open().unwrap();
        tx.send(b"1").unwrap();
        tx.send(b"2").unwrap();
        let sender = std::thread::spawn(move || tx.send(b"3"));
        std::thread::sleep(Duration::from_millis(50));
        drop(rx);
        assert!(matches!(sender.join().unwrap(), Err(SendError::PeerGone)));
        assert_gone(&name);
    });
}

// ---------------------------------------------------------------------------------------
// Producers that die.

/// A producer SIGKILLed while streaming: the receiver keeps receiving from the others, in
/// order, loses at most the one message the dead producer may have claimed, and gets
/// PeerGone once every producer is gone.
#[test]
fn producer_killed_mid_stream() {
    watchdog(120, || {
        let name = queue_name();
        let opts = MpscBuilder::new(&name).slots(64).slot_size(200);
        let mut rx = opts.create().unwrap();
        let vars = |id: u32| {
            vec![
                ("NAME", name.clone()),
                ("ID", id.to_string()),
                ("COUNT", PER_PRODUCER.to_string()),
                ("WAIT", "block".to_string()),
            ]
        };
        let mut victim = Peer::spawn("endless", &vars(0));
        victim.expect("ready");
        let mut others: Vec<Peer> = (1..3)
            .map(|id| Peer::spawn("producer", &vars(id)))
            .collect();
        for p in &mut others {
            p.expect("ready");
        }
        for p in &mut others {
            p.say("go");
        }
        let mut next = [0u64; 3];
        let mut buf = vec![0u8; rx.max_msg_size()];
        let mut killed = false;
        loop {
            match rx.recv(&mut buf) {
                Ok(n) => {
                    let (id, seq) = check(&buf[..n]);
                    assert_eq!(seq, next[id as usize], "producer {id} out of order");
                    next[id as usize] += 1;
                    if !killed && next[0] == 5_000 {
                        victim.kill();
                        killed = true;
                    }
                }
                Err(RecvError::PeerGone) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert!(killed);
        assert_eq!(&next[1..], &[PER_PRODUCER; 2]);
        assert!(rx.dropped() <= 1, "lost {}", rx.dropped());
        eprintln!(
            "victim: {} messages received after its death was decided, {} lost",
            next[0] - 5_000,
            rx.dropped()
        );
        for p in &mut others {
            assert_eq!(p.exit_code(), Some(0));
        }
        drop(rx);
        assert_gone(&name);
    });
}

/// The last producer SIGKILLed while the receiver waits: PeerGone, never a hang.
#[test]
fn last_producer_killed_under_a_waiting_receiver() {
    watchdog(60, || {
        for wait in [Wait::Block, Wait::ADAPTIVE, Wait::Spin] {
            let _serial = wait.spins().then(util::scarce);
            let name = queue_name();
            let opts = MpscBuilder::new(&name).slots(8).wait(wait);
            let mut rx = opts.create().unwrap();
            let mut victim = Peer::spawn(
                "endless",
                &[
                    ("NAME", name.clone()),
                    ("ID", "0".into()),
                    ("WAIT", wait.name().into()),
                ],
            );
            victim.expect("ready");
            let mut buf = vec![0u8; rx.max_msg_size()];
            let mut next = 0;
            while next < 1000 {
                let n = rx.recv(&mut buf).unwrap();
                assert_eq!(check(&buf[..n]), (0, next));
                next += 1;
            }
            // Stop it first, so the queue fills and the receiver then waits on an empty one.
            let killed = Instant::now();
            victim.kill();
            loop {
                match rx.recv(&mut buf) {
                    Ok(n) => {
                        assert_eq!(check(&buf[..n]), (0, next));
                        next += 1;
                    }
                    Err(RecvError::PeerGone) => break,
                    Err(e) => panic!("recv: {e}"),
                }
            }
            eprintln!(
                "{}: receiver saw PeerGone {:?} after the last producer was killed ({} lost)",
                wait.name(),
                killed.elapsed(),
                rx.dropped()
            );
            assert!(rx.dropped() <= 1);
            drop(rx);
            assert_gone(&name);
        }
    });
}

/// A producer killed between claiming a slot and publishing it: while it lives, the
/// receiver waits for it (a claim in progress); once it is dead, the receiver skips the slot,
/// counts it lost, and delivers what other producers queued behind it.
#[test]
fn claim_of_a_killed_producer_is_skipped() {
    watchdog(60, || {
        let name = queue_name();
        let opts = MpscBuilder::new(&name).slots(16);
        let mut rx = opts.create().unwrap();
        let mut claimer = Peer::spawn("abandon", &[("NAME", name.clone()), ("COUNT", "10".into())]);
        claimer.expect("claimed");
        let mut buf = vec![0u8; rx.max_msg_size()];
        for seq in 0..10 {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(check(&buf[..n]), (9, seq));
        }
        // A live claimer is a send in progress: wait for it, past several scans.
        assert!(matches!(
            rx.recv_timeout(&mut buf, Duration::from_millis(100)),
            Err(RecvError::Timeout)
        ));
        assert!(matches!(rx.try_recv(&mut buf), Err(RecvError::Empty)));
        // Another producer queues messages behind the claim.
        let mut tx = MpscBuilder::new(&name).wait(Wait::Block).open().unwrap();
        for i in 0..5u8 {
            tx.send(&[i; 3]).unwrap();
        }
        let killed = Instant::now();
        claimer.kill();
        for i in 0..5u8 {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 3]);
            if i == 0 {
                eprintln!(
                    "receiver skipped the dead producer's claim {:?} after the kill",
                    killed.elapsed()
                );
            }
        }
        assert_eq!(rx.dropped(), 1);
        // The queue goes on working (and the dead producer's entry is retired).
        for _ in 0..100 {
            tx.send(b"more").unwrap();
            assert_eq!(rx.recv(&mut buf).unwrap(), 4);
        }
        drop(tx);
        assert!(matches!(rx.recv(&mut buf), Err(RecvError::PeerGone)));
        drop(rx);
        assert_gone(&name);
    });
}

/// A producer SIGKILLed at any step of a send (slot claimed; `tail` moved on; half written;
/// written but not published), while the receiver waits on its claim: the receiver skips the
/// slot as soon as the producer is dead and delivers what another producer queued behind it,
/// or, if the dead one was the last producer, says PeerGone. The time from the kill is
/// printed, not asserted (speed is the benchmarks' business); the watchdog catches a hang.
#[test]
fn a_producer_killed_at_any_step_is_skipped() {
    watchdog(60, || {
        for step in ["claim", "advance", "mid-write", "written"] {
            for last in [false, true] {
                let name = queue_name();
                let opts = MpscBuilder::new(&name).slots(16);
                let mut rx = opts.create().unwrap();
                let mut victim = Peer::spawn(
                    "abandon",
                    &[
                        ("NAME", name.clone()),
                        ("COUNT", "3".into()),
                        ("STEP", step.into()),
                    ],
                );
                victim.expect("claimed");
                let mut buf = vec![0u8; rx.max_msg_size()];
                for seq in 0..3 {
                    let n = rx.recv(&mut buf).unwrap();
                    assert_eq!(check(&buf[..n]), (9, seq), "{step}");
                }
                // Another producer queues messages behind the claim (unless the victim is to
                // be the last one).
                let mut tx =
                    (!last).then(|| MpscBuilder::new(&name).wait(Wait::Block).open().unwrap());
                for i in 0..5u8 {
                    if let Some(tx) = &mut tx {
                        tx.send(&[i; 3]).unwrap();
                    }
                }
                // While the claimer lives, its claim is a send in progress.
                assert!(
                    matches!(
                        rx.recv_timeout(&mut buf, Duration::from_millis(50)),
                        Err(RecvError::Timeout)
                    ),
                    "{step}: the receiver waits for a live claimer"
                );
                // Killed while the receiver is blocked on the claim.
                let pid = victim.child.0.id() as libc::pid_t;
                let killer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(30));
                    let t = Instant::now();
                    // SAFETY: kill takes two integers; `pid` is our unreaped child.
                    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
                    t
                });
                let r = rx.recv(&mut buf);
                let seen = Instant::now();
                let after = seen.saturating_duration_since(killer.join().unwrap());
                if last {
                    assert!(matches!(r, Err(RecvError::PeerGone)), "{step}: {r:?}");
                    eprintln!(
                        "killed at {step:?}, the last producer: PeerGone {after:?} after the kill"
                    );
                } else {
                    assert_eq!(&buf[..r.unwrap()], &[0u8; 3], "{step}");
                    eprintln!("killed at {step:?}: its claim skipped {after:?} after the kill");
                    for i in 1..5u8 {
                        let n = rx.recv(&mut buf).unwrap();
                        assert_eq!(&buf[..n], &[i; 3], "{step}");
                    }
                    drop(tx);
                    assert!(matches!(rx.recv(&mut buf), Err(RecvError::PeerGone)));
                }
                assert_eq!(rx.dropped(), 1, "{step}: the dead claim is counted lost");
                let _ = victim.child.0.wait();
                drop(rx);
                assert_gone(&name);
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// Semantics and input.

/// Boundary values a buggy or hostile process may write into a shared word.
const HOSTILE: [u64; 7] = [0, 1, 64, 65, u32::MAX as u64, 1 << 63, u64::MAX];

/// Where the queue's words sit, as `u64` indexes into the segment's data (see the layout in
/// `shm/mpsc/layout.rs`): the header's geometry, `tail`, producer entry 0's state, and slot
/// `i`'s sequence and length words for slots of 64 bytes (a stride of 128).
mod word {
    pub const SLOTS: usize = 0;
    pub const SLOT_SIZE: usize = 1;
    pub const STRIDE: usize = 2;
    pub const MAX_PRODUCERS: usize = 3;
    pub const TAIL: usize = 512 / 8;
    pub const ENTRY0: usize = 1024 / 8;
    pub fn seq(slot: usize) -> usize {
        (8192 + slot * 128) / 8
    }
    pub fn len(slot: usize) -> usize {
        seq(slot) + 1
    }
}

/// A second mapping of the queue `name`, through which a test writes what a hostile process
/// would.
fn hostile_view(name: &str) -> ipckit::shm::Segment {
    ipckit::shm::SegmentBuilder::new(name)
        .layout(ipckit::shm::MPSC_LAYOUT)
        .open()
        .unwrap()
}

fn is_invalid_data(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::InvalidData
}

/// A send or receive on a damaged queue: a result or a clear error, never a panic (the
/// caller's watchdog catches a hang).
fn tolerated_send(r: Result<(), SendError>, what: &str) {
    match r {
        Ok(()) | Err(SendError::Full | SendError::Timeout) => {}
        Err(SendError::Io(e)) if is_invalid_data(&e) => {}
        Err(e) => panic!("{what}: send gave {e:?}"),
    }
}

fn tolerated_recv(r: Result<usize, RecvError>, max: usize, what: &str) {
    match r {
        Ok(n) => assert!(
            n <= max,
            "{what}: a message of {n} bytes from {max}-byte slots"
        ),
        Err(RecvError::Empty | RecvError::Timeout | RecvError::PeerGone) => {}
        Err(RecvError::Io(e)) if is_invalid_data(&e) => {}
        Err(e) => panic!("{what}: recv gave {e:?}"),
    }
}

/// Every header word (slots, slot size, stride, producer table size) at each boundary value:
/// a producer's open is `InvalidData`, or, for a value that still makes a consistent queue
/// (one slot), works without a panic; never an out-of-bounds view.
#[test]
fn hostile_header_words_are_invalid_data_at_open() {
    watchdog(60, || {
        let name = queue_name();
        let opts = MpscBuilder::new(&name).slots(16).slot_size(64);
        let mut rx = opts.create().unwrap();
        let seg = hostile_view(&name);
        let w = seg.atomic_u64s();
        let fields = [
            ("slots", word::SLOTS, ipckit::shm::MAX_SLOTS as u64),
            (
                "slot size",
                word::SLOT_SIZE,
                ipckit::shm::MAX_SLOT_SIZE as u64,
            ),
            ("stride", word::STRIDE, 128),
            (
                "producer table",
                word::MAX_PRODUCERS,
                ipckit::shm::MAX_PRODUCERS as u64,
            ),
        ];
        let mut buf = vec![0u8; rx.max_msg_size()];
        for (what, i, max) in fields {
            let good = w[i].load(Ordering::SeqCst);
            for v in HOSTILE.into_iter().chain([max, max + 1, max - 1]) {
                w[i].store(v, Ordering::SeqCst);
                match MpscBuilder::new(&name).wait(Wait::Spin).open() {
                    Err(e) => assert!(is_invalid_data(&e), "{what} = {v}: {e}"),
                    Ok(mut tx) => {
                        for _ in 0..40 {
                            tolerated_send(tx.try_send(b"ok"), what);
                            tolerated_recv(rx.try_recv(&mut buf), 64, what);
                        }
                    }
                }
                w[i].store(good, Ordering::SeqCst);
            }
        }
        drop(seg);
        drop(rx);
        assert_gone(&name);
    });
}

/// A live queue whose slot length, slot sequence, `tail` or producer entry state is
/// overwritten with each boundary value: the receiver and the producer return messages
/// within the slot size or clear errors (`InvalidData`), wait within their deadlines, and
/// never panic or spin forever.
#[test]
fn hostile_slot_tail_and_entry_words_are_errors_not_panics() {
    watchdog(60, || {
        for (what, at) in [
            ("slot length", word::len(0)),
            ("slot sequence", word::seq(0)),
            ("slot sequence ahead", word::seq(1)),
            ("tail", word::TAIL),
            ("producer entry state", word::ENTRY0),
        ] {
            for v in HOSTILE {
                let what = format!("{what} = {v:#x}");
                let name = queue_name();
                let opts = MpscBuilder::new(&name).slots(16).slot_size(64);
                let mut rx = opts.create().unwrap();
                let mut tx = MpscBuilder::new(&name).wait(Wait::Block).open().unwrap();
                let seg = hostile_view(&name);
                let mut buf = vec![0u8; rx.max_msg_size()];
                tx.send(b"first").unwrap();
                seg.atomic_u64s()[at].store(v, Ordering::SeqCst);
                for _ in 0..20 {
                    tolerated_send(tx.try_send(b"next"), &what);
                    tolerated_recv(rx.try_recv(&mut buf), 64, &what);
                }
                tolerated_send(tx.send_timeout(b"late", Duration::from_millis(20)), &what);
                tolerated_recv(
                    rx.recv_timeout(&mut buf, Duration::from_millis(30)),
                    64,
                    &what,
                );
                drop(tx);
                tolerated_recv(
                    rx.recv_timeout(&mut buf, Duration::from_millis(30)),
                    64,
                    &what,
                );
                drop(seg);
                drop(rx);
                assert_gone(&name);
            }
        }
    });
}

/// PeerGone means "producers came and none is left now": not before any producer opens,
/// not while messages remain, and not after a new producer opens.
#[test]
fn peer_gone_semantics() {
    watchdog(30, || {
        let name = queue_name();
        let mut rx = MpscBuilder::new(&name).create().unwrap();
        let mut buf = vec![0u8; rx.max_msg_size()];
        assert!(matches!(rx.try_recv(&mut buf), Err(RecvError::Empty)));
        assert!(matches!(
            rx.recv_timeout(&mut buf, Duration::from_millis(60)),
            Err(RecvError::Timeout)
        ));
        let mut tx = MpscBuilder::new(&name).wait(Wait::Block).open().unwrap();
        for i in 0..3u8 {
            tx.send(&[i]).unwrap();
        }
        tx.send(b"").unwrap(); // an empty message is a message
        drop(tx);
        for i in 0..3u8 {
            assert_eq!(rx.recv(&mut buf).unwrap(), 1);
            assert_eq!(buf[0], i);
        }
        assert_eq!(rx.recv(&mut buf).unwrap(), 0);
        let t = Instant::now();
        assert!(matches!(rx.recv(&mut buf), Err(RecvError::PeerGone)));
        eprintln!("PeerGone after a clean drop: {:?}", t.elapsed());
        assert!(matches!(rx.try_recv(&mut buf), Err(RecvError::PeerGone)));
        let mut tx = MpscBuilder::new(&name).wait(Wait::Block).open().unwrap();
        assert!(matches!(
            rx.recv_timeout(&mut buf, Duration::from_millis(60)),
            Err(RecvError::Timeout)
        ));
        tx.send(b"back").unwrap();
        assert_eq!(rx.recv(&mut buf).unwrap(), 4);
        drop(tx);
        assert!(matches!(rx.recv(&mut buf), Err(RecvError::PeerGone)));
        drop(rx);
        assert_gone(&name);
    });
}

fn invalid_input(r: std::io::Result<MpscReceiver>, what: &str) {
    match r {
        Err(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{what}: {e}");
            eprintln!("{what}: {e}");
        }
        Ok(_) => panic!("{what}: accepted"),
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    watchdog(30, || {
        let name = queue_name();
        let with =
            |name: &str, slots, slot_size| MpscBuilder::new(name).slots(slots).slot_size(slot_size);
        invalid_input(with(&name, 16, 0).create(), "slot size 0");
        invalid_input(with(&name, 3, 64).create(), "3 slots");
        invalid_input(with(&name, 0, 64).create(), "0 slots");
        invalid_input(with(&name, 1 << 25, 64).create(), "too many slots");
        invalid_input(
            with(&format!("{name}/x"), 16, 64).create(),
            "a name with '/'",
        );
        invalid_input(with("", 16, 64).create(), "an empty name");
        assert_gone(&name);

        let e = MpscBuilder::new(&name)
            .wait(Wait::Block)
            .open()
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");

        let mut rx = with(&name, 4, 8).create().unwrap();
        let e = with(&name, 4, 8).create().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
        let mut tx = MpscBuilder::new(&name).wait(Wait::Block).open().unwrap();
        assert_eq!(tx.max_msg_size(), 8);
        assert!(matches!(
            tx.send(&[0; 9]),
            Err(SendError::TooLarge { len: 9, max: 8 })
        ));
        let mut buf = [0u8; 8];
        assert!(
            matches!(rx.try_recv(&mut buf), Err(RecvError::Empty)),
            "nothing sent"
        );
        tx.send(&[7; 8]).unwrap();
        let mut small = [0u8; 4];
        assert!(matches!(
            rx.try_recv(&mut small),
            Err(RecvError::BufferTooSmall { needed: 8 })
        ));
        assert_eq!(rx.try_recv(&mut buf).unwrap(), 8, "left in place");
        drop(tx);
        drop(rx);
        assert_gone(&name);

        // A segment of another layout is refused.
        let pair = PairBuilder::new(&name).create().unwrap();
        let e = MpscBuilder::new(&name)
            .wait(Wait::Block)
            .open()
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        eprintln!("another layout: {e}");
        drop(pair);
        assert_gone(&name);
    });
}

/// At most 64 producers at once; a dropped one's entry is free again at once.
#[test]
fn producer_table_is_bounded_and_reused() {
    watchdog(30, || {
        let name = queue_name();
        let rx = MpscBuilder::new(&name).create().unwrap();
        let mut txs: Vec<_> = (0..ipckit::shm::MAX_PRODUCERS)
            .map(|_| MpscBuilder::new(&name).wait(Wait::Block).open().unwrap())
            .collect();
        let e = MpscBuilder::new(&name)
            .wait(Wait::Block)
            .open()
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
        txs.pop();
        txs.push(MpscBuilder::new(&name).wait(Wait::Block).open().unwrap());
        drop(txs);
        drop(rx);
        assert_gone(&name);
    });
}
