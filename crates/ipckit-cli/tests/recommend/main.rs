//! `ipckit recommend` and `ipckit compare` end to end, on fixture JSON files (no live bench):
//! known answers (`--cross-host`, `--fd-passing`, a latency bound), an impossible set of
//! requirements (exit 2, closest named), files that are not ipckit's or are too new (exit 2,
//! one clear line), and compare telling a change beyond the spread from noise.

#[path = "../util/mod.rs"]
mod util;

use util::{Out, TestEnv};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn recommend(env: &TestEnv, extra: &[&str]) -> Out {
    let from = fixture("default-2cpu-vm.json");
    let mut args = vec!["recommend", "--from", from.as_str()];
    args.extend_from_slice(extra);
    env.run(&args, b"")
}

/// The mechanisms listed as fitting (`  N. mech: ...`) and as excluded (`  mech: excluded, ...`).
fn verdicts(out: &str) -> (Vec<String>, Vec<String>) {
    let (mut fit, mut ex) = (Vec::new(), Vec::new());
    for l in out.lines().map(str::trim) {
        if let Some((m, _)) = l.split_once(": excluded, ") {
            ex.push(m.to_string());
        } else if let Some((n, rest)) = l.split_once(". ") {
            if n.parse::<u32>().is_ok() {
                fit.push(rest.split(':').next().unwrap().to_string());
            }
        }
    }
    (fit, ex)
}

const ALL: usize = 13;

