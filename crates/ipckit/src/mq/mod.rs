//! Message queues: [`posix`] (`mq_open`, priorities, pollable descriptors) and [`sysv`]
//! (`msgget`, message types, receive by type).

pub mod posix;
pub mod sysv;
