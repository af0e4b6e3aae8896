//! [`MutexBuilder`]: how to make a robust-mutex segment or open one.

use super::layout::{placement, MUTEX_LAYOUT};
use super::plain::Plain;
use super::shm_mutex::ShmMutex;
use crate::error::invalid;
use crate::shm::segment::SegmentBuilder;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;

/// How to make a [`ShmMutex`] over a `T`, or open one: a named segment
/// ([`MutexBuilder::new`]) or an anonymous memfd ([`MutexBuilder::anonymous`]), then
/// setters, then [`create`](MutexBuilder::create), [`open`](MutexBuilder::open) or
/// [`open_fd`](MutexBuilder::open_fd).
///
/// # Examples
///
/// ```
/// use ipckit::shm::{MutexBuilder, ShmMutex};
/// # fn main() -> std::io::Result<()> {
/// # let jobs = format!("/doc-jobs-{}", std::process::id()); // unique: examples run at once
/// // Process 1: owner-only unless `mode` says otherwise, exclusive; unlinked on drop.
/// let m = MutexBuilder::new(&jobs).mode(0o600).create(0u64)?; // e.g. "/jobs"
///
/// // Process 2 (here the same process): the same `T`, checked.
/// let m2: ShmMutex<u64> = MutexBuilder::new(&jobs).open()?;
/// # drop((m2, m));
/// # Ok(()) }
/// ```
pub struct MutexBuilder<T: Plain> {
    /// `None` for an anonymous segment.
    name: Option<String>,
    mode: u32,
    _value: PhantomData<T>,
}

impl<T: Plain> Clone for MutexBuilder<T> {
    fn clone(&self) -> Self {
        MutexBuilder {
            name: self.name.clone(),
            mode: self.mode,
            _value: PhantomData,
        }
    }
}

impl<T: Plain> fmt::Debug for MutexBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutexBuilder")
            .field("name", &self.name)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("value", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T: Plain> ShmMutex<T> {
    /// A builder for the mutex segment `name`: the same as [`MutexBuilder::new`].
    pub fn builder(name: &str) -> MutexBuilder<T> {
        MutexBuilder::new(name)
    }
}

impl<T: Plain> MutexBuilder<T> {
    /// A builder for the mutex segment `name` (`/name` or `name`), checked when it is
    /// created or opened.
    pub fn new(name: &str) -> MutexBuilder<T> {
        MutexBuilder {
            name: Some(name.to_owned()),
            mode: 0o600,
            _value: PhantomData,
        }
    }

    /// A builder for a mutex without a name: [`MutexBuilder::create`] makes a memfd, to be
    /// handed to another process by descriptor ([`AsFd`](std::os::fd::AsFd) on the
    /// [`ShmMutex`]) and opened there with [`MutexBuilder::open_fd`].
    #[doc(alias = "memfd_create")]
    pub fn anonymous() -> MutexBuilder<T> {
        MutexBuilder {
            name: None,
            mode: 0o600,
            _value: PhantomData,
        }
    }

    /// Permission bits of the segment created (default 0600). Ignored by the openers.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    fn segment(&self) -> SegmentBuilder {
        let b = match &self.name {
            Some(name) => SegmentBuilder::new(name),
            None => SegmentBuilder::anonymous(),
        };
        b.mode(self.mode).layout(MUTEX_LAYOUT)
    }

    /// Creates the segment holding `init`: the named one exclusively (an existing object
    /// of that name is `AlreadyExists`), recorded in the [`crate::registry`] and unlinked
    /// when the `ShmMutex` drops; or an anonymous memfd.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad name (empty, a '/' after the first, over
    /// [`crate::shm::NAME_MAX`] bytes) or a `T` aligned above a page; `AlreadyExists`; or the OS
    /// error.
    pub fn create(self, init: T) -> io::Result<ShmMutex<T>> {
        let (off, total) = placement::<T>()?;
        let seg = self.segment().size(total).create()?;
        ShmMutex::init(seg, off, init)
    }

    /// Opens the segment made by [`MutexBuilder::create`] with the same `T`. It never
    /// creates one.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad name, or on an anonymous builder (open the descriptor with
    /// [`MutexBuilder::open_fd`]); `NotFound`; `PermissionDenied` for a segment another
    /// user can write; `InvalidData` for a segment of another layout (not a mutex), a mutex
    /// over a value of another size or alignment.
    pub fn open(self) -> io::Result<ShmMutex<T>> {
        if self.name.is_none() {
            return Err(invalid(
                "an anonymous mutex has no name to open: open its descriptor with \
                 MutexBuilder::open_fd",
            ));
        }
        ShmMutex::adopt(self.segment().open()?)
    }

    /// Opens a segment from a descriptor (a memfd from [`MutexBuilder::create`] on an
    /// anonymous builder, or a named segment's, received from another process), checking
    /// it as [`MutexBuilder::open`] does. The builder's name, if it has one, is not used.
    ///
    /// # Errors
    ///
    /// As [`MutexBuilder::open`].
    pub fn open_fd(self, fd: OwnedFd) -> io::Result<ShmMutex<T>> {
        ShmMutex::adopt(self.segment().open_fd(fd)?)
    }
}
