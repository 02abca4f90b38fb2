//! `trace_file`: opens, reads, writes and closes of followed files, the
//! execs and exits of the selected processes, and SIGKILL at an operation on
//! a followed file (`kill_on`).
//!
//! A file is followed from a successful open whose kernel-resolved path (as
//! seen from the process's root) matches one of the trace's paths or
//! prefixes; the open file is followed, not the descriptor, so its dups,
//! inherited and passed descriptors are followed too. What is not followed
//! (mmap writes, io_uring, sendfile and the like, 32-bit compat syscalls)
//! and why is written at the top of the kernel side,
//! `gadget-ebpf/src/bpf/trace_file.bpf.c`; its event (`trace_file.h`) is
//! mirrored by [`record`], tied to it by its layout test.

use std::collections::HashMap;
use std::sync::Mutex;

use aya::{Ebpf, EbpfError, EbpfLoader};
use bytes::Bytes;
use gadget_ebpf::MalformedRecord;
use gadget_proto::v1;

use crate::features::Feature;

use self::record::{PATTERNS_MAX, PATTERN_LEN_MAX};
use super::{
    object, process_from, syscall_tracepoint, AttachPoint, AttachTarget, InvalidParams,
    KernelGadget, LossCounter, PreparedGadget,
};

/// The event as `gadget-ebpf/src/bpf/trace_file.h` lays it out, and its parser.
pub mod record {
    use gadget_ebpf::{split_header, MalformedRecord, PlainRecord, ProcessRecord};

    /// Paths and prefixes one trace follows, in all (`FILE_PATTERNS_MAX`).
    pub const PATTERNS_MAX: usize = 8;
    /// Longest path or prefix, in bytes (`FILE_PATTERN_LEN_MAX`).
    pub const PATTERN_LEN_MAX: usize = 256;
    /// A resolved path is at most `PATH_MAX - 1` bytes (`FILE_PATH_MAX`).
    pub const PATH_MAX: usize = 4096;
    /// Dentries and mount crossings one path walk visits at most
    /// (`FILE_PATH_DEPTH_MAX`).
    pub const PATH_DEPTH_MAX: u32 = 2048;
    /// The executable's path keeps its last `EXE_MAX - 1` bytes
    /// (`FILE_EXE_MAX`).
    pub const EXE_MAX: usize = 1024;
    /// An exec's arguments keep their first `ARGS_MAX - 1` bytes
    /// (`FILE_ARGS_MAX`).
    pub const ARGS_MAX: usize = 4096;
    /// `kind` of an open, read, write or close (`FILE_EVENT_ACCESS`).
    pub const EVENT_ACCESS: u32 = 1;
    /// `kind` of an exec (`FILE_EVENT_EXEC`).
    pub const EVENT_EXEC: u32 = 2;
    /// `kind` of a process's end (`FILE_EVENT_EXIT`).
    pub const EVENT_EXIT: u32 = 3;
    /// `operation` values, the protocol's `FileOperation` (`FILE_OP_*`).
    pub const OP_OPEN: u32 = 1;
    /// See [`OP_OPEN`].
    pub const OP_READ: u32 = 2;
    /// See [`OP_OPEN`].
    pub const OP_WRITE: u32 = 3;
    /// See [`OP_OPEN`].
    pub const OP_CLOSE: u32 = 4;
    /// `truncated` bit: the path walk hit a bound; the path's start is missing.
    pub const PATH_TRUNCATED: u32 = 1;
    /// `truncated` bit: the executable's path's start is missing.
    pub const EXE_TRUNCATED: u32 = 2;
    /// `truncated` bit: the arguments went on beyond `ARGS_MAX - 1` bytes.
    pub const ARGS_TRUNCATED: u32 = 4;

