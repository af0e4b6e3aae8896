//! `ipckit recommend`: requirements in, every candidate mechanism out, fitting ones ranked with
//! their measured figures, the others excluded with a one-line reason.
//!
//! The rules, in the order they are checked (all are checked, so an excluded mechanism lists
//! every reason; the README's "Choosing a mechanism" section is this table):
//!
//! | requirement | kept | why |
//! |---|---|---|
//! | `--cross-host` | tcp, udp | every other mechanism works inside one kernel only |
//! | `--fd-passing` | uds, uds-dgram, uds-seqpacket | `SCM_RIGHTS` exists on Unix sockets only |
//! | `--priorities` | mq-posix (priorities), mq-sysv (message types) | the only ones that order by a field of the message |
//! | `--producers N>1` | shm-mpsc, mq-posix, mq-sysv, uds-dgram, udp, eventfd; pipe and fifo when the message ≤ `PIPE_BUF` | one endpoint that many writers share without interleaving: a queue, a datagram, or a pipe write ≤ `PIPE_BUF` (atomic). A stream (uds, tcp, uds-seqpacket) needs one connection per producer, and shm/shm-zerocopy rings are single-producer |
//! | `--msg-size B` | mechanisms whose largest message ≥ B | eventfd carries no payload (8-byte counter); udp 65,507 B; mq-posix `/proc/sys/fs/mqueue/msgsize_max`; mq-sysv `/proc/sys/kernel/msgmax`, read at run time |
//! | `--no-busy-poll` | rows with wait `block` | `spin` and `adaptive` burn a core while waiting |
//! | `--placement P` | rows measured with that placement | |
//! | `--latency-p99 D` | RTT p99 ≤ D in the matching row | RTT is a round trip, a conservative bound on one-way latency |
//! | `--throughput M` | MB/s ≥ M in the matching row | |
//!
//! The matching row of a mechanism: its `ipckit` rows without errors, of the placement, of an
//! allowed wait, at the measured size nearest to `--msg-size` (by ratio; `shm-mpsc`: the
//! producer count nearest to `--producers`); of those the best wait (lowest p99 if a latency
//! is asked or no throughput is, else highest MB/s). Fitting mechanisms are ranked the same way.
//! When nothing fits, the closest candidates are those with the fewest capability exclusions,
//! then the fewest missed figures, then the smallest miss (by ratio).

use crate::results::SavedRow;

/// Every candidate, in the README's order.
pub const CANDIDATES: [&str; 13] = [
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
    "shm",
    "shm-zerocopy",
    "shm-mpsc",
];

/// What the user needs.
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    /// Largest acceptable RTT p99, ns.
    pub latency_p99_ns: Option<f64>,
    /// Smallest acceptable MB/s.
    pub throughput_mbps: Option<f64>,
    /// Message size, bytes.
    pub msg_size: Option<usize>,
    /// `cross` or `same` (`None`: either).
    pub placement: Option<String>,
    /// Writers into one reader (0 or 1: one).
    pub producers: u32,
    /// Processes on different hosts.
    pub cross_host: bool,
    /// File descriptors travel with messages.
    pub fd_passing: bool,
    /// Messages are read by priority.
    pub priorities: bool,
    /// No spinning.
    pub no_busy_poll: bool,
}

/// This system's limits, read at run time.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `/proc/sys/fs/mqueue/msgsize_max`.
    pub mq_posix_msgsize_max: Option<usize>,
    /// `/proc/sys/kernel/msgmax`.
    pub mq_sysv_msgmax: Option<usize>,
    /// `PIPE_BUF`.
    pub pipe_buf: usize,
}

impl Limits {
    /// Reads the limits from `/proc`.
    pub fn read() -> Limits {
        let rd = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        Limits {
            mq_posix_msgsize_max: rd("/proc/sys/fs/mqueue/msgsize_max"),
            mq_sysv_msgmax: rd("/proc/sys/kernel/msgmax"),
            pipe_buf: 4096,
        }
    }
}

/// One reason a mechanism does not fit.
#[derive(Debug, Clone)]
pub struct Miss {
    /// One line, e.g. `--cross-host`.
    pub reason: String,
    /// A capability (no figure would change it) rather than a measured figure.
    pub hard: bool,
    /// Measured misses: how far, as a ratio ≥ 1.
    pub ratio: f64,
}

/// The verdict on one candidate.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Mechanism.
    pub mechanism: &'static str,
    /// The matching row, if any.
    pub row: Option<SavedRow>,
    /// Why it fits (empty if it does not).
    pub fits_because: Vec<String>,
    /// Why it does not fit (empty if it fits).
    pub misses: Vec<Miss>,
}

