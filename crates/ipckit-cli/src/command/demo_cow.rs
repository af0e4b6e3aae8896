//! The `cow-snapshot` demo, the Redis `BGSAVE` pattern: a table in memory keeps taking
//! writes while a forked child writes the table, as it was at the fork, to a file.
//!
//! The parent times random in-place writes before the fork and during the snapshot, counts
//! the pages the kernel copies for it (its minor faults, the table pages it first writes,
//! the child's `Private_Dirty`), keeps an undo log of the first write to each word after the
//! fork, and at the end rolls the table back with it and compares every word with the file.

use super::interrupt;
use crate::cli::DemoArgs;
use crate::UserError;
use hdrhistogram::Histogram;
use ipckit::shm::cow::{self, MemoryRollup, SnapshotChild, SnapshotReport, UsageOf};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The table's size without `--size`, in MiB.
const DEFAULT_MB: u64 = 256;
/// The write rate: a busy in-memory store, paced so the undo log stays bounded.
const RATE: u64 = 500_000;
/// Writes are issued in batches, one batch per tick. The child's exit is checked once a
/// tick, and writes after it are not copies any more, so ticks are short.
const TICK: Duration = Duration::from_micros(200);
const PER_TICK: u64 = RATE / 5000;
/// The parent stops writing after this long, so the undo log stops growing.
const MAX_WRITING: Duration = Duration::from_secs(30);
/// And gives up on the child after this long.
const MAX_SNAPSHOT: Duration = Duration::from_secs(600);
/// How often, at most, the child's smaps_rollup is read during the snapshot. Reading it
/// walks the child's page tables (about 9 ms for 512 MiB here), time the parent does not
/// spend writing, so reads are also spaced by `SAMPLE_SPACING` times their last duration.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
const SAMPLE_SPACING: u32 = 20;
const MIB: f64 = 1024.0 * 1024.0;

