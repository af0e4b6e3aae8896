//! An MPSC queue segment written by a hostile or buggy producer: the receiver creates the
//! queue, the fuzzer rewrites words of its segment (the geometry, the receiver's hello, the
//! tail and wait lines, the producer table, slot sequence words, lengths and payloads), then
//! producers open it and everyone sends and receives, with more writes between the steps.
//! Errors are fine; a panic, an out-of-bounds access or a hang is not.
#![no_main]

use ipckit::shm::{MpscBuilder, MpscSender, SEGMENT_HEADER_LEN};
use ipckit::Wait;
use ipckit_fuzz::{unique_name, Input, SegmentFile};
use libfuzzer_sys::fuzz_target;

/// The queue's layout in the segment file (`shm/mpsc/layout.rs`): header, control lines, the
/// producer table, then the slots.
const H: u64 = SEGMENT_HEADER_LEN as u64;
const CTL_OFF: u64 = 512;
const TABLE_OFF: u64 = 1024;
const SLOTS_OFF: u64 = 8192;

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let slots = 1 << (inp.byte() % 5);
    let slot_size = [1, 48, 100, 1000][usize::from(inp.byte() % 4)];
    let name = unique_name("mpsc");
    let mut rx = MpscBuilder::new(&name)
        .slots(slots)
        .slot_size(slot_size)
        .wait(Wait::Spin)
        .populate(false)
        .create()
        .expect("create the queue");
    let file = SegmentFile::open(&name);
    let focus = [
        0..64,
        H..H + 128,
        H + CTL_OFF..H + TABLE_OFF,
        H + TABLE_OFF..H + TABLE_OFF + 4 * 64,
        H + SLOTS_OFF..file.len(),
    ];
    for _ in 0..inp.byte() % 8 {
        file.patch(&mut inp, &focus);
    }
    let mut senders: Vec<MpscSender> = Vec::new();
    let mut buf = vec![0u8; 2048];
    for _ in 0..64 {
        if inp.is_empty() {
            break;
        }
        match inp.byte() % 8 {
            0 => {
                if senders.len() < 3 {
                    if let Ok(s) = MpscBuilder::new(&name).wait(Wait::Spin).open() {
                        senders.push(s);
                    }
                }
            }
            1 | 2 => {
                let i = usize::from(inp.byte());
                let n = usize::from(inp.u16()) % (slot_size + 2);
                let k = i % senders.len().max(1);
                if let Some(s) = senders.get_mut(k) {
                    let msg: Vec<u8> = (0..n).map(|k| k as u8).collect();
                    let _ = s.try_send(&msg);
                }
            }
            3 | 4 => {
                let n = usize::from(inp.u16()) % buf.len();
                let _ = rx.try_recv(&mut buf[..n]);
            }
            5 => file.patch(&mut inp, &focus),
            6 => {
                let i = usize::from(inp.byte());
                if !senders.is_empty() {
                    senders.remove(i % senders.len());
                }
            }
            _ => {
                let _ = rx.dropped();
                let _ = rx.producers();
            }
        }
    }
    // Producers first: a receiver's drop with producers attached is fine too, but this is
    // the order of a clean shutdown; the receiver unlinks the name.
    drop(senders);
    drop(rx);
});