impl Verdict {
    /// True if nothing excludes it.
    pub fn fits(&self) -> bool {
        self.misses.is_empty()
    }
}

/// The answer: fitting candidates best first, then the excluded ones in candidate order.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Fitting, best first.
    pub fitting: Vec<Verdict>,
    /// Excluded.
    pub excluded: Vec<Verdict>,
}

impl Answer {
    /// Up to `n` excluded candidates closest to fitting.
    pub fn closest(&self, n: usize) -> Vec<&Verdict> {
        let mut v: Vec<&Verdict> = self.excluded.iter().collect();
        v.sort_by(|a, b| closeness(a).partial_cmp(&closeness(b)).unwrap());
        v.truncate(n);
        v
    }
}

fn closeness(v: &Verdict) -> (usize, usize, f64) {
    let hard = v.misses.iter().filter(|m| m.hard).count();
    let soft = v.misses.len() - hard;
    let ratio: f64 = v
        .misses
        .iter()
        .filter(|m| !m.hard)
        .map(|m| m.ratio.ln())
        .sum();
    (hard, soft, ratio)
}

/// The largest message a mechanism carries here, if limited.
pub fn max_message(mech: &str, lim: &Limits) -> Option<(usize, &'static str)> {
    match mech {
        "eventfd" => Some((8, "eventfd carries no payload, only an 8-byte counter")),
        "udp" => Some((65_507, "UDP's largest datagram")),
        "mq-posix" => lim
            .mq_posix_msgsize_max
            .map(|m| (m, "this system's msgsize_max")),
        "mq-sysv" => lim.mq_sysv_msgmax.map(|m| (m, "this system's msgmax")),
        _ => None,
    }
}

fn many_writers(mech: &str, size: usize, lim: &Limits) -> Result<(), String> {
    match mech {
        "shm-mpsc" | "mq-posix" | "mq-sysv" | "uds-dgram" | "udp" | "eventfd" => Ok(()),
        "pipe" | "fifo" if size <= lim.pipe_buf => Ok(()),
        "pipe" | "fifo" => Err(format!(
            "writes over PIPE_BUF ({} B) from several producers can interleave",
            lim.pipe_buf
        )),
        "shm" | "shm-zerocopy" => Err("a single-producer ring (shm-mpsc takes many)".into()),
        _ => Err("a stream needs one connection per producer, not one shared endpoint".into()),
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn by_latency(req: &Requirements) -> bool {
    req.latency_p99_ns.is_some() || req.throughput_mbps.is_none()
}

/// Sort key: lower is better.
fn rank_key(r: &SavedRow, latency: bool) -> f64 {
    if latency {
        r.rtt_ns.map_or(f64::INFINITY, |p| p.p99)
    } else {
        -r.throughput_mbps.unwrap_or(f64::NEG_INFINITY)
    }
}

/// The row a mechanism is judged by (see the module docs).
fn matching_row<'a>(mech: &str, rows: &'a [SavedRow], req: &Requirements) -> Option<&'a SavedRow> {
    let ok: Vec<&SavedRow> = rows
        .iter()
        .filter(|r| r.mechanism == mech && r.imp == "ipckit" && r.errors == 0)
        .filter(|r| req.placement.as_ref().is_none_or(|p| &r.placement == p))
        .filter(|r| !req.no_busy_poll || r.wait == "block")
        .collect();
    let want = req.msg_size.unwrap_or(64).max(1) as f64;
    let dist = |r: &SavedRow| (r.size.max(1) as f64 / want).ln().abs();
    let best_d = ok.iter().map(|r| dist(r)).fold(f64::INFINITY, f64::min);
    let mut at: Vec<&SavedRow> = ok.into_iter().filter(|r| dist(r) <= best_d).collect();
    if mech == "shm-mpsc" {
        let n = req.producers.max(1);
        let pd = |r: &SavedRow| r.producers.unwrap_or(1).abs_diff(n);
        let best = at.iter().map(|r| pd(r)).min()?;
        at.retain(|r| pd(r) == best);
    }
    let latency = by_latency(req);
    at.into_iter()
        .min_by(|a, b| rank_key(a, latency).total_cmp(&rank_key(b, latency)))
}

