//! FIFO semantics in full: open timeouts on both sides, ENXIO without a reader, end-of-file
//! only when the last writer (of two processes) closes, reopening for the next writer
//! without losing a byte, links never followed, other file types refused, and exclusive
//! 0600 creation. (`tests/pipe` already covers `open_write`'s timeout and the owner checks.)

#[path = "../util/mod.rs"]
mod util;

use ipckit::fifo::{FifoBuilder, FifoReader};
use ipckit::registry::unique_name;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use util::{init, peer_command, watchdog, KillOnDrop};

fn new_fifo(tag: &str) -> (PathBuf, ipckit::registry::ObjectGuard) {
    let path = init().join(unique_name(tag));
    let guard = FifoBuilder::new(&path).mode(0o600).create().unwrap();
    (path, guard)
}

fn writer(role: &str, path: &Path, vars: &[(&str, &str)]) -> KillOnDrop {
    let mut env = vec![("FIFO", path.to_str().unwrap().to_owned())];
    env.extend(vars.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let mut cmd = peer_command(role, &env);
    cmd.stdin(Stdio::piped()).stdout(Stdio::null());
    KillOnDrop(cmd.spawn().unwrap())
}

fn finish(child: &mut Child) {
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

/// CPU time (user + system) this thread has used, from `/proc/thread-self/stat` (in the
/// kernel's USER_HZ ticks, 100 per second).
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of the line; `rest` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Opens and closes the write end without writing, as soon as a reader is there.
fn silent_writer(path: &Path, times: u32) {
    for _ in 0..times {
        loop {
            match FifoBuilder::new(path).try_open_writer() {
                Ok(fd) => {
                    drop(fd);
                    break;
                }
                Err(e) if e.kind() == ErrorKind::NotConnected => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn read_open_times_out_and_a_silent_writer_neither_ends_nor_spins_the_wait() {
    watchdog(30, || {
        let (path, _guard) = new_fifo("fifo-rtimeout");
        // No writer at all.
        let t = Instant::now();
        let e = FifoBuilder::new(&path)
            .timeout(Duration::from_millis(300))
            .open_reader()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("no writer"), "{e}");
        assert!(t.elapsed() >= Duration::from_millis(300));

        // Writers that open and close without a byte: still a timeout, and the sticky
        // POLLHUP they leave does not turn the wait into a busy loop.
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let (t, cpu) = (Instant::now(), thread_cpu());
            let e = FifoBuilder::new(&p)
                .timeout(Duration::from_millis(800))
                .open_reader()
                .unwrap_err();
            (e, t.elapsed(), thread_cpu() - cpu)
        });
        silent_writer(&path, 3);
        let (e, took, cpu) = waiter.join().unwrap();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert!(took >= Duration::from_millis(800));
        assert!(
            cpu < took / 2,
            "the wait burnt {cpu:?} of CPU in {took:?}: it spins"
        );

        // The same for a read on a reader opened without waiting: no false end-of-file.
        let mut r = FifoBuilder::new(&path).open_reader().unwrap();
        r.set_read_timeout(Duration::from_millis(500));
        let p = path.clone();
        let silent = std::thread::spawn(move || silent_writer(&p, 2));
        let e = r.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert!(!r.is_eof());
        silent.join().unwrap();
        // Non-blocking: WouldBlock, not Ok(0).
        r.set_nonblocking(true);
        assert_eq!(
            r.read(&mut [0u8; 16]).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
    });
}

#[test]
fn write_open_times_out_and_try_open_write_reports_enxio() {
    watchdog(30, || {
        let (path, _guard) = new_fifo("fifo-wtimeout");
        let e = FifoBuilder::new(&path).try_open_writer().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotConnected, "{e}");
        assert!(e.to_string().contains("open for reading"), "{e}");
        assert!(e.to_string().contains(path.to_str().unwrap()), "{e}");
        let t = Instant::now();
        let e = FifoBuilder::new(&path)
            .timeout(Duration::from_millis(250))
            .open_writer()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert!(t.elapsed() >= Duration::from_millis(250));
        assert_eq!(
            FifoBuilder::new(init().join(unique_name("fifo-none")))
                .try_open_writer()
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
        // With a reader, it opens at once; the byte arrives.
        let mut r = FifoBuilder::new(&path).open_reader().unwrap();
        let mut w = FifoBuilder::new(&path).try_open_writer().unwrap();
        w.write_all(b"x").unwrap();
        assert_eq!(w.queued().unwrap(), 1);
        let mut b = [0u8; 4];
        assert_eq!(r.read(&mut b).unwrap(), 1);
        // A full pipe with a write timeout: TimedOut after a partial write, time counted.
        w.set_write_timeout(Duration::from_millis(100));
        let max = ipckit::pipe::max_capacity().unwrap();
        assert_eq!(
            ipckit::pipe::set_capacity(&w, max + 1).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let set = ipckit::pipe::set_capacity(&w, 200_000).unwrap();
        assert!(set >= 200_000, "{set}");
        let cap = ipckit::pipe::capacity(&r).unwrap();
        assert_eq!(cap, set, "one pipe: both ends tell the same capacity");
        let big = vec![1u8; cap + 4096];
        let n = w.write(&big).unwrap();
        assert!(n <= cap, "{n} > {cap}");
        let e = w.write(&big[n..]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert!(w.blocked() >= Duration::from_millis(100));
        assert_eq!(r.queued().unwrap(), n);
        // The last reader gone: BrokenPipe.
        drop(r);
        assert_eq!(w.write(b"y").unwrap_err().kind(), ErrorKind::BrokenPipe);
    });
}

/// Reads until `want` has arrived (appending to `got`).
fn read_until(r: &mut FifoReader, got: &mut Vec<u8>, want: &[u8]) {
    let mut buf = [0u8; 256];
    while !got.windows(want.len()).any(|w| w == want) {
        let n = r.read(&mut buf).unwrap();
        assert_ne!(
            n,
            0,
            "end-of-file before {:?}",
            String::from_utf8_lossy(want)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn eof_only_after_the_last_of_two_writer_processes_then_the_next_writer_in_full() {
    watchdog(60, || {
        let (path, _guard) = new_fifo("fifo-eof");
        let mut r = FifoBuilder::new(&path).open_reader().unwrap();
        r.set_read_timeout(Duration::from_secs(20));
        let mut a = writer("hold", &path, &[("MSG", "A1\n"), ("MSG2", "A2\n")]);
        let mut b = writer("hold", &path, &[("MSG", "B1\n"), ("MSG2", "B2\n")]);
        let mut got = Vec::new();
        read_until(&mut r, &mut got, b"A1\n");
        read_until(&mut r, &mut got, b"B1\n");

        // A writes its last bytes and exits; B still holds the FIFO: no end-of-file.
        finish(&mut a.0);
        read_until(&mut r, &mut got, b"A2\n");
        r.set_read_timeout(Duration::from_millis(300));
        let e = r.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::TimedOut,
            "a writer is still there: {e}"
        );
        assert!(!r.is_eof());

        // B, the last writer, closes: its bytes, then end-of-file, which stays.
        r.set_read_timeout(Duration::from_secs(20));
        finish(&mut b.0);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        got.extend_from_slice(&rest);
        assert_eq!(got.len(), 12);
        assert!(
            got.ends_with(b"B2\n"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(r.is_eof());
        assert_eq!(r.read(&mut [0u8; 16]).unwrap(), 0);

        // The next writer starts before the reader waits for it (and writes more than the
        // pipe holds): every byte arrives, in order.
        let len = 1 << 20;
        let mut c = writer("stream", &path, &[("LEN", &len.to_string())]);
        std::thread::sleep(Duration::from_millis(100));
        r.wait_writer_timeout(Duration::from_secs(20)).unwrap();
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), len);
        assert!(
            all == util::payload(7, len),
            "the next writer's bytes differ"
        );
        finish(&mut c.0);

        // A writer that wrote everything and exited before the wait: not lost either.
        let mut d = writer("stream", &path, &[("LEN", "100")]);
        finish(&mut d.0);
        r.wait_writer_timeout(Duration::from_secs(20)).unwrap();
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, util::payload(7, 100));

        // And no writer at all: the wait times out.
        let e = r
            .wait_writer_timeout(Duration::from_millis(200))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    });
}

#[test]
fn a_symbolic_link_is_never_followed_even_to_our_own_fifo() {
    watchdog(30, || {
        let (path, _guard) = new_fifo("fifo-target");
        let link = init().join(unique_name("fifo-link"));
        std::os::unix::fs::symlink(&path, &link).unwrap();
        // The target is a valid FIFO of ours with a reader, so only the link can be refused.
        let _reader = FifoBuilder::new(&path).open_reader().unwrap();
        let refused = |e: std::io::Error| {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.to_string().contains("symbolic link"), "{e}");
        };
        refused(FifoBuilder::new(&link).open_reader().unwrap_err());
        refused(
            FifoBuilder::new(&link)
                .allow_other_users(true)
                .open_reader()
                .unwrap_err(),
        );
        refused(
            FifoBuilder::new(&link)
                .timeout(Duration::from_millis(50))
                .open_reader()
                .unwrap_err(),
        );
        refused(
            FifoBuilder::new(&link)
                .timeout(Duration::from_millis(50))
                .allow_other_users(true)
                .open_reader()
                .unwrap_err(),
        );
        refused(FifoBuilder::new(&link).try_open_writer().unwrap_err());
        refused(
            FifoBuilder::new(&link)
                .allow_other_users(true)
                .try_open_writer()
                .unwrap_err(),
        );
        refused(
            FifoBuilder::new(&link)
                .timeout(Duration::from_millis(50))
                .open_writer()
                .unwrap_err(),
        );
        refused(
            FifoBuilder::new(&link)
                .timeout(Duration::from_millis(50))
                .allow_other_users(true)
                .open_writer()
                .unwrap_err(),
        );
        std::fs::remove_file(&link).unwrap();
    });
}

#[test]
fn a_file_directory_or_socket_at_the_path_is_a_clear_error() {
    watchdog(30, || {
        let dir = init();
        let file = dir.join(unique_name("fifo-file"));
        std::fs::write(&file, b"keep").unwrap();
        let sub = dir.join(unique_name("fifo-dir"));
        std::fs::create_dir(&sub).unwrap();
        let sock = dir.join(unique_name("fifo-sock"));
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        for (p, what) in [
            (&file, "a regular file"),
            (&sub, "a directory"),
            (&sock, "a socket"),
        ] {
            let clear = |e: std::io::Error| {
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e}");
                assert!(
                    e.to_string().contains(&format!("not a FIFO but {what}")),
                    "{e}"
                );
            };
            clear(FifoBuilder::new(p).open_reader().unwrap_err());
            clear(
                FifoBuilder::new(p)
                    .timeout(Duration::from_millis(50))
                    .open_reader()
                    .unwrap_err(),
            );
            clear(FifoBuilder::new(p).try_open_writer().unwrap_err());
            // Not "no reader" after the timeout: refused at once.
            clear(
                FifoBuilder::new(p)
                    .timeout(Duration::from_secs(30))
                    .open_writer()
                    .unwrap_err(),
            );
        }
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
        std::fs::remove_file(&file).unwrap();
        std::fs::remove_dir(&sub).unwrap();
        std::fs::remove_file(&sock).unwrap();
    });
}

fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask takes and returns a plain integer and cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

#[test]
fn create_is_exclusive_and_exactly_0600_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    watchdog(30, || {
        let dir = init();
        // This is the only test here that changes the umask, and it restores it.
        for mask in [0o000, 0o277] {
            let old = set_umask(mask);
            let (path, guard) = new_fifo("fifo-mode");
            set_umask(old);
            let mode = std::fs::symlink_metadata(&path)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o7777, 0o600, "umask {mask:03o} gave {mode:o}");
            drop(guard);
        }

        let (fifo_path, _guard) = new_fifo("fifo-excl");
        let file = dir.join(unique_name("fifo-excl-file"));
        std::fs::write(&file, b"target").unwrap();
        let to_file = dir.join(unique_name("fifo-excl-link"));
        std::os::unix::fs::symlink(&file, &to_file).unwrap();
        let missing = dir.join(unique_name("fifo-excl-missing"));
        let dangling = dir.join(unique_name("fifo-excl-dangling"));
        std::os::unix::fs::symlink(&missing, &dangling).unwrap();
        // A FIFO that ipckit did not make (no registry record): mkfifo's own exclusivity.
        let foreign = dir.join(unique_name("fifo-excl-foreign"));
        let made = std::process::Command::new("mkfifo")
            .arg(&foreign)
            .status()
            .unwrap();
        assert!(made.success());
        for p in [&fifo_path, &foreign, &file, &to_file, &dangling] {
            let e = FifoBuilder::new(p).mode(0o600).create().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{}: {e}", p.display());
        }
        // The links' targets are untouched: no FIFO made through them.
        assert_eq!(std::fs::read(&file).unwrap(), b"target");
        assert!(std::fs::symlink_metadata(&file).unwrap().is_file());
        assert!(std::fs::symlink_metadata(&missing).is_err());
        assert!(std::fs::symlink_metadata(&to_file).unwrap().is_symlink());
        {
            use std::os::unix::fs::FileTypeExt;
            let t = std::fs::symlink_metadata(&foreign).unwrap().file_type();
            assert!(t.is_fifo(), "the foreign FIFO is still there, as it was");
        }
        // A refused create leaves no registry record behind.
        let records = util::leftover_records();
        for p in [&file, &to_file, &dangling, &foreign] {
            assert!(!records.iter().any(|r| Path::new(r) == *p), "{records:?}");
            std::fs::remove_file(p).unwrap();
        }
    });
}
