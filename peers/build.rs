//! Reads the versions of the compared libraries from `Cargo.lock`, so the report names the
//! ones actually built (`PEERS_ICEORYX2_VERSION`, `PEERS_IPC_CHANNEL_VERSION`).

use std::path::Path;

fn locked_version(lock: &str, name: &str) -> String {
    let needle = format!("name = \"{name}\"\n");
    lock.split("[[package]]")
        .find(|pkg| pkg.contains(&needle))
        .and_then(|pkg| {
            pkg.lines()
                .find_map(|l| l.strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
        })
        .unwrap_or("unknown")
        .to_string()
}

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let path = Path::new(&dir).join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", path.display());
    let lock = std::fs::read_to_string(&path).unwrap_or_default();
    for (name, var) in [
        ("iceoryx2", "PEERS_ICEORYX2_VERSION"),
        ("ipc-channel", "PEERS_IPC_CHANNEL_VERSION"),
    ] {
        println!("cargo:rustc-env={var}={}", locked_version(&lock, name));
    }
}
