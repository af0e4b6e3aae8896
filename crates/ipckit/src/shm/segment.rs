//! Shared memory segments: POSIX `shm_open` objects (by name) and `memfd`s (by descriptor).
//!
//! A segment is one object mapped whole. Its first [`SEGMENT_HEADER_LEN`] bytes are ipckit's header:
//! a magic number, the segment format version, the layout the data holds (a [`Layout`]: a
//! kind and its version), the total size, and the creator's pid and start time. The creator
//! writes the magic last, so an opener sees a complete header or none. Opening a segment of
//! another layout, another version, or one too small for its header is a clear error.
//!
//! Named segments are created owner-only (0600 by default) and exclusively, recorded in the
//! [`crate::registry`] first, and unlinked when their creator drops them; `ipckit clean`
//! removes those whose creator died and that no live process maps.
//!
//! A memfd segment is sealed against any change of size once sized; a named one cannot be
//! (the kernel seals only memfds), so whoever can open it can shrink it under every mapping:
//! see "What a peer can do" in the [module docs](super).

use super::region::{Region, Shared};
use crate::error::invalid;
use crate::registry::{self, ObjectGuard, ObjectKind};
use crate::sys::proc;
use crate::sys::shm::{self as sys, Mapping};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bytes of ipckit's header before the data: one page, so the data is page-aligned.
pub const SEGMENT_HEADER_LEN: usize = 4096;
/// `"IPCKITSG"`, little-endian.
const MAGIC: u64 = u64::from_le_bytes(*b"IPCKITSG");
/// Version of the header format itself.
const SEGMENT_VERSION: u32 = 1;
/// The longest name a shared memory object may have (NAME_MAX, without the leading '/').
pub const NAME_MAX: usize = 255;
/// How long an opener waits for a creator that is still writing the header.
const INIT_WAIT: Duration = Duration::from_millis(500);

/// What a segment's data holds: a kind and that kind's layout version. An opener names the
/// layout it expects and is refused any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The kind of data (ipckit's own kinds are below 0x1000; use others for your own).
    pub kind: u32,
    /// The version of that kind's layout.
    pub version: u32,
}

impl Layout {
    /// Plain bytes, no structure ipckit knows of.
    pub const RAW: Layout = Layout {
        kind: 0,
        version: 1,
    };

    fn name(self) -> String {
        match self.kind {
            0 => "raw bytes".into(),
            1 => "an SPSC ring pair".into(),
            2 => "an MPSC queue".into(),
            3 => "a robust mutex".into(),
            k => format!("layout kind {k:#x}"),
        }
    }
}

/// Whether to back a segment with huge pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugePages {
    /// Normal pages.
    #[default]
    No,
    /// Huge pages where the system has them, otherwise normal pages, and
    /// [`Segment::huge_pages`] says why.
    Try,
    /// Huge pages or an error.
    Require,
}

/// What backs a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HugeStatus {
    /// Normal pages, as asked.
    NotAsked,
    /// hugetlbfs pages (a memfd with `MFD_HUGETLB`).
    Hugetlb,
    /// Transparent huge pages (`MADV_HUGEPAGE` on a shmem mapping, allowed by
    /// `/sys/kernel/mm/transparent_hugepage/shmem_enabled`).
    Transparent,
    /// Normal pages, because huge pages were not available; the reason.
    FellBack(String),
}

/// How to create or open a segment: a named POSIX object ([`SegmentBuilder::new`]) or an
/// anonymous memfd ([`SegmentBuilder::anonymous`]), then setters, then [`create`] or
/// [`open`] (or [`open_fd`] for a descriptor received from another process).
///
/// [`create`]: SegmentBuilder::create
/// [`open`]: SegmentBuilder::open
/// [`open_fd`]: SegmentBuilder::open_fd
///
/// # Examples
///
/// ```
/// use ipckit::shm::SegmentBuilder;
/// # fn main() -> std::io::Result<()> {
/// let seg = SegmentBuilder::anonymous().size(1 << 20).populate(true).create()?;
/// assert_eq!(seg.len(), 1 << 20);
/// // Named: `SegmentBuilder::new("/counters").size(4096).create()?`, filled, then
/// // `.ready()` in one process; `SegmentBuilder::new("/counters").open()?` in the others.
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SegmentBuilder {
    /// `None` for an anonymous segment.
    name: Option<String>,
    size: usize,
    mode: u32,
    populate: bool,
    huge: HugePages,
    mlock: bool,
    layout: Layout,
    keep: bool,
    allow_other_users: bool,
}

