//! Helpers shared by the fuzz targets: reading the fuzzer's bytes, unique segment names, and
//! a hostile peer that rewrites a named segment through its file in `/dev/shm`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The fuzzer's bytes, read front to back; zeroes once they run out.
#[derive(Debug)]
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    /// True once every byte is read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    /// The next eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_le_bytes(b)
    }
    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// A shared memory name no other run (or process) uses: `ipckit-fuzz-<what>-<pid>-<n>`.
pub fn unique_name(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "ipckit-fuzz-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A value a hostile peer writes: the boundary values of lengths, offsets, capacities and
/// counts, small integers, or raw bytes.
pub fn value(inp: &mut Input<'_>) -> u64 {
    const B: [u64; 24] = [
        0,
        1,
        2,
        63,
        64,
        65,
        4095,
        4096,
        4097,
        8192,
        1 << 20,
        1 << 24,
        (1 << 30) + 1,
        u32::MAX as u64 - 1,
        u32::MAX as u64,
        1 << 32,
        (u32::MAX as u64) << 32,
        i64::MAX as u64,
        1 << 63,
        (1 << 63) + 4096,
        u64::MAX - 4095,
        u64::MAX - 1,
        u64::MAX,
        usize::MAX as u64 / 2 + 1,
    ];
    match inp.byte() % 4 {
        0 => u64::from(inp.byte()),
        1 | 2 => B[usize::from(inp.byte()) % B.len()],
        _ => inp.u64(),
    }
}

/// A named segment's bytes, written as another process would: through the file, which shares
/// its pages with every mapping.
#[derive(Debug)]
pub struct SegmentFile {
    file: File,
    len: u64,
}

/// Bytes of ipckit's segment header (`ipckit::shm::SEGMENT_HEADER_LEN`); its first word is the magic.
const MAGIC_LEN: u64 = 8;

impl SegmentFile {
    /// Opens `/dev/shm/<name>` read-write.
    pub fn open(name: &str) -> SegmentFile {
        let path = format!("/dev/shm/{}", name.trim_start_matches('/'));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
        let len = file.metadata().expect("fstat").len();
        SegmentFile { file, len }
    }

    /// The segment's size.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: a segment has at least its header.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `n` bytes at `off` (fewer at the end).
    pub fn read(&self, off: u64, n: usize) -> Vec<u8> {
        let end = (off + n as u64).min(self.len);
        let mut b = vec![0u8; end.saturating_sub(off) as usize];
        self.file.read_exact_at(&mut b, off).expect("pread");
        b
    }

    /// Writes `b` at `off` (cut at the end).
    pub fn write(&self, off: u64, b: &[u8]) {
        let end = (off + b.len() as u64).min(self.len);
        if off < end {
            self.file
                .write_all_at(&b[..(end - off) as usize], off)
                .expect("pwrite");
        }
    }

    /// One write the input describes. `focus` lists the byte ranges most worth aiming at (the
    /// object's headers and control words); most writes land in one of them, some anywhere.
    pub fn patch(&self, inp: &mut Input<'_>, focus: &[std::ops::Range<u64>]) {
        let kind = inp.byte();
        let span = focus
            .get(usize::from(kind >> 2) % (focus.len() + 1))
            .cloned()
            .unwrap_or(0..self.len);
        let width = span.end.saturating_sub(span.start).max(1);
        match kind % 4 {
            // A 64-bit word.
            0 | 1 => {
                let off = span.start + (u64::from(inp.u16()) * 8) % width;
                self.write(off & !7, &value(inp).to_le_bytes());
            }
            // A 32-bit word.
            2 => {
                let off = span.start + (u64::from(inp.u16()) * 4) % width;
                self.write(off & !3, &(value(inp) as u32).to_le_bytes());
            }
            // Raw bytes.
            _ => {
                let off = span.start + u64::from(inp.u16()) % width;
                let n = usize::from(inp.byte());
                let b = inp.bytes(n).to_vec();
                self.write(off, &b);
            }
        }
        self.keep_magic();
    }

    /// A zeroed magic makes an opener wait half a second for a creator still writing the
    /// header: correct, but it would slow every such run down a thousandfold. Another
    /// non-zero value is a wrong magic, answered at once, so zero is the one value left out.
    fn keep_magic(&self) {
        let mut m = [0u8; MAGIC_LEN as usize];
        self.file.read_exact_at(&mut m, 0).expect("pread");
        if m == [0; 8] {
            self.file.write_all_at(b"IPCKITSG", 0).expect("pwrite");
        }
    }
}
