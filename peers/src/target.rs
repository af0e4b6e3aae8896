//! What a row measures: a library, its transport and how a receiver waits.

use ipckit::{Mechanism, Wait};

/// The library under a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lib {
    /// ipckit, through `ipckit::connect::{Server, connect}` with this mechanism.
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

const fn kit(mech: Mechanism, wait: Wait) -> Target {
    Target {
        lib: Lib::Ipckit(mech),
        wait,
    }
}

/// Every row, in report order. An ipckit mechanism is one line here, per wait strategy.
pub const TARGETS: &[Target] = &[
    // ipckit's own rows. Unix stream sockets stand in until the shared-memory transport lands.
    kit(Mechanism::Uds, Wait::Spin),
    kit(Mechanism::Uds, Wait::Block),
    // The peers.
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
        for t in TARGETS {
            assert_eq!(Target::parse(&t.key(), t.wait.name()), Ok(*t));
        }
        assert!(Target::parse("zeromq", "spin").is_err());
        assert!(Target::parse("iceoryx2", "adaptive").is_err());
    }
}
