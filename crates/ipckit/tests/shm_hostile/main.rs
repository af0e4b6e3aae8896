//! Shared memory written by a hostile or buggy process, across real processes.
//!
//! A ring pair is live between this test process and a peer (this test binary re-executed:
//! every test starts with [`peer_entry`], which turns the process into a peer when
//! [`ROLE`] is set and is otherwise a no-op). The peer maps the same segment and rewrites
//! the pair header's `cap` and `max`, a ring's `head`, the header word at the receiver's
//! position, and the `closed` flags, to boundary values; ipckit in this process must answer
//! with a clear error (`InvalidData`, `PeerGone`; `Full`/`Timeout`/`Empty` where no correct
//! protocol could tell), and never panic, read out of bounds (`.ci/asan` runs this binary
//! under AddressSanitizer) or hang (each case has a [`Watchdog`] that kills the peers and
//! fails the run after 10 s).
//!
//! Also here: a memfd segment is sealed against a peer's `ftruncate`, and what a peer's
//! `ftruncate` of a live `shm_open` pair does (the side that touches the segment next dies by
//! `SIGBUS`; the shm module documents this under "What a peer can do").
//!
//! The layout these tests write is the one of `shm/pair.rs` and `shm/ring.rs`;
//! `the_layout_is_the_one_these_tests_write` checks it against a live pair, so a layout change
//! fails there, by name, instead of making the other tests write the wrong words.

#[path = "../util/mod.rs"]
mod util;

use ipckit::registry;
use ipckit::shm::__fuzz as ring;
use ipckit::shm::{
    self, PairBuilder, Segment, SegmentBuilder, ShmEndpoint, ShmListener, PAIR_LAYOUT,
    SEGMENT_HEADER_LEN,
};
use ipckit::{Deadline, RecvError, SendError, Transport, Wait};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

/// Set in a peer's environment: the process serves commands on stdin instead of testing.
const ROLE: &str = "IPCKIT_HOSTILE_PEER";
/// How long one case may take before the watchdog fails the run.
const LIMIT: Duration = Duration::from_secs(10);

// The pair's layout, as data offsets (from the segment's data start): see `shm/pair.rs`
// (`PairHeader`, `CTL_LEN`, `RING_A`, `RING_B`) and `shm/ring.rs` (`RingCtl`, `WaitLine`).
/// `PairHeader::state` (low half) and `attach_seq` (high half).
const STATE: usize = 0;
/// `PairHeader::cap`.
const CAP: usize = 8;
/// `PairHeader::max`.
const MAX: usize = 16;
/// Ring A (server to client) control block; its `head` is its first word.
const RING_A: usize = 512;
/// Ring B (client to server) control block.
const RING_B: usize = 1024;
/// In a control block: the consumer's wait line, then the producer's.
const RX_LINE: usize = 128;
const TX_LINE: usize = 256;
/// In a wait line: the word holding `may_sleep` (low half) and `closed` (high half).
const CLOSED_WORD: usize = 8;
/// The pair header and both control blocks; ring A's data follows, then ring B's.
const CTL_LEN: usize = 4096;

/// The ring's data area in most cases, and the negotiated maximum message.
const RING: usize = 4096;
const MSG_MAX: usize = 1024;

// ---------------------------------------------------------------------------------------
// The peer: this binary re-executed, obeying one command per line on stdin, answering one
// line starting with '@' on stdout (the test harness prints its own lines there too).

/// Turns this process into a peer if it was spawned as one; returns otherwise. Every test
/// calls it first, so a peer spawned with `--exact <that test>` lands here.
fn peer_entry() {
    if std::env::var_os(ROLE).is_some() {
        peer_main();
    }
}

