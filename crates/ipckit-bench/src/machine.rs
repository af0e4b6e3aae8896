//! What the report says about the machine: CPU model, kernel, clock, CPUs and topology.

use serde::Serialize;
use std::fs;
use std::time::Instant;

/// The machine a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// CPUs online.
    pub cpu_count: usize,
    /// The online CPU list as the kernel prints it (e.g. `0-3`).
    pub cpus_online: String,
    /// CPUs this process may use (`sched_getaffinity`).
    pub cpus_allowed: Vec<usize>,
    /// `uname -r`.
    pub kernel: String,
    /// The current clocksource (tsc, hpet, ...).
    pub clock_source: String,
    /// Cost of one `Instant::now()`, ns.
    pub clock_read_ns: f64,
    /// `release` or `debug`.
    pub profile: &'static str,
    /// The two CPUs of the cross placement.
    pub cpus_used: [usize; 2],
    /// Whether those two are hyperthread siblings (`None`: topology unreadable).
    pub siblings: Option<bool>,
    /// ipckit's version.
    pub version: &'static str,
}

/// `release` or `debug`, from `cfg!(debug_assertions)`.
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

fn read_trim(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// `model name` of the first CPU.
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = part.trim().parse() {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// True if `a` and `b` share a core (`thread_siblings_list`); `None` if unreadable.
pub fn are_siblings(a: usize, b: usize) -> Option<bool> {
    if a == b {
        return Some(false);
    }
    let list = read_trim(&format!(
        "/sys/devices/system/cpu/cpu{a}/topology/thread_siblings_list"
    ))?;
    Some(parse_cpu_list(&list).contains(&b))
}

/// The current clocksource.
pub fn clock_source() -> String {
    read_trim("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .unwrap_or_else(|| "unknown".into())
}

/// Mean cost of one `Instant::now()`, ns.
pub fn clock_read_ns() -> f64 {
    const N: u32 = 200_000;
    let t0 = Instant::now();
    let mut last = t0;
    for _ in 0..N {
        last = std::hint::black_box(Instant::now());
    }
    last.duration_since(t0).as_nanos() as f64 / f64::from(N)
}

/// Gathers everything but the CPUs used.
pub fn probe(cpus_used: [usize; 2], cpus_allowed: Vec<usize>) -> Machine {
    let online = read_trim("/sys/devices/system/cpu/online").unwrap_or_default();
    let cpu_count = parse_cpu_list(&online).len().max(1);
    Machine {
        cpu_model: cpu_model(),
        cpu_count,
        cpus_online: online,
        cpus_allowed,
        kernel: read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
        clock_source: clock_source(),
        clock_read_ns: clock_read_ns(),
        profile: profile(),
        cpus_used,
        siblings: are_siblings(cpus_used[0], cpus_used[1]),
        version: env!("CARGO_PKG_VERSION"),
    }
}

/// Chooses the two CPUs: `--pin A,B` if given (each must be allowed), else the first two
/// allowed; with a single allowed CPU, both are that one.
pub fn choose_cpus(allowed: &[usize], pin: Option<(usize, usize)>) -> Result<[usize; 2], String> {
    if let Some((a, b)) = pin {
        for c in [a, b] {
            if !allowed.contains(&c) {
                return Err(format!(
                    "--pin: CPU {c} is not available to this process (allowed: {allowed:?})"
                ));
            }
        }
        return Ok([a, b]);
    }
    match allowed {
        [] => Err("no CPU available (sched_getaffinity returned an empty set)".into()),
        [a] => Ok([*a, *a]),
        [a, b, ..] => Ok([*a, *b]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("0"), vec![0]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
    }

    #[test]
    fn cpu_choice() {
        assert_eq!(choose_cpus(&[2, 5, 7], None), Ok([2, 5]));
        assert_eq!(choose_cpus(&[3], None), Ok([3, 3]));
        assert_eq!(choose_cpus(&[0, 1], Some((1, 0))), Ok([1, 0]));
        assert!(choose_cpus(&[0, 1], Some((0, 9))).is_err());
    }
}