    /// The fixed part of `struct file_event`; the variable part follows.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct FileEventHeader {
        /// Who.
        pub proc: ProcessRecord,
        /// `EVENT_*`.
        pub kind: u32,
        /// `OP_*` of an access.
        pub operation: u32,
        /// Access: the fd (open), bytes (read, write), 0 (close), or -errno.
        pub ret: i64,
        /// Access: the fd the process used.
        pub fd: i32,
        /// Access: non-zero when SIGKILL was sent at it. (u32, not bool: a
        /// fixed width with no hidden padding.)
        pub killed: u32,
        /// Exit: the wait status (`code << 8 | signal`).
        pub exit_status: i32,
        /// Explicit padding.
        pub _pad: u32,
        /// `*_TRUNCATED` bits.
        pub truncated: u32,
        /// Bytes of the executable's path, last in the record.
        pub exe_len: u32,
        /// Access: bytes of resolved path, first in the record.
        pub path_len: u32,
        /// Open: bytes of the path as passed, after the resolved path.
        pub passed_len: u32,
        /// Exec: bytes of arguments, first in the record.
        pub args_len: u32,
        /// Explicit padding.
        pub _pad2: u32,
    }

    // SAFETY: repr(C), integers and a PlainRecord only.
    unsafe impl PlainRecord for FileEventHeader {}

    /// What a record is about, with its variable fields.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FileRecordKind<'a> {
        /// An operation on a followed file.
        Access {
            /// `OP_*`.
            operation: u32,
            /// The resolved path.
            path: &'a [u8],
            /// Open: the path as passed; empty otherwise.
            passed: &'a [u8],
        },
        /// A new program.
        Exec {
            /// The arguments, each ended by a NUL but a cut last one.
            args: &'a [u8],
        },
        /// The end of a process.
        Exit,
    }

    /// One event, parsed from a ring-buffer record; borrows the record.
    #[derive(Debug, Clone, Copy)]
    pub struct FileRecord<'a> {
        /// The fixed part.
        pub header: FileEventHeader,
        /// What it is about.
        pub kind: FileRecordKind<'a>,
        /// The process's executable, resolved by the kernel.
        pub exe: &'a [u8],
    }

    /// The arguments of an exec's `args` bytes, in order; empty arguments
    /// are kept, and a last argument cut short has no NUL.
    pub fn split_args(args: &[u8]) -> impl Iterator<Item = &[u8]> {
        let body = args.strip_suffix(&[0]).unwrap_or(args);
        body.split(|&b| b == 0)
            .take(if args.is_empty() { 0 } else { usize::MAX })
    }

    /// Checks and splits one record.
    pub fn parse(record: &[u8]) -> Result<FileRecord<'_>, MalformedRecord> {
        let (header, rest) = split_header::<FileEventHeader>(record)?;
        let bad = |field, value: u32| MalformedRecord::BadLength {
            field,
            value: value.into(),
            len: record.len(),
        };
        let lengths = [
            ("path_len", header.path_len, PATH_MAX),
            ("passed_len", header.passed_len, PATH_MAX),
            ("args_len", header.args_len, ARGS_MAX),
            ("exe_len", header.exe_len, EXE_MAX),
        ];
        let mut fields = [&rest[..0]; 4];
        let mut at = 0;
        for (i, (field, len, max)) in lengths.into_iter().enumerate() {
            let len_usize = len as usize;
            if len_usize >= max || len_usize > rest.len() - at {
                return Err(bad(field, len));
            }
            fields[i] = &rest[at..at + len_usize];
            at += len_usize;
        }
        let [path, passed, args, exe] = fields;
        let only = |allowed: &[&str]| {
            lengths
                .iter()
                .find(|(field, len, _)| *len != 0 && !allowed.contains(field))
                .map_or(Ok(()), |&(field, len, _)| Err(bad(field, len)))
        };
        let kind = match header.kind {
            EVENT_ACCESS => {
                only(&["path_len", "passed_len", "exe_len"])?;
                if !(OP_OPEN..=OP_CLOSE).contains(&header.operation) {
                    return Err(MalformedRecord::BadValue {
                        field: "operation",
                        value: header.operation.into(),
                    });
                }
                if header.operation != OP_OPEN && !passed.is_empty() {
                    return Err(bad("passed_len", header.passed_len));
                }
                FileRecordKind::Access {
                    operation: header.operation,
                    path,
                    passed,
                }
            }
            EVENT_EXEC => {
                only(&["args_len", "exe_len"])?;
                FileRecordKind::Exec { args }
            }
            EVENT_EXIT => {
                only(&["exe_len"])?;
                FileRecordKind::Exit
            }
            other => {
                return Err(MalformedRecord::BadValue {
                    field: "kind",
                    value: other.into(),
                })
            }
        };
        Ok(FileRecord { header, kind, exe })
    }

    #[cfg(test)]
    mod tests {
        use gadget_ebpf::layout;

        use super::*;

        fn record(header: FileEventHeader, data: &[&[u8]]) -> Vec<u8> {
            let mut bytes = vec![0u8; std::mem::size_of::<FileEventHeader>()];
            // SAFETY: plain struct into a buffer of exactly its size.
            unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast(), header) };
            for part in data {
                bytes.extend_from_slice(part);
            }
            bytes
        }

        fn access(operation: u32, path: &[u8], passed: &[u8], exe: &[u8]) -> Vec<u8> {
            let header = FileEventHeader {
                kind: EVENT_ACCESS,
                operation,
                path_len: path.len() as u32,
                passed_len: passed.len() as u32,
                exe_len: exe.len() as u32,
                ..Default::default()
            };
            record(header, &[path, passed, exe])
        }

        #[test]
        fn parses_an_open() {
            let bytes = access(OP_OPEN, b"/etc/shadow", b"../shadow", b"/usr/bin/cat");
            let file = parse(&bytes).unwrap();
            assert_eq!(
                file.kind,
                FileRecordKind::Access {
                    operation: OP_OPEN,
                    path: b"/etc/shadow",
                    passed: b"../shadow",
                }
            );
            assert_eq!(file.exe, b"/usr/bin/cat");
        }

        #[test]
        fn parses_an_exec_and_splits_its_arguments() {
            let args = b"ls\0\0-l\0";
            let header = FileEventHeader {
                kind: EVENT_EXEC,
                args_len: args.len() as u32,
                exe_len: 7,
                ..Default::default()
            };
            let bytes = record(header, &[args, b"/bin/ls"]);
            let file = parse(&bytes).unwrap();
            let FileRecordKind::Exec { args } = file.kind else {
                panic!("{:?}", file.kind)
            };
            let split: Vec<&[u8]> = split_args(args).collect();
            assert_eq!(split, [&b"ls"[..], b"", b"-l"]);
            assert_eq!(file.exe, b"/bin/ls");
        }

        #[test]
        fn cut_and_empty_arguments_split_as_they_are() {
            assert_eq!(split_args(b"a\0bc").collect::<Vec<_>>(), [&b"a"[..], b"bc"]);
            assert_eq!(split_args(b"\0").collect::<Vec<_>>(), [&b""[..]]);
            assert_eq!(split_args(b"").count(), 0);
        }

        #[test]
        fn short_record_is_malformed() {
            assert!(matches!(
                parse(&[0u8; 10]),
                Err(MalformedRecord::Short { len: 10, .. })
            ));
        }

        #[test]
        fn lengths_beyond_the_record_are_malformed() {
            let mut bytes = access(OP_READ, b"/etc/x", b"", b"/bin/sh");
            bytes.truncate(bytes.len() - 1);
            assert!(matches!(
                parse(&bytes),
                Err(MalformedRecord::BadLength {
                    field: "exe_len",
                    ..
                })
            ));
        }

        #[test]
        fn lengths_beyond_the_kernel_bounds_are_malformed() {
            let long = vec![b'a'; EXE_MAX];
            let bytes = access(OP_READ, b"/x", b"", &long);
            assert!(matches!(
                parse(&bytes),
                Err(MalformedRecord::BadLength {
                    field: "exe_len",
                    ..
                })
            ));
        }

        #[test]
        fn unknown_kind_and_operation_are_malformed() {
            let header = FileEventHeader {
                kind: 9,
                ..Default::default()
            };
            assert_eq!(
                parse(&record(header, &[])).unwrap_err(),
                MalformedRecord::BadValue {
                    field: "kind",
                    value: 9
                }
            );
            let bytes = access(7, b"/x", b"", b"");
            assert_eq!(
                parse(&bytes).unwrap_err(),
                MalformedRecord::BadValue {
                    field: "operation",
                    value: 7
                }
            );
        }

        #[test]
        fn fields_of_another_kind_are_malformed() {
            // An exit carries no path; a read no path as passed.
            let header = FileEventHeader {
                kind: EVENT_EXIT,
                path_len: 2,
                ..Default::default()
            };
            assert!(matches!(
                parse(&record(header, &[b"/x"])),
                Err(MalformedRecord::BadLength {
                    field: "path_len",
                    ..
                })
            ));
            let bytes = access(OP_READ, b"/x", b"x", b"");
            assert!(matches!(
                parse(&bytes),
                Err(MalformedRecord::BadLength {
                    field: "passed_len",
                    ..
                })
            ));
        }

        #[test]
        fn file_event_matches_c() {
            gadget_ebpf::assert_layout!(
                FileEventHeader,
                "file_event",
                [
                    proc,
                    kind,
                    operation,
                    ret,
                    fd,
                    killed,
                    exit_status,
                    _pad,
                    truncated,
                    exe_len,
                    path_len,
                    passed_len,
                    args_len,
                    _pad2
                ],
                tail = data
            );
            assert_eq!(
                layout::field("file_event", "data").map(|(_, size)| size),
                Some(EXE_MAX + 2 * PATH_MAX)
            );
            layout::assert_constants(&[
                ("FILE_PATTERNS_MAX", PATTERNS_MAX as i64),
                ("FILE_PATTERN_LEN_MAX", PATTERN_LEN_MAX as i64),
                ("FILE_PATH_MAX", PATH_MAX as i64),
                ("FILE_PATH_DEPTH_MAX", PATH_DEPTH_MAX.into()),
                ("FILE_EXE_MAX", EXE_MAX as i64),
                ("FILE_ARGS_MAX", ARGS_MAX as i64),
                ("FILE_EVENT_ACCESS", EVENT_ACCESS.into()),
                ("FILE_EVENT_EXEC", EVENT_EXEC.into()),
                ("FILE_EVENT_EXIT", EVENT_EXIT.into()),
                ("FILE_OP_OPEN", OP_OPEN.into()),
                ("FILE_OP_READ", OP_READ.into()),
                ("FILE_OP_WRITE", OP_WRITE.into()),
                ("FILE_OP_CLOSE", OP_CLOSE.into()),
                ("FILE_PATH_TRUNCATED", PATH_TRUNCATED.into()),
                ("FILE_EXE_TRUNCATED", EXE_TRUNCATED.into()),
                ("FILE_ARGS_TRUNCATED", ARGS_TRUNCATED.into()),
            ]);
            // The kernel's operations are the protocol's.
            assert_eq!(OP_OPEN, v1_op(gadget_proto::v1::FileOperation::Open));
            assert_eq!(OP_READ, v1_op(gadget_proto::v1::FileOperation::Read));
            assert_eq!(OP_WRITE, v1_op(gadget_proto::v1::FileOperation::Write));
            assert_eq!(OP_CLOSE, v1_op(gadget_proto::v1::FileOperation::Close));
        }

        fn v1_op(op: gadget_proto::v1::FileOperation) -> u32 {
            op as u32
        }
    }
}