fn peer_main() -> ! {
    // A peer never outlives a parent that stopped talking to it: stdin's end-of-file ends
    // the loop, and a peer stuck in a call ends here.
    std::thread::spawn(|| {
        std::thread::sleep(3 * LIMIT);
        eprintln!("hostile peer: no end after {:?}", 3 * LIMIT);
        std::process::exit(3);
    });
    let mut ep: Option<ShmEndpoint> = None;
    let mut listener: Option<ShmListener> = None;
    let mut seg: Option<Segment> = None;
    let mut out = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let w: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> u64 { w[i].parse().unwrap_or_else(|_| panic!("{line}")) };
        let reply = match w[..] {
            // Serves a pair: `listen CAP MAX`, then `accept`.
            ["listen", _, _] => {
                let name = format!("/{}", registry::unique_name("hostile-srv"));
                let opts = pair_options(&name, num(1) as usize, num(2) as usize);
                match opts.create() {
                    Ok(l) => {
                        listener = Some(l);
                        format!("ok {name}")
                    }
                    Err(e) => format!("err {e}"),
                }
            }
            ["accept"] => match listener.take().map(|mut l| l.accept_timeout(ACCEPT)) {
                Some(Ok(e)) => {
                    ep = Some(e);
                    "ok".into()
                }
                Some(Err(e)) => format!("err {e}"),
                None => "err no listener".into(),
            },
            ["connect", name] => match pair_options(name, RING, MSG_MAX).open() {
                Ok(e) => {
                    ep = Some(e);
                    "ok".into()
                }
                Err(e) => format!("err {e}"),
            },
            // Maps a pair segment without attaching: a third process that can write it.
            ["open", name] => match SegmentBuilder::new(name).layout(PAIR_LAYOUT).open() {
                Ok(s) => {
                    seg = Some(s);
                    "ok".into()
                }
                Err(e) => format!("err {e}"),
            },
            // A segment whose descriptor the parent let this process inherit.
            ["adopt", _] => {
                let fd = ipckit::inherit::regular_file(num(1) as i32)
                    .and_then(|fd| SegmentBuilder::anonymous().open_fd(fd));
                match fd {
                    Ok(s) => {
                        let r = format!("ok sealed={}", s.size_sealed());
                        seg = Some(s);
                        r
                    }
                    Err(e) => format!("err {e}"),
                }
            }
            // `ftruncate` of the mapped segment, as any holder of its descriptor can.
            ["truncate", _] => {
                let s = seg.as_ref().or(ep.as_ref().map(ShmEndpoint::segment));
                let r = s
                    .ok_or_else(|| std::io::Error::other("nothing mapped"))
                    .and_then(|s| s.as_fd().try_clone_to_owned())
                    .and_then(|fd| std::fs::File::from(fd).set_len(num(1)));
                match r {
                    Ok(()) => "ok".into(),
                    Err(e) => format!("err errno={} {e}", e.raw_os_error().unwrap_or(0)),
                }
            }
            ["send", _] => match ep.as_mut() {
                Some(e) => {
                    let len = num(1) as usize;
                    match e.send_timeout(&util::payload(len as u64, len), LIMIT / 4) {
                        Ok(()) => "ok".into(),
                        Err(e) => format!("err {e:?}"),
                    }
                }
                None => "err no pair".into(),
            },
            ["recv"] => match ep.as_mut() {
                Some(e) => {
                    let mut buf = vec![0u8; e.max_msg_size()];
                    match e.recv_timeout(&mut buf, LIMIT / 4) {
                        Ok(n) if buf[..n] == util::payload(n as u64, n) => format!("ok {n}"),
                        Ok(n) => format!("ok {n} (not the bytes sent)"),
                        Err(e) => format!("err {e:?}"),
                    }
                }
                None => "err no pair".into(),
            },
            // Stores / loads one u64 of the segment's data at a byte offset.
            ["w", _, _] | ["r", _] => {
                let s = seg.as_ref().or(ep.as_ref().map(ShmEndpoint::segment));
                match s {
                    Some(s) => {
                        let word = &s.atomic_u64s()[num(1) as usize / 8];
                        if w[0] == "w" {
                            word.store(num(2), Ordering::SeqCst);
                            "ok".into()
                        } else {
                            format!("ok {}", word.load(Ordering::SeqCst))
                        }
                    }
                    None => "err nothing mapped".into(),
                }
            }
            ["close"] => {
                ep = None;
                listener = None;
                seg = None;
                "ok".into()
            }
            _ => format!("err unknown command {line:?}"),
        };
        let _ = writeln!(out, "@{reply}");
        let _ = out.flush();
    }
    std::process::exit(0);
}

/// How long a server waits for its client.
const ACCEPT: Duration = Duration::from_millis(LIMIT.as_millis() as u64 / 2);

fn pair_options(name: &str, cap: usize, max: usize) -> PairBuilder {
    PairBuilder::new(name)
        .capacity(cap)
        .max_msg_size(max)
        .wait(Wait::Block)
}

/// Pids of this process's live peers, for the watchdog.
static PEERS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A peer process and its command channel; killed and reaped on drop.
struct Peer {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Peer {
    /// Re-executes this binary to run `test`, which turns into a peer at its start.
    fn spawn(test: &str) -> Peer {
        Peer::spawn_with(test, |_| {})
    }

