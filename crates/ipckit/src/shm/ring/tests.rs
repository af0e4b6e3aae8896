//! Unit tests of the ring's index arithmetic and record protocol, over heap memory
//! ([`HeapMem`]): property tests against a model of the live records, and hostile words.

use super::*;

#[test]
fn stamp_is_the_line_modulo_2_32_minus_1_plus_one() {
    let check = |line: u64| {
        let want = (line % u64::from(u32::MAX)) as u32 + 1;
        assert_eq!(stamp(line * RECORD_ALIGN as u64), want, "line {line:#x}");
    };
    let m = u64::from(u32::MAX);
    for line in [
        0,
        1,
        m - 1,
        m,
        m + 1,
        2 * m,
        2 * m + 1,
        u64::MAX / 64,
        1 << 32,
        (1 << 33) - 1,
    ] {
        check(line);
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..100_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        check(x / RECORD_ALIGN as u64);
    }
}
#[test]
fn advance_keeps_the_stamp_of_the_position() {
    let m = u64::from(u32::MAX);
    let line = RECORD_ALIGN as u64;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Steps of every size a side takes (a record, a pad, up to a whole data area) and
    // beyond (M lines and more), from positions near the stamp's wrap and at random.
    let steps = [0, 1, 2, 63, 64, 1 << 20, m - 1, m, m + 1, 3 * m + 5];
    for base in [0, 1, m - 2, m - 1, m, m + 1, 2 * m - 1] {
        for k in steps {
            let (p, b) = (base * line, k * line);
            assert_eq!(advance(stamp(p), b), stamp(p + b), "line {base} + {k}");
        }
    }
    for _ in 0..100_000 {
        let p = (next() % (1 << 50)) * line;
        let b = (next() % (1 << 30)) * line;
        assert_eq!(advance(stamp(p), b), stamp(p + b), "{p} + {b}");
    }
}

#[test]
fn mark_record_is_a_header_bit_then_payload_bits() {
    // Against the two-step update it replaces, over every start bit and length that
    // stays in one word or crosses into the next ones.
    for first in 0..128 {
        for n in 1..=130 {
            let cap = 512 * RECORD_ALIGN;
            for fill in [0, u64::MAX, 0x5555_5555_5555_5555] {
                let mut a = Producer::new(cap);
                a.header_like.fill(fill);
                let mut b = Producer::new(cap);
                b.header_like.fill(fill);
                a.mark_record(first, n);
                b.set_header_like(first);
                b.set_payload(first + 1, first + n);
                assert_eq!(a.header_like, b.header_like, "first {first}, n {n}");
            }
        }
    }
}

use proptest::prelude::*;

/// The ring's index arithmetic against a model that keeps every live record as an
/// explicit (start, end) interval.
#[derive(Debug, Clone)]
enum Op {
    Send(usize),
    Recv,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![(0usize..5000).prop_map(Op::Send), Just(Op::Recv)],
        0..400,
    )
}

proptest! {
    #[test]
    fn placement_matches_model(cap_shift in 12u32..16, ops in ops()) {
        let cap = 1usize << cap_shift;
        let max = max_payload(cap);
        // Model: a queue of (start, end, len) records; producer position; head.
        let mut live: std::collections::VecDeque<(u64, u64, usize)> = Default::default();
        let mut pos = 0u64;
        let mut head = 0u64;
        for op in ops {
            match op {
                Op::Send(len) => {
                    let len = len.min(max);
                    let rec = record_len(len);
                    let gap = payload_gap(len);
                    prop_assert!(rec.is_multiple_of(RECORD_ALIGN) && rec >= gap + len);
                    prop_assert!(rec < gap + len + RECORD_ALIGN);
                    prop_assert!(gap == RECORD_HEADER || gap.is_multiple_of(RECORD_ALIGN));
                    let (start, end) = place(pos, rec, cap);
                    // Never split: the record lies within one lap.
                    prop_assert!(offset(start, cap) + rec <= cap);
                    prop_assert_eq!(start / cap as u64, (end - 1) / cap as u64);
                    // Skips only what would not fit.
                    if start != pos {
                        prop_assert!(offset(pos, cap) + rec > cap);
                        prop_assert_eq!(offset(start, cap), 0);
                    }
                    if end + RECORD_ALIGN as u64 - head <= cap as u64 {
                        // Fits: neither it nor the next header line it clears overlaps a
                        // live record.
                        for &(s, e, _) in &live {
                            let (a, b) = (offset(s, cap), offset(s, cap) + (e - s) as usize);
                            let (c, d) = (offset(start, cap), offset(start, cap) + rec);
                            prop_assert!(b <= c || d <= a, "overlap");
                            let z = offset(end, cap);
                            prop_assert!(b <= z || z + RECORD_ALIGN <= a, "cleared line overlaps");
                        }
                        live.push_back((start, end, len));
                        pos = end;
                    }
                }
                Op::Recv => {
                    if let Some((_, end, _)) = live.pop_front() {
                        head = end;
                    }
                }
            }
            // Stamps of a position and the same offset one lap later differ.
            prop_assert_ne!(stamp(pos), stamp(pos + cap as u64));
        }
    }
}

