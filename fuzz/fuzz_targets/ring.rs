//! The SPSC ring (`shm/ring.rs`, reached through `ipckit::shm::__fuzz`) over heap memory,
//! driven by one thread as producer and consumer in turn.
//!
//! Honest mode (first byte even): the input is a ring capacity and a sequence of sends and
//! receives. Whatever is received must be what was sent, byte for byte, in order; a record
//! the consumer finds when nothing is outstanding is a phantom and panics, as does a record
//! that is missing (the consumer sees nothing while something is outstanding) or a `Corrupt`
//! error in honest traffic.
//!
//! Hostile mode (first byte odd): the same, plus steps that scribble words into the data area
//! and the control block as a buggy or hostile peer would. Nothing is compared then; the ring
//! may report `Corrupt` or refuse room, but must not panic or index out of bounds (every
//! access to the heap memory below is bounds-checked).
//!
//! The encoding is shaped so that payloads easily hold what a ring must never mistake for a
//! header: runs of small integers (sequence numbers, counters), header-like words, and the
//! header words of positions one or two laps ahead.
#![no_main]

use ipckit::shm::__fuzz::{self as ring, Consumer, Producer, RingCtl, RingMem};
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

/// A ring's memory on the heap: the control block and the data area as 64-bit words.
struct HeapMem {
    ctl: RingCtl,
    words: Vec<AtomicU64>,
}