    fn spawn_with(test: &str, setup: impl FnOnce(&mut Command)) -> Peer {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([test, "--exact", "--nocapture", "--test-threads=1", "-q"])
            .env(ROLE, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        setup(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        PEERS.lock().unwrap().push(child.id());
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Peer {
            child,
            input,
            output,
        }
    }

    /// Sends a command and returns its answer (without the '@'), or `None` if the peer
    /// died first.
    fn ask(&mut self, line: &str) -> Option<String> {
        writeln!(self.input, "{line}").ok()?;
        self.input.flush().ok()?;
        let mut l = String::new();
        loop {
            l.clear();
            if self.output.read_line(&mut l).ok()? == 0 {
                return None;
            }
            if let Some(r) = l.trim_end().strip_prefix('@') {
                return Some(r.to_owned());
            }
        }
    }

    /// A command that must succeed; returns what follows "ok".
    fn ok(&mut self, line: &str) -> String {
        match self.ask(line) {
            Some(r) if r == "ok" || r.starts_with("ok ") => r[2..].trim().to_owned(),
            other => panic!("peer: {line:?} answered {other:?}"),
        }
    }

    /// Waits for the peer to end (after `ask` returned `None`) and returns its status.
    fn status(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        PEERS.lock().unwrap().retain(|p| *p != self.child.id());
    }
}

/// Fails the whole run if the case it guards is not over within [`LIMIT`]: kills every peer
/// (so none is left behind), says which case hung, and exits with a failure. A hang cannot
/// be unwound, so a panic would not do: the hung thread would keep the test running.
struct Watchdog(Option<mpsc::Sender<()>>);

impl Watchdog {
    fn start(case: String) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(LIMIT) {
                for pid in PEERS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
                eprintln!("watchdog: {case} did not finish within {LIMIT:?} (a hang)");
                std::process::exit(101);
            }
        });
        Watchdog(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// A fresh pair: this process serves (`listen`/`accept`), the peer attaches.
fn serve(peer: &mut Peer, cap: usize, max: usize) -> ShmEndpoint {
    let name = format!("/{}", registry::unique_name("hostile"));
    let mut l = pair_options(&name, cap, max).create().unwrap();
    peer.ok(&format!("connect {name}"));
    l.accept_timeout(ACCEPT).unwrap()
}

fn is_invalid_data_recv(r: &RecvError) -> bool {
    matches!(r, RecvError::Io(e) if e.kind() == ErrorKind::InvalidData)
}

fn is_invalid_data_send(r: &SendError) -> bool {
    matches!(r, SendError::Io(e) if e.kind() == ErrorKind::InvalidData)
}

/// Runs `f`, turning a panic into an error naming it: one case's panic inside ipckit is
/// recorded as that case's outcome, and the others still run.
fn no_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("panicked: {msg}")
    })
}