/// Judges every candidate against the requirements, with these rows and limits.
pub fn recommend(rows: &[SavedRow], req: &Requirements, lim: &Limits) -> Answer {
    let mut all = Vec::new();
    for mech in CANDIDATES {
        let mut misses = Vec::new();
        let mut fits = Vec::new();
        let hard = |s: String| Miss {
            reason: s,
            hard: true,
            ratio: f64::INFINITY,
        };
        if req.cross_host {
            if matches!(mech, "tcp" | "udp") {
                fits.push("crosses hosts".to_string());
            } else {
                misses.push(hard("--cross-host (works inside one kernel only)".into()));
            }
        }
        if req.fd_passing {
            if matches!(mech, "uds" | "uds-dgram" | "uds-seqpacket") {
                fits.push("passes fds (SCM_RIGHTS)".to_string());
            } else {
                misses.push(hard("--fd-passing (SCM_RIGHTS needs a Unix socket)".into()));
            }
        }
        if req.priorities {
            match mech {
                "mq-posix" => fits.push("message priorities".into()),
                "mq-sysv" => fits.push("message types (read by type)".into()),
                _ => misses.push(hard(
                    "--priorities (only message queues order by priority)".into(),
                )),
            }
        }
        let size = req.msg_size.unwrap_or(0);
        if req.producers > 1 {
            match many_writers(mech, size, lim) {
                Ok(()) => fits.push(format!("{} producers into one endpoint", req.producers)),
                Err(e) => misses.push(hard(format!("--producers {}: {e}", req.producers))),
            }
        }
        if let (Some(s), Some((max, what))) = (req.msg_size, max_message(mech, lim)) {
            if s > max {
                misses.push(hard(if mech == "eventfd" {
                    format!("messages of {s} B: {what}")
                } else {
                    format!("messages over {max} B exceed {what}")
                }));
            }
        }
        let row = matching_row(mech, rows, req).cloned();
        match &row {
            // A capability already excludes it: a missing row adds nothing.
            None if misses.iter().any(|m| m.hard) => {}
            None => {
                let mut what = vec!["ipckit".to_string()];
                if let Some(p) = &req.placement {
                    what.push(format!("placement {p}"));
                }
                if req.no_busy_poll {
                    what.push("wait block (--no-busy-poll)".into());
                }
                misses.push(Miss {
                    reason: format!("no measured row ({}) in these figures", what.join(", ")),
                    hard: false,
                    ratio: f64::INFINITY,
                });
            }
            Some(r) => {
                if let Some(lim_ns) = req.latency_p99_ns {
                    match r.rtt_ns {
                        Some(p) if p.p99 <= lim_ns => {
                            fits.push(format!("RTT p99 {} ≤ {}", fmt_ns(p.p99), fmt_ns(lim_ns)))
                        }
                        Some(p) => misses.push(Miss {
                            reason: format!(
                                "RTT p99 {} > {} ({} {} B)",
                                fmt_ns(p.p99),
                                fmt_ns(lim_ns),
                                r.wait,
                                r.size
                            ),
                            hard: false,
                            ratio: p.p99 / lim_ns,
                        }),
                        None => misses.push(Miss {
                            reason: if mech == "shm-mpsc" {
                                "no RTT: shm-mpsc rows measure throughput only".into()
                            } else {
                                format!("no RTT measured at {} B", r.size)
                            },
                            hard: false,
                            ratio: f64::INFINITY,
                        }),
                    }
                }
                if let Some(want) = req.throughput_mbps {
                    match r.throughput_mbps {
                        Some(t) if t >= want => {
                            fits.push(format!("{t:.0} MB/s ≥ {want:.0} MB/s"));
                        }
                        Some(t) => misses.push(Miss {
                            reason: format!(
                                "{t:.0} MB/s < {want:.0} MB/s ({} {} B)",
                                r.wait, r.size
                            ),
                            hard: false,
                            ratio: want / t.max(1e-9),
                        }),
                        None => misses.push(Miss {
                            reason: "no throughput (carries no payload)".into(),
                            hard: false,
                            ratio: f64::INFINITY,
                        }),
                    }
                }
            }
        }
        if misses.is_empty() && fits.is_empty() {
            fits.push("meets every requirement given".into());
        }
        all.push(Verdict {
            mechanism: mech,
            row,
            fits_because: if misses.is_empty() { fits } else { Vec::new() },
            misses,
        });
    }
    let (mut fitting, excluded): (Vec<Verdict>, Vec<Verdict>) =
        all.into_iter().partition(Verdict::fits);
    let latency = by_latency(req);
    fitting.sort_by(|a, b| {
        let k = |v: &Verdict| {
            v.row
                .as_ref()
                .map_or(f64::INFINITY, |r| rank_key(r, latency))
        };
        k(a).total_cmp(&k(b))
    });
    Answer { fitting, excluded }
}