/// The parent's side (the child is a fork, made inside the library).
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let me = std::process::id();
    let mb = args.size.unwrap_or(DEFAULT_MB);
    let words = (mb << 20) as usize / 8;
    let page = ipckit::process::page_size();
    check_memory(mb, words)?;
    let before_for = if args.short {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(1)
    };

    let mut table = fill(words)?;
    let table_pages = pages_spanned(&table, page);
    say!(
        "[parent {me}] a table of {mb} MiB in memory: {words} words of 8 bytes on {table_pages} \
         pages of {page} bytes, each written once to fill it"
    );
    if let Ok(r) = MemoryRollup::of(me) {
        if r.anon_huge_pages > 0 {
            say!(
                "[parent {me}]   {:.0} MiB of this process is in transparent huge pages; since \
                 Linux 5.8 a write to one after a fork still copies only the 4 KiB page written",
                r.anon_huge_pages as f64 / MIB
            );
        }
    }
    let mut writer = Writer::new(words, page, table.as_ptr() as usize);

    // Before: the latency of a write with no snapshot running.
    say!(
        "[parent {me}] writing random words in place, {RATE} writes/s for {:.1} s, timing each \
         write: the latency with no snapshot running",
        before_for.as_secs_f64()
    );
    let mut before = new_histogram();
    let faults0 = cow::usage(UsageOf::Process)?.minor_faults;
    let start = Instant::now();
    let n_before = writer.paced(&mut table, &mut before, None, |_| {
        Ok(start.elapsed() >= before_for)
    })?;
    let took_before = start.elapsed();
    let faults_before = cow::usage(UsageOf::Process)?.minor_faults - faults0;
    say!(
        "[parent {me}]   before the fork: {n_before} writes ({:.0}/s), latency {}; minor faults: \
         {faults_before} (the table's pages are all present and private)",
        n_before as f64 / took_before.as_secs_f64(),
        summary(&before)
    );

    // The snapshot file, then the fork.
    let snap = SnapshotFile::create()?;
    say!(
        "[parent {me}] created {} (0600, exclusively) for the snapshot",
        snap.path.display()
    );
    let mut undo = Undo::new(words, table_pages);
    let mut during = new_histogram();
    say!(
        "[parent {me}] fork(): the child gets a copy of the page tables, not of the {mb} MiB; \
         every page is now shared by the two processes and write-protected in both"
    );
    let mut child = cow::snapshot_to(&snap.file, &table)?;
    let faults_at_fork = cow::usage(UsageOf::Process)?.minor_faults;
    let forked = Instant::now();
    let cpid = child.pid();
    say!(
        "[parent {me}] fork() took {}: copying the page tables is a pause in which no write runs",
        fmt_duration(child.fork_time())
    );
    say!(
        "[parent {me}] child {cpid} writes the table as it was at the fork: pwrite(2) of {mb} MiB, \
         fdatasync(2), _exit(2). It runs nothing else: a child forked from a multi-threaded \
         program may only make async-signal-safe calls (no malloc, no println)"
    );
    say!(
        "[parent {me}] meanwhile the parent keeps writing at the same rate. The first write to \
         each page after the fork faults, and the kernel copies the {page}-byte page for the \
         parent before the write goes on (the child keeps the original): that copy is the \
         latency spike. Each first write to a word is logged as (index, old value)"
    );

    let mut watch = Watch::new(me, cpid, forked);
    let mut outcome: Option<anyhow::Result<SnapshotReport>> = None;
    let mut faults_end = faults_at_fork;
    let n_during = writer.paced(&mut table, &mut during, Some(&mut undo), |undo| {
        if let Some(r) = reap(&mut child)? {
            faults_end = cow::usage(UsageOf::Process)?.minor_faults;
            outcome = Some(r);
            return Ok(true);
        }
        watch.sample(undo.pages)?;
        Ok(forked.elapsed() >= MAX_WRITING)
    })?;
    let wrote_for = forked.elapsed();
    let report = match outcome {
        Some(r) => r?,
        None => {
            say!(
                "[parent {me}] stopped writing after {:.0} s to bound the undo log; waiting for \
                 the child",
                MAX_WRITING.as_secs_f64()
            );
            faults_end = cow::usage(UsageOf::Process)?.minor_faults;
            wait_for(&mut child)?
        }
    };
    let faults_during = faults_end - faults_at_fork;
    let last = watch.last;
    drop(child);

    say!(
        "[parent {me}] child {cpid} exited {} after the fork: {:.0} MiB written and synced \
         ({:.0} MB/s); its own minor faults: {} (reading shared pages copies nothing)",
        fmt_duration(report.elapsed),
        report.bytes as f64 / MIB,
        report.bytes as f64 / 1e6 / report.elapsed.as_secs_f64(),
        report.usage.minor_faults
    );
    say!(
        "[parent {me}]   during the snapshot: {n_during} writes ({:.0}/s), latency {}",
        n_during as f64 / wrote_for.as_secs_f64(),
        summary(&during)
    );
    let copied = undo.pages;
    say!(
        "[parent {me}]   table pages written while the child lived: {copied} of {table_pages} \
         ({:.1}%): the kernel copied each one, {:.1} MiB",
        100.0 * copied as f64 / table_pages as f64,
        (copied * page as u64) as f64 / MIB
    );
    say!(
        "[parent {me}]   the parent's minor faults during the snapshot (getrusage): \
         {faults_during} = {} table pages + {} others (the undo log growing, the histogram, the \
         stack)",
        copied.min(faults_during),
        faults_during.saturating_sub(copied)
    );
    match last {
        Some((at, r)) => say!(
            "[parent {me}]   the child's last smaps_rollup, at {}: Private_Dirty {:.1} MiB (its \
             originals of the pages the parent copied), shared {:.1} MiB",
            fmt_duration(at),
            r.private_dirty as f64 / MIB,
            r.shared() as f64 / MIB
        ),
        None => {
            say!("[parent {me}]   the child finished before its smaps_rollup could be read")
        }
    }

    // Verify: undo the writes made since the fork, compare every word with the file.
    let changed = undo.log.iter().filter(|&&(i, old)| table[i] != old).count();
    say!(
        "[parent {me}] verifying: {changed} words changed since the fork; applying the undo log \
         rolls the table back to the fork, then every word is compared with the file"
    );
    for &(i, old) in &undo.log {
        table[i] = old;
    }
    verify(&snap.file, &table)?;
    say!(
        "[parent {me}] verified: the {mb} MiB snapshot equals the table at fork time, all {words} \
         words"
    );
    let path = snap.path.clone();
    drop(snap);
    say!("[parent {me}] removed {}", path.display());
    say!(
        "result: write latency p99 {} before the snapshot, {} during it (max {} and {}); fork() \
         paused {}; {copied} pages ({:.1} MiB) copied; {mb} MiB snapshot in {}, verified",
        fmt_ns(before.value_at_quantile(0.99)),
        fmt_ns(during.value_at_quantile(0.99)),
        fmt_ns(before.max()),
        fmt_ns(during.max()),
        fmt_duration(report.fork_time),
        (copied * page as u64) as f64 / MIB,
        fmt_duration(report.elapsed)
    );
    Ok(())
}

