//! The control-message decoder (`ipckit::unix::ancillary`) over any bytes: it must not
//! panic or read outside the buffer (bounds-checked slices; AddressSanitizer watches the
//! rest), every message it yields must lie in the buffer, and decoding what `encode` makes
//! of the decoded descriptors and credentials gives them back.
#![no_main]

use ipckit::unix::ancillary::{decode, encode, raw_messages, Cmsg, CMSG_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The kernel's buffer is size_t-aligned; so is ours (the decoder must not care).
    let words: Vec<u64> = data
        .chunks(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            u64::from_ne_bytes(b)
        })
        .collect();
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let buf = &bytes[..data.len()];
    for m in raw_messages(buf).flatten() {
        let start = m.data.as_ptr() as usize - buf.as_ptr() as usize;
        assert!(start >= m.offset + CMSG_HEADER_LEN && start + m.data.len() <= buf.len());
    }
    let d = decode(buf);
    let fds: Vec<i32> = d.fds().collect();
    let creds = d.credentials();
    let _ = d.pidfd();
    let _: Vec<i32> = d.all_fds().collect();
    for m in &d.messages {
        if let Cmsg::Unknown { len, .. } = m {
            assert!(
                *len <= buf.len(),
                "unknown message of {len} bytes in {}",
                buf.len()
            );
        }
    }
    let again = decode(&encode(&fds, creds));
    assert!(again.error.is_none(), "{:?}", again.error);
    assert_eq!(again.fds().collect::<Vec<_>>(), fds);
    assert_eq!(again.credentials(), creds);
});