/// One line of figures for a row: `spin cross 64 B: RTT p50 1.0 µs p99 1.1 µs, 406 MB/s`.
pub fn describe_row(r: &SavedRow) -> String {
    let mut s = format!("{} {} {} B", r.wait, r.placement, r.size);
    if let Some(n) = r.producers {
        s.push_str(&format!(" ({n} producer{})", if n == 1 { "" } else { "s" }));
    }
    s.push(':');
    if let Some(p) = r.rtt_ns {
        s.push_str(&format!(" RTT p50 {} p99 {}", fmt_ns(p.p50), fmt_ns(p.p99)));
    }
    if let Some(t) = r.throughput_mbps {
        s.push_str(&format!(
            "{} {t:.0} MB/s",
            if r.rtt_ns.is_some() { "," } else { "" }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::SavedPercentiles;

    fn row(m: &str, wait: &str, size: usize, p99: f64, mbps: f64) -> SavedRow {
        SavedRow {
            mechanism: m.into(),
            wait: wait.into(),
            placement: "cross".into(),
            size,
            imp: "ipckit".into(),
            producers: None,
            max_msg_size: None,
            rtt_ns: Some(SavedPercentiles {
                p50: p99 / 2.0,
                p99,
                p999: None,
            }),
            throughput_mbps: Some(mbps),
            spread_pct: Some(1.0),
            errors: 0,
        }
    }

    fn rows() -> Vec<SavedRow> {
        CANDIDATES
            .iter()
            .flat_map(|m| {
                [
                    row(m, "block", 64, 60_000.0, 100.0),
                    row(
                        m,
                        "spin",
                        64,
                        if *m == "shm" { 1000.0 } else { 5000.0 },
                        100.0,
                    ),
                ]
            })
            .collect()
    }

    const LIM: Limits = Limits {
        mq_posix_msgsize_max: Some(8192),
        mq_sysv_msgmax: Some(8192),
        pipe_buf: 4096,
    };

    fn names(v: &[Verdict]) -> Vec<&str> {
        v.iter().map(|v| v.mechanism).collect()
    }

    #[test]
    fn every_candidate_is_listed() {
        let a = recommend(&rows(), &Requirements::default(), &LIM);
        assert_eq!(a.fitting.len() + a.excluded.len(), CANDIDATES.len());
        assert_eq!(a.fitting[0].mechanism, "shm", "lowest p99 first");
    }

    #[test]
    fn capabilities() {
        let req = |f: fn(&mut Requirements)| {
            let mut r = Requirements::default();
            f(&mut r);
            let a = recommend(&rows(), &r, &LIM);
            let mut n: Vec<String> = names(&a.fitting).into_iter().map(String::from).collect();
            n.sort();
            n
        };
        assert_eq!(req(|r| r.cross_host = true), ["tcp", "udp"]);
        assert_eq!(
            req(|r| r.fd_passing = true),
            ["uds", "uds-dgram", "uds-seqpacket"]
        );
        assert_eq!(req(|r| r.priorities = true), ["mq-posix", "mq-sysv"]);
        let many = req(|r| r.producers = 4);
        assert!(many.contains(&"shm-mpsc".into()) && many.contains(&"fifo".into()));
        assert!(!many.contains(&"tcp".into()) && !many.contains(&"shm".into()));
        let big = req(|r| {
            r.producers = 4;
            r.msg_size = Some(10_000);
        });
        assert!(!big.contains(&"fifo".into()) && !big.contains(&"mq-posix".into()));
    }

    #[test]
    fn size_limits_give_one_line_reasons() {
        let r = Requirements {
            msg_size: Some(65_536),
            ..Default::default()
        };
        let a = recommend(&rows(), &r, &LIM);
        let mq = a
            .excluded
            .iter()
            .find(|v| v.mechanism == "mq-posix")
            .unwrap();
        assert_eq!(
            mq.misses[0].reason,
            "messages over 8192 B exceed this system's msgsize_max"
        );
        assert!(a.excluded.iter().any(|v| v.mechanism == "eventfd"));
        assert!(a.excluded.iter().any(|v| v.mechanism == "udp"));
    }

    #[test]
    fn latency_and_busy_poll() {
        let mut r = Requirements {
            latency_p99_ns: Some(2000.0),
            ..Default::default()
        };
        assert_eq!(names(&recommend(&rows(), &r, &LIM).fitting), ["shm"]);
        r.no_busy_poll = true;
        let a = recommend(&rows(), &r, &LIM);
        assert!(a.fitting.is_empty());
        // All miss by the same ratio: shm's block row (60 µs) is no closer than the others.
        assert_eq!(a.closest(3).len(), 3);
    }
}