/// Fails with every case that went wrong, one a line.
fn assert_no_failures(failures: &[String], cases: usize) {
    assert!(
        failures.is_empty(),
        "{} of {cases} cases went wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

const BOUNDARY: [u64; 7] = [
    0,
    1,
    MSG_MAX as u64,
    MSG_MAX as u64 + 1,
    u32::MAX as u64,
    1 << 63,
    u64::MAX,
];

// ---------------------------------------------------------------------------------------

/// The offsets this file writes are the pair's: `cap` and `max` in the header, each ring's
/// `head` (the consumer's released position), and each ring's first record header.
#[test]
fn the_layout_is_the_one_these_tests_write() {
    peer_entry();
    util::init();
    let _w = Watchdog::start("layout".into());
    let mut peer = Peer::spawn("the_layout_is_the_one_these_tests_write");
    let cap = 8192;
    let mut ep = serve(&mut peer, cap, MSG_MAX);
    let word = |p: &mut Peer, off: usize| -> u64 { p.ok(&format!("r {off}")).parse().unwrap() };
    assert_eq!(word(&mut peer, CAP), cap as u64);
    assert_eq!(word(&mut peer, MAX), MSG_MAX as u64);
    // Three records of one line each, server to client; the client reads two.
    for _ in 0..3 {
        ep.send(&[7u8; 56]).unwrap();
    }
    peer.ok("recv");
    peer.ok("recv");
    assert_eq!(word(&mut peer, RING_A), 128, "ring A's head");
    assert_eq!(
        word(&mut peer, CTL_LEN),
        ring::header(0, 56),
        "ring A's first record"
    );
    // One record client to server, read here.
    peer.ok("send 100");
    let mut buf = [0u8; MSG_MAX];
    assert_eq!(ep.recv(&mut buf).unwrap(), 100);
    assert_eq!(word(&mut peer, RING_B), ring::record_len(100) as u64);
    assert_eq!(word(&mut peer, CTL_LEN + cap), ring::header(0, 100));
}

// ---------------------------------------------------------------------------------------
// The receiver: a forged header word at its position.

/// What a receiver must do with `word` at its position `pos`: the rules of `shm/ring.rs`.
/// A word without the stamp of the receiver's position is nothing yet (the producer makes sure
/// no stale word there carries it); one with it is a record header, checked; a pad sends the
/// receiver to the next lap's start, where `lap_start` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A well-formed record: indistinguishable from one the sender wrote, so delivered.
    Deliver(usize),
    /// No correct producer writes this: `InvalidData`.
    Corrupt,
    /// Nothing published yet.
    Nothing,
}

fn want(pos: u64, word: u64, lap_start: u64, cap: usize, max: usize) -> Want {
    if word as u32 != ring::stamp(pos) {
        return Want::Nothing;
    }
    let off = (pos as usize) & (cap - 1);
    let len = (word >> 32) as u32;
    if len == u32::MAX {
        // A pad is right only where the largest message would not fit before the end.
        let left = cap - off;
        if off == 0 || left >= ring::record_len(max) {
            return Want::Corrupt;
        }
        return want(pos + left as u64, lap_start, lap_start, cap, max);
    }
    let len = len as usize;
    if len > max || off + ring::payload_gap(len) + len > cap {
        Want::Corrupt
    } else {
        Want::Deliver(len)
    }
}

#[derive(Debug, Clone, Copy)]
enum RecvApi {
    /// `recv` (no deadline) where something must come, `recv_timeout` where nothing should.
    Recv,
    TryRecv,
    RecvRef,
}

/// Header words, each a forged record header (a right stamp) with a boundary length, or a
/// raw boundary value.
fn forged_words(pos: u64) -> Vec<u64> {
    let mut v: Vec<u64> = [
        0u32,
        1,
        56,
        57,
        MSG_MAX as u32,
        MSG_MAX as u32 + 1,
        ring::max_payload(RING) as u32,
        RING as u32,
        1 << 31,
        u32::MAX - 1,
        u32::MAX, // a pad
    ]
    .iter()
    .map(|&len| ring::header(pos, len))
    .collect();
    v.extend(BOUNDARY);
    // The stamp of the same offset one lap on.
    v.push(ring::header(pos + RING as u64, 0));
    v
}

/// Messages the peer sends first, putting the receiver at: offset 0 of the first lap, the
/// middle, the last line before the end, and offset 0 of the second lap.
const LEADS: [&[usize]; 4] = [
    &[],
    &[1024, 1024],
    &[1024, 1024, 1024, 760],
    &[1024, 1024, 1024, 760, 56],
];

#[test]
fn receiver_rejects_forged_headers_at_its_position() {
    peer_entry();
    util::init();
    let mut peer = Peer::spawn("receiver_rejects_forged_headers_at_its_position");
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let (mut failures, mut cases) = (Vec::new(), 0);
    for lead in LEADS {
        let pos: u64 = lead.iter().map(|&l| ring::record_len(l) as u64).sum();
        for word in forged_words(pos) {
            for api in [RecvApi::Recv, RecvApi::TryRecv, RecvApi::RecvRef] {
                let case = format!("pos {pos}, word {word:#018x}, {api:?}");
                let _w = Watchdog::start(case.clone());
                let (got, w) = forged_header_case(&mut peer, lead, pos, &[word], api);
                let ok = match (w, &got) {
                    (Want::Deliver(n), Ok(Ok(m))) => *m == n,
                    (Want::Corrupt, Ok(Err(e))) => is_invalid_data_recv(e),
                    (Want::Nothing, Ok(Err(RecvError::Timeout | RecvError::Empty))) => true,
                    _ => false,
                };
                cases += 1;
                if !ok {
                    failures.push(format!("{case}: wanted {w:?}, got {got:?}"));
                }
                *seen
                    .entry(format!("{w:?}").replace(char::is_numeric, ""))
                    .or_default() += 1;
            }
        }
    }
    // A pad where one may stand, and a record forged at the next lap's start for it to lead
    // to: the receiver takes both, as it would from the sender.
    let lead = LEADS[2];
    let pos: u64 = lead.iter().map(|&l| ring::record_len(l) as u64).sum();
    let next = pos.next_multiple_of(RING as u64);
    for api in [RecvApi::Recv, RecvApi::TryRecv, RecvApi::RecvRef] {
        let case = format!("pos {pos}: a pad, and a 56-byte record at {next}, {api:?}");
        let _w = Watchdog::start(case.clone());
        let words = [ring::header(pos, u32::MAX), ring::header(next, 56)];
        let (got, w) = forged_header_case(&mut peer, lead, pos, &words, api);
        cases += 1;
        if w != Want::Deliver(56) || !matches!(got, Ok(Ok(56))) {
            failures.push(format!("{case}: wanted {w:?}, got {got:?}"));
        }
    }
    eprintln!("cases by outcome: {seen:?}");
    assert_no_failures(&failures, cases);
}

fn forged_header_case(
    peer: &mut Peer,
    lead: &[usize],
    pos: u64,
    words: &[u64],
    api: RecvApi,
) -> (Result<Result<usize, RecvError>, String>, Want) {
    let mut ep = serve(peer, RING, MSG_MAX);
    let mut buf = vec![0u8; MSG_MAX];
    for &len in lead {
        peer.ok(&format!("send {len}"));
        let n = ep.recv(&mut buf).unwrap();
        assert_eq!(buf[..n], util::payload(len as u64, len)[..]);
    }
    // Ring B carries the peer's messages to this process. The first word goes at the
    // receiver's position, a second one at the next lap's start.
    let ring_b = CTL_LEN + RING;
    let word = words[0];
    peer.ok(&format!(
        "w {} {word}",
        ring_b + (pos as usize & (RING - 1))
    ));
    if let Some(w) = words.get(1) {
        peer.ok(&format!("w {ring_b} {w}"));
    }
    let lap_start = peer.ok(&format!("r {ring_b}")).parse().unwrap();
    let w = want(pos, word, lap_start, RING, MSG_MAX);
    let soon = Duration::from_millis(50);
    let nothing = w == Want::Nothing;
    let r = no_panic(|| match api {
        RecvApi::Recv if nothing => ep.recv_timeout(&mut buf, soon),
        RecvApi::Recv => ep.recv(&mut buf),
        RecvApi::TryRecv => ep.try_recv(&mut buf),
        RecvApi::RecvRef => {
            let d = if nothing {
                Deadline::after(soon)
            } else {
                Deadline::Never
            };
            ep.recv_ref(d).map(|m| {
                // Copy it out, as a reader of shared memory must, touching every byte.
                let copy = m.to_vec();
                copy.len()
            })
        }
    });
    drop(ep);
    peer.ok("close");
    (r, w)
}

// ---------------------------------------------------------------------------------------
// The sender: a forged `head` (the consumer's released position).

#[derive(Debug, Clone, Copy)]
enum SendApi {
    SendTimeout,
    TrySend,
    LoanTimeout,
    LoanNow,
}

const SEND_APIS: [SendApi; 4] = [
    SendApi::SendTimeout,
    SendApi::TrySend,
    SendApi::LoanTimeout,
    SendApi::LoanNow,
];

fn send_one(ep: &mut ShmEndpoint, api: SendApi) -> Result<(), SendError> {
    let msg = [9u8; 56];
    let soon = Duration::from_millis(50);
    match api {
        SendApi::SendTimeout => ep.send_timeout(&msg, soon),
        SendApi::TrySend => ep.try_send(&msg),
        SendApi::LoanTimeout | SendApi::LoanNow => {
            let d = match api {
                SendApi::LoanNow => Deadline::Now,
                _ => Deadline::after(soon),
            };
            let mut loan = ep.loan(msg.len(), d)?;
            loan.copy_from_slice(&msg);
            loan.commit();
            Ok(())
        }
    }
}

/// Fills ring A (this process to the peer, which does not read) with one-line records;
/// returns the producer's position.
fn fill(ep: &mut ShmEndpoint) -> u64 {
    let mut pos = 0;
    for _ in 0..=RING / 64 {
        match ep.try_send(&[1u8; 56]) {
            Ok(()) => pos += 64,
            Err(SendError::Full) => return pos,
            Err(e) => panic!("filling the ring: {e:?}"),
        }
    }
    panic!("a {RING}-byte ring took more than {} records", RING / 64);
}

#[test]
fn sender_rejects_a_forged_head() {
    peer_entry();
    util::init();
    let mut peer = Peer::spawn("sender_rejects_a_forged_head");
    let (mut failures, mut cases) = (Vec::new(), 0);
    for api in SEND_APIS {
        // The producer's position after filling the ring, learnt from a first pair.
        let pos = {
            let mut ep = serve(&mut peer, RING, MSG_MAX);
            let p = fill(&mut ep);
            drop(ep);
            peer.ok("close");
            p
        };
        let mut heads: Vec<u64> = BOUNDARY.to_vec();
        heads.extend([
            64,
            pos - 64,
            pos - 1,
            pos,
            pos + 1,
            pos + 64,
            2 * RING as u64,
        ]);
        for head in heads {
            let case = format!("head {head} (producer at {pos}), {api:?}");
            let _w = Watchdog::start(case.clone());
            let mut ep = serve(&mut peer, RING, MSG_MAX);
            assert_eq!(fill(&mut ep), pos);
            peer.ok(&format!("w {RING_A} {head}"));
            let r = no_panic(|| send_one(&mut ep, api));
            drop(ep);
            peer.ok("close");
            cases += 1;
            let Ok(r) = r else {
                failures.push(format!("{case}: {r:?}"));
                continue;
            };
            let ok = if head > pos || !head.is_multiple_of(64) {
                // Released beyond what was ever sent, or inside a record (the consumer
                // releases whole records, which start on 64-byte boundaries).
                matches!(&r, Err(e) if is_invalid_data_send(e))
            } else if head == 0 {
                // Nothing released, as the producer last saw: still full.
                matches!(r, Err(SendError::Full | SendError::Timeout))
            } else {
                // A release of whole records, which the producer cannot tell from a real
                // one: room for one more line.
                r.is_ok()
            };
            if !ok {
                failures.push(format!("{case}: got {r:?}"));
            }
        }
    }
    assert_no_failures(&failures, cases);
}

/// The peer reads four records (its `head` moves to 256), the producer learns it, then the
/// peer moves `head` backwards: the producer must say `InvalidData` when it next looks, not
/// count the ring full for ever.
#[test]
fn sender_rejects_a_head_that_goes_backwards() {
    peer_entry();
    util::init();
    let mut peer = Peer::spawn("sender_rejects_a_head_that_goes_backwards");
    let (mut failures, mut cases) = (Vec::new(), 0);
    for api in SEND_APIS {
        for back_to in [0u64, 64, 255] {
            let case = format!("head 256 then {back_to}, {api:?}");
            let _w = Watchdog::start(case.clone());
            let mut ep = serve(&mut peer, RING, MSG_MAX);
            fill(&mut ep);
            for _ in 0..4 {
                peer.ok("recv");
            }
            // The producer reloads `head` for this one: 256 now.
            send_one(&mut ep, api).unwrap();
            peer.ok(&format!("w {RING_A} {back_to}"));
            let r = no_panic(|| {
                for _ in 0..=RING / 64 {
                    send_one(&mut ep, api)?;
                }
                Ok(())
            });
            drop(ep);
            peer.ok("close");
            cases += 1;
            if !matches!(&r, Ok(Err(e)) if is_invalid_data_send(e)) {
                failures.push(format!("{case}: got {r:?}"));
            }
        }
    }
    assert_no_failures(&failures, cases);
}

// ---------------------------------------------------------------------------------------
// Attaching: the pair header's `cap` and `max`, and the attach state.

#[test]
fn connect_rejects_a_forged_cap_or_max() {
    peer_entry();
    util::init();
    let mut peer = Peer::spawn("connect_rejects_a_forged_cap_or_max");
    // The real ring is 8 KiB, so a 4 KiB one is a plausible lie.
    let cap = 8192usize;
    let payload_max = ring::max_payload(cap) as u64;
    let mut cases: Vec<(usize, u64)> = Vec::new();
    for v in BOUNDARY
        .iter()
        .copied()
        .chain([4095, 4096, 4097, 8192, 16384, 1 << 32])
    {
        cases.push((CAP, v));
    }
    for v in BOUNDARY
        .iter()
        .copied()
        .chain([payload_max, payload_max + 1, cap as u64])
    {
        cases.push((MAX, v));
    }
    let (mut failures, n_cases) = (Vec::new(), cases.len());
    for (field, v) in cases {
        let what = if field == CAP { "cap" } else { "max" };
        let case = format!("{what} = {v}");
        let _w = Watchdog::start(case.clone());
        let name = format!("/{}", registry::unique_name("hostile-hdr"));
        let mut l = pair_options(&name, cap, MSG_MAX).create().unwrap();
        peer.ok(&format!("open {name}"));
        peer.ok(&format!("w {field} {v}"));
        let valid = if field == CAP {
            v == cap as u64
        } else {
            v <= payload_max
        };
        let r = no_panic(|| match pair_options(&name, cap, MSG_MAX).open() {
            Ok(mut client) if valid => {
                if field == MAX && client.max_msg_size() as u64 != v {
                    return Err(format!("connected with max {}", client.max_msg_size()));
                }
                let mut server = l.accept_timeout(ACCEPT).unwrap();
                let n = client.max_msg_size().min(100);
                client.send(&util::payload(1, n)).unwrap();
                let mut buf = vec![0u8; MSG_MAX];
                match server.recv(&mut buf) {
                    Ok(m) if m == n => Ok(()),
                    other => Err(format!("the first message: {other:?}")),
                }
            }
            Ok(client) if field == CAP && v == 4096 => {
                // A smaller capacity that fits the segment: refusing it needs the exact size;
                // if it is taken, the two sides disagree on where the rings are. Whatever
                // they then see, they return (the watchdog) without a panic or a read out
                // of bounds (AddressSanitizer).
                let mut server = l.accept_timeout(ACCEPT).unwrap();
                smoke(&mut server, client);
                Ok(())
            }
            Ok(c) => Err(format!("connected, max {}", c.max_msg_size())),
            Err(e) if valid => Err(format!("refused: {e}")),
            Err(e) if e.kind() == ErrorKind::InvalidData => Ok(()),
            Err(e) => Err(format!("refused, but not as InvalidData: {e}")),
        });
        peer.ok("close");
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => failures.push(format!("{case}: {e}")),
        }
    }
    assert_no_failures(&failures, n_cases);
}

