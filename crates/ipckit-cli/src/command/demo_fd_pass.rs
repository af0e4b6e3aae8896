//! The `fd-pass` demo: a parent opens a file, a pipe and a memfd segment, passes all three to
//! a child in one `sendmsg` (`SCM_RIGHTS`) over a socketpair, and the child uses each. The
//! numbers differ in the child, but the open file descriptions are the very same: the file
//! offset the child moves is the parent's offset too. Ends with the rate of descriptors
//! passed (send, receive, close).

use super::{child_command, interrupt, ChildGuard};
use crate::cli::DemoArgs;
use ipckit::pipe::{self, ChildChannel, Duplex, PipeWriter};
use ipckit::shm::{Segment, SegmentBuilder, SEGMENT_HEADER_LEN};
use ipckit::unix::{self, Passable};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// Bytes the child reads from the file, moving the offset both processes share.
const FILE_READ: usize = 64;
/// Where in the memfd the greeting and the answer go (past ipckit's segment header).
const GREETING_AT: u64 = SEGMENT_HEADER_LEN as u64;
const ANSWER_AT: u64 = SEGMENT_HEADER_LEN as u64 + 256;
/// Messages sent before waiting for the child's acknowledgement: bounds the descriptors in
/// flight (the kernel caps them per user at RLIMIT_NOFILE).
const BATCH: usize = 128;
/// How long any one step may wait for the other process.
const STEP: Duration = Duration::from_secs(10);

/// The parent's side.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let me = std::process::id();
    let measure = if args.short {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    };

    // Three kinds of open file: a regular file (this program), a pipe, a memfd.
    let exe = std::env::current_exe()?;
    let mut file = File::open(&exe)?;
    let (mut pipe_r, pipe_w) = pipe::raw_pipe()?;
    pipe_r.set_read_timeout(STEP);
    let seg = SegmentBuilder::anonymous().size(4096).create()?.ready();
    let seg_file = File::from(seg.as_fd().try_clone_to_owned()?);
    let greeting = format!("hello from parent {me}, written into the memfd");
    seg_file.write_all_at(greeting.as_bytes(), GREETING_AT)?;
    say!(
        "[parent {me}] opened {} as fd {} (offset 0), a pipe (read end fd {}, write end fd {}), \
         and a 4 KiB memfd segment as fd {}, with a greeting in it",
        exe.display(),
        file.as_raw_fd(),
        pipe_r.as_raw_fd(),
        pipe_w.as_raw_fd(),
        seg.as_fd().as_raw_fd()
    );

    let mut cmd = child_command("fd-pass", "child")?;
    let (child, ch) = ChildChannel::new()
        .duplex(Duplex::SocketPair)
        .spawn(&mut cmd)?;
    let mut child = ChildGuard(child);
    let sock = unix::endpoint_socket(&ch)?;
    say!(
        "[parent {me}] spawned child {} with one end of a Unix socketpair; it inherited that \
         socket and nothing else",
        child.pid()
    );
    let fds = [file.as_fd(), pipe_w.as_fd(), seg.as_fd()];
    unix::send_with_fds(sock, b"file,pipe,memfd", &fds)?;
    say!(
        "[parent {me}] sendmsg: 15 bytes of data and one SCM_RIGHTS control message listing fds \
         {}, {} and {}; the kernel takes a reference to each open file, not the numbers",
        fds[0].as_raw_fd(),
        fds[1].as_raw_fd(),
        fds[2].as_raw_fd()
    );
    drop(pipe_w);
    say!(
        "[parent {me}] closed our pipe write end: the child's copy is the only writer now, so \
         our read ends with end-of-file when the child closes it"
    );

    let mut said = String::new();
    pipe_r.read_to_string(&mut said)?;
    say!("[parent {me}] read from the pipe: \"{}\"", said.trim_end());
    let offset = file.stream_position()?;
    say!(
        "[parent {me}] our fd {} now stands at offset {offset}, though we never read it: the \
         offset belongs to the open file description, which SCM_RIGHTS shares (as dup does, \
         unlike a second open)",
        file.as_raw_fd()
    );
    anyhow::ensure!(
        offset == FILE_READ as u64,
        "the shared offset is {offset}, expected {FILE_READ}"
    );
    let mut answer = [0u8; 64];
    seg_file.read_exact_at(&mut answer, ANSWER_AT)?;
    let answer = String::from_utf8_lossy(&answer);
    say!(
        "[parent {me}] read the child's answer from the memfd: \"{}\"",
        answer.trim_end_matches('\0')
    );

    say!(
        "[parent {me}] now passing one descriptor per message for {:.1} s; the child receives \
         each and closes it, acknowledging every {BATCH} ...",
        measure.as_secs_f64()
    );
    let mut ack = [0u8; 1];
    let start = Instant::now();
    let mut passed = 0u64;
    while start.elapsed() < measure && !interrupt::interrupted() {
        for _ in 0..BATCH {
            unix::send_with_fds(sock, b"f", &[file.as_fd()])?;
        }
        let got = unix::recv_with_fds_timeout(sock, &mut ack, 0, STEP)?;
        anyhow::ensure!(got.len == 1, "the child closed the socket");
        passed += BATCH as u64;
    }
    let took = start.elapsed();
    anyhow::ensure!(!interrupt::interrupted(), "interrupted");
    unix::send_with_fds(sock, b"e", &[])?;
    drop(ch);
    child.wait(Duration::from_secs(5))?;
    drop(seg_file);
    drop(seg);
    say!(
        "[parent {me}] child exited; the pipe and the memfd vanish with their last descriptor, \
         nothing to remove"
    );
    let rate = passed as f64 / took.as_secs_f64();
    say!(
        "result: {rate:.0} descriptors passed per second ({:.2} µs per message carrying one fd: \
         sendmsg, recvmsg, close; {passed} in {:.2} s)",
        1e6 / rate,
        took.as_secs_f64()
    );
    Ok(())
}