/// Refuses a table that would not fit: the parent may come to hold two copies of it (its
/// own and the one it copies page by page), plus the undo log.
fn check_memory(mb: u64, words: usize) -> anyhow::Result<()> {
    let undo_max = (words as u64).min(RATE * MAX_WRITING.as_secs()) * 16;
    let need = 2 * (mb << 20) + undo_max;
    let Some(avail) = mem_available() else {
        return Ok(());
    };
    if need > avail {
        return Err(UserError::new(format!(
            "--size {mb} needs up to {} MiB (the table, a copy of each page written during \
             the snapshot, the undo log) and {} MiB is available",
            need >> 20,
            avail >> 20
        ))
        .into());
    }
    Ok(())
}

/// `MemAvailable` from /proc/meminfo, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The table's initial content.
fn pattern(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED
}

fn fill(words: usize) -> anyhow::Result<Vec<u64>> {
    let mut table = Vec::with_capacity(words);
    while table.len() < words {
        anyhow::ensure!(!interrupt::interrupted(), "interrupted");
        let upto = (table.len() + (1 << 20)).min(words);
        table.extend((table.len()..upto).map(pattern));
    }
    Ok(table)
}

/// Pages the table touches (its start need not be page-aligned).
fn pages_spanned(table: &[u64], page: usize) -> u64 {
    let start = table.as_ptr() as usize;
    let end = start + std::mem::size_of_val(table);
    (end.div_ceil(page) - start / page) as u64
}

fn new_histogram() -> Histogram<u64> {
    ipckit_bench::stats::new_histogram()
}

/// The random writer: xorshift indices, paced batches, optional undo logging.
struct Writer {
    rng: u64,
    words: usize,
    page: usize,
    base: usize,
}

/// What the parent records about its writes after the fork.
struct Undo {
    /// (index, value at the fork) for the first write to each word after the fork.
    log: Vec<(usize, u64)>,
    /// One bit per word: already logged.
    seen: Vec<u64>,
    /// One bit per page of the table: already written after the fork (so copied).
    pages_seen: Vec<u64>,
    /// Table pages written after the fork.
    pages: u64,
}

impl Undo {
    fn new(words: usize, pages: u64) -> Undo {
        Undo {
            log: Vec::new(),
            seen: vec![0; words.div_ceil(64)],
            pages_seen: vec![0; (pages as usize).div_ceil(64)],
            pages: 0,
        }
    }
}

/// Sets bit `i`; true if it was clear.
fn first_time(bits: &mut [u64], i: usize) -> bool {
    let (w, b) = (i / 64, 1u64 << (i % 64));
    let fresh = bits[w] & b == 0;
    bits[w] |= b;
    fresh
}

impl Writer {
    fn new(words: usize, page: usize, base: usize) -> Writer {
        Writer {
            rng: 0x2545_F491_4F6C_DD1D,
            words,
            page,
            base,
        }
    }

    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Writes `PER_TICK` random words per tick, timing each, until `stop` says so (asked
    /// once per tick). With `undo`, logs the first write to each word and counts the pages.
    fn paced(
        &mut self,
        table: &mut [u64],
        hist: &mut Histogram<u64>,
        mut undo: Option<&mut Undo>,
        mut stop: impl FnMut(&Undo) -> anyhow::Result<bool>,
    ) -> anyhow::Result<u64> {
        let empty = Undo::new(0, 0);
        let mut next_tick = Instant::now();
        let mut writes = 0u64;
        loop {
            anyhow::ensure!(!interrupt::interrupted(), "interrupted");
            if stop(undo.as_deref().unwrap_or(&empty))? {
                return Ok(writes);
            }
            for _ in 0..PER_TICK {
                let r = self.next();
                let i = (r % self.words as u64) as usize;
                let t = Instant::now();
                let old = table[i];
                table[i] = old ^ (r | 1); // always a different value
                std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
                let ns = t.elapsed().as_nanos() as u64;
                hist.saturating_record(ns.max(1));
                if let Some(u) = undo.as_deref_mut() {
                    if first_time(&mut u.seen, i) {
                        u.log.push((i, old));
                    }
                    let p = (self.base + i * 8) / self.page - self.base / self.page;
                    if first_time(&mut u.pages_seen, p) {
                        u.pages += 1;
                    }
                }
            }
            writes += PER_TICK;
            next_tick += TICK;
            let now = Instant::now();
            if next_tick > now {
                std::thread::sleep(next_tick - now);
            } else if now - next_tick > Duration::from_millis(100) {
                // Far behind (a long fault storm, a descheduled CPU): do not burst to catch up.
                next_tick = now;
            }
        }
    }
}

/// The child's outcome if it has exited.
fn reap(child: &mut SnapshotChild) -> anyhow::Result<Option<anyhow::Result<SnapshotReport>>> {
    match child.try_wait() {
        Ok(Some(r)) => Ok(Some(Ok(r))),
        Ok(None) => Ok(None),
        Err(e) => Ok(Some(Err(e.into()))),
    }
}

/// Waits for the child without writing, in slices so that Ctrl-C is seen.
fn wait_for(child: &mut SnapshotChild) -> anyhow::Result<SnapshotReport> {
    let until = Instant::now() + MAX_SNAPSHOT;
    loop {
        anyhow::ensure!(!interrupt::interrupted(), "interrupted");
        if let Some(r) = child.wait_timeout(Duration::from_millis(100))? {
            return Ok(r);
        }
        anyhow::ensure!(
            Instant::now() < until,
            "the snapshot child {} did not finish within {} s",
            child.pid(),
            MAX_SNAPSHOT.as_secs()
        );
    }
}

/// Reads the child's smaps_rollup now and then, and prints it at doubling intervals.
struct Watch {
    me: u32,
    child: u32,
    forked: Instant,
    next_sample: Duration,
    next_print: Duration,
    last: Option<(Duration, MemoryRollup)>,
}

impl Watch {
    fn new(me: u32, child: u32, forked: Instant) -> Watch {
        Watch {
            me,
            child,
            forked,
            next_sample: Duration::ZERO,
            next_print: SAMPLE_EVERY,
            last: None,
        }
    }

