//! System V keys: their display form (the queue's name in the registry) and a strict parser.

use crate::error::invalid;
use crate::registry;
use std::io;

/// The key's display form, used as its name in the registry: `0x` and 8 hex digits.
pub fn key_name(key: i32) -> String {
    format!("0x{:08x}", key as u32)
}

/// Parses a key strictly: `0x` and hex digits up to `0xffffffff`, or decimal digits up to 4294967295
/// (a key is any 32-bit pattern). Nothing else: no sign (`+5`, `0x-1`), no spaces (` 12`),
/// no value that does not fit.
///
/// # Errors
///
/// `InvalidInput` if it is neither, or `IPC_PRIVATE` (0).
pub fn parse_key(s: &str) -> io::Result<i32> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    let ok = !digits.is_empty()
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || radix == 16 && b.is_ascii_hexdigit());
    // (`from_str_radix` alone would take a leading `+`, and `i64` a `-`.)
    let k = ok
        .then(|| u32::from_str_radix(digits, radix).ok())
        .flatten()
        .ok_or_else(|| {
            invalid(format!(
                "'{s}' is not a System V key (0x and hex digits, or decimal digits, up to 0x{:x})",
                u32::MAX
            ))
        })?;
    let k = k as i32;
    debug_assert_eq!(registry::parse_key(&key_name(k)).ok(), Some(k));
    if k == libc::IPC_PRIVATE {
        return Err(invalid("key 0 is IPC_PRIVATE, not a shared queue"));
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::parse_key;

    #[test]
    fn keys_are_parsed_strictly() {
        assert_eq!(parse_key("0x1c000001").unwrap(), 0x1c00_0001);
        assert_eq!(parse_key("0XFFFFFFFF").unwrap(), -1);
        assert_eq!(parse_key("4294967295").unwrap(), -1);
        assert_eq!(parse_key("42").unwrap(), 42);
        for bad in [
            "0x-1",
            " 12",
            "12 ",
            "+5",
            "-5",
            "0x+5",
            "0x",
            "",
            "0x100000000",
            "4294967296",
            "18446744073709551616",
            "1e3",
            "0",
            "0x0",
            "nope",
            "0b1",
        ] {
            assert!(parse_key(bad).is_err(), "{bad:?} accepted");
        }
    }
}
