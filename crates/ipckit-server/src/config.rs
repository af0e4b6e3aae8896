//! What to serve and how: [`Config`], from defaults, a config file and command-line flags.
//!
//! The file format is one `key = value` per line; `#` starts a comment (whole line or after a
//! value); blank lines are ignored. `listen` may appear several times (or hold several
//! addresses separated by commas); every other key at most once. Relative paths (`root`,
//! logs) are taken relative to the config file's directory. Example:
//!
//! ```text
//! # ipckit serve
//! listen = 127.0.0.1:8080
//! listen = [::1]:8080
//! workers = 4            # or "auto": one per CPU
//! root = /srv/www
//! accept = exclusive     # or reuseport
//! keepalive_timeout_ms = 75000
//! graceful_timeout_ms = 10000
//! error_log = /var/log/ipckit-serve.log
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// How the workers share accepting on one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcceptMode {
    /// One listening socket per address, shared by every worker; each worker registers it with
    /// `EPOLLEXCLUSIVE`, so one connection wakes one worker.
    Exclusive,
    /// One `SO_REUSEPORT` socket per address and worker slot, all created and kept by the
    /// master; the kernel hashes each connection to one of them.
    ReusePort,
}

impl AcceptMode {
    /// The name used in flags and config files.
    pub fn name(self) -> &'static str {
        match self {
            AcceptMode::Exclusive => "exclusive",
            AcceptMode::ReusePort => "reuseport",
        }
    }
}

impl fmt::Display for AcceptMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AcceptMode {
    type Err = String;
    fn from_str(s: &str) -> Result<AcceptMode, String> {
        match s {
            "exclusive" => Ok(AcceptMode::Exclusive),
            "reuseport" => Ok(AcceptMode::ReusePort),
            _ => Err(format!(
                "'{s}' is not an accept mode: exclusive or reuseport"
            )),
        }
    }
}

/// Everything the master and its workers need to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Addresses to listen on (default `127.0.0.1:8080`).
    pub listen: Vec<SocketAddr>,
    /// Worker processes (default: one per CPU).
    pub workers: usize,
    /// Serve static files from this directory (default: none, `GET /` answers
    /// `Hello, World!`).
    pub root: Option<PathBuf>,
    /// How workers share accepting (default [`AcceptMode::Exclusive`], pending the
    /// measurement in `bench/serve-vs-nginx.sh`).
    pub accept: AcceptMode,
    /// An idle keep-alive connection is closed after this long (default 75 s, nginx's).
    pub keepalive_timeout_ms: u64,
    /// A request's header must arrive whole within this long (default 10 s; nginx's 60 s lets
    /// a slowloris hold descriptors longer).
    pub header_timeout_ms: u64,
    /// The largest request header accepted; more gets 431 (default 8192).
    pub max_header_bytes: usize,
    /// On QUIT (or when retired by a reload), a worker has this long to finish before the
    /// master kills it (default 10 s).
    pub graceful_timeout_ms: u64,
    /// Where the master and workers log (default: stderr).
    pub error_log: Option<PathBuf>,
    /// Where workers log each request (default: off).
    pub access_log: Option<PathBuf>,
}

/// The most workers a config may ask for.
pub const MAX_WORKERS: usize = 256;

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            workers: default_workers(),
            root: None,
            accept: AcceptMode::Exclusive,
            keepalive_timeout_ms: 75_000,
            header_timeout_ms: 10_000,
            max_header_bytes: 8192,
            graceful_timeout_ms: 10_000,
            error_log: None,
            access_log: None,
        }
    }
}

/// One worker per CPU this process may run on.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The largest config file read (a real one is a few hundred bytes).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

fn bad(path: &Path, line: usize, msg: impl fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}:{line}: {msg}", path.display()),
    )
}

impl Config {
    /// Reads a config file over the defaults (see the module docs for the format).
    ///
    /// # Errors
    ///
    /// The error opening or reading the file (naming it): `InvalidInput` when it is not a
    /// regular file, `FileTooLarge` over [`MAX_CONFIG_BYTES`]; `InvalidData` as
    /// `FILE:LINE: what is wrong` for a line without `=`, an unknown or repeated key, or a
    /// bad value.
    pub fn load(path: &Path) -> io::Result<Config> {
        let named =
            |e: io::Error| io::Error::new(e.kind(), format!("config {}: {e}", path.display()));
        // Bounded, and only a regular file: `/dev/zero` or a FIFO is refused before anything
        // is read (the master reads this with its signals blocked: a read that never ended
        // would leave it deaf to TERM).
        let bytes = ipckit::fs::read_regular(path, MAX_CONFIG_BYTES).map_err(named)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| named(io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, path, base)
    }

