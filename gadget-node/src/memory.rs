//! Keeping the node's memory near its idle size once its traces end.
//!
//! A trace allocates as fast as its events arrive (decoded events, batches
//! of up to a MiB, encoded messages) and frees it all when it ends. glibc's
//! malloc kept most of it: a node at 12 MiB idle stayed at 52 MiB after
//! three traces of 300,000 opens each over gRPC. Measured after the same
//! three traces:
//! - [`release_free_heap`] (`malloc_trim(0)`) when a trace ends hands back
//!   every wholly free page of every arena: 23 MiB. What stays is the
//!   worker threads' arenas, where a few live allocations pin pages among
//!   the freed batches (a `malloc_trim` by hand afterwards frees nothing
//!   more).
//! - With [`use_one_arena`] as well, every thread allocates from the main
//!   heap, whose freed pages the trim returns: 12 MiB, the idle size, and
//!   the node's CPU time for the traces unchanged (68 to 71 ticks against
//!   61 to 71 before, user and system).
//! - Fixing the mmap threshold instead (glibc's is dynamic, so after a
//!   batch's buffer is freed, blocks up to its size come from the heap)
//!   also ends at 13 MiB, but maps and faults in every batch's buffer
//!   again: 87 to 89 ticks, about 0.2 s more CPU per million events, so
//!   it is not used.
//!
//! The container image links musl (Rust's bundled musl, whose malloc is
//! mallocng), which has no `malloc_trim` and no such call to make: it maps
//! every allocation above about 128 KiB on its own and unmaps it when
//! freed, and unmaps a group of small slots once all of them are free
//! (keeping a few groups back so that a size class does not bounce). It
//! does not release pages inside a group that is still in use (its
//! `MADV_FREE` path is compiled out), so a scattered survivor can still
//! hold a group. There, both functions do nothing; the image's
//! idle memory after traces is not measured here (the bench runs the glibc
//! build).

use std::sync::Arc;

/// Makes every thread allocate from one arena, glibc's main heap, rather
/// than one arena per thread (up to eight per core), so that the pages a
/// trace freed are not held in arenas the trim cannot empty. Call it
/// before any thread is started; a no-op with other C libraries.
pub fn use_one_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a tunable of the allocator, under its lock;
    // one arena is a valid maximum.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns the wholly free pages of the heap to the kernel (glibc); a
/// no-op with other C libraries.
pub fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes each arena's lock itself and only releases
    // pages no allocation uses; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Calls [`release_free_heap`] once every clone is dropped.
///
/// A trace's memory is freed by two owners that end in either order: its
/// reader task (the batch being built, the gadget's maps) and its queue's
/// receiving end (the batches the client has not taken yet). Each holds a
/// clone, so the heap is trimmed once, after both have freed theirs.
#[derive(Clone, Default)]
pub struct ReleaseWhenFreed {
    _shared: Arc<ReleaseOnDrop>,
}

#[derive(Default)]
struct ReleaseOnDrop;

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        // The trim walks the heap under the allocator's lock: not on a
        // runtime worker, where it would hold up other connections, and
        // the end of the trace's task that frees the trace's place.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(release_free_heap)),
            Err(_) => release_free_heap(),
        }
    }
}
