//! A worker's logs: the error log (a file opened for appending, or stderr) and the access
//! log (off by default; lines buffered and written once per loop iteration). Both are
//! reopened on USR1.

use crate::http;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

/// The error log: a file opened for appending (reopened on USR1), or stderr.
#[derive(Debug)]
pub(super) struct Log {
    path: Option<PathBuf>,
    file: Option<File>,
}

impl Log {
    pub(super) fn open(path: Option<PathBuf>) -> Log {
        let mut l = Log { path, file: None };
        l.reopen();
        l
    }

    pub(super) fn reopen(&mut self) {
        if let Some(p) = &self.path {
            match std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
            {
                Ok(f) => self.file = Some(f),
                Err(e) => eprintln!(
                    "ipckit serve: cannot open the error log {}: {e}",
                    p.display()
                ),
            }
        }
    }

    pub(super) fn line(&mut self, msg: &str) {
        let date = http::http_date(http::unix_now_secs());
        let line = format!(
            "{} [error] worker {}: {msg}\n",
            String::from_utf8_lossy(&date),
            std::process::id()
        );
        match &mut self.file {
            Some(f) => {
                let _ = f.write_all(line.as_bytes());
            }
            None => {
                let _ = io::stderr().write_all(line.as_bytes());
            }
        }
    }
}

/// The access log: lines buffered, written once per loop iteration.
#[derive(Debug)]
pub(super) struct AccessLog {
    pub(super) path: PathBuf,
    pub(super) out: io::BufWriter<File>,
}

impl AccessLog {
    pub(super) fn open(path: &std::path::Path) -> io::Result<AccessLog> {
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("access log {}: {e}", path.display())))?;
        Ok(AccessLog {
            path: path.to_path_buf(),
            out: io::BufWriter::with_capacity(64 * 1024, f),
        })
    }
}