    /// Parses config text; `path` names it in errors, relative paths are joined to `base`.
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn parse(text: &str, path: &Path, base: &Path) -> io::Result<Config> {
        let mut c = Config::default();
        let mut seen: Vec<&str> = Vec::new();
        let mut listen = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(bad(
                    path,
                    n,
                    format!("expected 'key = value', got '{line}'"),
                ));
            };
            let (k, v) = (k.trim(), v.trim());
            if v.is_empty() {
                return Err(bad(path, n, format!("'{k}' has no value")));
            }
            let num = |v: &str| -> io::Result<u64> {
                v.parse::<u64>()
                    .map_err(|_| bad(path, n, format!("{k}: '{v}' is not a non-negative integer")))
            };
            let file = |v: &str| -> PathBuf {
                let p = PathBuf::from(v);
                if p.is_absolute() {
                    p
                } else {
                    base.join(p)
                }
            };
            let key: &'static str = match k {
                "listen" => {
                    for a in v.split(',') {
                        let a = a.trim();
                        listen.push(a.parse::<SocketAddr>().map_err(|_| {
                            bad(path, n, format!("listen: '{a}' is not an address like 127.0.0.1:8080 or [::1]:8080"))
                        })?);
                    }
                    "listen"
                }
                "workers" => {
                    c.workers = if v == "auto" {
                        default_workers()
                    } else {
                        num(v)? as usize
                    };
                    "workers"
                }
                "root" => {
                    c.root = Some(file(v));
                    "root"
                }
                "accept" => {
                    c.accept = v
                        .parse()
                        .map_err(|e: String| bad(path, n, format!("accept: {e}")))?;
                    "accept"
                }
                "keepalive_timeout_ms" => {
                    c.keepalive_timeout_ms = num(v)?;
                    "keepalive_timeout_ms"
                }
                "header_timeout_ms" => {
                    c.header_timeout_ms = num(v)?;
                    "header_timeout_ms"
                }
                "max_header_bytes" => {
                    c.max_header_bytes = num(v)? as usize;
                    "max_header_bytes"
                }
                "graceful_timeout_ms" => {
                    c.graceful_timeout_ms = num(v)?;
                    "graceful_timeout_ms"
                }
                "error_log" => {
                    c.error_log = Some(file(v));
                    "error_log"
                }
                "access_log" => {
                    c.access_log = if v == "off" { None } else { Some(file(v)) };
                    "access_log"
                }
                _ => {
                    return Err(bad(
                        path,
                        n,
                        format!(
                            "unknown key '{k}' (known: listen, workers, root, accept, \
                             keepalive_timeout_ms, header_timeout_ms, max_header_bytes, \
                             graceful_timeout_ms, error_log, access_log)"
                        ),
                    ))
                }
            };
            if key != "listen" {
                if seen.contains(&key) {
                    return Err(bad(path, n, format!("'{key}' is set twice")));
                }
                seen.push(key);
            }
        }
        if !listen.is_empty() {
            c.listen = listen;
        }
        c.check().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        Ok(c)
    }

    /// Checks the values make sense together.
    ///
    /// # Errors
    ///
    /// `InvalidInput` saying what is wrong: no address, one address twice, 0 or more than
    /// [`MAX_WORKERS`] workers, a zero timeout, a header limit outside 1 KiB..=1 MiB, or a
    /// root that is not a directory.
    pub fn check(&self) -> io::Result<()> {
        let no = |m: String| Err(io::Error::new(io::ErrorKind::InvalidInput, m));
        if self.listen.is_empty() {
            return no("no address to listen on".into());
        }
        for (i, a) in self.listen.iter().enumerate() {
            if self.listen[..i].contains(a) {
                return no(format!("listen: {a} is given twice"));
            }
        }
        if self.workers == 0 || self.workers > MAX_WORKERS {
            return no(format!(
                "workers: {} is out of range 1..={MAX_WORKERS}",
                self.workers
            ));
        }
        for (k, v) in [
            ("keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("header_timeout_ms", self.header_timeout_ms),
            ("graceful_timeout_ms", self.graceful_timeout_ms),
        ] {
            if v == 0 {
                return no(format!("{k}: 0 is not a timeout"));
            }
        }
        if !(1024..=1 << 20).contains(&self.max_header_bytes) {
            return no(format!(
                "max_header_bytes: {} is out of range 1024..=1048576",
                self.max_header_bytes
            ));
        }
        if let Some(r) = &self.root {
            if !r.is_dir() {
                return no(format!("root: {} is not a directory", r.display()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> io::Result<Config> {
        Config::parse(t, Path::new("t.conf"), Path::new("/base"))
    }

    #[test]
    fn keys_comments_and_defaults() {
        let c = parse(
            "# top\n\nlisten = 127.0.0.1:1, [::1]:2 # two\nlisten=127.0.0.1:3\nworkers = 3\n\
             accept = reuseport\nerror_log = logs/e.log\nmax_header_bytes = 4096\n",
        )
        .unwrap();
        assert_eq!(c.listen.len(), 3);
        assert_eq!(c.workers, 3);
        assert_eq!(c.accept, AcceptMode::ReusePort);
        assert_eq!(c.error_log.as_deref(), Some(Path::new("/base/logs/e.log")));
        assert_eq!(c.max_header_bytes, 4096);
        assert_eq!(
            c.keepalive_timeout_ms,
            Config::default().keepalive_timeout_ms
        );
    }

    #[test]
    fn errors_name_the_line() {
        for (text, want) in [
            ("workers = 2\nbogus = 1\n", "t.conf:2: unknown key 'bogus'"),
            ("\nworkers = two\n", "t.conf:2: workers: 'two' is not"),
            ("listen = nowhere\n", "t.conf:1: listen: 'nowhere'"),
            (
                "workers = 1\nworkers = 2\n",
                "t.conf:2: 'workers' is set twice",
            ),
            ("just words\n", "t.conf:1: expected 'key = value'"),
            ("accept = maybe\n", "t.conf:1: accept: 'maybe'"),
            ("workers = 0\n", "workers: 0 is out of range"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
