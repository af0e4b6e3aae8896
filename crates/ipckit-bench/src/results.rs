//! Reading a saved run back: `ipckit bench --format json` files (`"schema": 1`), for
//! `ipckit recommend --from`, `ipckit compare` and the report.
//!
//! [`load`] refuses, each with its own [`LoadError`], a file that is not JSON, JSON that is
//! not ipckit's (no `"schema"` number or no `"tool": "ipckit ..."`), and a schema newer than
//! [`SCHEMA`], the one this build writes and reads. Rows are read leniently: only the fields
//! the readers use are typed ([`SavedRow`]); the whole document stays in [`Saved::raw`].

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The schema version this build writes ([`crate::report::Report::schema`]) and reads.
pub const SCHEMA: u32 = 1;

/// RTT percentiles of a saved row, ns.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct SavedPercentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    #[serde(default)]
    pub p999: Option<f64>,
}

/// The fields of one saved row that recommend and compare use.
#[derive(Debug, Clone, Deserialize)]
pub struct SavedRow {
    /// Mechanism (row) name: `pipe`, `shm-mpsc`, `tcp-nagle`, ...
    pub mechanism: String,
    /// `block`, `spin` or `adaptive`.
    pub wait: String,
    /// `cross` or `same`.
    pub placement: String,
    /// Requested message size, bytes.
    pub size: usize,
    /// `ipckit` or `raw`.
    #[serde(rename = "impl")]
    pub imp: String,
    /// `shm-mpsc` rows: producer processes.
    #[serde(default)]
    pub producers: Option<u32>,
    /// The mechanism's largest message on the machine that ran the bench.
    #[serde(default)]
    pub max_msg_size: Option<usize>,
    /// Round trip, ns (`null`: not measured at this size).
    #[serde(default)]
    pub rtt_ns: Option<SavedPercentiles>,
    /// MB/s (`null` for eventfd).
    #[serde(default)]
    pub throughput_mbps: Option<f64>,
    /// (max-min)/median across repeats, percent.
    #[serde(default)]
    pub spread_pct: Option<f64>,
    /// Failed verifications and runs.
    #[serde(default)]
    pub errors: u64,
}

/// A saved run as read back.
#[derive(Debug, Clone)]
pub struct Saved {
    /// Its schema version (≤ [`SCHEMA`]).
    pub schema: u32,
    /// `ipckit <version>`.
    pub tool: String,
    /// The machine's CPU model, if recorded.
    pub cpu_model: Option<String>,
    /// The rows.
    pub rows: Vec<SavedRow>,
    /// The whole document.
    pub raw: serde_json::Value,
}