/// The `trace_file` gadget.
pub struct TraceFile;

impl KernelGadget for TraceFile {
    fn name(&self) -> &'static str {
        gadget_proto::TRACE_FILE
    }

    fn required_features(&self) -> &'static [Feature] {
        // The path walk runs under bpf_loop (Linux 5.17, which also has
        // bpf_send_signal, Linux 5.3).
        &[Feature::BpfLoop]
    }

    fn prepare(
        &self,
        params: Option<&v1::run_gadget_request::Params>,
    ) -> Result<Box<dyn PreparedGadget>, InvalidParams> {
        let params = match params {
            None => v1::FileParams::default(),
            Some(v1::run_gadget_request::Params::File(file)) => file.clone(),
            Some(_) => {
                return Err(InvalidParams(
                    "trace_file takes file parameters, not another gadget's".into(),
                ))
            }
        };
        Ok(Box::new(PreparedFile::new(&params)?))
    }
}

/// Every operation's bit (`1 << FileOperation`).
const ALL_OPERATIONS: u32 =
    1 << record::OP_OPEN | 1 << record::OP_READ | 1 << record::OP_WRITE | 1 << record::OP_CLOSE;

/// `trace_file` with its per-trace constants.
struct PreparedFile {
    pattern_count: u32,
    pattern_lens: [u32; PATTERNS_MAX],
    pattern_exact: [u32; PATTERNS_MAX],
    patterns: [[u8; PATTERN_LEN_MAX]; PATTERNS_MAX],
    operations: u32,
    kill_on: u32,
    /// The arguments of the processes this trace saw exec, for their exit
    /// rows (the kernel side keeps none until the exit).
    exec_args: Mutex<ExecArgs>,
}

