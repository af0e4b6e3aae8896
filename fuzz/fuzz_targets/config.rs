//! The server's config parser (`ipckit_server::config::Config::parse`): a file the operator
//! writes, or anyone who can write it. Nothing may panic; a config that parses passes its own
//! check.
#![no_main]

use ipckit_server::config::Config;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.conf");
    let base = Path::new("/nonexistent-ipckit-fuzz");
    if let Ok(c) = Config::parse(text, path, base) {
        c.check().expect("a parsed config passes its check");
    }
});
