//! Signals across processes: real-time signals queue in order with their payloads while
//! standard ones coalesce, siginfo names the sender, and bad input is refused clearly.
//!
//! Signal masks are per thread and libtest runs tests on threads, so every test that reads a
//! signalfd does it in a re-executed peer whose signals are blocked before `main` (see
//! `BLOCK_EARLY`), where no thread can take them first.

#[path = "../util/mod.rs"]
mod util;

use ipckit::signal::{self, Action, Handler, HandlerOptions, Signal, Signals};
use std::io::ErrorKind;

#[test]
fn bad_input_is_refused() {
    for sig in [Signal::SIGKILL, Signal::SIGSTOP] {
        let e = Handler::install(sig, Action::Notify, HandlerOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("cannot be caught"), "{e}");
        let e = signal::block_for_process(&[sig]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(Signals::new(&[sig]).is_err());
    }
    for n in [0, -1, 65, 1000] {
        let e = Signal::new(n).unwrap_err();
        assert!(e.to_string().contains("not a signal number"), "{e}");
    }
    for name in ["SIGFOO", "RTMIN+100", "", "SIG"] {
        let e = name.parse::<Signal>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{name}");
    }
    // A signal not blocked in this thread would never reach the descriptor: refused.
    let e = Signals::new(&[Signal::SIGWINCH]).unwrap_err();
    assert!(e.to_string().contains("not blocked"), "{e}");
    assert!(
        signal::send(0, Signal::SIGUSR1).is_err(),
        "pid 0 is a process group"
    );
    assert!(signal::queue(u32::MAX, Signal::SIGUSR1, 1).is_err());
}