/// Traffic both ways over a pair whose sides disagree on its layout: every call returns.
fn smoke(server: &mut ShmEndpoint, mut client: ShmEndpoint) {
    let mut buf = vec![0u8; MSG_MAX];
    let soon = Duration::from_millis(20);
    for i in 0..20u64 {
        let len = [0, 56, 1000][i as usize % 3];
        let m = util::payload(i, len);
        let _ = server.send_timeout(&m, soon);
        let _ = client.send_timeout(&m, soon);
        let _ = server.recv_timeout(&mut buf, soon);
        if let Ok(m) = client.recv_ref(Deadline::after(soon)) {
            let _ = m.to_vec();
        }
    }
}

/// `cap` and `max` are read once, when a client attaches: rewriting them later changes
/// nothing for a live pair.
#[test]
fn a_live_pair_ignores_a_rewritten_header() {
    peer_entry();
    util::init();
    let _w = Watchdog::start("rewritten header".into());
    let mut peer = Peer::spawn("a_live_pair_ignores_a_rewritten_header");
    let mut ep = serve(&mut peer, RING, MSG_MAX);
    for v in [0, u64::MAX] {
        peer.ok(&format!("w {CAP} {v}"));
        peer.ok(&format!("w {MAX} {v}"));
        peer.ok(&format!("send {MSG_MAX}"));
        let mut buf = vec![0u8; MSG_MAX];
        let n = ep.recv(&mut buf).unwrap();
        assert_eq!(buf[..n], util::payload(MSG_MAX as u64, MSG_MAX)[..]);
        ep.send(&util::payload(56, 56)).unwrap();
        assert_eq!(peer.ok("recv"), "56");
    }
}

