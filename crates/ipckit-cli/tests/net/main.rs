//! `ipckit send` and `ipckit recv` across hosts, for TCP and UDP: two network namespaces
//! joined by a veth pair stand for two machines (10.77.0.1 and 10.77.0.2, and fd77::1 and
//! fd77::2), `recv` binds the any-address in one and `send` connects to the other's address
//! from the second. Needs root and `ip` (iproute2); skips loudly otherwise. The namespaces
//! (and with them the veth pair) are deleted by a guard, whatever happens.

#[path = "../util/mod.rs"]
mod util;

use std::process::{Command, Stdio};
use util::{bin, run_tool, Bg, TestEnv};

/// Two namespaces and the veth pair between them; deleted on drop.
struct Hosts {
    a: String,
    b: String,
}

impl Hosts {
    /// Builds the two "hosts", or says why it cannot (the test is then skipped).
    fn new(tag: &str) -> Result<Hosts, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        if Command::new("ip")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Err("no `ip` command (iproute2)".into());
        }
        let id = std::process::id();
        let h = Hosts {
            a: format!("ipckit-{id}-{tag}-a"),
            b: format!("ipckit-{id}-{tag}-b"),
        };
        // Interface names are at most 15 bytes.
        let (va, vb) = (format!("ik{:x}{tag}a", id), format!("ik{:x}{tag}b", id));
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &h.a],
            vec!["netns", "add", &h.b],
            vec!["link", "add", &va, "type", "veth", "peer", "name", &vb],
            vec!["link", "set", &va, "netns", &h.a],
            vec!["link", "set", &vb, "netns", &h.b],
            vec!["-n", &h.a, "addr", "add", "10.77.0.1/24", "dev", &va],
            vec!["-n", &h.b, "addr", "add", "10.77.0.2/24", "dev", &vb],
            vec!["-n", &h.a, "addr", "add", "fd77::1/64", "dev", &va, "nodad"],
            vec!["-n", &h.b, "addr", "add", "fd77::2/64", "dev", &vb, "nodad"],
            vec!["-n", &h.a, "link", "set", &va, "up"],
            vec!["-n", &h.b, "link", "set", &vb, "up"],
            vec!["-n", &h.a, "link", "set", "lo", "up"],
            vec!["-n", &h.b, "link", "set", "lo", "up"],
        ];
        for s in steps {
            let out = run_tool("ip", &s);
            if !out.status.success() {
                // `h` drops here and deletes whatever was made; a veth still in the root
                // namespace (the move failed) is deleted by name.
                let _ = run_tool("ip", &["link", "del", &va]);
                return Err(format!("ip {}: {}", s.join(" "), out.stderr.trim()));
            }
        }
        Ok(h)
    }

    /// `ipckit ARGS` inside namespace `ns`, with the test's registry.
    fn ipckit(&self, env: &TestEnv, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, bin()])
            .args(args)
            .env("IPCKIT_REGISTRY", &env.registry);
        c
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth end inside it, and with it the pair.
        for ns in [&self.a, &self.b] {
            let _ = run_tool("ip", &["netns", "del", ns]);
        }
    }
}

fn namespaces_left(prefix: &str) -> Vec<String> {
    let out = run_tool("ip", &["netns", "list"]);
    out.stdout
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// `recv --via MECH --at BIND --count 2` on host A, two `send --via MECH --to TO` from host
/// B; returns what recv printed.
fn across(h: &Hosts, env: &TestEnv, mech: &str, bind: &str, to: &str) -> String {
    let mut c = h.ipckit(
        env,
        &h.a,
        &[
            "recv",
            "--via",
            mech,
            "--at",
            bind,
            "--count",
            "2",
            "--timeout",
            "10",
        ],
    );
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut r = Bg::start(c.spawn().unwrap());
    r.wait_ready();
    for msg in ["hello from the other host", "second"] {
        let mut s = h.ipckit(env, &h.b, &["send", "--via", mech, "--to", to, msg]);
        s.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = Bg::start(s.spawn().unwrap()).finish();
        out.ok();
    }
    r.finish().ok().to_owned()
}

fn with_hosts(tag: &str, f: impl FnOnce(&Hosts, &TestEnv)) {
    let h = match Hosts::new(tag) {
        Ok(h) => h,
        Err(why) => {
            eprintln!("SKIPPED: send/recv across network namespaces needs root and ip: {why}");
            return;
        }
    };
    let prefix = format!("ipckit-{}-{tag}-", std::process::id());
    let env = TestEnv::new(&format!("net-{tag}"));
    f(&h, &env);
    env.assert_clean();
    drop(h);
    assert_eq!(namespaces_left(&prefix), Vec::<String>::new());
}

/// TCP: recv binds 0.0.0.0 in one namespace and accepts a peer from another (no uid check:
/// a TCP peer has no credentials); the same over IPv6 with `[::]`.
#[test]
fn tcp_send_recv_across_namespaces() {
    with_hosts("t", |h, env| {
        let out = across(h, env, "tcp", "0.0.0.0:7001", "10.77.0.1:7001");
        assert_eq!(out, "hello from the other host\nsecond\n");
        let out = across(h, env, "tcp", "[::]:7002", "[fd77::1]:7002");
        assert_eq!(out, "hello from the other host\nsecond\n");
    });
}

/// UDP: the same, datagrams from a socket bound to the any-address on the other host.
#[test]
fn udp_send_recv_across_namespaces() {
    with_hosts("u", |h, env| {
        let out = across(h, env, "udp", "0.0.0.0:7003", "10.77.0.1:7003");
        assert_eq!(out, "hello from the other host\nsecond\n");
        let out = across(h, env, "udp", "[::]:7004", "[fd77::1]:7004");
        assert_eq!(out, "hello from the other host\nsecond\n");
    });
}