/// The arguments of each running process whose exec the trace reported,
/// by pid: its exit row names them as the exec row did. Processes that
/// exec'd before the trace started have none. Bounded: beyond
/// [`ExecArgs::MAX_PROCESSES`] running processes, newer ones are not
/// remembered (their exit rows name the executable only).
#[derive(Default)]
struct ExecArgs {
    by_pid: HashMap<u32, (Vec<Bytes>, bool)>,
}

impl ExecArgs {
    const MAX_PROCESSES: usize = 16384;

    /// Remembers `args` (copied: the record's bytes are a slice of a whole
    /// batch, which this must not keep alive) for `pid`'s exit.
    fn exec(&mut self, pid: u32, args: &[Bytes], truncated: bool) {
        if self.by_pid.len() >= Self::MAX_PROCESSES && !self.by_pid.contains_key(&pid) {
            return;
        }
        let owned = args.iter().map(|arg| Bytes::copy_from_slice(arg)).collect();
        self.by_pid.insert(pid, (owned, truncated));
    }

    /// The arguments of `pid`, which ended; forgotten, as its pid may be
    /// reused.
    fn exit(&mut self, pid: u32) -> (Vec<Bytes>, bool) {
        self.by_pid.remove(&pid).unwrap_or_default()
    }
}

impl PreparedFile {
    fn new(params: &v1::FileParams) -> Result<Self, InvalidParams> {
        let count = params.path_prefixes.len() + params.paths.len();
        if count > PATTERNS_MAX {
            return Err(InvalidParams(format!(
                "at most {PATTERNS_MAX} paths and path prefixes in all, got {count}"
            )));
        }
        let operations = match params.operations {
            0 => ALL_OPERATIONS,
            ops if ops & !ALL_OPERATIONS == 0 => ops,
            ops => {
                return Err(InvalidParams(format!(
                    "operations {ops:#x} has bits that name no file operation \
                     (1 << open, read, write or close)"
                )))
            }
        };
        let kill_on = match v1::FileOperation::try_from(params.kill_on) {
            Ok(v1::FileOperation::Unspecified) => 0,
            Ok(
                op @ (v1::FileOperation::Open | v1::FileOperation::Read | v1::FileOperation::Write),
            ) => op as u32,
            Ok(v1::FileOperation::Close) => {
                return Err(InvalidParams(
                    "kill on close is not supported: the file is closed by then; \
                     kill on open, read or write"
                        .into(),
                ))
            }
            Err(_) => {
                return Err(InvalidParams(format!(
                    "kill on {} names no file operation",
                    params.kill_on
                )))
            }
        };
        if kill_on != 0 && count == 0 {
            return Err(InvalidParams(
                "kill on an operation needs the paths or path prefixes it applies to".into(),
            ));
        }
        let mut prepared = PreparedFile {
            pattern_count: count as u32,
            pattern_lens: [0; PATTERNS_MAX],
            pattern_exact: [0; PATTERNS_MAX],
            patterns: [[0; PATTERN_LEN_MAX]; PATTERNS_MAX],
            operations,
            kill_on,
            exec_args: Mutex::default(),
        };
        let patterns = params
            .path_prefixes
            .iter()
            .map(|p| (p, false))
            .chain(params.paths.iter().map(|p| (p, true)));
        for (i, (pattern, exact)) in patterns.enumerate() {
            check_pattern(pattern, exact)?;
            prepared.pattern_lens[i] = pattern.len() as u32;
            prepared.pattern_exact[i] = exact.into();
            prepared.patterns[i][..pattern.len()].copy_from_slice(pattern);
        }
        Ok(prepared)
    }
}