impl HeapMem {
    fn new(cap: usize) -> HeapMem {
        HeapMem {
            ctl: RingCtl::default(),
            words: (0..cap / 8).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl RingMem for HeapMem {
    fn ctl(&self) -> &RingCtl {
        &self.ctl
    }
    fn word(&self, off: usize) -> &AtomicU64 {
        assert_eq!(off % 8, 0, "header word at unaligned offset {off}");
        &self.words[off / 8]
    }
    fn write(&self, off: usize, src: &[u8]) {
        // Byte-exact, as a memcpy into shared memory: the bytes of a partial word that the
        // copy does not cover keep their old (stale) value.
        for (i, b) in src.iter().enumerate() {
            let at = off + i;
            let w = &self.words[at / 8];
            let mut bytes = w.load(Ordering::Relaxed).to_le_bytes();
            bytes[at % 8] = *b;
            w.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        for (i, b) in dst.iter_mut().enumerate() {
            let at = off + i;
            *b = self.words[at / 8].load(Ordering::Relaxed).to_le_bytes()[at % 8];
        }
    }
    fn cap(&self) -> usize {
        self.words.len() * 8
    }
}

/// The fuzzer's bytes, read front to back; zeroes once they run out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_le_bytes(b)
    }
}

/// Words a payload or a scribble may hold that matter to the ring.
fn boundary(cap: usize, max: usize, k: u8) -> u64 {
    let v = [
        0,
        1,
        u64::from(u32::MAX),
        u64::from(u32::MAX) + 1,
        u64::MAX,
        1 << 63,
        cap as u64,
        cap as u64 + 1,
        max as u64,
        max as u64 + 1,
        (max as u64) << 32,
        (max as u64 + 1) << 32,
        u64::from(u32::MAX) << 32,
        (u64::from(u32::MAX) << 32) | 1,
        2 * cap as u64,
        u64::MAX - cap as u64,
    ];
    v[usize::from(k) % v.len()]
}

struct Run {
    mem: HeapMem,
    cap: usize,
    max: usize,
    prod: Producer,
    cons: Consumer,
    /// Sent and not yet received (honest mode).
    sent: VecDeque<Vec<u8>>,
    hostile: bool,
    /// The ring reported `Corrupt` (hostile mode): stop receiving.
    broken: bool,
    /// Where the producer put its last record's end (to aim header-like payload words).
    pos: u64,
}

impl Run {
    /// Receives one message if there is one; in honest mode checks it against what was sent.
    fn recv_one(&mut self) -> bool {
        if self.broken {
            return false;
        }
        match self.cons.peek(&self.mem) {
            Ok(Some(f)) => {
                assert!(
                    f.off.checked_add(f.len).is_some_and(|e| e <= self.cap),
                    "record {f:?} lies outside the {}-byte data area",
                    self.cap
                );
                let mut got = vec![0u8; f.len];
                self.mem.read(f.off, &mut got);
                self.cons.release(&self.mem, f.len);
                if !self.hostile {
                    let Some(want) = self.sent.pop_front() else {
                        panic!(
                            "phantom record: received {} bytes {:02x?} that nobody sent",
                            got.len(),
                            &got[..got.len().min(32)]
                        );
                    };
                    assert!(
                        got == want,
                        "received {} bytes, not the {} bytes sent (first difference at byte {:?})",
                        got.len(),
                        want.len(),
                        got.iter().zip(&want).position(|(a, b)| a != b)
                    );
                }
                true
            }
            Ok(None) => {
                assert!(
                    self.hostile || self.sent.is_empty(),
                    "lost message: {} sent and not received, the consumer sees none",
                    self.sent.len()
                );
                false
            }
            Err(e) => {
                assert!(self.hostile, "corrupt header in honest traffic: {e:?}");
                self.broken = true;
                false
            }
        }
    }

    fn payload(&self, inp: &mut Input<'_>, len: usize, fill: u8) -> Vec<u8> {
        let words = len.div_ceil(8);
        let mut w: Vec<u64> = match fill {
            // Counters: sequence numbers, indexes.
            0 | 1 => {
                let base = u64::from(inp.byte());
                (0..words as u64).map(|i| base.wrapping_add(i)).collect()
            }
            // One small integer everywhere.
            2 => vec![u64::from(inp.byte()); words],
            // Header-like words: a small length over a counter.
            3 => {
                let l = u64::from(inp.byte() % 64) << 32;
                let base = u64::from(inp.byte());
                (0..words as u64)
                    .map(|i| l | base.wrapping_add(i))
                    .collect()
            }
            // Raw bytes from the input.
            4 => {
                let mut b = vec![0u8; len];
                for x in &mut b {
                    *x = inp.byte();
                }
                return b;
            }
            // The header of the word's own position one or two laps ahead, with a small length.
            5 => {
                let laps = 1 + u64::from(inp.byte() % 2);
                let l = u32::from(inp.byte() % 64);
                let gap = ring::payload_gap(len) as u64;
                // Where the record will start if it fits where the producer is.
                let (start, _) = ring::place(self.pos, ring::record_len(len), self.cap);
                (0..words as u64)
                    .map(|i| ring::header(start + gap + 8 * i + laps * self.cap as u64, l))
                    .collect()
            }
            6 => vec![0; words],
            _ => vec![boundary(self.cap, self.max, inp.byte()); words],
        };
        // A few words of a counter payload set to chosen values.
        if fill == 1 {
            for _ in 0..inp.byte() % 4 {
                let i = usize::from(inp.u16()) % words.max(1);
                if let Some(x) = w.get_mut(i) {
                    *x = u64::from(inp.byte());
                }
            }
        }
        let mut b: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
        b.truncate(len);
        b
    }

    fn send(&mut self, inp: &mut Input<'_>, kind: u8) {
        let max = self.max;
        let len = match kind % 4 {
            0 => usize::from(inp.byte()) % 57,
            1 => 57 + usize::from(inp.u16()) % (1024 - 57 + 1),
            2 => 1025 + usize::from(inp.u16()) % (max - 1024),
            _ => [0, 8, 56, 57, 64, 1000, 1024, 1025, max - 64, max][usize::from(inp.byte()) % 10],
        };
        let payload = self.payload(inp, len, kind / 4);
        let mut tries = 0;
        let start = loop {
            match self.prod.reserve(&self.mem, len) {
                Ok(Some(s)) => break s,
                Ok(None) => {}
                Err(e) => {
                    assert!(self.hostile, "corrupt ring in honest traffic: {e:?}");
                    return;
                }
            }
            // Full: make room the way a receiver would.
            tries += 1;
            if !self.recv_one() {
                assert!(
                    self.hostile,
                    "no room for {len} bytes in an empty {}-byte ring",
                    self.cap
                );
                return;
            }
            if tries > 4 * self.cap / ring::RECORD_ALIGN {
                assert!(self.hostile, "no room after {tries} receives");
                return;
            }
        };
        let off = self.prod.payload_offset(start, len);
        assert!(
            off.checked_add(len).is_some_and(|e| e <= self.cap),
            "reserved payload at {off}+{len} lies outside the {}-byte data area",
            self.cap
        );
        self.mem.write(off, &payload);
        self.prod.commit(&self.mem, start, len);
        self.pos = start + ring::record_len(len) as u64;
        if !self.hostile {
            self.sent.push_back(payload);
        }
    }

    /// A hostile peer writes one word of the data area or the control block.
    fn scribble(&mut self, inp: &mut Input<'_>) {
        let target = inp.byte();
        let value = match inp.byte() % 4 {
            0 => u64::from(inp.byte()),
            1 => ring::header(u64::from(inp.u16()) * 64, u32::from(inp.u16())),
            2 => boundary(self.cap, self.max, inp.byte()),
            _ => inp.u64(),
        };
        let ctl = &self.mem.ctl;
        match target % 8 {
            0..=4 => {
                let off = (usize::from(inp.u16()) * 8) % self.cap;
                self.mem.words[off / 8].store(value, Ordering::Relaxed);
            }
            5 => ctl.head.head.store(
                match target / 8 % 4 {
                    0 => value,
                    1 => self.pos.wrapping_add(value % 4096),
                    2 => self.pos.wrapping_sub(value % 4096),
                    _ => self.pos.wrapping_add(self.cap as u64),
                },
                Ordering::Relaxed,
            ),
            6 => {
                let l = if target & 8 != 0 { &ctl.rx } else { &ctl.tx };
                let v = value as u32;
                match target / 16 % 4 {
                    0 => l.seq.store(v, Ordering::Relaxed),
                    1 => l.sleeping.store(v, Ordering::Relaxed),
                    2 => l.may_sleep.store(v, Ordering::Relaxed),
                    _ => l.closed.store(v, Ordering::Relaxed),
                }
            }
            _ => {
                // A run of header-like words over a stretch of the data area.
                let off = (usize::from(inp.u16()) * 64) % self.cap;
                let n = usize::from(inp.byte() % 16);
                for i in 0..n {
                    let o = (off + 64 * i) % self.cap;
                    let v = ring::header(self.pos + (o as u64), value as u32);
                    self.mem.words[o / 8].store(v, Ordering::Relaxed);
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    if inp.is_empty() {
        return;
    }
    let first = inp.byte();
    let cap = ring::MIN_CAPACITY << ((first >> 1) % 3);
    let max = ring::max_payload(cap);
    let mut r = Run {
        mem: HeapMem::new(cap),
        cap,
        max,
        prod: Producer::new(cap),
        cons: Consumer::new(cap, max),
        sent: VecDeque::new(),
        hostile: first & 1 != 0,
        broken: false,
        pos: 0,
    };
    while !inp.is_empty() {
        let op = inp.byte();
        match op >> 5 {
            0..=4 => r.send(&mut inp, op & 0x1f),
            5 => {
                r.recv_one();
            }
            6 => while r.recv_one() {},
            _ if r.hostile => r.scribble(&mut inp),
            _ => {
                r.recv_one();
            }
        }
    }
    // Drain: everything sent arrives, then nothing more.
    while r.recv_one() {}
    assert!(
        r.hostile || r.sent.is_empty(),
        "{} messages never arrived",
        r.sent.len()
    );
});