impl SegmentBuilder {
    /// A builder for the POSIX shared memory object `name` (`/name` or `name`), checked when
    /// the segment is created or opened.
    pub fn new(name: &str) -> SegmentBuilder {
        SegmentBuilder::with_name(Some(name.to_owned()))
    }

    /// A builder for a segment without a name: [`SegmentBuilder::create`] makes a memfd, to
    /// be handed to another process by descriptor, which maps it with
    /// [`SegmentBuilder::open_fd`].
    #[doc(alias = "memfd_create")]
    pub fn anonymous() -> SegmentBuilder {
        SegmentBuilder::with_name(None)
    }

    fn with_name(name: Option<String>) -> SegmentBuilder {
        SegmentBuilder {
            name,
            size: 0,
            mode: 0o600,
            populate: false,
            huge: HugePages::No,
            mlock: false,
            layout: Layout::RAW,
            keep: false,
            allow_other_users: false,
        }
    }

    /// Bytes of data of a created segment (the header comes on top); it must be set, a size
    /// of 0 is refused. Ignored by [`SegmentBuilder::open`] and [`SegmentBuilder::open_fd`],
    /// which map the whole object, whatever its size ([`Segment::len`] says it).
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }

    /// Permission bits of a created object (default 0600). Ignored by
    /// [`SegmentBuilder::open`] and [`SegmentBuilder::open_fd`].
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Fault every page in at mapping time (`MAP_POPULATE`), so the first touch does not.
    pub fn populate(mut self, on: bool) -> Self {
        self.populate = on;
        self
    }

    /// Huge pages (see [`HugePages`]).
    pub fn huge_pages(mut self, h: HugePages) -> Self {
        self.huge = h;
        self
    }

    /// Lock the mapping in RAM (`mlock`); an error if `RLIMIT_MEMLOCK` does not allow it.
    pub fn mlock(mut self, on: bool) -> Self {
        self.mlock = on;
        self
    }

    /// The layout the data holds (default [`Layout::RAW`]).
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Keep a named segment when its creator drops it (default: unlink it). It stays in the
    /// registry, so `ipckit clean` removes it once its creator is gone and nobody maps it.
    /// Ignored by the openers, and for an anonymous segment.
    pub fn keep(mut self, on: bool) -> Self {
        self.keep = on;
        self
    }

    /// Open segments that other users can write, or that another user owns (refused by
    /// default: they could corrupt what we read).
    pub fn allow_other_users(mut self, on: bool) -> Self {
        self.allow_other_users = on;
        self
    }

    fn total(&self) -> io::Result<usize> {
        if self.size == 0 {
            return Err(invalid(
                "a segment size of 0 bytes is not allowed (SegmentBuilder::size sets one)",
            ));
        }
        self.size
            .checked_add(SEGMENT_HEADER_LEN)
            .filter(|t| *t <= isize::MAX as usize / 2)
            .ok_or_else(|| invalid(format!("a segment of {} bytes is too large", self.size)))
    }

    /// Creates the segment: the POSIX shared memory object of the builder's name,
    /// exclusively (an existing object of that name is `AlreadyExists`, never reused),
    /// recorded in the [`crate::registry`] and unlinked when the segment drops (unless
    /// [`kept`](SegmentBuilder::keep)); or, for an [anonymous](SegmentBuilder::anonymous)
    /// builder, a memfd (see below).
    ///
    /// Openers wait (500 ms, then `InvalidData`) until [`Segment::ready`] publishes it.
    /// A memfd disappears with its last descriptor and mapping. Once sized, it is sealed
    /// (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`): no process holding its descriptor can
    /// change its size, so none can make another's mapping fault with `SIGBUS` (see
    /// [`Segment::size_sealed`]). Its contents stay writable by every holder.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad name or size, `AlreadyExists`, or the OS error.
    pub fn create(self) -> io::Result<Segment> {
        let Some(name) = &self.name else {
            return self.create_memfd();
        };
        let name = check_name(name)?;
        let total = self.total()?;
        if self.huge == HugePages::Require && !thp_shmem_allowed() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "huge pages required, but /sys/kernel/mm/transparent_hugepage/shmem_enabled \
                 does not allow them for shared memory objects (a memfd can use hugetlb pages)",
            ));
        }
        let mut guard = registry::register(ObjectKind::Shm, &name)?;
        let fd = match sys::shm_open(&name, Some(self.mode)) {
            Ok(fd) => fd,
            Err(e) => {
                guard.forget_object();
                return Err(io::Error::new(e.kind(), format!("shm_open {name}: {e}")));
            }
        };
        // From here the guard unlinks the object if anything fails (and only this one).
        guard.identify_shm(fd.as_fd())?;
        sys::fchmod(fd.as_fd(), self.mode)?;
        sys::ftruncate(fd.as_fd(), total)?;
        let mut seg = self.init(fd, total, Some(name), None)?;
        if self.keep {
            // Left to `ipckit clean`: the record stays, the object is not unlinked on drop.
            guard.disarm();
        } else {
            seg.guard = Some(guard);
        }
        Ok(seg)
    }

    /// The memfd of [`SegmentBuilder::create`] on an anonymous builder.
    fn create_memfd(&self) -> io::Result<Segment> {
        let total = self.total()?;
        // A memfd is born 0777, which the check `open_fd` makes for segments other users can
        // write refuses: give it the builder's mode, as a named segment gets.
        let mut why = None;
        if self.huge != HugePages::No {
            match Self::hugetlb_memfd(total) {
                Ok((fd, map, total)) => {
                    sys::fchmod(fd.as_fd(), self.mode)?;
                    return self.init(fd, total, None, Some(map));
                }
                Err(e) if self.huge == HugePages::Require => {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("huge pages required: hugetlb memfd failed ({e}); reserve some in /proc/sys/vm/nr_hugepages"),
                    ))
                }
                Err(e) => why = Some(e),
            }
        }
        let fd = sys::memfd_create("ipckit-shm", false)?;
        sys::fchmod(fd.as_fd(), self.mode)?;
        sys::ftruncate(fd.as_fd(), total)?;
        // A segment never changes size: seal it, so no holder of the descriptor can shrink it
        // under another's mapping (a SIGBUS there) or grow it past what the header says.
        sys::seal_size(fd.as_fd())?;
        let mut seg = self.init(fd, total, None, None)?;
        if let (Some(e), HugeStatus::FellBack(t)) = (why, &mut seg.huge) {
            *t = format!("hugetlb: {e}; transparent: {t}");
        }
        Ok(seg)
    }

    /// A hugetlb memfd of `total` bytes rounded up to whole huge pages, mapped and populated
    /// (hugetlb pages are reserved at fault time: populating turns a later SIGBUS into an
    /// error now).
    fn hugetlb_memfd(total: usize) -> io::Result<(OwnedFd, Mapping, usize)> {
        let fd = sys::memfd_create("ipckit-shm", true)?;
        let hp = huge_page_size();
        let total = total.div_ceil(hp) * hp;
        sys::ftruncate(fd.as_fd(), total)?;
        sys::seal_size(fd.as_fd())?;
        let map = Mapping::new(fd.as_fd(), total, true)?;
        Ok((fd, map, total))
    }

    /// Maps `fd` and writes a fresh header.
    fn init(
        &self,
        fd: OwnedFd,
        total: usize,
        name: Option<String>,
        hugetlb: Option<Mapping>,
    ) -> io::Result<Segment> {
        let (map, huge) = match hugetlb {
            Some(m) => (m, HugeStatus::Hugetlb),
            None => {
                let m = Mapping::new(fd.as_fd(), total, self.populate)?;
                let h = self.advise_huge(&m)?;
                (m, h)
            }
        };
        if self.mlock {
            map.lock().map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "mlock of {total} bytes failed ({e}); raise RLIMIT_MEMLOCK (ulimit -l)"
                    ),
                )
            })?;
        }
        let pid = proc::getpid();
        let h = header(&map);
        // The object is new (created exclusively, or a fresh memfd) and its magic is still 0:
        // no opener reads these fields yet.
        h.write_fields(Fields {
            version: SEGMENT_VERSION,
            header_len: SEGMENT_HEADER_LEN as u32,
            kind: self.layout.kind,
            kind_version: self.layout.version,
            total: total as u64,
            pid,
            start: proc::start_time(pid).unwrap_or(0),
        });
        Ok(Segment {
            map,
            fd,
            name,
            guard: None,
            huge,
            layout: self.layout,
            published: false,
        })
    }

    fn advise_huge(&self, map: &Mapping) -> io::Result<HugeStatus> {
        if self.huge == HugePages::No {
            return Ok(HugeStatus::NotAsked);
        }
        let why = if !thp_shmem_allowed() {
            "transparent huge pages are off for shared memory \
             (/sys/kernel/mm/transparent_hugepage/shmem_enabled)"
                .to_string()
        } else if map.len() < huge_page_size() {
            format!(
                "the segment is smaller than one {} KiB huge page",
                huge_page_size() >> 10
            )
        } else {
            match map.advise_huge() {
                Ok(()) => return Ok(HugeStatus::Transparent),
                Err(e) => format!("madvise(MADV_HUGEPAGE) failed: {e}"),
            }
        };
        if self.huge == HugePages::Require {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("huge pages required: {why}"),
            ));
        }
        Ok(HugeStatus::FellBack(why))
    }

    /// Opens the existing object of the builder's name, which must hold this builder's
    /// [`Layout`], and maps all of it: the size set here is ignored (the object's own is
    /// used, checked against its header), as are `mode` and `keep`; `populate`,
    /// `huge_pages` and `mlock` apply to this mapping. It never creates the object.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad name, or on an [anonymous](SegmentBuilder::anonymous)
    /// builder (open its descriptor with [`SegmentBuilder::open_fd`]); `NotFound`;
    /// `PermissionDenied` for an object others can write (see
    /// [`SegmentBuilder::allow_other_users`]); `InvalidData` for an object too small for its
    /// header, not an ipckit segment, of another version or layout, or never initialized.
    pub fn open(self) -> io::Result<Segment> {
        let Some(name) = &self.name else {
            return Err(invalid(
                "an anonymous segment has no name to open: map its descriptor with \
                 SegmentBuilder::open_fd",
            ));
        };
        let name = check_name(name)?;
        let fd = sys::shm_open(&name, None)
            .map_err(|e| io::Error::new(e.kind(), format!("shm_open {name}: {e}")))?;
        self.map_fd(fd, Some(name))
    }

    /// Opens a segment from a descriptor (a memfd or shm object received from another
    /// process, by inheritance or `SCM_RIGHTS`), checking and mapping it as
    /// [`SegmentBuilder::open`] does. The builder's name, if it has one, is not used: the
    /// descriptor is the object.
    ///
    /// # Errors
    ///
    /// As [`SegmentBuilder::open`].
    pub fn open_fd(self, fd: OwnedFd) -> io::Result<Segment> {
        self.map_fd(fd, None)
    }

    fn map_fd(&self, fd: OwnedFd, name: Option<String>) -> io::Result<Segment> {
        let what = name.clone().unwrap_or_else(|| "the segment".into());
        let (size, uid, mode) = sys::fstat(fd.as_fd())?;
        if !self.allow_other_users && (uid != registry::euid() || mode & 0o022 != 0) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{what} is owned by uid {uid} with mode {:o}: refusing a segment another \
                     user can write (allow_other_users to accept it)",
                    mode & 0o7777
                ),
            ));
        }
        if size < SEGMENT_HEADER_LEN as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{what} is {size} bytes, too small for ipckit's {SEGMENT_HEADER_LEN}-byte header \
                     (not an ipckit segment)"
                ),
            ));
        }
        let total = usize::try_from(size).map_err(|_| invalid("segment too large to map"))?;
        let map = Mapping::new(fd.as_fd(), total, self.populate)?;
        let h = header(&map);
        let t0 = Instant::now();
        loop {
            match h.magic.load(Ordering::Acquire) {
                MAGIC => break,
                0 if t0.elapsed() < INIT_WAIT => std::thread::sleep(Duration::from_millis(1)),
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{what} was never initialized: its creator is still writing it or \
                             died while creating it"
                        ),
                    ))
                }
                m => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{what} is not an ipckit segment (magic {m:#018x})"),
                    ))
                }
            }
        }
        let f = h.read_fields();
        if f.version != SEGMENT_VERSION || f.header_len != SEGMENT_HEADER_LEN as u32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{what} has segment format version {} (header {} B); this ipckit reads \
                     version {SEGMENT_VERSION} ({SEGMENT_HEADER_LEN} B)",
                    f.version, f.header_len
                ),
            ));
        }
        let found = Layout {
            kind: f.kind,
            version: f.kind_version,
        };
        if found != self.layout {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{what} holds {} version {}; expected {} version {}",
                    found.name(),
                    found.version,
                    self.layout.name(),
                    self.layout.version
                ),
            ));
        }
        if f.total != size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{what} is {size} bytes but its header says {}: truncated or resized",
                    f.total
                ),
            ));
        }
        let huge = self.advise_huge(&map)?;
        if self.mlock {
            map.lock()?;
        }
        Ok(Segment {
            map,
            fd,
            name,
            guard: None,
            huge,
            layout: found,
            published: true,
        })
    }
}

