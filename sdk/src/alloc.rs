//! The heap of a policy compiled to WebAssembly.
//!
//! Every string and list the host passes to a policy is allocated in the
//! guest through `cabi_realloc` and freed when the call returns, so a small
//! routing decision makes a few dozen allocations. Rust's default allocator
//! for WebAssembly (dlmalloc) spent about a fifth of a whole `route` call
//! on them. Small blocks are instead kept in one free list per size class:
//! an allocation pops a block, a free pushes it back. Blocks of a class are
//! never returned to dlmalloc, so a policy's heap stays at its peak use of
//! each class; larger or more strictly aligned blocks go to dlmalloc as
//! before.
//!
//! A policy is one thread (the host runs one call at a time per instance),
//! so the lists need no locking. Only WebAssembly builds without threads
//! use this; native builds, such as a policy's unit tests, keep the system
//! allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Block sizes of the classes; every block is aligned to [`ALIGN`].
const CLASSES: [usize; 8] = [16, 32, 64, 128, 256, 512, 1024, 2048];
/// Alignment of every block of a class (enough for any Rust scalar).
const ALIGN: usize = 16;

/// Size-class free lists in front of the system allocator.
pub struct PolicyAllocator {
    /// The first free block of each class; a free block's first word
    /// points to the next.
    free: UnsafeCell<[*mut u8; CLASSES.len()]>,
}

// SAFETY: only registered on WebAssembly targets without threads, where the
// one thread is the only user.
unsafe impl Sync for PolicyAllocator {}

impl PolicyAllocator {
    /// An allocator with empty lists.
    pub const fn new() -> Self {
        PolicyAllocator {
            free: UnsafeCell::new([ptr::null_mut(); CLASSES.len()]),
        }
    }
}

impl Default for PolicyAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// The class that serves `layout`, if any.
fn class(layout: Layout) -> Option<usize> {
    if layout.align() > ALIGN {
        return None;
    }
    CLASSES.iter().position(|&size| layout.size() <= size)
}

/// The layout a block of class `class` is taken from the system with.
fn block(class: usize) -> Layout {
    // SAFETY: sizes and alignment are non-zero powers of two, far from
    // overflow.
    unsafe { Layout::from_size_align_unchecked(CLASSES[class], ALIGN) }
}

// SAFETY: blocks handed out are at least `layout.size()` bytes and aligned
// to at least `layout.align()`: a class block has the class's size (the
// smallest that holds the request) and `ALIGN` (no less than the request's
// alignment). A block is freed into the class its layout maps to, which is
// the class it came from, since `GlobalAlloc` callers free with the layout
// they allocated (or last reallocated) with.
unsafe impl GlobalAlloc for PolicyAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class(layout) else {
            // SAFETY: forwarded as received.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single-threaded (see `Sync`), and no reference to the
        // lists outlives this call.
        let free = unsafe { &mut *self.free.get() };
        let head = free[class];
        if head.is_null() {
            // SAFETY: a valid, non-zero layout.
            return unsafe { System.alloc(block(class)) };
        }
        // SAFETY: `head` is a free block of this class; its first word holds
        // the next free block.
        free[class] = unsafe { head.cast::<*mut u8>().read() };
        head
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(class) = class(layout) else {
            // SAFETY: forwarded as received.
            return unsafe { System.dealloc(ptr, layout) };
        };
        // SAFETY: as in `alloc`.
        let free = unsafe { &mut *self.free.get() };
        // SAFETY: `ptr` is a block of this class that its owner gave up; at
        // least 16 bytes, aligned for a pointer.
        unsafe { ptr.cast::<*mut u8>().write(free[class]) };
        free[class] = ptr;
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees a valid new size for this alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new_layout)) {
            // The block already holds the new size.
            (Some(old), Some(new)) if old == new => ptr,
            // SAFETY: both are the system's.
            (None, None) => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: a fresh block of the new layout, a copy of what
                // both hold, and the old block freed with its own layout.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn classes_hold_what_they_serve() {
        assert_eq!(class(layout(0, 1)), Some(0));
        assert_eq!(class(layout(16, 8)), Some(0));
        assert_eq!(class(layout(17, 1)), Some(1));
        assert_eq!(class(layout(2048, 16)), Some(7));
        assert_eq!(class(layout(2049, 1)), None);
        assert_eq!(class(layout(8, 32)), None);
    }

    #[test]
    fn freed_blocks_are_reused_and_keep_their_contents_apart() {
        let heap = PolicyAllocator::new();
        unsafe {
            let a = heap.alloc(layout(24, 8));
            let b = heap.alloc(layout(24, 8));
            assert_ne!(a, b);
            assert_eq!(a as usize % ALIGN, 0);
            a.write_bytes(0xAA, 24);
            b.write_bytes(0xBB, 24);
            heap.dealloc(a, layout(24, 8));
            // Same class, so the freed block comes back.
            let c = heap.alloc(layout(30, 4));
            assert_eq!(c, a);
            assert_eq!(b.add(23).read(), 0xBB);
            // Growing within the class keeps the block; past it, moves it
            // with its contents.
            c.write_bytes(0xCC, 30);
            assert_eq!(heap.realloc(c, layout(30, 4), 32), c);
            let d = heap.realloc(c, layout(32, 4), 100);
            assert_ne!(d, c);
            assert_eq!(d.add(29).read(), 0xCC);
            // Large blocks go to the system and back.
            let big = heap.alloc(layout(10_000, 8));
            big.write_bytes(1, 10_000);
            let bigger = heap.realloc(big, layout(10_000, 8), 20_000);
            assert_eq!(bigger.add(9_999).read(), 1);
            heap.dealloc(bigger, layout(20_000, 8));
            heap.dealloc(d, layout(100, 4));
            heap.dealloc(b, layout(24, 8));
        }
    }
}