/// The child's side: receive the three descriptors, use each, then receive and close
/// descriptors until told to stop.
pub(super) fn child(_role: &str) -> anyhow::Result<()> {
    let me = std::process::id();
    let ch = ChildChannel::new().open_from_env()?;
    let sock = unix::endpoint_socket(&ch)?;
    let mut buf = [0u8; 64];
    let got = unix::recv_with_fds_timeout(sock, &mut buf, 3, STEP)?;
    let nums: Vec<String> = got.fds.iter().map(|f| f.as_raw_fd().to_string()).collect();
    say!(
        "[child  {me}] recvmsg(MSG_CMSG_CLOEXEC): \"{}\" and {} descriptors, here numbered {}: \
         new entries in our own table, close-on-exec, for the parent's open files",
        String::from_utf8_lossy(&buf[..got.len]),
        got.fds.len(),
        nums.join(", ")
    );
    let [file, pipe_w, seg]: [OwnedFd; 3] = got
        .fds
        .try_into()
        .map_err(|v: Vec<OwnedFd>| anyhow::anyhow!("expected 3 descriptors, got {}", v.len()))?;

    let mut file = File::from_received(file)?;
    let mut head = [0u8; FILE_READ];
    file.read_exact(&mut head)?;
    say!(
        "[child  {me}] file: read {FILE_READ} bytes (it starts {:02x?}: an ELF executable); that \
         moved the offset the parent's descriptor shares",
        &head[..4]
    );

    let seg = Segment::from_received(seg)?;
    let seg_file = File::from(seg.as_fd().try_clone_to_owned()?);
    let mut greeting = [0u8; 64];
    seg_file.read_exact_at(&mut greeting, GREETING_AT)?;
    say!(
        "[child  {me}] memfd: mapped {} bytes after checking ipckit's header; it says \"{}\"",
        seg.len(),
        String::from_utf8_lossy(&greeting).trim_end_matches('\0')
    );
    seg_file.write_all_at(format!("child {me} was here").as_bytes(), ANSWER_AT)?;

    let mut pipe_w = PipeWriter::from_received(pipe_w)?;
    say!("[child  {me}] pipe: writing one line into the write end, then closing it");
    writeln!(pipe_w, "child {me} writing into a pipe end it never opened")?;
    drop(pipe_w);
    drop((file, seg_file, seg));

    let mut one = [0u8; 1];
    let mut n = 0usize;
    loop {
        let got = unix::recv_with_fds(sock, &mut one, 1)?;
        match (got.len, &one) {
            (0, _) | (1, b"e") => break,
            _ => {}
        }
        drop(got.fds); // close it
        n += 1;
        if n.is_multiple_of(BATCH) {
            unix::send_with_fds(sock, b"a", &[])?;
        }
    }
    say!("[child  {me}] received and closed {n} more descriptors; exiting");
    Ok(())
}