/// A mapped segment. The creator's segment unlinks its name on drop (unless kept).
pub struct Segment {
    map: Mapping,
    fd: OwnedFd,
    name: Option<String>,
    guard: Option<ObjectGuard>,
    huge: HugeStatus,
    layout: Layout,
    published: bool,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("len", &self.len())
            .field("layout", &self.layout)
            .field("huge", &self.huge)
            .finish()
    }
}

impl Segment {
    /// A builder for the segment `name`: the same as [`SegmentBuilder::new`].
    pub fn builder(name: &str) -> SegmentBuilder {
        SegmentBuilder::new(name)
    }

    /// Bytes of data (after the header).
    pub fn len(&self) -> usize {
        self.map.len() - SEGMENT_HEADER_LEN
    }

    /// True if the segment has no data bytes (never: a size of 0 is refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Start of the data, page-aligned. Other processes may write it at any time: read and
    /// write it only through atomics or a protocol that gives one side the bytes.
    pub fn as_ptr(&self) -> *mut u8 {
        // The mapping is longer than the header (checked at creation and opening).
        self.map.ptr().wrapping_add(SEGMENT_HEADER_LEN)
    }

    /// True if nobody can change the segment's size any more: it is a memfd from
    /// [`SegmentBuilder::anonymous`], sealed with `F_SEAL_SHRINK | F_SEAL_GROW`. A
    /// process that received a descriptor from a peer it does not trust checks this before
    /// relying on its mapping: a segment that is not sealed (every `shm_open` object, or a
    /// memfd someone else made) can be shrunk under it, and the next touch of a page past
    /// the new end raises `SIGBUS`.
    #[doc(alias = "F_GET_SEALS")]
    pub fn size_sealed(&self) -> bool {
        let want = (libc::F_SEAL_SHRINK | libc::F_SEAL_GROW) as u32;
        sys::seals(self.fd.as_fd()).is_ok_and(|s| s & want == want)
    }