#[test]
fn cross_host_keeps_only_tcp_and_udp() {
    let env = TestEnv::new("rec-xhost");
    let o = recommend(&env, &["--cross-host"]);
    let (mut fit, ex) = verdicts(o.ok());
    fit.sort();
    assert_eq!(fit, ["tcp", "udp"], "{}", o.stdout);
    assert_eq!(ex.len(), ALL - 2, "every candidate listed: {}", o.stdout);
    assert!(
        o.stdout.contains("shm: excluded, --cross-host"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("figures from "), "{}", o.stdout);
}

#[test]
fn fd_passing_keeps_only_unix_sockets() {
    let env = TestEnv::new("rec-fd");
    let o = recommend(&env, &["--fd-passing"]);
    let (mut fit, ex) = verdicts(o.ok());
    fit.sort();
    assert_eq!(fit, ["uds", "uds-dgram", "uds-seqpacket"], "{}", o.stdout);
    assert_eq!(ex.len(), ALL - 3, "{}", o.stdout);
}

#[test]
fn latency_bound_has_a_known_answer() {
    // In the fixture, at 64 B cross-CPU, only shm and shm-zerocopy (adaptive, p99 1.0 µs) and
    // eventfd (carries no payload: excluded at 64 B) are under 1.2 µs.
    let env = TestEnv::new("rec-lat");
    let o = recommend(&env, &["--latency-p99", "1.2us", "--msg-size", "64"]);
    let (fit, ex) = verdicts(o.ok());
    assert_eq!(fit, ["shm", "shm-zerocopy"], "{}", o.stdout);
    assert_eq!(ex.len(), ALL - 2);
    assert!(
        o.stdout.contains("1. shm: adaptive cross 64 B"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("pipe: excluded, RTT p99 1.6 µs > 1.2 µs"),
        "{}",
        o.stdout
    );
}

#[test]
fn message_size_limits_name_the_system_limit() {
    let env = TestEnv::new("rec-size");
    let o = recommend(&env, &["--msg-size", "64K"]);
    let out = o.ok();
    let max = std::fs::read_to_string("/proc/sys/fs/mqueue/msgsize_max").unwrap();
    assert!(
        out.contains(&format!(
            "mq-posix: excluded, messages over {} B exceed this system's msgsize_max",
            max.trim()
        )),
        "{out}"
    );
    assert!(
        out.contains("eventfd: excluded, messages of 65536 B"),
        "{out}"
    );
}

#[test]
fn impossible_requirements_exit_2_and_name_the_closest() {
    let env = TestEnv::new("rec-impossible");
    let o = recommend(
        &env,
        &["--fd-passing", "--no-busy-poll", "--latency-p99", "2us"],
    );
    o.user_error("no mechanism meets all these requirements; closest: uds (");
    // Every candidate is still listed, all excluded.
    let (fit, ex) = verdicts(&o.stdout);
    assert!(fit.is_empty());
    assert_eq!(ex.len(), ALL);
}

#[test]
fn bad_results_files_are_user_errors() {
    let env = TestEnv::new("rec-bad");
    let junk = env.path("junk.json");
    std::fs::write(&junk, "this is not json").unwrap();
    recommend(&env, &[]).ok(); // the fixture itself reads
    env.run(&["recommend", "--from", &junk], b"")
        .user_error("is not an ipckit results file: not JSON");
    env.run(&["recommend", "--from", &fixture("not-ipckit.json")], b"")
        .user_error("is not an ipckit results file: no \"tool\": \"ipckit ...\" field");
    env.run(&["recommend", "--from", &fixture("newer-schema.json")], b"")
        .user_error("has results schema 2, newer than this ipckit reads (1)");
    let a = fixture("compare-a.json");
    env.run(&["compare", &a, &fixture("newer-schema.json")], b"")
        .user_error("newer than this ipckit reads");
    env.run(&["compare", &fixture("not-ipckit.json"), &a], b"")
        .user_error("is not an ipckit results file");
    env.run(&["recommend", "--from", &env.path("missing.json")], b"")
        .user_error("cannot read");
}

#[test]
fn compare_flags_a_change_beyond_the_spread_and_not_noise() {
    let env = TestEnv::new("cmp");
    let o = env.run(
        &[
            "compare",
            &fixture("compare-a.json"),
            &fixture("compare-b.json"),
        ],
        b"",
    );
    let out = o.ok();
    let line = |k: &str| {
        out.lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_else(|| panic!("no row {k}: {out}"))
    };
    // pipe: throughput halved, RTT doubled, spread 5%: flagged.
    let pipe = line("pipe block cross 64B ipckit");
    assert!(
        pipe.contains("-50.0% !") && pipe.contains("CHANGED"),
        "{pipe}"
    );
    // uds: +5% throughput, -4% p50, +4% p99, spread 10%: noise.
    let uds = line("uds block cross 64B ipckit");
    assert!(!uds.contains('!') && !uds.contains("CHANGED"), "{uds}");
    assert!(uds.contains("+5.0%"), "{uds}");
    assert!(
        out.contains("only in A: tcp block cross 64B ipckit"),
        "{out}"
    );
    assert!(
        out.contains("only in B: udp block cross 64B ipckit"),
        "{out}"
    );
    assert!(
        out.contains("2 rows compared, 1 changed beyond their spread"),
        "{out}"
    );
}

#[test]
fn bad_duration_is_a_user_error() {
    let env = TestEnv::new("rec-dur");
    env.run(&["recommend", "--latency-p99", "5 parsecs"], b"")
        .user_error("invalid duration");
}

#[test]
fn without_from_it_measures_on_the_spot_and_says_so() {
    // --cross-host leaves tcp and udp, so the quick run measures only those two.
    let env = TestEnv::new("rec-live");
    let o = env.run(&["recommend", "--cross-host", "--msg-size", "64"], b"");
    assert!(!o.stderr.contains("panicked"), "{o:?}");
    // A quick run on a loaded machine may miss a figure; the verdicts are what is checked.
    assert!(matches!(o.code(), Some(0 | 2)), "{o:?}");
    assert!(
        o.stdout
            .starts_with("figures from a quick bench run made just now"),
        "{o:?}"
    );
    let (fit, ex) = verdicts(&o.stdout);
    assert_eq!(fit.len() + ex.len(), ALL, "{}", o.stdout);
    assert!(fit.iter().all(|m| m == "tcp" || m == "udp"), "{}", o.stdout);
    env.assert_clean();
}
