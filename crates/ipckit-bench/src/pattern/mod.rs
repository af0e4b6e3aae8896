//! What every benchmark message carries, and how the receiver checks it.
//!
//! The first `min(size, 8)` bytes are a little-endian header: the sequence number masked to
//! the header's width minus one bit, with the top bit marking the end of a phase. Every
//! following 8-byte word `i` holds `splitmix64(seq) + i * GOLDEN`, truncated in a final
//! partial word. One splitmix per message seeds it, so a message from another sequence
//! number differs in every word; the per-word step is an add, which vectorises, so checking
//! every word costs far less than a CRC would.

/// Increment of the per-word pattern (the 64-bit golden ratio).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's output function.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Header bytes in a message of `size` bytes.
pub fn header_len(size: usize) -> usize {
    size.min(8)
}

/// The bits of the header that carry the sequence number.
pub fn seq_mask(size: usize) -> u64 {
    let bits = 8 * header_len(size) as u32;
    if bits == 0 {
        0
    } else {
        (1u64 << (bits - 1)) - 1
    }
}

/// The header bit that marks the last message of a phase.
pub fn end_bit(size: usize) -> u64 {
    let bits = 8 * header_len(size) as u32;
    if bits == 0 {
        0
    } else {
        1u64 << (bits - 1)
    }
}

/// Writes the header value `v` into the first bytes of `msg`.
#[inline]
pub fn write_header(msg: &mut [u8], v: u64) {
    let k = header_len(msg.len());
    msg[..k].copy_from_slice(&v.to_le_bytes()[..k]);
}

/// Reads the header value of `msg`.
#[inline]
pub fn read_header(msg: &[u8]) -> u64 {
    let k = header_len(msg.len());
    let mut b = [0u8; 8];
    b[..k].copy_from_slice(&msg[..k]);
    u64::from_le_bytes(b)
}

/// Fills every payload word after the header from the pattern seeded by `seq`.
///
/// On x86-64 the loop is compiled three times (baseline SSE2, AVX2, AVX-512) and the widest
/// the CPU has is chosen at run time: the check must not be what limits a ring that moves
/// 40 GB/s. Every mechanism and the reference loops use the same code.
#[inline]
pub fn fill(msg: &mut [u8], seq: u64) {
    #[cfg(target_arch = "x86_64")]
    {
        if msg.len() >= 512 {
            return wide::fill(msg, seq);
        }
    }
    fill_words(msg, seq);
}

/// True if every payload word after the header matches the pattern seeded by `seq`.
#[inline]
pub fn verify(msg: &[u8], seq: u64) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if msg.len() >= 512 {
            return wide::verify(msg, seq);
        }
    }
    verify_words(msg, seq)
}

/// The vector versions of [`fill`] and [`verify`], chosen by CPU feature at run time.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod wide;

#[inline(always)]
fn fill_words(msg: &mut [u8], seq: u64) {
    if msg.len() <= 8 {
        return;
    }
    let base = splitmix64(seq);
    let body = &mut msg[8..];
    let mut chunks = body.chunks_exact_mut(8);
    let mut i: u64 = 1;
    for c in &mut chunks {
        c.copy_from_slice(&base.wrapping_add(i.wrapping_mul(GOLDEN)).to_le_bytes());
        i += 1;
    }
    let tail = chunks.into_remainder();
    let n = tail.len();
    tail.copy_from_slice(&base.wrapping_add(i.wrapping_mul(GOLDEN)).to_le_bytes()[..n]);
}

#[inline(always)]
fn verify_words(msg: &[u8], seq: u64) -> bool {
    if msg.len() <= 8 {
        return true;
    }
    let base = splitmix64(seq);
    let body = &msg[8..];
    let chunks = body.chunks_exact(8);
    let tail = chunks.remainder();
    let mut i: u64 = 1;
    let mut diff = 0u64;
    for c in chunks {
        let w = u64::from_le_bytes(c.try_into().expect("chunk of 8"));
        diff |= w ^ base.wrapping_add(i.wrapping_mul(GOLDEN));
        i += 1;
    }
    let want = base.wrapping_add(i.wrapping_mul(GOLDEN)).to_le_bytes();
    diff == 0 && tail == &want[..tail.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_widths() {
        assert_eq!(seq_mask(1), 0x7f);
        assert_eq!(end_bit(1), 0x80);
        assert_eq!(seq_mask(64), u64::MAX >> 1);
        assert_eq!(end_bit(4), 1 << 31);
    }

    #[test]
    fn header_round_trip_small_and_large() {
        for size in [1usize, 3, 7, 8, 9, 64, 65536] {
            let mut m = vec![0u8; size];
            let v = 0x1234_5678_9abc_def0 & seq_mask(size);
            write_header(&mut m, v | end_bit(size));
            assert_eq!(read_header(&m) & seq_mask(size), v);
            assert_ne!(read_header(&m) & end_bit(size), 0);
        }
    }

    #[test]
    fn pattern_detects_every_word_and_the_tail() {
        for size in [8usize, 9, 15, 16, 64, 1000, 4096] {
            let mut m = vec![0u8; size];
            write_header(&mut m, 42);
            fill(&mut m, 42);
            assert!(verify(&m, 42), "size {size}");
            assert!(
                size <= 8 || !verify(&m, 43),
                "other seq must fail at size {size}"
            );
            for pos in 8..size {
                let mut c = m.clone();
                c[pos] ^= 1;
                assert!(!verify(&c, 42), "flip at {pos} of {size} not caught");
            }
        }
    }

    #[test]
    fn swapped_words_are_caught() {
        let mut m = vec![0u8; 64];
        fill(&mut m, 7);
        let (a, b) = m.split_at_mut(24);
        a[16..24].swap_with_slice(&mut b[..8]);
        assert!(!verify(&m, 7));
    }
}
