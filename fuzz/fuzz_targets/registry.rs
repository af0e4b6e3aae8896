//! Registry records (`ipckit::registry`): files any process of the same user can write,
//! parsed by `ipckit list` and `ipckit clean`. Parsing must not panic; a record that parses
//! and names its object the way ipckit does (no control character) reads back the same
//! after being written the way ipckit writes it; a System V key parses the same in decimal
//! and hex.
#![no_main]

use ipckit::registry::{encode_record, parse_key, parse_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(r) = parse_record(text) {
        let _ = parse_key(&r.name);
        if !r.name.chars().any(char::is_control) {
            let written = encode_record(&r);
            assert_eq!(parse_record(&written).as_ref(), Some(&r), "{written:?}");
        }
    }
    if let Ok(k) = parse_key(text) {
        assert_eq!(parse_key(&k.to_string()).ok(), Some(k));
        assert_eq!(parse_key(&format!("0x{:x}", k as u32)).ok(), Some(k));
    }
});