/// Payload words chosen to look like records: every 64-byte-aligned word of the payload
/// (where a later lap may look for a header) holds a header stamped for that offset one
/// to three laps on, with a small length; the other words follow `fill`.
fn colliding(start: u64, len: usize, cap: usize, fill: u8, seed: u64) -> Vec<u8> {
    let base = offset(start, cap) + payload_gap(len);
    let mut x = seed | 1;
    let mut p = vec![0u8; len];
    for (i, c) in p.chunks_mut(8).enumerate() {
        let at = base + i * 8;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = if at.is_multiple_of(RECORD_ALIGN) {
            let later = start - offset(start, cap) as u64 + at as u64 + cap as u64 * (1 + x % 3);
            header(later, (x >> 8) as u32 % 64)
        } else {
            match fill {
                0 => 0,
                1 => u64::MAX,
                2 => x % 128,
                _ => x,
            }
        };
        c.copy_from_slice(&w.to_le_bytes()[..c.len()]);
    }
    p
}

/// Sends `msg` if there is room; the start position it went to.
fn send(p: &mut Producer, m: &HeapMem, msg: &[u8]) -> Option<u64> {
    send_cut(p, m, msg, msg.len())
}

/// Sends `msg` in room reserved for `reserved` bytes (at least its length), as a loan
/// cut short with `commit_len` does.
fn send_cut(p: &mut Producer, m: &HeapMem, msg: &[u8], reserved: usize) -> Option<u64> {
    let start = p.reserve(m, reserved).expect("head in range")?;
    m.write(p.payload_offset(start, msg.len()), msg);
    p.commit(m, start, msg.len());
    Some(start)
}

fn recv(c: &mut Consumer, m: &HeapMem) -> Option<Vec<u8>> {
    let f = c.peek(m).expect("no corrupt header")?;
    let mut got = vec![0u8; f.len];
    m.read(f.off, &mut got);
    c.release(m, f.len);
    Some(got)
}

/// The reproduction of issue 13: four 1000-byte messages and one of 56 bytes through a
/// 4 KiB ring; the first holds the stamp of position 4160 (66) at payload bytes 56..64,
/// exactly where the consumer looks after the fifth. Before the fix it took that word for
/// an empty record.
#[test]
fn no_phantom_record_after_mixed_sizes() {
    let (cap, max) = (4096, 1024);
    let m = HeapMem::new(cap);
    let (mut p, mut c) = (Producer::new(cap), Consumer::new(cap, max));
    let mut first = vec![0xabu8; 1000];
    first[56..64].copy_from_slice(&66u64.to_le_bytes());
    let sent = [
        first,
        vec![1; 1000],
        vec![2; 1000],
        vec![3; 1000],
        vec![4; 56],
    ];
    for (i, msg) in sent.iter().enumerate() {
        assert!(send(&mut p, &m, msg).is_some(), "message {i} fits");
        assert_eq!(recv(&mut c, &m).as_ref(), Some(msg), "message {i}");
    }
    assert_eq!(recv(&mut c, &m), None, "a message nobody sent");
}

/// The same trap at every record size class (up to 56 bytes, 57 bytes to 1 KiB, over
/// 1 KiB) and across pads at the wrap: each message's aligned words carry headers of later
/// laps, sent in lockstep and in bursts.
#[test]
fn no_phantom_record_at_any_size_class() {
    let cap = 4096;
    let max = max_payload(cap);
    for sizes in [
        &[1000, 1000, 1000, 1000, 56][..],
        &[0, 8, 56, 40, 24, 56, 56][..],
        &[57, 100, 500, 1024, 777, 64, 1000][..],
        &[1025, 1500, max, 1100, max - 1, 1025][..],
        &[1900, 56, 1900, 57, 1900, 1025, 1900, 0][..],
    ] {
        for burst in [1, 3] {
            let m = HeapMem::new(cap);
            let (mut p, mut c) = (Producer::new(cap), Consumer::new(cap, max));
            let mut queue = std::collections::VecDeque::new();
            for round in 0..40u64 {
                for (i, &len) in sizes.iter().enumerate() {
                    let (start, _) = place(p.pos, record_len(len), cap);
                    let msg = colliding(start, len, cap, (i % 4) as u8, round * 31 + i as u64);
                    while send(&mut p, &m, &msg).is_none() {
                        assert_eq!(recv(&mut c, &m), queue.pop_front(), "{sizes:?}");
                    }
                    queue.push_back(msg);
                    if queue.len() >= burst {
                        assert_eq!(recv(&mut c, &m), queue.pop_front(), "{sizes:?}");
                    }
                }
            }
            while let Some(want) = queue.pop_front() {
                assert_eq!(recv(&mut c, &m), Some(want));
            }
            assert_eq!(recv(&mut c, &m), None, "a message nobody sent: {sizes:?}");
        }
    }
}

