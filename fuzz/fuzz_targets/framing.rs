//! The framing decoder (`ipckit::framing::FrameDecoder`) over a byte stream a peer controls,
//! arriving in reads of sizes the fuzzer picks, against a model of the format: every frame
//! the decoder yields is the model's next one, it stops at the model's first error, and its
//! buffer never grows past its capacity.
#![no_main]

use ipckit::framing::{FrameDecoder, FrameError, DECODER_CAP, FRAME_HEADER_LEN};
use ipckit_fuzz::Input;
use libfuzzer_sys::fuzz_target;

/// The model: the frames of `stream` in order, then the error that ends it (if any) or
/// `None` at a clean or partial end.
fn model(stream: &[u8], max: usize) -> (Vec<&[u8]>, Option<FrameError>) {
    let mut frames = Vec::new();
    let mut rest = stream;
    while rest.len() >= FRAME_HEADER_LEN {
        if rest[4..FRAME_HEADER_LEN].iter().any(|&b| b != 0) {
            return (frames, Some(FrameError::BadHeader));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > max {
            return (frames, Some(FrameError::TooLarge { len, max }));
        }
        if rest.len() < FRAME_HEADER_LEN + len {
            break;
        }
        frames.push(&rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len]);
        rest = &rest[FRAME_HEADER_LEN + len..];
    }
    (frames, None)
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    // Maxima whose frames fit the decoder's buffer whole (the stream endpoint reads larger
    // ones straight into the caller's buffer, past the decoder).
    let max =
        [0, 1, 15, 16, 100, 4096, DECODER_CAP - FRAME_HEADER_LEN][usize::from(inp.byte()) % 7];
    let read = 1 + usize::from(inp.byte());
    let stream = inp.0;
    let (want, want_err) = model(stream, max);
    let mut d = FrameDecoder::new(max);
    let mut out = vec![0u8; max];
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut err = None;
    let mut fed = 0;
    'feed: loop {
        loop {
            match d.decode(&mut out) {
                Ok(Some(len)) => got.push(out[..len].to_vec()),
                Ok(None) => break,
                Err(e) => {
                    err = Some(e);
                    break 'feed;
                }
            }
        }
        if fed == stream.len() {
            break;
        }
        let n = read.min(stream.len() - fed);
        let took = d.push(&stream[fed..fed + n]);
        assert!(took > 0, "a full decoder with no whole frame in it");
        assert!(
            d.allocated() <= d.capacity(),
            "decoder grew to {} bytes, its capacity is {}",
            d.allocated(),
            d.capacity()
        );
        fed += took;
    }
    assert!(got.len() <= want.len(), "decoder made up a frame");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.as_slice(), *w, "frame {i} differs");
    }
    assert_eq!(
        got.len(),
        want.len(),
        "decoder lost a frame (stopped with {err:?})"
    );
    assert_eq!(err, want_err, "decoder error differs from the model's");
});
