//! The master's error log: a file (append) or stderr, one timestamped line per event,
//! reopened on USR1.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch (wall clock; 0 if the clock is before it).
pub(super) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The error log: a file (append) or stderr; reopened on USR1.
pub(super) struct Log {
    path: Option<PathBuf>,
    file: Option<File>,
}

impl Log {
    pub(super) fn open(path: Option<PathBuf>) -> io::Result<Log> {
        let file = match &path {
            Some(p) => Some(open_log(p)?),
            None => None,
        };
        Ok(Log { path, file })
    }

    pub(super) fn line(&mut self, msg: &str) {
        let t = now_ns() / 1_000_000;
        let s = t / 1000;
        let (y, mo, d) = civil_date(s / 86400);
        let text = format!(
            "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}.{:03} ipckit serve master[{}]: {msg}\n",
            (s / 3600) % 24,
            (s / 60) % 60,
            s % 60,
            t % 1000,
            std::process::id()
        );
        match &mut self.file {
            Some(f) => {
                let _ = f.write_all(text.as_bytes());
            }
            None => {
                let _ = io::stderr().write_all(text.as_bytes());
            }
        }
    }

    pub(super) fn reopen(&mut self) -> io::Result<()> {
        if let Some(p) = &self.path {
            self.file = Some(open_log(p)?);
        }
        Ok(())
    }
}

/// The UTC calendar date of a day number since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days after the epoch).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(m <= 2), m, d)
}

fn open_log(p: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(p)
        .map_err(|e| io::Error::new(e.kind(), format!("error log {}: {e}", p.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_417), (2025, 11, 25));
    }
}
