//! `ipckit bench` end to end: `--quick --format json`, the TCP/UDP variant rows and the
//! zero-copy rows, each measured without errors and leaving nothing behind.

#[path = "../util/mod.rs"]
mod util;

use util::{mq_lock, TestEnv};

/// `bench --quick --format json` parses, names every mechanism, reports no errors, and
/// leaves nothing behind. Holds the POSIX queue lock (`util::mq_lock`): the bench makes queues.
#[test]
fn bench_quick_json_has_every_mechanism() {
    let _q = mq_lock();
    let env = TestEnv::new("bench-json");
    let mut cmd = env.cmd(&["bench", "--quick", "--format", "json"]);
    // The bench's own limit is 30 s on an idle machine; other tests run beside it here.
    let out = util::output_within(
        &mut cmd,
        std::time::Duration::from_secs(120),
        "bench --quick",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(v["schema"], 1);
    for key in [
        "cpu_model",
        "cpu_count",
        "kernel",
        "clock_source",
        "profile",
    ] {
        assert!(!v["machine"][key].is_null(), "machine.{key} missing");
    }
    assert!(v["floor"]["cacheline_rtt_ns"]["p50"].as_f64().unwrap() > 0.0);
    let rows = v["rows"].as_array().unwrap();
    let mechs: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["mechanism"].as_str().unwrap())
        .collect();
    for m in [
        "pipe",
        "fifo",
        "uds",
        "uds-dgram",
        "uds-seqpacket",
        "tcp",
        "udp",
        "mq-posix",
        "mq-sysv",
        "eventfd",
        // Shared memory: the copy API, the zero-copy API and the MPSC queue, each its own row.
        "shm",
        "shm-zerocopy",
        "shm-mpsc",
    ] {
        assert!(mechs.contains(m), "{m} missing from {mechs:?}");
    }
    for r in rows {
        for key in [
            "wait",
            "placement",
            "size",
            "rtt_ns",
            "rtt_batched_ns",
            "throughput_mbps",
            "msgs_per_s",
            "cpu_ns_per_msg",
            "spread_pct",
            "lost",
            "reordered",
            "errors",
        ] {
            assert!(r.get(key).is_some(), "row lacks {key}: {r}");
        }
        assert_eq!(r["errors"], 0, "row with errors: {r}");
        assert!(r["msgs_per_s"].as_f64().unwrap() > 0.0, "{r}");
    }
    // Every shared-memory row is probed beside its sessions, whatever its wait, and says
    // whether the machine was in the floor's mode then (issue 18, item 6).
    for r in rows {
        let m = r["mechanism"].as_str().unwrap();
        if m.starts_with("shm") && r["placement"] == "cross" {
            assert!(
                r["cacheline_p50_ns"].as_f64().unwrap() > 0.0,
                "unprobed: {r}"
            );
            assert!(r["probe_vs_floor"].as_f64().unwrap() > 0.0, "{r}");
            let changed = r["mode_changed"].as_bool().unwrap();
            let ratio = r["probe_vs_floor"].as_f64().unwrap();
            assert_eq!(changed, !(1.0 / 1.5..=1.5).contains(&ratio), "{r}");
            if changed {
                assert!(r["note"].as_str().unwrap().contains("changed mode"), "{r}");
            }
        } else {
            assert_eq!(r["mode_changed"], false, "{r}");
        }
    }
    seed_table_is_the_rows(&v);
    env.assert_clean();
}

/// The seed's table (issue 18): five families, each figure equal to the row it names, the
/// seed's figures beside them.
fn seed_table_is_the_rows(v: &serde_json::Value) {
    let table = v["seed_table"].as_array().expect("seed_table");
    let fams: Vec<&str> = table
        .iter()
        .map(|f| f["family"].as_str().unwrap())
        .collect();
    assert_eq!(
        fams,
        [
            "shared memory",
            "pipe",
            "Unix socket",
            "message queue",
            "TCP"
        ]
    );
    let rows: Vec<&serde_json::Value> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["impl"] == "ipckit" && r["placement"] == "cross")
        .collect();
    for f in table {
        let mechs: Vec<&str> = f["mechanisms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        assert!(!mechs.is_empty(), "{f}");
        let fam: Vec<&&serde_json::Value> = rows
            .iter()
            .filter(|r| mechs.contains(&r["mechanism"].as_str().unwrap()))
            .collect();
        let best = fam
            .iter()
            .filter_map(|r| r["throughput_mbps"].as_f64())
            .fold(f64::MIN, f64::max);
        assert_eq!(f["best_mbps"].as_f64(), Some(best), "{f}");
        for (wait, key) in [("block", "rtt_64_block_us"), ("spin", "rtt_64_spin_us")] {
            let low = fam
                .iter()
                .filter(|r| r["wait"] == wait && r["size"] == 64 && r["latency_size"] == 64)
                .filter_map(|r| r["rtt_ns"]["p50"].as_f64())
                .fold(f64::MAX, f64::min);
            assert_eq!(f[key].as_f64(), Some(low / 1e3), "{key}: {f}");
        }
        assert!(f["seed_mbps"].as_f64().unwrap() > 0.0, "{f}");
        assert!(f["seed_latency_us"].as_f64().unwrap() > 0.0, "{f}");
    }
}

