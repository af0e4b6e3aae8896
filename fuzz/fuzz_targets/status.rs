//! The server's status board (`ipckit_server::status`) as `ipckit serve --status` reads it:
//! a board whose words workers (or anyone of the same user) wrote, printed against a state
//! file's list of workers. The fuzzer writes the board's segment (slot count, counters,
//! pids, times) and the worker list; opening and printing must not panic.
#![no_main]

use ipckit::shm::SEGMENT_HEADER_LEN;
use ipckit_fuzz::{unique_name, Input, SegmentFile};
use ipckit_server::config::AcceptMode;
use ipckit_server::master::{print_status, State, StateWorker};
use ipckit_server::status::StatusBoard;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let slots = 1 + usize::from(inp.byte() % 8);
    let name = unique_name("status");
    let board = StatusBoard::create_named(&name, slots).expect("create the board");
    for i in 0..slots {
        board.slot(i).claim(1000 + i as u32, 1, 1 << 40);
    }
    let file = SegmentFile::open(&name);
    let h = SEGMENT_HEADER_LEN as u64;
    let focus = [h..h + 8, h + 128..file.len()];
    for _ in 0..inp.byte() % 16 {
        file.patch(&mut inp, &focus);
    }
    let workers = (0..inp.byte() % 10)
        .map(|_| StateWorker {
            slot: usize::from(inp.byte() % 12),
            pid: 1000 + u32::from(inp.byte() % 12),
            generation: u64::from(inp.byte()),
            retiring: inp.byte() & 1 != 0,
        })
        .collect();
    let state = State {
        master_pid: std::process::id(),
        master_start: 0,
        status: name.clone(),
        listen: Vec::new(),
        accept: AcceptMode::Exclusive,
        generation: 1,
        workers,
    };
    let mut out = Vec::new();
    let _ = print_status(Path::new("fuzz.json"), &state, &mut out);
    let _ = board.snapshot();
    drop(board);
});