/// A path or prefix must be one a resolved path can match: absolute and
/// normal (the kernel's paths have no `//`, `.` or `..`, and no trailing
/// `/` but the root's). A prefix's last component is the start of a name,
/// so it may be `.` or `..` (`/etc/.` starts `/etc/.profile`) or empty.
fn check_pattern(pattern: &[u8], exact: bool) -> Result<(), InvalidParams> {
    let what = if exact { "path" } else { "path prefix" };
    let shown = String::from_utf8_lossy(pattern);
    if pattern.is_empty() || pattern.len() > PATTERN_LEN_MAX {
        return Err(InvalidParams(format!(
            "{what} {shown:?} must be 1 to {PATTERN_LEN_MAX} bytes"
        )));
    }
    if pattern[0] != b'/' {
        return Err(InvalidParams(format!(
            "{what} {shown:?} must be absolute: paths are matched as the kernel resolves them, \
             from the process's root"
        )));
    }
    if pattern.contains(&0) {
        return Err(InvalidParams(format!("{what} {shown:?} has a NUL byte")));
    }
    let components: Vec<&[u8]> = pattern[1..].split(|&b| b == b'/').collect();
    let last = components.len() - 1;
    let abnormal = components.iter().enumerate().any(|(i, c)| {
        let dots = *c == b"." || *c == b"..";
        (dots && (exact || i != last)) || (c.is_empty() && i != last)
    });
    if abnormal {
        return Err(InvalidParams(format!(
            "{what} {shown:?} is not normal: resolved paths have no \"//\", \".\" or \"..\""
        )));
    }
    if exact && pattern.len() > 1 && pattern.ends_with(b"/") {
        return Err(InvalidParams(format!(
            "path {shown:?} ends with \"/\", which no resolved path does; \
             to follow what is below it, make it a path prefix"
        )));
    }
    Ok(())
}

