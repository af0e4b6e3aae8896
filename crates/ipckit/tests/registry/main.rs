//! The registry across processes: objects of a SIGKILLed creator are listed as orphaned and
//! removed by `clean`; objects of a live creator, or in use, are kept.

#[path = "../util/mod.rs"]
mod util;

use ipckit::connect::ChannelBuilder;
use ipckit::registry::{self, CleanAction};
use ipckit::Mechanism;
use std::io::BufRead;
use util::{peer_command, watchdog, KillOnDrop};

#[test]
fn clean_removes_a_killed_creators_objects_and_nothing_else() {
    watchdog(30, || {
        let _s = util::scarce();
        // Canonical, as the registry records paths.
        let dir = &std::fs::canonicalize(util::init()).unwrap();
        // A live object of ours, which clean must keep.
        let mine = dir.join(registry::unique_name("live-fifo"));
        let _live = ChannelBuilder::new(Mechanism::Fifo)
            .create_receiver(mine.to_str().unwrap())
            .unwrap();

        let mut cmd = peer_command("creator", &[("DIR", dir.to_string_lossy().into_owned())]);
        cmd.stdout(std::process::Stdio::piped());
        let mut child = KillOnDrop(cmd.spawn().unwrap());
        let mut lines = std::io::BufReader::new(child.0.stdout.take().unwrap()).lines();
        let mut names = Vec::new();
        for l in lines.by_ref() {
            let l = l.unwrap();
            if l == "ready" {
                break;
            }
            // Skip the test harness's own chatter ("running 1 test", blank lines).
            if l.starts_with('/') || l.parse::<i32>().is_ok() {
                names.push(l);
            }
        }
        assert_eq!(names.len(), 4);
        let listed = registry::list().unwrap();
        for n in &names {
            let key_form = n
                .parse::<i32>()
                .map(ipckit::mq::sysv::key_name)
                .unwrap_or_else(|_| n.clone());
            let e = listed
                .iter()
                .find(|e| e.record.name == key_form)
                .unwrap_or_else(|| panic!("{n} not listed"));
            assert!(e.owner_alive && e.exists);
        }
        // SIGKILL: no destructor runs.
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let report = registry::clean(false).unwrap();
        let removed: Vec<_> = report
            .iter()
            .filter(|(_, a)| matches!(a, CleanAction::Removed))
            .map(|(e, _)| e.record.name.clone())
            .collect();
        for n in &names {
            let key_form = n
                .parse::<i32>()
                .map(ipckit::mq::sysv::key_name)
                .unwrap_or_else(|_| n.clone());
            assert!(
                removed.contains(&key_form),
                "{n} was not cleaned: {report:?}"
            );
        }
        assert!(!std::path::Path::new(&names[0]).exists());
        assert!(!std::path::Path::new(&names[1]).exists());
        assert!(ipckit::mq::posix::PosixMqBuilder::new(&names[2])
            .open()
            .is_err());
        assert!(
            ipckit::mq::sysv::SysvMqBuilder::new(names[3].parse().unwrap())
                .open()
                .is_err()
        );
        // Ours, with a live owner, is still there.
        assert!(mine.exists(), "clean removed a live process's FIFO");
        assert!(report
            .iter()
            .any(|(e, a)| e.record.name == mine.to_str().unwrap()
                && matches!(a, CleanAction::OwnerAlive)));
    });
}

/// The registry's record files (`*.rec`) and temporary files, by name.
fn registry_files() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(registry::dir().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

fn record_of(name: &str) -> std::path::PathBuf {
    registry_files()
        .into_iter()
        .find(|p| {
            p.extension().is_some_and(|x| x == "rec")
                && std::fs::read_to_string(p)
                    .is_ok_and(|t| t.lines().any(|l| l == format!("name={name}")))
        })
        .unwrap_or_else(|| panic!("no record names {name}"))
}

#[test]
fn relative_paths_are_recorded_absolute() {
    let _s = util::scarce();
    let dir = util::init();
    let file = registry::unique_name("rel-fifo");
    // The same file named relative to the current directory.
    let cwd = std::env::current_dir().unwrap();
    let ups = "../".repeat(cwd.components().count() - 1);
    let rel = format!(
        "{ups}{}",
        dir.join(&file).to_str().unwrap().trim_start_matches('/')
    );
    assert!(std::path::Path::new(&rel).is_relative());
    let guard = ipckit::fifo::FifoBuilder::new(std::path::Path::new(&rel))
        .mode(0o600)
        .create()
        .unwrap();
    let abs = std::fs::canonicalize(dir).unwrap().join(&file);
    assert_eq!(guard.name(), abs.to_str().unwrap());
    assert!(abs.exists());
    let rec = record_of(guard.name());
    assert!(registry::list()
        .unwrap()
        .iter()
        .any(|e| e.record.name == guard.name() && e.owner_alive && e.exists));
    drop(guard);
    assert!(!abs.exists(), "the guard removes the absolute path");
    assert!(!rec.exists());
}

#[test]
fn names_with_control_characters_are_refused() {
    let dir = util::init();
    for bad in ["a\nb", "a\rb", "a\u{1}b"] {
        let p = dir.join(format!("{}{bad}", registry::unique_name("ctl")));
        let e = ipckit::fifo::FifoBuilder::new(&p)
            .mode(0o600)
            .create()
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{bad:?}: {e}");
        assert!(!p.exists());
    }
}

#[test]
fn records_are_replaced_only_when_stale() {
    let _s = util::scarce();
    let dir = util::init();
    let path = dir.join(registry::unique_name("stale-fifo"));
    let mut guard = ipckit::fifo::FifoBuilder::new(&path)
        .mode(0o600)
        .create()
        .unwrap();
    let name = guard.name().to_owned();
    let rec = record_of(&name);
    // Leave the record behind as if we had crashed, but take the FIFO away.
    guard.disarm();
    drop(guard);
    std::fs::remove_file(&path).unwrap();

    // An unparsable record is someone's: left alone, and the name stays taken.
    std::fs::write(&rec, "not a record").unwrap();
    let e = ipckit::fifo::FifoBuilder::new(&path)
        .mode(0o600)
        .create()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
    assert_eq!(std::fs::read_to_string(&rec).unwrap(), "not a record");
    assert!(!path.exists());

    // A record whose owner is dead (our pid, but another start time) is replaced.
    std::fs::write(
        &rec,
        format!(
            "kind=fifo\nname={name}\npid={}\nstart=1\ncreated=0\n",
            std::process::id()
        ),
    )
    .unwrap();
    let guard = ipckit::fifo::FifoBuilder::new(&path)
        .mode(0o600)
        .create()
        .unwrap();
    let text = std::fs::read_to_string(&rec).unwrap();
    assert!(!text.contains("start=1\n"), "replaced: {text}");
    // A live owner's record is not.
    assert_eq!(
        ipckit::fifo::FifoBuilder::new(&path)
            .mode(0o600)
            .create()
            .unwrap_err()
            .kind(),
        std::io::ErrorKind::AlreadyExists
    );
    assert_eq!(std::fs::read_to_string(&rec).unwrap(), text);
    drop(guard);
    assert!(!rec.exists() && !path.exists());
    let temps: Vec<_> = registry_files()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .collect();
    assert!(temps.is_empty(), "temporary record files left: {temps:?}");
}