    /// The object's name (`/name`), or `None` for a memfd.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The layout the data holds.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The creator's pid and start time, from the header.
    pub fn creator(&self) -> (u32, u64) {
        let f = header(&self.map).read_fields();
        (f.pid, f.start)
    }

    /// True if the creator is still running.
    pub fn creator_alive(&self) -> bool {
        let (pid, start) = self.creator();
        proc::is_alive(pid, start)
    }

    /// What backs the segment, and why not huge pages if they were asked for.
    pub fn huge_pages(&self) -> &HugeStatus {
        &self.huge
    }

    /// True if this process created the segment and will unlink it on drop.
    pub fn is_owner(&self) -> bool {
        self.guard.is_some()
    }

    /// Removes the name now (if this process created it): nobody can open the segment any
    /// more, and nothing is left behind; every mapping stays valid.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if the name now denotes another object (it is left alone), or the OS
    /// error of the removal.
    pub fn unlink(&mut self) -> io::Result<()> {
        if let Some(mut g) = self.guard.take() {
            // Only while the name is still this segment (see `registry`); the record goes too.
            g.remove_now()?;
        }
        Ok(())
    }

    /// Makes the segment visible to openers (writes the magic). The data's own initializer
    /// calls this after writing its structures; until then openers wait.
    pub(crate) fn publish(&mut self) {
        header(&self.map).magic.store(MAGIC, Ordering::Release);
        self.published = true;
    }