proptest! {
    /// Differential: random sizes (0 to the maximum) with payloads drawn to collide with
    /// headers, sends and receives interleaved at random, through a small ring; what comes
    /// out is what went in, byte for byte, and nothing else.
    #[test]
    fn received_equals_sent(
        cap_shift in 12u32..15,
        ops in prop::collection::vec((any::<bool>(), 0usize..8192, 0u8..4, any::<u64>()), 1..300),
        cut in prop::collection::vec(0usize..300, 1..8),
    ) {
        let cap = 1usize << cap_shift;
        let max = max_payload(cap);
        let m = HeapMem::new(cap);
        let (mut p, mut c) = (Producer::new(cap), Consumer::new(cap, max));
        let mut queue = std::collections::VecDeque::new();
        for (i, (is_send, len, fill, seed)) in ops.into_iter().enumerate() {
            if is_send {
                let len = len.min(max);
                // Some loans are cut short: room reserved for more than is committed.
                let reserved = (len + cut[i % cut.len()]).min(max);
                let (start, _) = place(p.pos, record_len(reserved), cap);
                let msg = colliding(start, len, cap, fill, seed);
                if send_cut(&mut p, &m, &msg, reserved).is_some() {
                    queue.push_back(msg);
                }
            } else {
                prop_assert_eq!(recv(&mut c, &m), queue.pop_front());
            }
        }
        while let Some(want) = queue.pop_front() {
            prop_assert_eq!(recv(&mut c, &m), Some(want));
        }
        prop_assert_eq!(recv(&mut c, &m), None);
    }
}

/// Words a hostile peer can write make errors, never a panic or an out-of-bounds read.
#[test]
fn hostile_words_are_corrupt_not_panics() {
    let cap = 4096;
    let max = 1000;
    let vals = [
        0,
        1,
        max as u64,
        max as u64 + 1,
        u32::MAX as u64,
        1 << 63,
        u64::MAX,
    ];
    // The released position, seen by the producer.
    for &h in &vals[1..] {
        let m = HeapMem::new(cap);
        let mut p = Producer::new(cap);
        for _ in 0..3 {
            send(&mut p, &m, &[7; 1000]).unwrap();
        }
        m.ctl.head.head.store(h, Ordering::Relaxed);
        // Whatever it says, the next reserve that must look at it cannot trust it.
        let r = p.reserve(&m, 1000);
        assert!(r.is_err(), "head {h:#x} gave {r:?}");
    }
    // Header words at the consumer's position, with every length.
    for &len in &vals {
        for stamped in [true, false] {
            let m = HeapMem::new(cap);
            let mut c = Consumer::new(cap, max);
            let low = if stamped { u64::from(stamp(0)) } else { 5 };
            let w = (len << 32) | low;
            m.word(0).store(w, Ordering::Relaxed);
            match c.peek(&m) {
                Err(_) => assert!(stamped, "{w:#x}"),
                // Another position's stamp is not a record (yet).
                Ok(None) => assert!(!stamped, "{w:#x}"),
                Ok(Some(f)) => {
                    assert!(stamped && f.len <= max && f.off + f.len <= cap, "{f:?}");
                }
            }
        }
    }
    // A pad at the start of the ring would skip a whole lap.
    let m = HeapMem::new(cap);
    m.word(0).store(header(0, PAD), Ordering::Relaxed);
    assert!(Consumer::new(cap, max).peek(&m).is_err());
    // A record crossing the end.
    let m = HeapMem::new(cap);
    let mut c = Consumer::new(cap, max_payload(cap));
    let mut p = Producer::new(cap);
    for _ in 0..3 {
        send(&mut p, &m, &[1; 960]).unwrap();
        recv(&mut c, &m).unwrap();
    }
    m.word(3072).store(header(3072, 1100), Ordering::Relaxed);
    assert!(c.peek(&m).is_err());
}

#[test]
fn small_messages_fit_one_line() {
    assert_eq!(record_len(0), 64);
    assert_eq!(record_len(56), 64);
    assert_eq!(record_len(57), 128);
    assert_eq!(stamp(0), 1);
    assert_ne!(header(0, 0), 0);
    // Never 0, however far the positions run: a cleared word is never a record.
    let wrap = u64::from(u32::MAX) * RECORD_ALIGN as u64;
    for p in [wrap - 64, wrap, wrap + 64, u64::MAX - 63] {
        assert_ne!(stamp(p), 0, "{p}");
    }
    // A lap of any capacity moves the stamp.
    for k in 12..40 {
        assert_ne!(stamp(4096), stamp(4096 + (1u64 << k)));
    }
}

#[test]
fn payload_bits_clear_exactly_the_range() {
    // Every range of a 200-line ring against a bit-by-bit model.
    for from in 0..200 {
        for to in from..=200 {
            let mut p = Producer::new(200 * RECORD_ALIGN);
            p.set_payload(from, to);
            for l in 0..200 {
                assert_eq!(
                    p.is_header_like(l),
                    !(from..to).contains(&l),
                    "{from}..{to}: {l}"
                );
            }
        }
    }
}
