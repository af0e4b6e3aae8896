//! Property tests of the stream framing decoder: on arbitrary bytes it never panics and
//! never holds more than its bound, and whatever it decodes round-trips.

use ipckit::framing::{encode_header, FrameDecoder, FrameError, FRAME_HEADER_LEN};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_or_overallocate(
        max in 0usize..200_000,
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..40),
    ) {
        let mut d = FrameDecoder::new(max);
        let mut out = vec![0u8; max.min(1 << 16)];
        let bound = d.capacity();
        prop_assert!(bound <= max + FRAME_HEADER_LEN || bound <= 64 * 1024);
        'feed: for c in &chunks {
            let mut rest = &c[..];
            while !rest.is_empty() {
                let n = d.push(rest);
                rest = &rest[n..];
                prop_assert!(d.allocated() <= bound, "decoder holds {} > bound {}", d.allocated(), bound);
                loop {
                    match d.decode(&mut out) {
                        Ok(Some(len)) => prop_assert!(len <= max),
                        Ok(None) => break,
                        Err(FrameError::TooLarge { len, max: m }) => {
                            prop_assert!(len > m);
                            break 'feed;
                        }
                        Err(FrameError::BadHeader) => break 'feed,
                    }
                }
                if n == 0 {
                    // Full and undecodable: a frame larger than the buffer, which the
                    // transport reads straight into the caller's buffer instead.
                    prop_assert!(d.header().unwrap().is_some());
                    break 'feed;
                }
            }
        }
    }

    #[test]
    fn encoded_frames_roundtrip(
        msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..30),
        split in 1usize..50,
    ) {
        let mut wire = Vec::new();
        for m in &msgs {
            wire.extend_from_slice(&encode_header(m.len()));
            wire.extend_from_slice(m);
        }
        let mut d = FrameDecoder::new(300);
        let mut out = vec![0u8; 300];
        let mut got = Vec::new();
        for piece in wire.chunks(split) {
            let mut rest = piece;
            while !rest.is_empty() {
                let n = d.push(rest);
                rest = &rest[n..];
                while let Some(n) = d.decode(&mut out).unwrap() {
                    got.push(out[..n].to_vec());
                }
                // A bounded decoder may take a piece in parts, but always makes progress.
                prop_assert!(n > 0 || rest.is_empty());
            }
        }
        prop_assert_eq!(got, msgs);
    }
}
