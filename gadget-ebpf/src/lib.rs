//! The kernel programs of kubectl-gadget and the records they emit.
//!
//! Each gadget is one C file in `src/bpf/` (compiled with clang by the build
//! script) with a header for what crosses to userspace, and one module here
//! that holds the compiled object, the `#[repr(C)]` mirror of its event and a
//! parser that checks every record before trusting it. The mirrors are tied
//! to the C structs by the layout test, not by comments.

#![deny(missing_docs)]

pub mod trace_exec;
pub mod trace_open;

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
}

/// Plain structs that any bit pattern makes valid.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs of integers and integer arrays.
pub unsafe trait PlainRecord: Copy {}

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

/// A compiled object, aligned as the ELF parser expects.
#[repr(C)]
struct AlignedObject<Bytes: ?Sized> {
    _align: [u64; 0],
    bytes: Bytes,
}

/// Includes a compiled `*.bpf.o` from the build script's output directory.
macro_rules! bpf_object {
    ($file:literal) => {{
        static OBJECT: &$crate::AlignedObject<[u8]> = &$crate::AlignedObject {
            _align: [],
            bytes: *include_bytes!(concat!(env!("OUT_DIR"), "/", $file)),
        };
        &OBJECT.bytes
    }};
}
pub(crate) use bpf_object;

#[cfg(test)]
mod layout_tests {
    //! The C side's layout, as printed by the host build of `layout_dump.c`,
    //! against the Rust mirrors.

    use std::collections::HashMap;
    use std::mem::{offset_of, size_of};

    use crate::trace_exec::{self, ExecEventHeader};
    use crate::trace_open::{self, OpenEventHeader};
    use crate::ProcessRecord;

    /// name → (offset, size) as the C compiler laid it out.
    fn c_layout() -> HashMap<String, (usize, usize)> {
        include_str!(concat!(env!("OUT_DIR"), "/c_layout.txt"))
            .lines()
            .map(|line| {
                let mut parts = line.split_whitespace();
                let name = parts.next().unwrap().to_string();
                let offset = parts.next().unwrap().parse().unwrap();
                let size = parts.next().unwrap().parse().unwrap();
                (name, (offset, size))
            })
            .collect()
    }

    /// Compares the offset of each named field; `tail` is the number of C
    /// fields past the Rust header (the variable part).
    macro_rules! check_fields {
        ($c:expr, $c_struct:literal, $rust:ty, tail = $tail:literal, [$($field:ident),* $(,)?]) => {{
            let mut checked = 0;
            $(
                let key = concat!($c_struct, ".", stringify!($field));
                let (offset, _) = $c.get(key).unwrap_or_else(|| panic!("{key} missing from the C dump"));
                assert_eq!(*offset, offset_of!($rust, $field), "offset of {key}");
                checked += 1;
            )*
            let c_fields = $c.keys().filter(|k| k.starts_with(concat!($c_struct, "."))).count();
            assert_eq!(
                c_fields,
                checked + $tail,
                "{}: fields in the C dump that the Rust mirror does not compare",
                $c_struct
            );
        }};
    }

    fn constant(c: &HashMap<String, (usize, usize)>, name: &str) -> usize {
        c.get(&format!("const.{name}"))
            .unwrap_or_else(|| panic!("{name} missing from the C dump"))
            .0
    }

    #[test]
    fn process_record_matches_c() {
        let c = c_layout();
        assert_eq!(c["process_record"].1, size_of::<ProcessRecord>());
        check_fields!(
            c,
            "process_record",
            ProcessRecord,
            tail = 0,
            [boot_ns, cgroup_id, mntns_id, pid, tid, ppid, uid, gid, _pad, comm]
        );
        assert_eq!(c["process_record.comm"].1, crate::TASK_COMM_LEN);
    }

    #[test]
    fn open_event_matches_c() {
        let c = c_layout();
        check_fields!(
            c,
            "open_event",
            OpenEventHeader,
            tail = 1,
            [
                proc,
                flags,
                ret,
                mode,
                dirfd,
                syscall,
                path_len,
                path_truncated
            ]
        );
        // The variable part starts where the Rust header ends.
        assert_eq!(c["open_event.path"].0, size_of::<OpenEventHeader>());
        assert_eq!(c["open_event.path"].1, trace_open::PATH_MAX);
        assert_eq!(constant(&c, "OPEN_PATH_MAX"), trace_open::PATH_MAX);
        assert_eq!(constant(&c, "OPEN_PREFIXES_MAX"), trace_open::PREFIXES_MAX);
        assert_eq!(
            constant(&c, "OPEN_PREFIX_LEN_MAX"),
            trace_open::PREFIX_LEN_MAX
        );
        assert_eq!(
            constant(&c, "OPEN_SYSCALL_OPEN"),
            trace_open::SYSCALL_OPEN as usize
        );
        assert_eq!(
            constant(&c, "OPEN_SYSCALL_OPENAT"),
            trace_open::SYSCALL_OPENAT as usize
        );
        assert_eq!(
            constant(&c, "OPEN_SYSCALL_OPENAT2"),
            trace_open::SYSCALL_OPENAT2 as usize
        );
    }

    #[test]
    fn exec_event_matches_c() {
        let c = c_layout();
        check_fields!(
            c,
            "exec_event",
            ExecEventHeader,
            tail = 1,
            [
                proc,
                parent_comm,
                ret,
                exe_len,
                args_count,
                args_size,
                truncated,
                _pad
            ]
        );
        assert_eq!(c["exec_event.data"].0, size_of::<ExecEventHeader>());
        assert_eq!(constant(&c, "EXEC_EXE_MAX"), trace_exec::EXE_MAX);
        assert_eq!(
            constant(&c, "EXEC_ARGS_COUNT_CAP"),
            trace_exec::ARGS_COUNT_CAP as usize
        );
        assert_eq!(
            constant(&c, "EXEC_ARGS_BYTES_CAP"),
            trace_exec::ARGS_BYTES_CAP as usize
        );
        assert_eq!(
            constant(&c, "EXEC_ARGS_COUNT_DEFAULT"),
            trace_exec::ARGS_COUNT_DEFAULT as usize
        );
        assert_eq!(
            constant(&c, "EXEC_ARGS_BYTES_DEFAULT"),
            trace_exec::ARGS_BYTES_DEFAULT as usize
        );
        assert_eq!(
            constant(&c, "EXEC_ARGS_TRUNCATED"),
            trace_exec::ARGS_TRUNCATED as usize
        );
        assert_eq!(
            constant(&c, "EXEC_EXE_TRUNCATED"),
            trace_exec::EXE_TRUNCATED as usize
        );
    }
}
