//! What a row measures: a library, its transport and how a receiver waits.

use ipckit::{Mechanism, Wait};

/// The library under a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lib {
    /// ipckit, through `ipckit::connect::ChannelBuilder` with this mechanism.
    Ipckit(Mechanism),
    /// iceoryx2's IPC publish-subscribe (shared memory).
    Iceoryx2,
    /// ipc-channel's `bytes_channel` (Unix sockets on Linux).
    IpcChannel,
}

/// One row's configuration (the size is the other key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Library.
    pub lib: Lib,
    /// `Wait::Spin` (busy-poll) or `Wait::Block` (sleep until notified).
    pub wait: Wait,
}

/// ipckit's waits: each mechanism gets a busy-polling and a sleeping row, like iceoryx2.
pub const IPCKIT_WAITS: [Wait; 2] = [Wait::Spin, Wait::Block];

/// The peers' rows, in report order (after ipckit's).
pub const PEER_TARGETS: &[Target] = &[
    Target {
        lib: Lib::Iceoryx2,
        wait: Wait::Spin,
    },
    Target {
        lib: Lib::Iceoryx2,
        wait: Wait::Block,
    },
    Target {
        lib: Lib::IpcChannel,
        wait: Wait::Block,
    },
];

/// Every row, in report order: each ipckit mechanism with each of [`IPCKIT_WAITS`], then the
/// peers.
pub fn targets(ipckit: &[Mechanism]) -> Vec<Target> {
    let mut v: Vec<Target> = ipckit
        .iter()
        .flat_map(|&m| {
            IPCKIT_WAITS.iter().map(move |&wait| Target {
                lib: Lib::Ipckit(m),
                wait,
            })
        })
        .collect();
    v.extend_from_slice(PEER_TARGETS);
    v
}

/// Parses one `--ipckit` mechanism: any reliable mechanism that carries payloads.
pub fn parse_ipckit_mech(s: &str) -> Result<Mechanism, String> {
    let m: Mechanism = s.parse()?;
    if !m.carries_payload() {
        return Err(format!(
            "{m} carries no payload: it cannot stand beside the peers"
        ));
    }
    if m.is_lossy() {
        return Err(format!(
            "{m} may lose messages, and the peers' streams are verified as reliable"
        ));
    }
    Ok(m)
}

impl Lib {
    /// `ipckit`, `iceoryx2` or `ipc-channel`: what `--libs` names.
    pub fn name(self) -> &'static str {
        match self {
            Lib::Ipckit(_) => "ipckit",
            Lib::Iceoryx2 => "iceoryx2",
            Lib::IpcChannel => "ipc-channel",
        }
    }

    /// What carries the bytes, for the report.
    pub fn transport(self) -> &'static str {
        match self {
            Lib::Ipckit(m) => m.name(),
            Lib::Iceoryx2 => "pub-sub (shm)",
            Lib::IpcChannel => "bytes_channel",
        }
    }
}

/// Every library `--libs` accepts.
pub const LIB_NAMES: [&str; 3] = ["ipckit", "iceoryx2", "ipc-channel"];

impl Target {
    /// The key the peer is told on its command line: `ipckit/MECH`, `iceoryx2`, `ipc-channel`.
    pub fn key(&self) -> String {
        match self.lib {
            Lib::Ipckit(m) => format!("ipckit/{}", m.name()),
            other => other.name().to_string(),
        }
    }

    /// The inverse of [`Target::key`] with the wait's name.
    pub fn parse(key: &str, wait: &str) -> Result<Target, String> {
        let wait = match wait {
            "spin" => Wait::Spin,
            "block" => Wait::Block,
            _ => return Err(format!("unknown wait '{wait}' (expected spin or block)")),
        };
        let lib = match key {
            "iceoryx2" => Lib::Iceoryx2,
            "ipc-channel" => Lib::IpcChannel,
            _ => match key.strip_prefix("ipckit/") {
                Some(m) => Lib::Ipckit(m.parse()?),
                None => return Err(format!("unknown target '{key}'")),
            },
        };
        Ok(Target { lib, wait })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for t in targets(&[Mechanism::Shm, Mechanism::Uds]) {
            assert_eq!(Target::parse(&t.key(), t.wait.name()), Ok(t));
        }
        assert!(Target::parse("zeromq", "spin").is_err());
        assert!(Target::parse("iceoryx2", "adaptive").is_err());
    }

    #[test]
    fn ipckit_mechs() {
        assert_eq!(parse_ipckit_mech("shm"), Ok(Mechanism::Shm));
        assert!(parse_ipckit_mech("udp").is_err());
        assert!(parse_ipckit_mech("eventfd").is_err());
        assert!(parse_ipckit_mech("carrier-pigeon").is_err());
        let t = targets(&[Mechanism::Shm]);
        assert_eq!(t.len(), 2 + PEER_TARGETS.len());
        assert_eq!(t[0].lib, Lib::Ipckit(Mechanism::Shm));
    }
}
