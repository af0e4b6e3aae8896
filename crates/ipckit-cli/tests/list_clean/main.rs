//! `ipckit list` and `ipckit clean` end to end: what a killed process left is listed as dead
//! and removed, a live process's resource is kept.

#[path = "../util/mod.rs"]
mod util;

use util::{exists, TestEnv};

#[test]
fn clean_removes_what_a_killed_process_left_and_nothing_else() {
    let env = TestEnv::new("clean");
    let dead = env.path("dead-fifo");
    let live = env.path("live-fifo");
    let mut victim = env.spawn(&["recv", "--via", "fifo", "--at", &dead]);
    victim.wait_ready();
    let mut keeper = env.spawn(&[
        "recv",
        "--via",
        "fifo",
        "--at",
        &live,
        "--count",
        "1",
        "--timeout",
        "15",
    ]);
    keeper.wait_ready();
    let victim_pid = victim.pid();
    victim.signal(libc::SIGKILL);
    let _ = victim.finish();
    assert!(exists(&dead), "SIGKILL leaves the FIFO behind");

    let list = env.run(&["list"], b"");
    let text = list.ok();
    let dead_line = text.lines().find(|l| l.ends_with(&dead)).expect(text);
    assert!(
        dead_line.contains("dead") && dead_line.contains(&victim_pid.to_string()),
        "{text}"
    );
    let live_line = text.lines().find(|l| l.ends_with(&live)).expect(text);
    assert!(live_line.contains("alive"), "{text}");

    let dry = env.run(&["clean", "--dry-run"], b"");
    assert!(dry.ok().contains("would remove fifo"), "{dry:?}");
    assert!(exists(&dead));

    let clean = env.run(&["clean"], b"");
    let text = clean.ok();
    assert!(text.contains(&format!("removed fifo {dead}")), "{text}");
    assert!(text.contains(&format!("kept fifo {live}")), "{text}");
    assert!(!exists(&dead));
    assert!(exists(&live));

    env.run(&["send", "--via", "fifo", "--to", &live, "bye"], b"")
        .ok();
    assert_eq!(keeper.finish().ok(), "bye\n");
    assert!(!exists(&live));
    env.assert_clean();
}