/// A writer that marks the attach done without a client's hello: `accept` says so.
#[test]
fn accept_rejects_a_forged_attach() {
    peer_entry();
    util::init();
    let _w = Watchdog::start("forged attach".into());
    let mut peer = Peer::spawn("accept_rejects_a_forged_attach");
    let name = format!("/{}", registry::unique_name("hostile-attach"));
    let mut l = pair_options(&name, RING, MSG_MAX).create().unwrap();
    peer.ok(&format!("open {name}"));
    // state = ATTACHED (2), attach_seq = 0.
    peer.ok(&format!("w {STATE} 2"));
    let e = l.accept_timeout(ACCEPT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
}

/// A writer that raises the other side's `closed` flag while it lives: the receiver and the
/// sender see `PeerGone`.
#[test]
fn a_forged_close_is_peer_gone() {
    peer_entry();
    util::init();
    let _w = Watchdog::start("forged close".into());
    let mut peer = Peer::spawn("a_forged_close_is_peer_gone");
    // Receiving on ring B: its producer's (the peer's) line says closed.
    let mut ep = serve(&mut peer, RING, MSG_MAX);
    peer.ok("send 10");
    peer.ok(&format!(
        "w {} {}",
        RING_B + TX_LINE + CLOSED_WORD,
        1u64 << 32
    ));
    let mut buf = vec![0u8; MSG_MAX];
    assert_eq!(ep.recv(&mut buf).unwrap(), 10, "what was sent comes first");
    assert!(matches!(ep.recv(&mut buf), Err(RecvError::PeerGone)));
    drop(ep);
    peer.ok("close");
    // Sending on ring A: its consumer's (the peer's) line says closed.
    let mut ep = serve(&mut peer, RING, MSG_MAX);
    peer.ok(&format!(
        "w {} {}",
        RING_A + RX_LINE + CLOSED_WORD,
        1u64 << 32
    ));
    assert!(matches!(ep.send(&[1u8; 10]), Err(SendError::PeerGone)));
}

// ---------------------------------------------------------------------------------------
// Sizes: sealing a memfd, and a peer's ftruncate of a live shm_open pair.

/// A memfd segment is sealed once sized: the peer that received it (here by inheritance)
/// and its creator both fail to `ftruncate` it, smaller or larger, with `EPERM`; both
/// mappings keep working.
#[test]
fn a_memfd_segment_is_sealed_against_ftruncate() {
    peer_entry();
    util::init();
    let _w = Watchdog::start("memfd sealing".into());
    for huge in [shm::HugePages::No, shm::HugePages::Try] {
        let seg = SegmentBuilder::anonymous()
            .size(8192)
            .huge_pages(huge)
            .create()
            .unwrap()
            .ready();
        assert!(seg.size_sealed(), "{huge:?}: {:?}", seg.huge_pages());
        let total = (seg.len() + SEGMENT_HEADER_LEN) as u64;
        let fd = seg.as_fd().as_raw_fd();
        let mut peer = Peer::spawn_with("a_memfd_segment_is_sealed_against_ftruncate", |cmd| {
            ipckit::pipe::inherit_only(cmd, &[seg.as_fd()]);
        });
        assert_eq!(peer.ok(&format!("adopt {fd}")), "sealed=true");
        for len in [
            0,
            SEGMENT_HEADER_LEN as u64,
            total - 1,
            total + 1,
            2 * total,
        ] {
            let r = peer.ask(&format!("truncate {len}")).unwrap();
            assert!(
                r.starts_with(&format!("err errno={}", libc::EPERM)),
                "{huge:?}: the peer's ftruncate to {len}: {r}"
            );
        }
        // The creator is refused too: a seal binds every descriptor.
        let mine = std::fs::File::from(seg.as_fd().try_clone_to_owned().unwrap());
        let e = mine.set_len(0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        assert_eq!(mine.metadata().unwrap().len(), total);
        // Both mappings still see the same memory, to the last word.
        let last = seg.len() - 8;
        peer.ok(&format!("w {last} 4242"));
        assert_eq!(seg.atomic_u64s()[last / 8].load(Ordering::SeqCst), 4242);
        seg.atomic_u64s()[0].store(17, Ordering::SeqCst);
        assert_eq!(peer.ok("r 0"), "17");
    }
    // A named segment cannot be sealed, and says so.
    let named = SegmentBuilder::new(&format!("/{}", registry::unique_name("unsealed")))
        .size(4096)
        .create()
        .unwrap()
        .ready();
    assert!(!named.size_sealed());
}

/// A process that can open a live pair's `shm_open` object (same uid, mode 0600) shrinks it.
/// The pair's two sides are peers here, so the test runner survives; this process holds
/// only a descriptor, never a mapping. Growing the object changes nothing; after shrinking
/// it, the side that next touches a page past the new end dies by `SIGBUS`, whichever side
/// that is (nothing can be sealed on an shm_open object, see the shm module's "What a peer
/// can do").
#[test]
fn a_peers_ftruncate_of_a_live_pair_is_sigbus() {
    peer_entry();
    util::init();
    use std::os::unix::process::ExitStatusExt;
    for hurt in ["receiver", "sender"] {
        let _w = Watchdog::start(format!("ftruncate, the {hurt} touches first"));
        let test = "a_peers_ftruncate_of_a_live_pair_is_sigbus";
        let (mut server, mut client) = (Peer::spawn(test), Peer::spawn(test));
        let name = server.ok(&format!("listen {RING} {MSG_MAX}"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/dev/shm/{}", name.trim_start_matches('/')))
            .unwrap();
        client.ok(&format!("connect {name}"));
        server.ok("accept");
        let total = file.metadata().unwrap().len();
        assert_eq!(total, (SEGMENT_HEADER_LEN + CTL_LEN + 2 * RING) as u64);
        // Live; and growing the object leaves the pair as it was.
        server.ok("send 100");
        assert_eq!(client.ok("recv"), "100");
        file.set_len(2 * total).unwrap();
        server.ok("send 200");
        assert_eq!(client.ok("recv"), "200");
        // Shrink to the headers: the rings' data is gone under both mappings.
        file.set_len((SEGMENT_HEADER_LEN + CTL_LEN) as u64).unwrap();
        let victim = if hurt == "receiver" {
            // Its next look at the ring reads the header word at its position.
            assert_eq!(client.ask("recv"), None, "the receiver survived");
            &mut client
        } else {
            // Its next message is written into the ring.
            assert_eq!(server.ask("send 300"), None, "the sender survived");
            &mut server
        };
        let st = victim.status();
        assert_eq!(st.signal(), Some(libc::SIGBUS), "the {hurt}: {st:?}");
    }
}
