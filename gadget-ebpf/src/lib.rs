//! The kernel programs of kubectl-gadget, compiled, and what every gadget's
//! records share.
//!
//! Nothing here is per gadget. A gadget `<name>` is, in this crate, its C
//! program `src/bpf/<name>.bpf.c` and its header `src/bpf/<name>.h` with
//! only what crosses to userspace: the event struct, its sizes and flags,
//! and the list of them in `<NAME>_LAYOUT(STRUCT, FIELD, CONST)`:
//!
//! ```c
//! #define TRACE_OPEN_LAYOUT(STRUCT, FIELD, CONST) \
//!     STRUCT(open_event)                      \
//!     FIELD(open_event, proc)                 \
//!     FIELD(open_event, flags)                \
//!     ...                                     \
//!     CONST(OPEN_PATH_MAX)
//! ```
//!
//! The build script compiles every `.bpf.c` (served by [`object`]) and
//! prints the layout of everything those lists name ([`C_LAYOUT`]). The
//! gadget's Rust side (the `#[repr(C)]` mirror of its event, the parser that
//! checks every record before trusting it, the loader) is one module of
//! `gadget-node` (`src/gadgets/<name>.rs`), whose unit test ties the mirror
//! to the C struct with [`assert_layout!`], not by comments.
//!
//! What stays here is shared by every gadget: the process part each event
//! starts with ([`ProcessRecord`], `src/bpf/gadget_event.h`), reading a
//! record's fixed part ([`split_header`]), kernel strings ([`trim_nul`]) and
//! the error for a record that cannot be right ([`MalformedRecord`]). The
//! kernel-side helpers every program includes are `src/bpf/gadget_common.h`
//! and the CO-RE kernel types `src/bpf/kernel_types.h`.

pub mod layout;

pub use layout::C_LAYOUT;

/// Length of a task's `comm`, with its NUL.
pub const TASK_COMM_LEN: usize = 16;

/// The process part every event starts with (`struct process_record`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessRecord {
    /// `bpf_ktime_get_boot_ns()` when the event happened.
    pub boot_ns: u64,
    /// Inode of the task's cgroup v2 directory.
    pub cgroup_id: u64,
    /// Mount namespace inode number.
    pub mntns_id: u64,
    /// Thread group id (the pid as userspace knows it).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent's thread group id.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Explicit padding; always 0.
    pub _pad: u32,
    /// The task's name, NUL-padded.
    pub comm: [u8; TASK_COMM_LEN],
}

/// A record from the ring buffer that cannot be what its gadget emits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedRecord {
    /// Shorter than the fixed part of the event.
    #[error("record of {len} bytes is shorter than its {need}-byte header")]
    Short {
        /// Bytes in the record.
        len: usize,
        /// Bytes the header needs.
        need: usize,
    },
    /// A length field points beyond the record or a bound the kernel keeps.
    #[error("{field} of {value} does not fit the {len}-byte record")]
    BadLength {
        /// The field that is wrong.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Bytes in the record.
        len: usize,
    },
    /// A field holds a value its gadget never writes (an unknown kind).
    #[error("{field} of {value} is not a value the kernel program writes")]
    BadValue {
        /// The field that is wrong.
        field: &'static str,
        /// Its value.
        value: u64,
    },
}

/// Plain structs that any bit pattern makes valid.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs of integers and integer arrays.
pub unsafe trait PlainRecord: Copy {}

// SAFETY: ProcessRecord is #[repr(C)] and made only of integers and integer arrays

// with explicit padding, so any bit pattern is a valid value.

unsafe impl PlainRecord for ProcessRecord {}

/// Reads the fixed part `T` from the start of `record` and returns it with the
/// bytes that follow. Records in a ring buffer are only 8-byte aligned by
/// luck, so this copies with an unaligned read.
pub fn split_header<T: PlainRecord>(record: &[u8]) -> Result<(T, &[u8]), MalformedRecord> {
    let need = std::mem::size_of::<T>();
    if record.len() < need {
        return Err(MalformedRecord::Short {
            len: record.len(),
            need,
        });
    }
    // SAFETY: the length was checked and T is plain data (PlainRecord).
    let header = unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<T>()) };
    Ok((header, &record[need..]))
}

/// The bytes of a NUL-padded kernel string, without the padding.
pub fn trim_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// The compiled object of the program `src/bpf/<name>.bpf.c`, aligned as
/// the ELF parser expects; `None` if there is no such program.
///
/// # Examples
///
/// What a gadget's node module hands to aya's `EbpfLoader::load`:
///
/// ```no_run
/// let object: &[u8] = gadget_ebpf::object("trace_open").expect("trace_open.bpf.c is built");
/// ```
pub fn object(name: &str) -> Option<&'static [u8]> {
    OBJECTS
        .iter()
        .find(|(object, _)| *object == name)
        .map(|(_, bytes)| *bytes)
}

/// Every compiled program, by name (the file name without `.bpf.c`).
static OBJECTS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/objects.rs"));

/// A compiled object, aligned as the ELF parser expects.
#[repr(C)]
struct AlignedObject<Bytes: ?Sized> {
    _align: [u64; 0],
    bytes: Bytes,
}

/// Includes a compiled `*.bpf.o` from the build script's output directory
/// (used by the generated `objects.rs`).
macro_rules! bpf_object {
    ($file:literal) => {{
        static OBJECT: &$crate::AlignedObject<[u8]> = &$crate::AlignedObject {
            _align: [],
            bytes: *include_bytes!(concat!(env!("OUT_DIR"), "/", $file)),
        };
        &OBJECT.bytes
    }};
}
use bpf_object;

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_aligned_elf_files() {
        assert!(!OBJECTS.is_empty());
        for (name, bytes) in OBJECTS {
            assert_eq!(&bytes[..4], b"\x7fELF", "{name}");
            assert_eq!(
                bytes.as_ptr() as usize % 8,
                0,
                "{name} is not 8-byte aligned"
            );
            assert_eq!(object(name), Some(*bytes));
        }
    }

    #[test]
    fn process_record_matches_c() {
        assert_layout!(
            ProcessRecord,
            "process_record",
            [boot_ns, cgroup_id, mntns_id, pid, tid, ppid, uid, gid, _pad, comm]
        );
        let comm = layout::field("process_record", "comm");
        assert_eq!(comm.map(|(_, size)| size), Some(TASK_COMM_LEN));
        layout::assert_constants(&[("TASK_COMM_LEN", TASK_COMM_LEN as i64)]);
    }
}
