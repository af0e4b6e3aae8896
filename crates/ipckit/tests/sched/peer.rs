//! The scheduling tests' peer (run by `tests/peers/bin.rs`): asks for a real-time policy and
//! prints what happened, one line, then returns to the normal policy.

use ipckit::sched::{self, SchedPolicy};

/// `fifo`: `set_policy(Fifo(1))`; prints `ok <policy read back>` or `err <kind> <message>`.
pub fn run(role: &str) {
    assert_eq!(role, "fifo");
    match sched::set_policy(SchedPolicy::Fifo(1)) {
        Ok(()) => {
            let now = sched::policy().map_or_else(|e| e.to_string(), |p| p.to_string());
            println!("ok {now}");
            sched::set_policy(SchedPolicy::Normal).expect("back to SCHED_OTHER");
        }
        Err(e) => {
            let kind = match e {
                sched::SchedError::NotPermitted { .. } => "not-permitted",
                sched::SchedError::ThrottlingOff => "throttling-off",
                sched::SchedError::InvalidPriority(_) => "invalid",
                sched::SchedError::Os(_) => "os",
            };
            println!("err {kind} {e}");
        }
    }
}
