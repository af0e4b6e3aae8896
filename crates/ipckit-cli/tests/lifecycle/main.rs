//! Issue 14, "remove exactly what was made", against the real binary as root with another,
//! unprivileged user (a numeric uid nobody has, given to children with `setresuid` through
//! `CommandExt::uid`): a directory renamed above a FIFO or socket while `recv` runs, a FIFO
//! replaced before `clean` or TERM, another user's queues at the names of ours, FIFOs in
//! other users' or symlinked directories, `report --html` onto a symlink or its input,
//! another user's stale socket, planted state directories, and a symlink race (a parent
//! directory swapped thousands of times while `recv` and `clean` run).
//!
//! Tests that need root skip loudly when not root, and fail instead when `CI` is set.

#[path = "../util/mod.rs"]
mod util;

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use util::{TestEnv, WATCHDOG};

/// True if we are root; otherwise says SKIPPED loudly (or fails, when `CI` is set).
fn root(test: &str) -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test} needs root, and CI is set: a skipped test is a failure there");
    }
    eprintln!("SKIPPED: {test} needs root (run the tests as root to include it)");
    false
}

/// An unused uid (and gid) for "another user", distinct per test process.
fn other() -> u32 {
    61_000 + std::process::id() % 2_000
}

/// A System V key of this test process (`n` tells tests apart).
fn sysv_key(n: u32) -> i32 {
    (0x1d7e_0000u32 ^ ((std::process::id() & 0xfff) << 4) ^ n) as i32
}

/// `sh -c SCRIPT` as the other user, in `dir`; asserts it succeeded.
fn as_other(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .uid(other())
        .gid(other())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "as uid {}: {script}: {out:?}",
        other()
    );
}

