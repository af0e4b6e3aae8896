//! The server's HTTP request path (`ipckit_server::http`, and the worker's file lookup):
//! bytes from the network, arriving in reads of sizes the fuzzer picks, parsed into requests
//! (pipelined), each path percent-decoded and opened beneath a document root as the worker
//! does. Nothing may panic; a request's path lies in the buffer and stops before `?` or `#`;
//! a file opened is never outside the root.
#![no_main]

use ipckit_fuzz::Input;
use ipckit_server::http::{self, Next, Responses};
use libfuzzer_sys::fuzz_target;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::OnceLock;

/// A document root with a file, a directory and links that point out of it, made once per
/// process under `$TMPDIR` (the CI script gives the fuzzer a directory of its own).
fn root() -> &'static (PathBuf, File) {
    static ROOT: OnceLock<(PathBuf, File)> = OnceLock::new();
    ROOT.get_or_init(|| {
        let top = std::env::temp_dir().join(format!("ipckit-fuzz-http-{}", std::process::id()));
        let root = top.join("root");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("index.html"), b"<p>hi</p>").expect("write");
        std::fs::write(root.join("sub/a.txt"), b"a").expect("write");
        std::fs::write(top.join("secret"), b"outside").expect("write");
        let _ = std::os::unix::fs::symlink("../secret", root.join("up"));
        let _ = std::os::unix::fs::symlink("/etc/hostname", root.join("abs"));
        let dir = File::open(&root).expect("open root");
        (root.canonicalize().expect("canonicalize"), dir)
    })
}

fn serve_path(path: &[u8]) {
    let (root, dir) = root();
    let mut buf = [0u8; 4096];
    let Some(decoded) = http::percent_decode(path, &mut buf) else {
        return;
    };
    assert!(!decoded.contains(&0), "a decoded path with a NUL");
    let i = decoded
        .iter()
        .position(|&b| b != b'/')
        .unwrap_or(decoded.len());
    let rel = &decoded[i..];
    let _ = http::content_type(rel);
    if let Ok(fd) = ipckit::fs::open_beneath(dir, rel, libc_o_rdonly()) {
        let at = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("readlink");
        assert!(
            at.starts_with(root),
            "{:?} opened {} outside the root {}",
            String::from_utf8_lossy(path),
            at.display(),
            root.display()
        );
    }
}

const fn libc_o_rdonly() -> i32 {
    0
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let max_header = [64, 200, 1024, 8192][usize::from(inp.byte() % 4)];
    let read = 1 + usize::from(inp.byte());
    let stream = inp.0;
    let mut input = http::Input::new(max_header);
    let responses = Responses::new();
    let mut out = Vec::new();
    let mut fed = 0;
    loop {
        match input.next_request() {
            Next::Request(r) => {
                let path = input.bytes(r.path.clone());
                assert!(!path.contains(&b'?') && !path.contains(&b'#'));
                serve_path(path);
                out.clear();
                responses.error(&mut out, 404, r.keep_alive, r.method == http::Method::Head);
                continue;
            }
            Next::Reject(status) => {
                assert!(matches!(status, 400 | 431 | 501), "status {status}");
                let _ = http::reason(status);
                return;
            }
            Next::NeedMore => {}
        }
        if fed == stream.len() {
            return;
        }
        let spare = input.spare();
        assert!(!spare.is_empty(), "NeedMore with a full buffer");
        let n = read.min(stream.len() - fed).min(spare.len());
        spare[..n].copy_from_slice(&stream[fed..fed + n]);
        input.filled(n);
        fed += n;
    }
});
