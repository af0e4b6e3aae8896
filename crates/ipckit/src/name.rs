//! Checking the names of POSIX IPC objects before making or opening one, for a program that
//! wants to tell its user what is wrong with a name before anything is attempted (the CLI
//! does). Shared memory objects and POSIX message queues live in two name spaces with
//! slightly different rules, so there is one function for each; the builders apply the same
//! checks themselves.

use std::io;

/// Checks a shared memory object's name and returns it as `/name`: `name` or `/name`, no
/// other `/`, at most [`crate::shm::NAME_MAX`] bytes after the `/`, not empty, `.` or `..`.
///
/// # Errors
///
/// `InvalidInput`, saying what is wrong.
///
/// # References
///
/// shm_open(3).
pub fn check_shm(name: &str) -> io::Result<String> {
    crate::shm::check_name(name)
}

/// Checks a POSIX message queue's name: `/` then 1 to 254 bytes with no further `/`, not
/// `/.` or `/..`.
///
/// # Errors
///
/// `InvalidInput`, saying what is wrong.
///
/// # References
///
/// mq_overview(7).
pub fn check_posix_mq(name: &str) -> io::Result<()> {
    crate::mq::posix::check_name(name)
}
