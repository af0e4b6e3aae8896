//! What a bench run measures, independent of the command line that asked for it.

pub use crate::rows::{Impl, Placement};
use ipckit::{Mechanism, Wait};
use serde::Serialize;
use std::time::Duration;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A human-readable table.
    Table,
    /// One JSON document (`"schema": 1`).
    Json,
    /// One CSV line per row.
    Csv,
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Mechanisms, in report order.
    pub mechs: Vec<Mechanism>,
    /// Message sizes in bytes (eventfd ignores them).
    pub sizes: Vec<usize>,
    /// Wait strategies.
    pub waits: Vec<Wait>,
    /// Placements.
    pub placements: Vec<Placement>,
    /// Explicit CPUs (A, B) instead of the first two allowed ones.
    pub pin: Option<(usize, usize)>,
    /// Open-loop latency: messages per second on a fixed schedule.
    pub rate: Option<f64>,
    /// Write and verify every payload word (off with `--no-touch`).
    pub touch: bool,
    /// Length of each measured phase (latency, then throughput).
    pub duration: Duration,
    /// Unrecorded warm-up round trips before each latency phase.
    pub warmup: u64,
    /// Round trips timed together for the batched mean.
    pub batch: u64,
    /// Runs per configuration.
    pub repeat: u32,
    /// Short phases, one repeat.
    pub quick: bool,
    /// Also run the raw-syscall reference loops.
    pub reference: bool,
    /// Output format.
    pub format: Format,
    /// Shared memory: each ring's data area (`None`: ipckit's default).
    pub shm_capacity: Option<usize>,
    /// Shared memory: producer counts of the MPSC rows (empty: no MPSC rows).
    pub mpsc_producers: Vec<u32>,
    /// TCP/UDP rows with one socket option changed (`tcp-nagle`, ...; empty by default).
    pub net_variants: Vec<crate::rows::NetVariant>,
    /// Zero-copy rows to run, each with its copying baseline (empty: none; see
    /// [`crate::zerocopy`]).
    pub zero_copy: Vec<crate::zerocopy::Path>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            mechs: Mechanism::ALL.to_vec(),
            sizes: vec![64, 64 * 1024],
            waits: vec![Wait::Block, Wait::ADAPTIVE, Wait::Spin],
            placements: vec![Placement::Cross],
            pin: None,
            rate: None,
            touch: true,
            duration: Duration::from_millis(200),
            warmup: 2000,
            batch: 2000,
            repeat: 3,
            quick: false,
            reference: false,
            format: Format::Table,
            shm_capacity: None,
            mpsc_producers: vec![1, 2, 4],
            net_variants: Vec::new(),
            zero_copy: Vec::new(),
        }
    }
}

impl BenchOptions {
    /// Applies `--quick`: one repeat, short phases (unless given explicitly).
    pub fn quick(mut self, explicit_duration: bool, explicit_repeat: bool) -> Self {
        self.quick = true;
        if !explicit_repeat {
            self.repeat = 1;
        }
        if !explicit_duration {
            self.duration = Duration::from_millis(40);
        }
        self.warmup = 300;
        self.batch = 300;
        self
    }
}

/// Parses a size: `64`, `64K`, `64KiB`, `1M`, `1MiB` (K and M are binary: 1024, 1024²), also
/// `64B`, `64k`. Zero is refused (a message needs at least one byte).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!(
            "invalid size '{s}': expected a number like 64, 64K, 64KiB or 1M"
        ));
    }
    let n: usize = num
        .parse()
        .map_err(|_| format!("invalid size '{s}': number too large"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("invalid size '{s}': unit must be K, KiB, M or MiB")),
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("invalid size '{s}': too large"))?;
    if v == 0 {
        return Err(format!("invalid size '{s}': must be at least 1 byte"));
    }
    if v > 64 * 1024 * 1024 {
        return Err(format!("invalid size '{s}': at most 64MiB"));
    }
    Ok(v)
}

/// Formats a size the way the report shows it: `64B`, `64KiB`, `1MiB`, `1500B`.
pub fn format_size(n: usize) -> String {
    if n >= 1024 * 1024 && n.is_multiple_of(1024 * 1024) {
        format!("{}MiB", n / (1024 * 1024))
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}KiB", n / 1024)
    } else {
        format!("{n}B")
    }
}

/// Parses `A,B` for `--pin`.
pub fn parse_pin(s: &str) -> Result<(usize, usize), String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let bad = || format!("invalid --pin '{s}': expected two CPU numbers, e.g. 0,1");
    if parts.len() != 2 {
        return Err(bad());
    }
    let a = parts[0].parse().map_err(|_| bad())?;
    let b = parts[1].parse().map_err(|_| bad())?;
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("8B"), Ok(8));
        assert!(parse_size("0").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999").is_err());
    }

    #[test]
    fn sizes_format() {
        assert_eq!(format_size(64), "64B");
        assert_eq!(format_size(65536), "64KiB");
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(65507), "65507B");
    }

    #[test]
    fn pin_parse() {
        assert_eq!(parse_pin("0,1"), Ok((0, 1)));
        assert_eq!(parse_pin(" 2 , 3 "), Ok((2, 3)));
        assert!(parse_pin("1").is_err());
        assert!(parse_pin("a,b").is_err());
    }
}
