//! The `zero-copy` demo: the same 64 KiB messages moved five ways from this process to a
//! second one that reads and checks every word: `write()` into a pipe, `vmsplice()` into it,
//! a file `splice()`d through a pipe into a Unix socket, `sendfile()` into it, and TCP with
//! `MSG_ZEROCOPY`, whose completions say whether the kernel copied after all (on loopback it
//! does).
//!
//! Each measurement is one bench session ([`ipckit_bench::zerocopy::measure_once`]): the
//! second process is this binary re-executed as the bench's peer.

use super::interrupt;
use crate::cli::DemoArgs;
use ipckit_bench::zerocopy::{measure_once, Path, Run, PIPE_SIZE};
use std::time::Duration;

const SIZE: usize = 64 * 1024;

fn measure(p: Path, took: Duration) -> anyhow::Result<Run> {
    anyhow::ensure!(!interrupt::interrupted(), "interrupted");
    let r = measure_once(p, SIZE, took)?;
    anyhow::ensure!(!interrupt::interrupted(), "interrupted");
    anyhow::ensure!(
        r.errors == 0,
        "{}: the reader found {} bad message(s): {}",
        p,
        r.errors,
        r.first_error.as_deref().unwrap_or("?")
    );
    Ok(r)
}

fn line(p: Path, r: &Run, base: Option<&Run>) -> std::io::Result<()> {
    let vs = base.map_or(String::new(), |b| {
        format!(", x{:.2} the copying way", r.msgs_per_s / b.msgs_per_s)
    });
    say!(
        "    {:<15} {:>8.0} MB/s, {:>6.1} µs of CPU per message (both processes){vs}",
        p.name(),
        r.mbps,
        r.cpu_ns_per_msg.unwrap_or(f64::NAN) / 1e3
    );
    Ok(())
}

/// Runs the demo.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let me = std::process::id();
    let took = if args.short {
        Duration::from_millis(60)
    } else {
        Duration::from_millis(400)
    };
    say!(
        "[sender {me}] each way below streams {} KiB messages for {:.2} s to a second process \
         (this program again) that read()s each one into its own buffer and checks every \
         8-byte word",
        SIZE / 1024,
        took.as_secs_f64()
    );

    say!(
        "[sender {me}] 1. a pipe of {} KiB: write() copies each message into the pipe's pages; \
         the reader's read() copies it out again: two copies",
        PIPE_SIZE / 1024
    );
    let write = measure(Path::PipeWrite, took)?;
    line(Path::PipeWrite, &write, None)?;
    say!(
        "[sender {me}] 2. the same pipe, vmsplice(): the pipe takes references to the sender's \
         pages, and the read() is the only copy. The pages must not change until read: the \
         sender writes into a ring of more pages than the pipe can hold plus 3 messages (twice \
         that here, which is faster), so by the time it comes round the reader has copied \
         them out"
    );
    let vms = measure(Path::PipeVmsplice, took)?;
    line(Path::PipeVmsplice, &vms, Some(&write))?;

    say!(
        "[sender {me}] 3. serving a file (in the page cache) over a Unix stream socket: \
         pread() into a buffer, then write() it: three copies with the reader's"
    );
    let rw = measure(Path::UdsReadWrite, took)?;
    line(Path::UdsReadWrite, &rw, None)?;
    say!(
        "[sender {me}]    splice() file -> pipe -> socket: the socket takes the page-cache \
         pages by reference; only the reader copies"
    );
    let spl = measure(Path::UdsSplice, took)?;
    line(Path::UdsSplice, &spl, Some(&rw))?;
    say!("[sender {me}]    sendfile() file -> socket: the same, in one call");
    let sf = measure(Path::UdsSendfile, took)?;
    line(Path::UdsSendfile, &sf, Some(&rw))?;

    say!(
        "[sender {me}] 4. TCP over loopback: send() copies into the socket; \
         send(MSG_ZEROCOPY) pins the sender's pages instead and reports on the socket's \
         error queue when it is done with them; a buffer is reused only after that"
    );
    let tcp = measure(Path::TcpSend, took)?;
    line(Path::TcpSend, &tcp, None)?;
    let zc = measure(Path::TcpZerocopy, took)?;
    line(Path::TcpZerocopy, &zc, Some(&tcp))?;
    let s = zc.zc.unwrap_or_default();
    say!(
        "[sender {me}]    the kernel completed {} sends in {} notifications and marked {} of \
         them COPIED: on loopback the receiving socket cannot keep references to the \
         sender's pages, so the kernel copies them when it delivers, and MSG_ZEROCOPY only \
         adds its bookkeeping. It pays on a real NIC, for large sends",
        s.completions,
        s.notifications,
        s.copied
    );
    say!("[sender {me}] every child exited; the file was unlinked at creation, nothing to remove");
    say!(
        "result: at 64 KiB, vmsplice {:.0} MB/s vs write {:.0} MB/s (x{:.2}); sendfile x{:.2} and \
         splice x{:.2} of read+write; MSG_ZEROCOPY x{:.2} of send, {} of {} completions copied \
         (loopback copies)",
        vms.mbps,
        write.mbps,
        vms.msgs_per_s / write.msgs_per_s,
        sf.msgs_per_s / rw.msgs_per_s,
        spl.msgs_per_s / rw.msgs_per_s,
        zc.msgs_per_s / tcp.msgs_per_s,
        s.copied,
        s.completions
    );
    Ok(())
}