    /// The data as a region (for the rings and queues built on it).
    pub(crate) fn region(&self) -> Region<'_> {
        Region::of_mapping(&self.map).sub(SEGMENT_HEADER_LEN, self.len())
    }

    /// The data as an array of `AtomicU64` (its length rounded down to 8 bytes): a safe way to
    /// share counters between processes (every bit pattern is a valid `u64`, and other
    /// processes' writes are seen through the atomics only).
    pub fn atomic_u64s(&self) -> &[std::sync::atomic::AtomicU64] {
        self.region()
            .slice_of::<std::sync::atomic::AtomicU64>(0, self.len() / 8)
    }

    /// Publishes a segment this process created, once its contents are written: from now on
    /// [`SegmentBuilder::open`] elsewhere succeeds. A published or opened one is unchanged.
    pub fn ready(mut self) -> Segment {
        if !self.published {
            self.publish();
        }
        self
    }
}

impl AsFd for Segment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The header at the start of every segment. Atomics only, so an opener reads it safely
/// whatever another process wrote.
#[repr(C)]
struct Header {
    /// `MAGIC` once the creator has written everything else.
    magic: AtomicU64,
    version: AtomicU32,
    header_len: AtomicU32,
    kind: AtomicU32,
    kind_version: AtomicU32,
    total: AtomicU64,
    pid: AtomicU32,
    start: AtomicU64,
}