const fn sched_tracepoint(program: &'static str, name: &'static str) -> AttachPoint {
    AttachPoint {
        program,
        target: AttachTarget::Tracepoint {
            category: "sched",
            name,
        },
        required: true,
    }
}

const ATTACH_POINTS: &[AttachPoint] = &[
    // open(2) exists only on older architectures (not on arm64).
    syscall_tracepoint!("sys_enter_open", required = false),
    syscall_tracepoint!("sys_exit_open", required = false),
    syscall_tracepoint!("sys_enter_openat", required = true),
    syscall_tracepoint!("sys_exit_openat", required = true),
    // openat2 is from Linux 5.6.
    syscall_tracepoint!("sys_enter_openat2", required = false),
    syscall_tracepoint!("sys_exit_openat2", required = false),
    syscall_tracepoint!("sys_enter_read", required = true),
    syscall_tracepoint!("sys_exit_read", required = true),
    syscall_tracepoint!("sys_enter_pread64", required = true),
    syscall_tracepoint!("sys_exit_pread64", required = true),
    syscall_tracepoint!("sys_enter_readv", required = true),
    syscall_tracepoint!("sys_exit_readv", required = true),
    syscall_tracepoint!("sys_enter_preadv", required = true),
    syscall_tracepoint!("sys_exit_preadv", required = true),
    syscall_tracepoint!("sys_enter_preadv2", required = true),
    syscall_tracepoint!("sys_exit_preadv2", required = true),
    syscall_tracepoint!("sys_enter_write", required = true),
    syscall_tracepoint!("sys_exit_write", required = true),
    syscall_tracepoint!("sys_enter_pwrite64", required = true),
    syscall_tracepoint!("sys_exit_pwrite64", required = true),
    syscall_tracepoint!("sys_enter_writev", required = true),
    syscall_tracepoint!("sys_exit_writev", required = true),
    syscall_tracepoint!("sys_enter_pwritev", required = true),
    syscall_tracepoint!("sys_exit_pwritev", required = true),
    syscall_tracepoint!("sys_enter_pwritev2", required = true),
    syscall_tracepoint!("sys_exit_pwritev2", required = true),
    syscall_tracepoint!("sys_enter_close", required = true),
    syscall_tracepoint!("sys_exit_close", required = true),
    sched_tracepoint(
        "tracepoint__sched__sched_process_exec",
        "sched_process_exec",
    ),
    sched_tracepoint(
        "tracepoint__sched__sched_process_exit",
        "sched_process_exit",
    ),
];

const LOSS_COUNTERS: &[LossCounter] = &[LossCounter {
    map: "lost_follows",
    what: "file operations or opened files not followed because a kernel map was full",
}];