    fn sample(&mut self, pages_copied: u64) -> std::io::Result<()> {
        let at = self.forked.elapsed();
        if at < self.next_sample {
            return Ok(());
        }
        // The child may exit between the check and the read: then there is no sample.
        let read = MemoryRollup::of(self.child);
        let took = self.forked.elapsed() - at;
        self.next_sample = at + took + SAMPLE_EVERY.max(took * SAMPLE_SPACING);
        let Ok(r) = read else {
            return Ok(());
        };
        self.last = Some((at, r));
        if at >= self.next_print {
            self.next_print = at * 2;
            say!(
                "[parent {}]   at {}: {pages_copied} table pages copied so far; the child's \
                 smaps_rollup: Private_Dirty {:.1} MiB, shared {:.1} MiB",
                self.me,
                fmt_duration(at),
                r.private_dirty as f64 / MIB,
                r.shared() as f64 / MIB
            );
        }
        Ok(())
    }
}

/// Compares the file, word by word, with `table`.
fn verify(file: &File, table: &[u64]) -> anyhow::Result<()> {
    let len = file.metadata()?.len();
    let want = std::mem::size_of_val(table) as u64;
    anyhow::ensure!(
        len == want,
        "verification failed: the snapshot is {len} bytes, the table {want}"
    );
    let mut buf = vec![0u8; 8 << 20];
    let mut mismatches = 0u64;
    let mut first = None;
    for (c, chunk) in table.chunks(buf.len() / 8).enumerate() {
        anyhow::ensure!(!interrupt::interrupted(), "interrupted");
        let bytes = &mut buf[..chunk.len() * 8];
        file.read_exact_at(bytes, (c * (8 << 20)) as u64)?;
        for (k, (got, want)) in bytes.chunks_exact(8).zip(chunk).enumerate() {
            if u64::from_ne_bytes(got.try_into()?) != *want {
                mismatches += 1;
                first.get_or_insert(c * (1 << 20) + k);
            }
        }
    }
    if let Some(i) = first {
        anyhow::bail!(
            "verification failed: {mismatches} of {} words differ from the table at fork time, \
             the first at word {i}",
            table.len()
        );
    }
    Ok(())
}

/// The snapshot file: created 0600 and exclusively in the temporary directory, removed on
/// drop (so also on an error or Ctrl-C).
struct SnapshotFile {
    path: PathBuf,
    file: File,
}

impl SnapshotFile {
    fn create() -> std::io::Result<SnapshotFile> {
        let name = format!("{}.snap", ipckit::registry::unique_name("cow"));
        let path = std::env::temp_dir().join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(SnapshotFile { path, file })
    }
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `p50 …, p99 …, max …, mean …` of a histogram of ns.
fn summary(h: &Histogram<u64>) -> String {
    format!(
        "p50 {}, p99 {}, max {}, mean {}",
        fmt_ns(h.value_at_quantile(0.5)),
        fmt_ns(h.value_at_quantile(0.99)),
        fmt_ns(h.max()),
        fmt_ns(h.mean() as u64)
    )
}

fn fmt_ns(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

fn fmt_duration(d: Duration) -> String {
    fmt_ns(d.as_nanos().min(u64::MAX as u128) as u64)
}
