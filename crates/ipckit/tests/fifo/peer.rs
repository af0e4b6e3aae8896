//! The FIFO tests' peers (run by `tests/peers/bin.rs`): writers that are real second
//! processes.

use crate::util;
use ipckit::fifo::FifoBuilder;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

/// Runs writer `role` on the FIFO at `$FIFO`.
pub fn run(role: &str) {
    let path = PathBuf::from(std::env::var("FIFO").unwrap());
    let mut w = FifoBuilder::new(&path)
        .timeout(Duration::from_secs(10))
        .open_writer()
        .unwrap();
    match role {
        // Writes MSG, holds the FIFO open until its stdin closes, writes MSG2, exits.
        "hold" => {
            w.write_all(std::env::var("MSG").unwrap().as_bytes())
                .unwrap();
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            w.write_all(std::env::var("MSG2").unwrap().as_bytes())
                .unwrap();
        }
        // Writes LEN bytes of a known pattern, exits.
        "stream" => {
            let len: usize = std::env::var("LEN").unwrap().parse().unwrap();
            w.write_all(&util::payload(7, len)).unwrap();
        }
        r => panic!("unknown role {r}"),
    }
}