/// `bench --mech` takes the TCP/UDP variant rows: each is measured without errors, under its
/// own name (the split-write row through the raw loop), with the socket buffers the kernel
/// granted and, for UDP, the share of the flood lost; an unknown name is a user error.
#[test]
fn bench_tcp_udp_variant_rows() {
    let env = TestEnv::new("bench-net");
    let out = env.run(
        &[
            "bench",
            "--quick",
            "--format",
            "json",
            "--mech",
            "tcp,tcp-nagle,tcp-nagle-split,tcp-bigbuf,udp-defbuf",
            "--size",
            "64",
            "--wait",
            "block",
            "--mpsc-producers",
            "0",
        ],
        b"",
    );
    let v: serde_json::Value = serde_json::from_str(out.ok()).expect("one JSON document");
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["mechanism"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "tcp",
            "tcp-nagle",
            "tcp-nagle-split",
            "tcp-bigbuf",
            "udp-defbuf"
        ]
    );
    for r in rows {
        assert_eq!(r["errors"], 0, "{r}");
        assert!(r["socket_buffers"]["rcvbuf"].as_u64().unwrap() > 0, "{r}");
        assert!(r["rtt_ns"]["p50"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert_eq!(rows[2]["impl"], "raw");
    assert!(rows[2]["note"].as_str().unwrap().contains("two write(2)s"));
    // 4 MiB asked: the kernel grants twice what it is given, within net.core.wmem_max.
    let wmem_max: u64 = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        rows[3]["socket_buffers"]["sndbuf"].as_u64().unwrap(),
        2 * wmem_max.min(4 << 20),
        "{}",
        rows[3]
    );
    assert!(rows[4]["loss_pct"].as_f64().is_some(), "{}", rows[4]);
    assert!(rows[0]["loss_pct"].is_null());
    env.run(&["bench", "--mech", "tcp-turbo"], b"")
        .user_error("tcp-nagle");
}

/// `bench --mech zero-copy`: every zero-copy row runs beside its copying baseline with no
/// verification error, the MSG_ZEROCOPY row carries its completion counts (copied never more
/// than completed), and nothing is left behind.
#[test]
fn bench_zero_copy_rows() {
    let env = TestEnv::new("bench-zero-copy");
    let mut cmd = env.cmd(&[
        "bench",
        "--mech",
        "zero-copy",
        "--quick",
        "--size",
        "4K",
        "--wait",
        "block",
        "--format",
        "json",
    ]);
    cmd.env("TMPDIR", &env.dir);
    let out = util::output_within(
        &mut cmd,
        std::time::Duration::from_secs(120),
        "bench --mech zero-copy",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["mechanism"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "pipe-write",
            "pipe-vmsplice",
            "uds-read-write",
            "uds-splice",
            "uds-sendfile",
            "tcp-send",
            "tcp-zerocopy"
        ]
    );
    for r in rows {
        assert_eq!(r["errors"], 0, "{r}");
        assert!(r["throughput_mbps"].as_f64().unwrap() > 0.0, "{r}");
    }
    let zc = &rows[6];
    let completions = zc["zc_completions"].as_u64().unwrap();
    let copied = zc["zc_copied"].as_u64().unwrap();
    assert!(completions > 0 && copied <= completions, "{zc}");
    assert!(zc["ratio_to_raw_msgs"].as_f64().unwrap() > 0.0);
    assert!(zc["note"].as_str().unwrap().contains("completions"), "{zc}");
    assert!(rows[0]["zc_completions"].is_null());
    assert_eq!(v["options"]["zero_copy"][0], "pipe-vmsplice");
    env.assert_clean();
}