fn mkdir(p: &Path, mode: u32, owner: Option<u32>) {
    std::fs::create_dir(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    if let Some(u) = owner {
        std::os::unix::fs::chown(p, Some(u), Some(u)).unwrap();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A background `ipckit` whose stderr is read line by line.
struct Proc {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Proc {
            child: Some(child),
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for `recv`'s "receiving on" line: true once it came, false if the process ended
    /// first (it refused, say).
    fn ready(&mut self) -> bool {
        let until = Instant::now() + WATCHDOG;
        loop {
            match self
                .lines
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                Ok(l) => {
                    let ready = l.contains("receiving on");
                    self.seen.push(l);
                    if ready {
                        return true;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "watchdog: no 'receiving on' within {WATCHDOG:?}: {:?}",
                        self.seen
                    )
                }
            }
        }
    }

    fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().unwrap().id() as libc::pid_t;
        // SAFETY: kill takes plain integers; the pid is our own unreaped child.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Waits for the end (killing it after the watchdog): its status and all of its stderr.
    fn finish(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let until = Instant::now() + WATCHDOG;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                panic!("watchdog: killed a child that ran over {WATCHDOG:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        // The reader thread ends at EOF, which follows the exit.
        while let Ok(l) = self.lines.recv_timeout(WATCHDOG) {
            self.seen.push(l);
        }
        (status, self.seen.join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `cmd` to completion under the watchdog: (status, stdout, stderr).
fn run(mut cmd: Command) -> (ExitStatus, String, String) {
    let o = util::output_within(&mut cmd, WATCHDOG, "ipckit");
    (
        o.status,
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn recv_args<'a>(mech: &'a str, at: &'a str) -> Vec<&'a str> {
    vec!["recv", "--via", mech, "--at", at]
}

/// Row 1: root's `recv` is asked for a FIFO or socket in a directory of its own inside a
/// directory another user owns, who could rename root's directory away and put a symbolic
/// link to another directory in its place: refused, nothing made. And when that happens
/// anyway while it runs (here root's own script renames, as the user could not now), on
/// TERM root removes its own object (where it now is) and nothing in the symlink's target.
fn rename_above_while_running(mech: &str) {
    if !root("rename_above_while_running") {
        return;
    }
    let env = TestEnv::new(&format!("row1-{mech}"));
    let top = env.dir.join("top");
    mkdir(&top, 0o755, Some(other()));
    let d = top.join("d");
    mkdir(&d, 0o755, None);
    let at = d.join("x");
    let mut c = env.cmd(&recv_args(mech, s(&at)));
    c.args(["--timeout", "1"]);
    let (st, out, err) = run(c);
    assert!(
        !st.success() && err.contains("refusing") && err.contains("belongs to uid"),
        "{mech}: {st:?} {out}{err}"
    );
    assert!(
        std::fs::symlink_metadata(&at).is_err(),
        "{mech}: made in {}",
        d.display()
    );
    std::os::unix::fs::chown(&top, Some(0), Some(0)).unwrap();

    let victim = env.dir.join("victim");
    mkdir(&victim, 0o755, None);
    std::fs::write(victim.join("x"), "root's own file").unwrap();
    let mut r = Proc::spawn(env.cmd(&recv_args(mech, s(&at))));
    assert!(r.ready(), "{:?}", r.seen);
    std::fs::rename(&d, top.join("d.old")).unwrap();
    std::os::unix::fs::symlink(&victim, &d).unwrap();
    r.signal(libc::SIGTERM);
    let (_, err) = r.finish();
    assert_eq!(
        std::fs::read_to_string(victim.join("x")).ok().as_deref(),
        Some("root's own file"),
        "{mech}: a file in the symlink's target was removed; recv said: {err}"
    );
    assert!(
        std::fs::symlink_metadata(top.join("d.old/x")).is_err(),
        "{mech}: recv left its own object behind (top/d.old/x); it said: {err}"
    );
    assert_eq!(env.records(), Vec::<String>::new(), "{mech}: records left");
}

#[test]
fn row1_fifo_directory_renamed_above() {
    rename_above_while_running("fifo");
}

#[test]
fn row1_uds_directory_renamed_above() {
    rename_above_while_running("uds");
}

/// Row 2: the FIFO (or socket) of a `recv` killed with -9 is replaced by a regular file;
/// `clean` must leave the file alone and say so.
fn replaced_then_clean(mech: &str) {
    let env = TestEnv::new(&format!("row2-clean-{mech}"));
    let at = env.dir.join("obj");
    let mut r = Proc::spawn(env.cmd(&recv_args(mech, s(&at))));
    assert!(r.ready(), "{:?}", r.seen);
    r.signal(libc::SIGKILL);
    r.finish();
    std::fs::remove_file(&at).unwrap();
    std::fs::write(&at, "a regular file").unwrap();
    // `list` says the object made is gone, though its name is taken.
    let (_, listed, _) = run(env.cmd(&["list"]));
    let line = listed.lines().find(|l| l.ends_with(s(&at))).unwrap_or("");
    assert!(
        line.split_whitespace().nth(4) == Some("no"),
        "{mech}: list says it exists: {listed}"
    );
    let (st, out, err) = run(env.cmd(&["clean"]));
    assert_eq!(
        std::fs::read_to_string(&at).ok().as_deref(),
        Some("a regular file"),
        "{mech}: clean removed a regular file: {out}{err}"
    );
    assert!(st.success(), "{out}{err}");
    assert!(
        out.contains("alone"),
        "{mech}: clean did not report it: {out}{err}"
    );
    assert!(
        !out.contains("removed fifo") && !out.contains("removed socket"),
        "{out}"
    );
    assert_eq!(env.records(), Vec::<String>::new(), "{mech}: records left");
}

#[test]
fn row2_clean_leaves_a_replaced_fifo_alone() {
    replaced_then_clean("fifo");
}

#[test]
fn row2_clean_leaves_a_replaced_socket_alone() {
    replaced_then_clean("uds");
}

/// Row 2, the TERM case: a running `recv`'s FIFO is replaced by a regular file, then TERM.
fn replaced_then_term(mech: &str) {
    let env = TestEnv::new(&format!("row2-term-{mech}"));
    let at = env.dir.join("obj");
    let mut r = Proc::spawn(env.cmd(&recv_args(mech, s(&at))));
    assert!(r.ready(), "{:?}", r.seen);
    std::fs::remove_file(&at).unwrap();
    std::fs::write(&at, "a regular file").unwrap();
    r.signal(libc::SIGTERM);
    let (_, err) = r.finish();
    assert_eq!(
        std::fs::read_to_string(&at).ok().as_deref(),
        Some("a regular file"),
        "{mech}: recv removed a regular file on TERM: {err}"
    );
    assert!(err.contains("alone"), "{mech}: not reported: {err}");
    assert_eq!(env.records(), Vec::<String>::new());
}

#[test]
fn row2_term_leaves_a_replaced_fifo_alone() {
    replaced_then_term("fifo");
}

#[test]
fn row2_term_leaves_a_replaced_socket_alone() {
    replaced_then_term("uds");
}

/// A POSIX queue's (messages now, exists) as root sees it.
fn mq_posix_count(name: &str) -> Option<i64> {
    let c = CString::new(name).unwrap();
    // SAFETY: a live C string; without O_CREAT no further arguments are read.
    let fd = unsafe { libc::mq_open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
    if fd < 0 {
        return None;
    }
    // SAFETY: an all-zero mq_attr is a valid out-value.
    let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is the queue just opened; `a` a live out-value.
    let r = unsafe { libc::mq_getattr(fd, &mut a) };
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::mq_close(fd) };
    (r == 0).then_some(a.mq_curmsgs)
}

fn mq_posix_unlink(name: &str) {
    let c = CString::new(name).unwrap();
    // SAFETY: a live C string.
    unsafe { libc::mq_unlink(c.as_ptr()) };
}

/// A System V queue's (messages, owner) for `key`.
fn sysv_stat(key: i32) -> Option<(u64, u32)> {
    // SAFETY: msgget takes no pointers.
    let id = unsafe { libc::msgget(key, 0) };
    if id < 0 {
        return None;
    }
    // SAFETY: an all-zero msqid_ds is a valid out-value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a live local that IPC_STAT fills.
    let r = unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) };
    (r == 0).then_some((ds.msg_qnum as u64, ds.msg_perm.uid))
}

fn sysv_remove(key: i32) {
    // SAFETY: msgget takes no pointers.
    let id = unsafe { libc::msgget(key, 0) };
    if id >= 0 {
        // SAFETY: IPC_RMID ignores the buffer argument.
        unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

/// Row 3: root's queues are killed with -9 and removed by hand; another user makes queues of
/// the same names and puts a message in each; root's `clean` must leave them alone.
#[test]
fn row3_clean_spares_another_users_queues() {
    if !root("row3_clean_spares_another_users_queues") {
        return;
    }
    let env = TestEnv::new("row3");
    let key = sysv_key(3);
    let key_s = format!("0x{key:08x}");
    let mq = format!("/ipckit-lifecycle-{}", std::process::id());
    for (mech, at) in [("mq-sysv", &key_s), ("mq-posix", &mq)] {
        let mut r = Proc::spawn(env.cmd(&recv_args(mech, at)));
        assert!(r.ready(), "{:?}", r.seen);
        r.signal(libc::SIGKILL);
        r.finish();
    }
    sysv_remove(key);
    mq_posix_unlink(&mq);
    // The other user: its own registry, its own receivers killed likewise, then a message
    // into each queue.
    let theirs = env.dir.join("their-registry");
    mkdir(&theirs, 0o700, Some(other()));
    for (mech, at) in [("mq-sysv", &key_s), ("mq-posix", &mq)] {
        let mut c = env.cmd(&recv_args(mech, at));
        c.env("IPCKIT_REGISTRY", &theirs).uid(other()).gid(other());
        let mut r = Proc::spawn(c);
        assert!(r.ready(), "{:?}", r.seen);
        r.signal(libc::SIGKILL);
        r.finish();
        let mut c = env.cmd(&["send", "--via", mech, "--to", at, "their message"]);
        c.env("IPCKIT_REGISTRY", &theirs).uid(other()).gid(other());
        let (st, out, err) = run(c);
        assert!(st.success(), "{out}{err}");
    }
    assert_eq!(sysv_stat(key), Some((1, other())));
    assert_eq!(mq_posix_count(&mq), Some(1));
    let (st, out, err) = run(env.cmd(&["clean"]));
    let sysv_after = sysv_stat(key);
    let mq_after = mq_posix_count(&mq);
    sysv_remove(key);
    mq_posix_unlink(&mq);
    assert_eq!(
        sysv_after,
        Some((1, other())),
        "clean destroyed another user's System V queue: {out}{err}"
    );
    assert_eq!(
        mq_after,
        Some(1),
        "clean destroyed another user's POSIX queue: {out}{err}"
    );
    assert!(st.success(), "{out}{err}");
    // Nothing of theirs was removed, and clean does not claim it was.
    for what in [
        format!("removed mq-sysv {key_s}"),
        format!("removed mq-posix {mq}"),
    ] {
        assert!(!out.contains(&what), "clean says '{what}': {out}{err}");
    }
    assert!(
        out.lines()
            .any(|l| l.contains(&key_s) && l.contains("already gone")),
        "{out}{err}"
    );
    assert_eq!(env.records(), Vec::<String>::new(), "{out}");
}

/// Row 12: a FIFO in another user's directory, or through a symbolic link to a directory,
/// is refused as a socket is, and so is one anywhere below such a directory or link (they
/// could move it); nothing is made.
#[test]
fn row12_fifo_refused_where_a_socket_is() {
    if !root("row12_fifo_refused_where_a_socket_is") {
        return;
    }
    let env = TestEnv::new("row12");
    let theirs = env.dir.join("theirs");
    mkdir(&theirs, 0o755, Some(other()));
    let real = env.dir.join("real");
    mkdir(&real, 0o755, None);
    let link = env.dir.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(other()), Some(other())).unwrap();
    // Deeper: a directory of root's under theirs, and one reached through their link.
    let deep = theirs.join("sub");
    mkdir(&deep, 0o755, None);
    let sub = real.join("sub");
    mkdir(&sub, 0o755, None);
    for mech in ["fifo", "uds"] {
        for (dir, why) in [
            (theirs.clone(), "belongs to uid"),
            (link.clone(), "symbolic link"),
            (deep.clone(), "belongs to uid"),
            (link.join("sub"), "symbolic link"),
        ] {
            let at = dir.join("x");
            let mut c = env.cmd(&recv_args(mech, s(&at)));
            c.args(["--timeout", "1"]);
            let (st, out, err) = run(c);
            assert!(
                !st.success() && err.contains("refusing") && err.contains(why),
                "{mech} at {}: {st:?} {out}{err}",
                at.display()
            );
            assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 1, "{mech}");
            assert_eq!(std::fs::read_dir(&real).unwrap().count(), 1, "{mech}");
            assert_eq!(std::fs::read_dir(&deep).unwrap().count(), 0, "{mech}");
            assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0, "{mech}");
        }
    }
    assert_eq!(env.records(), Vec::<String>::new());
}

/// Row 14: `report --html P` never writes through another user's symlink, at `P` or up its
/// path, nor over its input (by name or by another hard link).
#[test]
fn row14_report_output_is_never_a_symlink_or_the_input() {
    if !root("row14_report_output_is_never_a_symlink_or_the_input") {
        return;
    }
    let env = TestEnv::new("row14");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/report/both-placements.json");
    let input = env.dir.join("in.json");
    std::fs::copy(&fixture, &input).unwrap();
    let original = std::fs::read(&input).unwrap();
    let target = env.dir.join("target");
    std::fs::write(&target, "root's file").unwrap();
    let link = env.dir.join("out.html");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(other()), Some(other())).unwrap();
    let hard = env.dir.join("hard.json");
    std::fs::hard_link(&input, &hard).unwrap();
    // Their directory, holding their link back to ours: `theirs/dirlink/target` is root's
    // `target` reached through a link the other user made, in a directory they own.
    let theirs = env.dir.join("theirs");
    mkdir(&theirs, 0o755, Some(other()));
    let dirlink = theirs.join("dirlink");
    std::os::unix::fs::symlink(&env.dir, &dirlink).unwrap();
    std::os::unix::fs::lchown(&dirlink, Some(other()), Some(other())).unwrap();
    let through = dirlink.join("target");
    for (out, what) in [
        (&link, "symbolic link"),
        (&input, "input"),
        (&hard, "input"),
        (&through, "belongs to uid"),
    ] {
        let (st, o, e) = run(env.cmd(&["report", s(&input), "--html", s(out)]));
        assert_eq!(st.code(), Some(2), "{}: {o}{e}", out.display());
        assert!(e.contains(what) && e.trim_end().lines().count() == 1, "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "root's file");
        assert_eq!(
            std::fs::read(&input).unwrap(),
            original,
            "the input was overwritten"
        );
    }
    // And an ordinary output still works, over an old one of ours too.
    let fine = env.dir.join("fine.html");
    for _ in 0..2 {
        let (st, o, e) = run(env.cmd(&["report", s(&input), "--html", s(&fine)]));
        assert!(st.success(), "{o}{e}");
        assert!(std::fs::read_to_string(&fine).unwrap().contains("<html"));
    }
}

/// Row 16: root does not reclaim another user's stale socket file in a sticky directory.
#[test]
fn row16_another_users_stale_socket_is_left_alone() {
    if !root("row16_another_users_stale_socket_is_left_alone") {
        return;
    }
    let env = TestEnv::new("row16-sock");
    let sticky = env.dir.join("sticky");
    mkdir(&sticky, 0o1777, None);
    let theirs = env.dir.join("their-registry");
    mkdir(&theirs, 0o700, Some(other()));
    let at = sticky.join("s");
    let mut c = env.cmd(&recv_args("uds", s(&at)));
    c.env("IPCKIT_REGISTRY", &theirs).uid(other()).gid(other());
    let mut r = Proc::spawn(c);
    assert!(r.ready(), "{:?}", r.seen);
    r.signal(libc::SIGKILL);
    r.finish();
    let before = std::fs::symlink_metadata(&at).unwrap();
    assert_eq!(before.uid(), other());
    let mut c = env.cmd(&recv_args("uds", s(&at)));
    c.args(["--timeout", "0.2"]);
    let (st, out, err) = run(c);
    let after = std::fs::symlink_metadata(&at)
        .ok()
        .map(|m| (m.ino(), m.uid()));
    assert_eq!(
        after,
        Some((before.ino(), other())),
        "root reclaimed another user's socket file: {st:?} {out}{err}"
    );
    assert!(
        !st.success() && err.contains("left alone"),
        "{st:?} {out}{err}"
    );
}

/// The environment of a command that must find its state directories under `base` (not the
/// test registry, not `$XDG_RUNTIME_DIR`).
fn in_base(env: &TestEnv, args: &[&str], base: &Path) -> Command {
    let mut c = env.cmd(args);
    c.env_remove("IPCKIT_REGISTRY")
        .env_remove("XDG_RUNTIME_DIR")
        .env("IPCKIT_STATE_BASE", base);
    c
}

/// Row 16: another user who made `<base>/ipckit-registry-<uid>` first does not stop `list`,
/// `recv` or `clean`: they use the next candidate, and find each other's records there.
#[test]
fn row16_planted_registry_directory_is_bypassed() {
    if !root("row16_planted_registry_directory_is_bypassed") {
        return;
    }
    let env = TestEnv::new("row16-reg");
    let base = env.dir.join("base");
    mkdir(&base, 0o1777, None);
    as_other(&base, "mkdir -m 777 ipckit-registry-0");
    let (st, out, err) = run(in_base(&env, &["list"], &base));
    assert!(st.success(), "list refused to run: {out}{err}");
    assert!(
        err.contains("not using") && err.contains("ipckit-registry-0"),
        "{err}"
    );
    let at = env.dir.join("q");
    let mut r = Proc::spawn(in_base(&env, &recv_args("fifo", s(&at)), &base));
    assert!(r.ready(), "{:?}", r.seen);
    let used = base.join("ipckit-registry-0.1");
    let recs = std::fs::read_dir(&used).map(|d| d.count()).unwrap_or(0);
    let (_, listed, _) = run(in_base(&env, &["list"], &base));
    r.signal(libc::SIGKILL);
    r.finish();
    let planted = std::fs::metadata(base.join("ipckit-registry-0")).unwrap();
    // They take their directory away again: the record in `.1` must not vanish with it.
    as_other(&base, "rmdir ipckit-registry-0");
    let (_, listed_after, _) = run(in_base(&env, &["list"], &base));
    let (st, out, err) = run(in_base(&env, &["clean"], &base));
    assert!(recs > 0, "no record in {}", used.display());
    for l in [&listed, &listed_after] {
        assert!(l.contains(s(&at)), "list does not show the FIFO: {l}");
    }
    assert!(st.success() && out.contains("removed fifo"), "{out}{err}");
    assert!(std::fs::symlink_metadata(&at).is_err());
    assert_eq!(
        planted.uid(),
        other(),
        "the planted directory was theirs, left alone"
    );
    assert_eq!(std::fs::metadata(&used).unwrap().mode() & 0o7777, 0o700);
}

/// Runs `serve` (commands made by `cmd`) until its state file appears where `state(port)`
/// says, checks that `serve --status` finds it and that TERM removes it; returns the master's
/// stderr.
fn serve_finds_its_state(
    cmd: impl Fn(&[&str]) -> Command,
    state: impl Fn(u16) -> std::path::PathBuf,
    meanwhile: impl Fn(),
) -> String {
    let port = util::free_port(false);
    let addr = format!("127.0.0.1:{port}");
    let mut m = Proc::spawn(cmd(&["serve", "--listen", &addr, "--workers", "1"]));
    let state = state(port);
    let until = Instant::now() + WATCHDOG;
    while !state.exists() && Instant::now() < until {
        if m.child.as_mut().unwrap().try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let running = state.exists();
    meanwhile();
    let (st, out, err) = run(cmd(&["serve", "--status", "--listen", &addr]));
    let (ast, aout, aerr) = run(cmd(&["serve", "--status"]));
    m.signal(libc::SIGTERM);
    let (mst, merr) = m.finish();
    assert!(
        running,
        "no state file at {}: {mst:?} {merr}",
        state.display()
    );
    assert!(st.success(), "serve --status --listen: {out}{err}");
    assert!(ast.success(), "serve --status: {aout}{aerr}");
    assert!(!state.exists(), "state file left: {merr}");
    merr
}

/// Row 16: another user who made `<base>/ipckit-serve-<uid>` first does not stop `serve`.
#[test]
fn row16_planted_serve_directory_is_bypassed() {
    if !root("row16_planted_serve_directory_is_bypassed") {
        return;
    }
    let env = TestEnv::new("row16-serve");
    let base = env.dir.join("base");
    mkdir(&base, 0o1777, None);
    as_other(&base, "mkdir -m 777 ipckit-serve-0");
    let merr = serve_finds_its_state(
        |args| in_base(&env, args, &base),
        |port| base.join(format!("ipckit-serve-0.1/ipckit-serve-{port}.json")),
        // They take their directory away while the server runs: it is still found.
        || as_other(&base, "rmdir ipckit-serve-0"),
    );
    assert!(merr.contains("not using"), "{merr}");
}

/// Row 16: another user who took all nine names in the shared base (`ipckit-registry-0`,
/// `.1` to `.8`, and the same for `ipckit-serve-0`) stops nothing either: `recv`, `list`,
/// `clean` and `serve` fall back to `~/.cache/ipckit/`, where no other user can plant.
#[test]
fn row16_all_nine_planted_fall_back_to_the_users_cache() {
    if !root("row16_all_nine_planted_fall_back_to_the_users_cache") {
        return;
    }
    let env = TestEnv::new("row16-all");
    let base = env.dir.join("base");
    mkdir(&base, 0o1777, None);
    let home = env.dir.join("home");
    mkdir(&home, 0o700, None);
    as_other(
        &base,
        "for s in registry serve; do for n in '' .1 .2 .3 .4 .5 .6 .7 .8; do \
         mkdir -m 777 ipckit-$s-0$n; done; done",
    );
    let cmd = |args: &[&str]| {
        let mut c = in_base(&env, args, &base);
        c.env("HOME", &home).env_remove("XDG_CACHE_HOME");
        c
    };
    let at = env.dir.join("q");
    let mut r = Proc::spawn(cmd(&recv_args("fifo", s(&at))));
    assert!(r.ready(), "{:?}", r.seen);
    let used = home.join(".cache/ipckit/ipckit-registry-0");
    let recs = std::fs::read_dir(&used).map(|d| d.count()).unwrap_or(0);
    let (lst, listed, lerr) = run(cmd(&["list"]));
    r.signal(libc::SIGKILL);
    r.finish();
    let (st, out, err) = run(cmd(&["clean"]));
    assert!(recs > 0, "no record in {}", used.display());
    assert!(lst.success(), "list: {listed}{lerr}");
    assert!(
        listed.contains(s(&at)),
        "list does not show the FIFO: {listed}"
    );
    assert!(st.success() && out.contains("removed fifo"), "{out}{err}");
    assert!(std::fs::symlink_metadata(&at).is_err());
    assert_eq!(std::fs::metadata(&used).unwrap().mode() & 0o7777, 0o700);

    serve_finds_its_state(
        cmd,
        |port| {
            home.join(format!(
                ".cache/ipckit/ipckit-serve-0/ipckit-serve-{port}.json"
            ))
        },
        || {},
    );
    // Every planted directory is still theirs.
    for e in std::fs::read_dir(&base).unwrap().flatten() {
        assert_eq!(
            e.metadata().unwrap().uid(),
            other(),
            "{}",
            e.path().display()
        );
    }
}

/// The symlink race: a swapper thread keeps replacing `top/d` (root's directory the objects
/// are made in) with a symbolic link to `victim` and back, while `recv` processes start and
/// exit at `top/d/x` and others are killed with -9 and `clean` runs. `victim` holds a file
/// named `x` (and `victim/keep`): whatever happens, neither may ever be removed. At least
/// 1,000 swaps, bounded to about 25 s.
fn symlink_race(mech: &str) {
    if !root("symlink_race") {
        return;
    }
    let env = TestEnv::new(&format!("race-{mech}"));
    let top = env.dir.join("top");
    mkdir(&top, 0o755, None);
    let d = top.join("d");
    mkdir(&d, 0o755, None);
    let real = top.join("d.real");
    let victim = env.dir.join("victim");
    mkdir(&victim, 0o755, None);
    let victim_files = [victim.join("x"), victim.join("keep")];
    for f in &victim_files {
        std::fs::write(f, "never removed").unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps, d, real, victim) = (
            stop.clone(),
            swaps.clone(),
            d.clone(),
            real.clone(),
            victim.clone(),
        );
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Hold each state a little, different every time, so that the other side's
                // steps land in both.
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let hold = Duration::from_micros((n >> 33) % 400);
                std::fs::rename(&d, &real).unwrap();
                std::os::unix::fs::symlink(&victim, &d).unwrap();
                std::thread::sleep(hold);
                std::fs::remove_file(&d).unwrap();
                std::fs::rename(&real, &d).unwrap();
                swaps.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(hold);
            }
        })
    };
    let at = d.join("x");
    let start = Instant::now();
    let mut rounds = 0u32;
    let mut made = 0u32;
    let mut lost = None;
    while (swaps.load(Ordering::Relaxed) < 1_000 || rounds < 150)
        && start.elapsed() < Duration::from_secs(25)
    {
        rounds += 1;
        // One that exits by itself (its guard removes what it made)...
        let mut c = env.cmd(&recv_args(mech, s(&at)));
        c.args(["--timeout", "0.02"]);
        let mut r = Proc::spawn(c);
        made += u32::from(r.ready());
        r.finish();
        // ... and one killed with -9, left to `clean`.
        let mut r = Proc::spawn(env.cmd(&recv_args(mech, s(&at))));
        made += u32::from(r.ready());
        r.signal(libc::SIGKILL);
        r.finish();
        let (_, out, err) = run(env.cmd(&["clean"]));
        if let Some(f) = victim_files.iter().find(|f| !f.exists()) {
            lost = Some(format!(
                "round {rounds}: {} removed; clean said {out}{err}",
                f.display()
            ));
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    let n = swaps.load(Ordering::Relaxed);
    eprintln!(
        "symlink race ({mech}): {n} swaps, {rounds} rounds, {made} objects made, {:.1} s",
        start.elapsed().as_secs_f64()
    );
    if let Some(l) = lost {
        panic!("{mech}: a file outside the created objects was removed: {l}");
    }
    assert!(n >= 1_000, "only {n} swaps");
    assert!(made > 0, "recv never managed to make its {mech}");
    // What clean could not verify while the directory was away is still recorded: a final
    // clean, with the directory back, settles every record.
    let (_, out, err) = run(env.cmd(&["clean"]));
    assert_eq!(env.records(), Vec::<String>::new(), "{out}{err}");
    // An object whose directory was renamed under it can be left behind (its record names a
    // path that no longer leads to it: leaving it is the safe mistake); anything left must
    // be such an object, made by us.
    let want = if mech == "fifo" {
        libc::S_IFIFO
    } else {
        libc::S_IFSOCK
    };
    let mut left = 0;
    for e in std::fs::read_dir(&d).unwrap().flatten() {
        let m = e.metadata().unwrap();
        assert!(
            m.mode() & libc::S_IFMT == want && m.uid() == 0,
            "{}: not an object recv made",
            e.path().display()
        );
        left += 1;
    }
    eprintln!("symlink race ({mech}): {left} object(s) left where their directory was renamed");
}

#[test]
fn symlink_race_fifo() {
    symlink_race("fifo");
}

#[test]
fn symlink_race_uds() {
    symlink_race("uds");
}

/// A record without an identity (written by an older ipckit) does not make `clean` remove
/// what is at its name: the object is left alone and reported, and the record goes only once
/// the object is gone.
#[test]
fn an_old_record_never_removes_by_name() {
    let env = TestEnv::new("old-record");
    mkdir(&env.registry, 0o700, None);
    let fifo = env.dir.join("old.fifo");
    let c = CString::new(s(&fifo)).unwrap();
    // SAFETY: a live C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // A creator that is gone: a pid with a start time no process had.
    let rec = env.registry.join("fifo-old.rec");
    std::fs::write(
        &rec,
        format!(
            "kind=fifo\nname={}\npid={}\nstart=1\ncreated=1\n",
            s(&fifo),
            std::process::id()
        ),
    )
    .unwrap();
    let (st, out, err) = run(env.cmd(&["clean"]));
    assert!(
        std::fs::symlink_metadata(&fifo).is_ok(),
        "clean removed by name alone: {out}{err}"
    );
    assert!(st.success() && out.contains("no identity"), "{out}{err}");
    assert!(rec.exists(), "the record of an object still there is kept");
    std::fs::remove_file(&fifo).unwrap();
    let (st, out, err) = run(env.cmd(&["clean"]));
    assert!(
        st.success() && out.contains("removed the record"),
        "{out}{err}"
    );
    assert_eq!(env.records(), Vec::<String>::new());
}
