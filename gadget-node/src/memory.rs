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
//! The container image links musl, whose malloc (mallocng) maps every
//! allocation above about 128 KiB on its own and unmaps it when freed: each
//! batch's buffers were mapped and faulted in afresh, 4 KiB at a time. The
//! static build spent 0.80 µs of CPU per event against glibc's 0.53 µs in
//! the same run (16,766 page faults and 578 mmap/munmap pairs for 300,000
//! opens, against none). So the static build allocates with mimalloc
//! (`ALLOCATOR`), which keeps freed pages for reuse. With mimalloc's defaults,
//! though, freed pages are purged only when it is called again a second
//! later, and it commits its arenas eagerly: 36 MiB idle (glibc 11), and a
//! peak that grew with each of three traces of 300,000 opens (54, 64 then
//! 73 MiB; glibc 30). [`tune_allocator`] purges at once and commits on
//! use: 8.5 MiB idle, peaks of 25 to 27 MiB, 12 MiB after the traces; and
//! 0.41 to 0.44 µs of CPU per event against glibc's 0.39 to 0.42 in the
//! same run (1,000,000 opens over gRPC, three runs each:
//! `xtask/scripts/ab.sh node GLIBC_BUILD MUSL_BUILD`).

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

/// The static (musl) build's allocator; see the module docs.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One of mimalloc's options, by its index in `mi_option_t` (mimalloc
/// v3's `mimalloc.h`, in libmimalloc-sys 0.1.49, which does not name them),
/// with its default there (`options.c`) and the value the node sets.
#[cfg(target_env = "musl")]
struct MimallocOption {
    name: &'static str,
    index: libmimalloc_sys::mi_option_t,
    default: std::ffi::c_long,
    value: std::ffi::c_long,
}

#[cfg(target_env = "musl")]
const MIMALLOC_OPTIONS: [MimallocOption; 2] = [
    // Purge freed pages at once rather than at the next call 1 s later,
    // which an idle node never makes.
    MimallocOption {
        name: "purge_delay",
        index: 15,
        default: 1000,
        value: 0,
    },
    // Commit arena memory as it is used, not the whole arena up front.
    MimallocOption {
        name: "arena_eager_commit",
        index: 4,
        default: 2,
        value: 0,
    },
];

/// The allocator the node runs on and what [`tune_allocator`] set, for the
/// log.
#[derive(Debug, Default, PartialEq)]
pub struct AllocatorSetup {
    /// `mimalloc` (the static build) or `libc` (glibc's malloc).
    pub allocator: &'static str,
    /// Each option set, as `name=value`.
    pub set: Vec<String>,
    /// Each option left alone, as its default is not the one expected: its
    /// index has moved in another mimalloc.
    pub left_alone: Vec<String>,
}

/// Sets the static build's allocator options (see the module docs); a
/// no-op with glibc. Call it first thing in `main`, and log what it says
/// once logging is set up.
pub fn tune_allocator() -> AllocatorSetup {
    #[cfg(not(target_env = "musl"))]
    let setup = AllocatorSetup {
        allocator: "libc",
        ..AllocatorSetup::default()
    };
    #[cfg(target_env = "musl")]
    let setup = {
        // Every option is set before this function allocates: mimalloc
        // reserves its first arena at the first allocation, committed
        // whole if `arena_eager_commit` is not 0 by then. Writing the log
        // lines between two options did that: the idle gadget pod held 13.2
        // MiB of heap rather than 2.6, 24 MiB resident rather than 13 (the
        // real-node e2e step, which checks it, and `cargo xtask bench
        // --port-forward`).
        let mut found = [0; MIMALLOC_OPTIONS.len()];
        for (option, found) in MIMALLOC_OPTIONS.iter().zip(&mut found) {
            // SAFETY: getting and setting options has no preconditions;
            // this runs before the node starts any thread.
            *found = unsafe { libmimalloc_sys::mi_option_get(option.index) };
            if *found == option.default {
                // SAFETY: as above.
                unsafe { libmimalloc_sys::mi_option_set(option.index, option.value) };
            }
        }
        let mut setup = AllocatorSetup {
            allocator: "mimalloc",
            ..AllocatorSetup::default()
        };
        for (option, found) in MIMALLOC_OPTIONS.iter().zip(found) {
            if found == option.default {
                setup.set.push(format!("{}={}", option.name, option.value));
            } else {
                setup.left_alone.push(format!(
                    "{} (index {} is {found}, not its default {})",
                    option.name, option.index, option.default
                ));
            }
        }
        setup
    };
    setup
}

/// Returns the wholly free pages of the heap to the kernel (glibc's
/// `malloc_trim`, mimalloc's `mi_collect` in the static build).
pub fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes each arena's lock itself and only releases
    // pages no allocation uses; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(target_env = "musl")]
    // SAFETY: mi_collect frees and purges only memory no allocation uses,
    // from any thread; it has no preconditions.
    unsafe {
        libmimalloc_sys::mi_collect(true);
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