impl PreparedGadget for PreparedFile {
    fn name(&self) -> &'static str {
        gadget_proto::TRACE_FILE
    }

    fn load<'a>(&'a self, loader: &mut EbpfLoader<'a>) -> Result<Ebpf, EbpfError> {
        loader
            .set_global("targ_pattern_count", &self.pattern_count, true)
            .set_global("targ_pattern_lens", &self.pattern_lens, true)
            .set_global("targ_pattern_exact", &self.pattern_exact, true)
            .set_global("targ_patterns", &self.patterns, true)
            .set_global("targ_operations", &self.operations, true)
            .set_global("targ_kill_on", &self.kill_on, true)
            .load(object(gadget_proto::TRACE_FILE))
    }

    fn attach_points(&self) -> &'static [AttachPoint] {
        ATTACH_POINTS
    }

    fn loss_counters(&self) -> &'static [LossCounter] {
        LOSS_COUNTERS
    }

    fn decode(&self, record: &Bytes, event: &mut v1::Event) -> Result<(), MalformedRecord> {
        use v1::file_event::What;

        let file = record::parse(record)?;
        let h = &file.header;
        event.timestamp_ns = h.proc.boot_ns;
        event.process = Some(process_from(record, &h.proc));
        let what = match file.kind {
            record::FileRecordKind::Access {
                operation,
                path,
                passed,
            } => What::Access(v1::FileAccess {
                operation: operation as i32,
                path: record.slice_ref(path),
                path_truncated: h.truncated & record::PATH_TRUNCATED != 0,
                path_as_passed: record.slice_ref(passed),
                fd: h.fd,
                ret: h.ret,
                killed: h.killed != 0,
            }),
            record::FileRecordKind::Exec { args } => {
                let exec = v1::ProcessExec {
                    args: record::split_args(args)
                        .map(|arg| record.slice_ref(arg))
                        .collect(),
                    args_truncated: h.truncated & record::ARGS_TRUNCATED != 0,
                };
                self.exec_args
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .exec(h.proc.pid, &exec.args, exec.args_truncated);
                What::Exec(exec)
            }
            record::FileRecordKind::Exit => {
                let (args, args_truncated) = self
                    .exec_args
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .exit(h.proc.pid);
                What::Exit(v1::ProcessExit {
                    // As WEXITSTATUS and WTERMSIG read a wait status.
                    exit_code: (h.exit_status >> 8) & 0xff,
                    signal: h.exit_status & 0x7f,
                    args,
                    args_truncated,
                })
            }
        };
        event.kind = Some(v1::event::Kind::File(v1::FileEvent {
            what: Some(what),
            exe: record.slice_ref(file.exe),
            exe_truncated: h.truncated & record::EXE_TRUNCATED != 0,
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_rows_get_the_arguments_of_the_exec_and_forget_them() {
        let mut running = ExecArgs::default();
        let args = [
            Bytes::from_static(b"vi"),
            Bytes::from_static(b"/etc/passwd"),
        ];
        running.exec(42, &args, false);
        assert_eq!(running.exit(42), (args.to_vec(), false));
        // Forgotten at the exit: a reused pid does not inherit them.
        assert_eq!(running.exit(42), (Vec::new(), false));
        // Never exec'd in the trace: nothing.
        assert_eq!(running.exit(7), (Vec::new(), false));
    }

    #[test]
    fn the_arguments_kept_are_bounded() {
        let mut running = ExecArgs::default();
        for pid in 0..ExecArgs::MAX_PROCESSES as u32 + 10 {
            running.exec(pid, &[Bytes::from_static(b"x")], false);
        }
        assert_eq!(running.by_pid.len(), ExecArgs::MAX_PROCESSES);
    }

    fn params(prefixes: &[&str], paths: &[&str]) -> v1::FileParams {
        let bytes = |list: &[&str]| {
            list.iter()
                .map(|p| Bytes::copy_from_slice(p.as_bytes()))
                .collect()
        };
        v1::FileParams {
            path_prefixes: bytes(prefixes),
            paths: bytes(paths),
            ..Default::default()
        }
    }

    fn refused(params: &v1::FileParams) -> String {
        PreparedFile::new(params).err().expect("refused").0
    }

    #[test]
    fn prefixes_then_paths_become_rodata() {
        let mut p = params(&["/etc/"], &["/var/log/x", "/"]);
        p.operations = 1 << record::OP_WRITE;
        p.kill_on = v1::FileOperation::Write as i32;
        let prepared = PreparedFile::new(&p).unwrap();
        assert_eq!(prepared.pattern_count, 3);
        assert_eq!(prepared.pattern_lens[..4], [5, 10, 1, 0]);
        assert_eq!(prepared.pattern_exact[..4], [0, 1, 1, 0]);
        assert_eq!(&prepared.patterns[1][..11], b"/var/log/x\0");
        assert_eq!(prepared.operations, 1 << record::OP_WRITE);
        assert_eq!(prepared.kill_on, record::OP_WRITE);
    }

    #[test]
    fn no_operations_means_all_of_them() {
        let prepared = PreparedFile::new(&params(&["/etc"], &[])).unwrap();
        assert_eq!(prepared.operations, 0b11110);
        assert_eq!(prepared.kill_on, 0);
    }

    #[test]
    fn more_than_eight_patterns_in_all_are_refused() {
        let p = params(&["/a"; 5], &["/b"; 4]);
        assert_eq!(
            refused(&p),
            "at most 8 paths and path prefixes in all, got 9"
        );
    }

    #[test]
    fn patterns_that_no_resolved_path_matches_are_refused() {
        let long = format!("/{}", "a".repeat(PATTERN_LEN_MAX));
        for bad in [
            "",
            "etc/passwd",
            "/etc//passwd",
            "/etc/./x",
            "/etc/../x",
            &long,
        ] {
            let message = refused(&params(&[bad], &[]));
            assert!(message.contains("path prefix"), "{bad:?}: {message}");
        }
        for bad in ["/etc/.", "/etc/..", "/etc/"] {
            let message = refused(&params(&[], &[bad]));
            assert!(message.starts_with("path "), "{bad:?}: {message}");
        }
        let message = refused(&params(&[], &["/etc/"]));
        assert!(message.contains("make it a path prefix"), "{message}");
        // A prefix may end with "/": it selects what is below a directory.
        assert!(PreparedFile::new(&params(&["/etc/"], &["/"])).is_ok());
    }

    /// Found by `what_the_front_end_sends_the_node_takes`: the front end
    /// sends a prefix ending with the start of a dot name, which resolved
    /// paths do start with, and the node refused it.
    #[test]
    fn a_prefix_may_end_with_the_start_of_a_dot_name() {
        for prefix in ["/etc/.", "/etc/..", "/home/user/.ss", "/."] {
            assert!(
                PreparedFile::new(&params(&[prefix], &[])).is_ok(),
                "{prefix}"
            );
        }
    }

    #[test]
    fn unknown_operation_bits_are_refused() {
        let mut p = params(&["/etc"], &[]);
        p.operations = 1;
        assert!(refused(&p).contains("no file operation"));
    }

    #[test]
    fn kill_on_close_or_without_paths_is_refused() {
        let mut p = params(&["/etc"], &[]);
        p.kill_on = v1::FileOperation::Close as i32;
        assert!(refused(&p).contains("kill on close is not supported"));
        p.kill_on = 42;
        assert!(refused(&p).contains("kill on 42"));
        let mut p = params(&[], &[]);
        p.kill_on = v1::FileOperation::Open as i32;
        assert!(refused(&p).contains("needs the paths"));
    }

    #[test]
    fn another_gadgets_params_are_refused() {
        let open = v1::run_gadget_request::Params::Open(v1::OpenParams::default());
        assert!(TraceFile.prepare(Some(&open)).is_err());
    }

    #[test]
    fn decode_borrows_the_record() {
        let path = b"/etc/shadow";
        let exe = b"/usr/bin/cat";
        let header = record::FileEventHeader {
            kind: record::EVENT_ACCESS,
            operation: record::OP_READ,
            ret: 42,
            fd: 3,
            path_len: path.len() as u32,
            exe_len: exe.len() as u32,
            ..Default::default()
        };
        let mut bytes = vec![0u8; std::mem::size_of::<record::FileEventHeader>()];
        // SAFETY: plain struct into a buffer of exactly its size.
        unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast(), header) };
        bytes.extend_from_slice(path);
        bytes.extend_from_slice(exe);
        let record = Bytes::from(bytes);
        let mut event = v1::Event::default();
        let prepared = PreparedFile::new(&params(&["/etc"], &[])).unwrap();
        prepared.decode(&record, &mut event).unwrap();
        let Some(v1::event::Kind::File(file)) = event.kind else {
            panic!("{event:?}")
        };
        let Some(v1::file_event::What::Access(access)) = file.what else {
            panic!("{file:?}")
        };
        assert_eq!(&access.path[..], path);
        assert_eq!(access.ret, 42);
        assert_eq!(access.fd, 3);
        assert_eq!(access.operation, v1::FileOperation::Read as i32);
        assert!(access.path_as_passed.is_empty());
        assert_eq!(&file.exe[..], exe);
        // A slice of the record, not a copy.
        let base = record.as_ptr() as usize;
        let at = access.path.as_ptr() as usize;
        assert!(at >= base && at < base + record.len());
    }

    #[test]
    fn exit_status_splits_into_code_and_signal() {
        for (status, code, signal) in [(3 << 8, 3, 0), (9, 0, 9), (0x80 | 11, 0, 11)] {
            let header = record::FileEventHeader {
                kind: record::EVENT_EXIT,
                exit_status: status,
                ..Default::default()
            };
            let mut bytes = vec![0u8; std::mem::size_of::<record::FileEventHeader>()];
            // SAFETY: plain struct into a buffer of exactly its size.
            unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast(), header) };
            let mut event = v1::Event::default();
            let prepared = PreparedFile::new(&v1::FileParams::default()).unwrap();
            prepared.decode(&Bytes::from(bytes), &mut event).unwrap();
            let Some(v1::event::Kind::File(v1::FileEvent {
                what: Some(v1::file_event::What::Exit(exit)),
                ..
            })) = event.kind
            else {
                panic!("{event:?}")
            };
            assert_eq!((exit.exit_code, exit.signal), (code, signal), "{status:#x}");
        }
    }
}
