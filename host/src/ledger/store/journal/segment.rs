//! An append-only file written through a shared memory mapping: an append
//! is a copy into the page cache, with a system call only when the mapped
//! window moves on (once per [`WINDOW`]).
//!
//! Why not `write(2)`, measured (`examples/journal_append`; BENCHMARKS.md,
//! "The record journal's append"): `write(2)` of a 335-byte frame to an
//! `O_APPEND` file costs 0.9–1.3 µs of CPU, most of it the kernel's write
//! path (the inode lock, timestamps, the page cache lookup), paid on the
//! request path while the journal's lock is held, so concurrent answers
//! queue behind it. A copy into a mapped window costs 0.15–0.3 µs, its
//! page faults included (in the daemon, under `bench/profile`, the faults
//! are most of it).
//!
//! Durability is the same: the pages of a `MAP_SHARED` file mapping are
//! the file's page cache, which the kernel writes back whether or not the
//! process lives, so a process crash (`kill -9`) loses nothing copied, as
//! it loses nothing `write(2)` returned from. Neither is synced, so a
//! power loss can lose what was not yet written back.
//!
//! The mapping is a window of [`WINDOW`] bytes (or one frame, if larger)
//! that slides along the file as it fills, so the process's resident set
//! holds at most one window of the journal. Each window's blocks are
//! allocated with `posix_fallocate` before it is mapped: a full disk is an
//! error at the slide, never a `SIGBUS` at a copy. The file is therefore
//! longer than what it holds; past the last frame it is zeros, which the
//! reader takes as its end. Only the process holding the journal's lock
//! maps, truncates or renames the file, so no one shortens it under a
//! mapping (which would be a `SIGBUS`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

/// Bytes mapped at a time (more for a larger frame).
pub(crate) const WINDOW: usize = 1 << 20;

/// A file appended to through a sliding shared mapping.
pub(crate) struct Segment {
    file: File,
    /// Bytes appended: where the next append goes.
    len: u64,
    window: Option<Window>,
}

/// One mapped range of the file.
struct Window {
    ptr: NonNull<u8>,
    /// File offset of the first mapped byte (a multiple of the page size).
    start: u64,
    size: usize,
}

// SAFETY: a Window is an exclusively owned mapping of plain bytes; it is
// only touched through `&mut Segment`.
unsafe impl Send for Window {}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: the range was returned by mmap and nothing refers to it
        // once its Window goes. Unmapping a shared mapping keeps its
        // written pages in the page cache.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.size);
        }
    }
}

impl Segment {
    /// Opens (or creates) `path` to append after its first `len` bytes.
    pub(crate) fn open(path: &Path, len: u64) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        Ok(Segment {
            file,
            len,
            window: None,
        })
    }

    /// Bytes appended.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Appends `bytes` whole, or fails having appended nothing.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let end = self.len + bytes.len() as u64;
        let fits = self
            .window
            .as_ref()
            .is_some_and(|w| end <= w.start + w.size as u64);
        if !fits {
            self.slide(end)?;
        }
        let window = self.window.as_ref().expect("a window covering the append");
        let at = (self.len - window.start) as usize;
        // SAFETY: [at, at + len) lies inside the mapping (checked or just
        // mapped above), the mapping is writable, and `bytes` is not in it.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), window.ptr.as_ptr().add(at), bytes.len());
        }
        self.len = end;
        Ok(())
    }

    /// Maps a window from the page holding `len` through at least `end`,
    /// its blocks allocated first.
    fn slide(&mut self, end: u64) -> io::Result<()> {
        self.window = None;
        let page = page_size();
        let start = self.len / page * page;
        let size = (end - start).max(WINDOW as u64).div_ceil(page) * page;
        let size = usize::try_from(size).map_err(io::Error::other)?;
        let fd = self.file.as_raw_fd();
        let offset = libc::off_t::try_from(start).map_err(io::Error::other)?;
        let length = libc::off_t::try_from(size).map_err(io::Error::other)?;
        // SAFETY: plain system calls on a descriptor this Segment owns.
        let rc = unsafe { libc::posix_fallocate(fd, offset, length) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: as above; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        self.window = Some(Window {
            ptr: NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
            start,
            size,
        });
        Ok(())
    }

    /// Empties the file.
    pub(crate) fn truncate(&mut self) -> io::Result<()> {
        self.window = None;
        self.file.set_len(0)?;
        self.len = 0;
        Ok(())
    }
}

/// The system's page size (mapping offsets are multiples of it).
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}