/// Why a results file cannot be read.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Io(PathBuf, std::io::Error),
    /// Not JSON at all.
    NotJson(PathBuf, String),
    /// JSON, but not an ipckit results file.
    NotIpckit(PathBuf, &'static str),
    /// Written by a newer ipckit.
    NewerSchema(PathBuf, u64),
    /// ipckit's schema, but a field has the wrong shape.
    Malformed(PathBuf, String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            LoadError::NotJson(p, e) => write!(
                f,
                "{} is not an ipckit results file: not JSON ({e}); write one with 'ipckit bench --format json'",
                p.display()
            ),
            LoadError::NotIpckit(p, why) => write!(
                f,
                "{} is not an ipckit results file: {why}; write one with 'ipckit bench --format json'",
                p.display()
            ),
            LoadError::NewerSchema(p, v) => write!(
                f,
                "{} has results schema {v}, newer than this ipckit reads ({SCHEMA}); use a newer ipckit",
                p.display()
            ),
            LoadError::Malformed(p, e) => {
                write!(f, "{} is a damaged ipckit results file: {e}", p.display())
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// The largest results file read (a full run's is under 100 KB).
pub const MAX_RESULTS_BYTES: u64 = 64 << 20;

/// Reads and checks a results file: a regular file of at most [`MAX_RESULTS_BYTES`].
///
/// # Errors
///
/// [`LoadError`]: unreadable (or not a regular file, or too big), not JSON, not ipckit's, newer schema, or malformed rows.
pub fn load(path: &Path) -> Result<Saved, LoadError> {
    // Bounded, and only a regular file (not `/dev/zero`, not a FIFO that never ends).
    let bytes = ipckit::fs::read_regular(path, MAX_RESULTS_BYTES)
        .map_err(|e| LoadError::Io(path.into(), e))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        LoadError::Io(
            path.into(),
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
        )
    })?;
    parse(path, &text)
}

/// Checks and reads the text of a results file; `path` only names it in errors.
///
/// # Errors
///
/// As [`load`], without the I/O.
pub fn parse(path: &Path, text: &str) -> Result<Saved, LoadError> {
    let raw: serde_json::Value =
        serde_json::from_str(text).map_err(|e| LoadError::NotJson(path.into(), e.to_string()))?;
    let obj = raw
        .as_object()
        .ok_or(LoadError::NotIpckit(path.into(), "not a JSON object"))?;
    let tool = obj
        .get("tool")
        .and_then(|t| t.as_str())
        .filter(|t| t.starts_with("ipckit"))
        .ok_or(LoadError::NotIpckit(
            path.into(),
            "no \"tool\": \"ipckit ...\" field",
        ))?
        .to_string();
    let schema = obj
        .get("schema")
        .and_then(serde_json::Value::as_u64)
        .ok_or(LoadError::NotIpckit(path.into(), "no \"schema\" number"))?;
    if schema > u64::from(SCHEMA) {
        return Err(LoadError::NewerSchema(path.into(), schema));
    }
    let rows_v = obj
        .get("rows")
        .cloned()
        .ok_or_else(|| LoadError::Malformed(path.into(), "no \"rows\"".into()))?;
    let rows: Vec<SavedRow> = serde_json::from_value(rows_v)
        .map_err(|e| LoadError::Malformed(path.into(), format!("rows: {e}")))?;
    let cpu_model = raw
        .pointer("/machine/cpu_model")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    Ok(Saved {
        schema: u32::try_from(schema).unwrap_or(SCHEMA),
        tool,
        cpu_model,
        rows,
        raw,
    })
}

/// Turns a fresh report into the same shape as a saved one (through its JSON).
///
/// # Errors
///
/// Only if the report's own JSON does not read back, which is a bug.
pub fn from_report(r: &crate::report::Report) -> Result<Saved, LoadError> {
    let text = serde_json::to_string(r)
        .map_err(|e| LoadError::Malformed(PathBuf::from("(this run)"), e.to_string()))?;
    parse(Path::new("(this run)"), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> Result<Saved, LoadError> {
        parse(Path::new("x.json"), t)
    }

    #[test]
    fn refuses_what_is_not_ipckit() {
        assert!(matches!(p("hello"), Err(LoadError::NotJson(..))));
        assert!(matches!(p("[1]"), Err(LoadError::NotIpckit(..))));
        assert!(matches!(
            p(r#"{"schema":1,"tool":"other"}"#),
            Err(LoadError::NotIpckit(..))
        ));
        assert!(matches!(
            p(r#"{"tool":"ipckit 0.1.0","rows":[]}"#),
            Err(LoadError::NotIpckit(..))
        ));
        let e = p(r#"{"schema":2,"tool":"ipckit 9.0.0","rows":[]}"#).unwrap_err();
        assert!(matches!(e, LoadError::NewerSchema(_, 2)));
        assert!(e.to_string().contains("schema 2"), "{e}");
    }

    #[test]
    fn reads_a_row() {
        let s = p(r#"{"schema":1,"tool":"ipckit 0.1.0","rows":[{"mechanism":"pipe","wait":"block",
            "placement":"cross","size":64,"impl":"ipckit","rtt_ns":{"p50":1.0,"p99":2.0,"p999":3.0,"max":4.0},
            "throughput_mbps":5.0,"spread_pct":1.0,"errors":0}]}"#)
        .unwrap();
        assert_eq!(s.rows.len(), 1);
        assert_eq!(s.rows[0].rtt_ns.unwrap().p99, 2.0);
    }
}
