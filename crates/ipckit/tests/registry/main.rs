//! The registry across processes: objects of a SIGKILLed creator are listed as orphaned and
//! removed by `clean`; objects of a live creator, or in use, are kept.

#[path = "../util/mod.rs"]
mod util;

use ipckit::connect::{open_receiver, Options};
use ipckit::registry::{self, CleanAction};
use ipckit::Mechanism;
use std::io::BufRead;
use util::{peer_command, watchdog, KillOnDrop};

#[test]
fn peer_entry() {
    let Ok(role) = std::env::var(util::ROLE) else {
        return;
    };
    assert_eq!(role, "creator");
    let dir = std::env::var("DIR").unwrap();
    let fifo = format!("{dir}/{}", registry::unique_name("orphan-fifo"));
    let sock = format!("{dir}/{}", registry::unique_name("orphan-sock"));
    let mq = format!("/{}", registry::unique_name("orphan-mq"));
    let key = format!("{}", 0x1c90_0000 | (std::process::id() & 0xffff) as i32);
    let _a = open_receiver(Mechanism::Fifo, &fifo, &Options::default()).unwrap();
    let _b = open_receiver(Mechanism::UdsDgram, &sock, &Options::default()).unwrap();
    let _c = open_receiver(Mechanism::MqPosix, &mq, &Options::default()).unwrap();
    let _d = open_receiver(Mechanism::MqSysv, &key, &Options::default()).unwrap();
    println!("{fifo}\n{sock}\n{mq}\n{key}\nready");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn clean_removes_a_killed_creators_objects_and_nothing_else() {
    watchdog(30, || {
        let _s = util::scarce();
        let dir = util::init();
        // A live object of ours, which clean must keep.
        let mine = dir.join(registry::unique_name("live-fifo"));
        let _live =
            open_receiver(Mechanism::Fifo, mine.to_str().unwrap(), &Options::default()).unwrap();

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
        assert!(ipckit::mq::posix::PosixMq::open(&names[2], ipckit::Wait::Block).is_err());
        assert!(
            ipckit::mq::sysv::SysvMq::open(names[3].parse().unwrap(), ipckit::Wait::Block).is_err()
        );
        // Ours, with a live owner, is still there.
        assert!(mine.exists(), "clean removed a live process's FIFO");
        assert!(report
            .iter()
            .any(|(e, a)| e.record.name == mine.to_str().unwrap()
                && matches!(a, CleanAction::OwnerAlive)));
    });
}