// SAFETY: atomics only; any bit pattern is a valid value.
#[allow(unsafe_code)]
unsafe impl Shared for Header {}

#[derive(Clone, Copy)]
struct Fields {
    version: u32,
    header_len: u32,
    kind: u32,
    kind_version: u32,
    total: u64,
    pid: u32,
    start: u64,
}

impl Header {
    /// Written by the creator before the magic; the magic's `Release` store orders them.
    fn write_fields(&self, f: Fields) {
        self.version.store(f.version, Ordering::Relaxed);
        self.header_len.store(f.header_len, Ordering::Relaxed);
        self.kind.store(f.kind, Ordering::Relaxed);
        self.kind_version.store(f.kind_version, Ordering::Relaxed);
        self.total.store(f.total, Ordering::Relaxed);
        self.pid.store(f.pid, Ordering::Relaxed);
        self.start.store(f.start, Ordering::Relaxed);
    }

    /// Read after an `Acquire` load saw the magic.
    fn read_fields(&self) -> Fields {
        Fields {
            version: self.version.load(Ordering::Relaxed),
            header_len: self.header_len.load(Ordering::Relaxed),
            kind: self.kind.load(Ordering::Relaxed),
            kind_version: self.kind_version.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            pid: self.pid.load(Ordering::Relaxed),
            start: self.start.load(Ordering::Relaxed),
        }
    }
}

fn header(map: &Mapping) -> &Header {
    const _: () = assert!(std::mem::size_of::<Header>() <= SEGMENT_HEADER_LEN);
    Region::of_mapping(map).at(0)
}

/// `/name` from `name` or `/name`, checked: no other '/', at most [`NAME_MAX`] bytes, not
/// empty, `.` or `..`.
///
/// # Errors
///
/// `InvalidInput`, saying what is wrong.
pub(crate) fn check_name(name: &str) -> io::Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() {
        return Err(invalid("a shared memory name cannot be empty"));
    }
    if bare.contains('/') {
        return Err(invalid(format!(
            "shared memory name {name:?} contains a '/' (only a leading one is allowed)"
        )));
    }
    if bare.len() > NAME_MAX {
        return Err(invalid(format!(
            "shared memory name of {} bytes is over NAME_MAX ({NAME_MAX})",
            bare.len()
        )));
    }
    if bare == "." || bare == ".." || bare.contains('\0') {
        return Err(invalid(format!(
            "{name:?} is not a valid shared memory name"
        )));
    }
    Ok(format!("/{bare}"))
}

fn thp_shmem_allowed() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
        .map(|s| {
            // The active choice is in brackets: "always within_size [advise] never deny force".
            let active = s.split('[').nth(1).and_then(|r| r.split(']').next());
            matches!(active, Some("always" | "within_size" | "advise" | "force"))
        })
        .unwrap_or(false)
}

fn huge_page_size() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("Hugepagesize:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        })
        .map_or(2 << 20, |kb| kb << 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(check_name("abc").unwrap(), "/abc");
        assert_eq!(check_name("/abc").unwrap(), "/abc");
        assert!(check_name("/a/b").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("/").is_err());
        assert!(check_name(&"x".repeat(256)).is_err());
        assert!(check_name(&"x".repeat(255)).is_ok());
    }
}
