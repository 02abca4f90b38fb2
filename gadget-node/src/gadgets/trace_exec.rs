//! `trace_exec`: every execve(2) and execveat(2), with its arguments.
//!
//! The kernel side is `gadget-ebpf/src/bpf/trace_exec.bpf.c`; its event
//! (`trace_exec.h`) is mirrored by [`record`], tied to it by its layout test.

use aya::{Ebpf, EbpfError, EbpfLoader};
use bytes::Bytes;
use gadget_ebpf::MalformedRecord;
use gadget_proto::v1;

use crate::features::Feature;

use super::{
    kernel_string_at, object, process_from, syscall_tracepoint, AttachPoint, AttachTarget,
    InvalidParams, KernelGadget, LossCounter, PreparedGadget,
};

/// The event as `gadget-ebpf/src/bpf/trace_exec.h` lays it out, and its parser.
pub mod record {
    use gadget_ebpf::{split_header, MalformedRecord, PlainRecord, ProcessRecord, TASK_COMM_LEN};

    /// Bytes kept of the program name, with its NUL (`EXEC_EXE_MAX`).
    pub const EXE_MAX: usize = 4096;
    /// Most arguments a trace may keep (`EXEC_ARGS_COUNT_CAP`).
    pub const ARGS_COUNT_CAP: u32 = 1024;
    /// Most argument bytes a trace may keep (`EXEC_ARGS_BYTES_CAP`).
    pub const ARGS_BYTES_CAP: u32 = 32768;
    /// Arguments kept when the trace does not say (`EXEC_ARGS_COUNT_DEFAULT`).
    pub const ARGS_COUNT_DEFAULT: u32 = 64;
    /// Argument bytes kept when the trace does not say (`EXEC_ARGS_BYTES_DEFAULT`).
    pub const ARGS_BYTES_DEFAULT: u32 = 4096;
    /// `truncated` bit: more arguments or bytes than the trace keeps.
    pub const ARGS_TRUNCATED: u32 = 1;
    /// `truncated` bit: the program name was longer than `EXE_MAX - 1`.
    pub const EXE_TRUNCATED: u32 = 2;
    /// `truncated` bit: the program name could not be read (`exe` is empty).
    pub const EXE_UNREADABLE: u32 = 4;

    /// The fixed part of `struct exec_event`; the program name and the
    /// arguments follow.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct ExecEventHeader {
        /// Who exec'd; after a successful exec, the new program.
        pub proc: ProcessRecord,
        /// The parent's comm.
        pub parent_comm: [u8; TASK_COMM_LEN],
        /// 0, or -errno.
        pub ret: i32,
        /// Bytes of the program name (its NUL follows).
        pub exe_len: u32,
        /// NUL-terminated arguments after the name.
        pub args_count: u32,
        /// Bytes of the arguments, NULs included.
        pub args_size: u32,
        /// `ARGS_TRUNCATED` | `EXE_TRUNCATED` | `EXE_UNREADABLE`.
        pub truncated: u32,
        /// Explicit padding.
        pub _pad: u32,
    }

    // SAFETY: ExecEventHeader is #[repr(C)] and made only of integers and integer arrays

    // with explicit padding, so any bit pattern is a valid value.

    unsafe impl PlainRecord for ExecEventHeader {}

    /// One exec, parsed from a ring-buffer record; borrows the record.
    #[derive(Debug, Clone, Copy)]
    pub struct ExecRecord<'a> {
        /// The fixed part.
        pub header: ExecEventHeader,
        /// The program (see `ExecEvent.exe` in the protocol).
        pub exe: &'a [u8],
        /// `args_count` arguments, each ended by a NUL.
        args: &'a [u8],
    }

    impl<'a> ExecRecord<'a> {
        /// The arguments in order; empty arguments are kept.
        pub fn args(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
            let args = self.args;
            let count = self.header.args_count as usize;
            // parse() checked there are exactly `count` NULs.
            args.split(|&b| b == 0).take(count)
        }
    }

    /// Checks and splits one record.
    pub fn parse(record: &[u8]) -> Result<ExecRecord<'_>, MalformedRecord> {
        let (header, rest) = split_header::<ExecEventHeader>(record)?;
        let bad = |field, value: u32| MalformedRecord::BadLength {
            field,
            value: value.into(),
            len: record.len(),
        };
        let exe_len = header.exe_len as usize;
        if exe_len >= EXE_MAX || exe_len >= rest.len() || rest[exe_len] != 0 {
            return Err(bad("exe_len", header.exe_len));
        }
        let args = &rest[exe_len + 1..];
        let args_size = header.args_size as usize;
        if args_size > args.len() || header.args_size > ARGS_BYTES_CAP {
            return Err(bad("args_size", header.args_size));
        }
        let args = &args[..args_size];
        let nuls = args.iter().filter(|&&b| b == 0).count();
        if nuls != header.args_count as usize || args.last().is_some_and(|&b| b != 0) {
            return Err(bad("args_count", header.args_count));
        }
        Ok(ExecRecord {
            header,
            exe: &rest[..exe_len],
            args,
        })
    }

    #[cfg(test)]
    mod tests {
        use gadget_ebpf::layout;

        use super::*;

        fn record(header: ExecEventHeader, exe: &[u8], args: &[&[u8]]) -> Vec<u8> {
            let mut bytes = vec![0u8; std::mem::size_of::<ExecEventHeader>()];
            // SAFETY: plain struct into a buffer of exactly its size.
            unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast(), header) };
            bytes.extend_from_slice(exe);
            bytes.push(0);
            for arg in args {
                bytes.extend_from_slice(arg);
                bytes.push(0);
            }
            bytes
        }

        #[test]
        fn keeps_empty_arguments() {
            let header = ExecEventHeader {
                exe_len: 8,
                args_count: 3,
                args_size: 7,
                ..Default::default()
            };
            let bytes = record(header, b"/bin/foo", &[b"foo", b"", b"x"]);
            let exec = parse(&bytes).unwrap();
            assert_eq!(exec.exe, b"/bin/foo");
            let args: Vec<&[u8]> = exec.args().collect();
            assert_eq!(args, [&b"foo"[..], b"", b"x"]);
        }

        #[test]
        fn count_that_disagrees_with_the_bytes_is_malformed() {
            let header = ExecEventHeader {
                exe_len: 2,
                args_count: 5,
                args_size: 4,
                ..Default::default()
            };
            let bytes = record(header, b"/x", &[b"abc"]);
            assert!(matches!(
                parse(&bytes),
                Err(MalformedRecord::BadLength {
                    field: "args_count",
                    ..
                })
            ));
        }

        #[test]
        fn exe_len_beyond_record_is_malformed() {
            let header = ExecEventHeader {
                exe_len: 500,
                ..Default::default()
            };
            let bytes = record(header, b"/x", &[]);
            assert!(parse(&bytes).is_err());
        }

        #[test]
        fn exec_event_matches_c() {
            gadget_ebpf::assert_layout!(
                ExecEventHeader,
                "exec_event",
                [
                    proc,
                    parent_comm,
                    ret,
                    exe_len,
                    args_count,
                    args_size,
                    truncated,
                    _pad
                ],
                tail = data
            );
            layout::assert_constants(&[
                ("EXEC_EXE_MAX", EXE_MAX as i64),
                ("EXEC_ARGS_COUNT_CAP", ARGS_COUNT_CAP.into()),
                ("EXEC_ARGS_BYTES_CAP", ARGS_BYTES_CAP.into()),
                ("EXEC_ARGS_COUNT_DEFAULT", ARGS_COUNT_DEFAULT.into()),
                ("EXEC_ARGS_BYTES_DEFAULT", ARGS_BYTES_DEFAULT.into()),
                ("EXEC_ARGS_TRUNCATED", ARGS_TRUNCATED.into()),
                ("EXEC_EXE_TRUNCATED", EXE_TRUNCATED.into()),
                ("EXEC_EXE_UNREADABLE", EXE_UNREADABLE.into()),
            ]);
        }
    }
}

/// The `trace_exec` gadget.
pub struct TraceExec;

impl KernelGadget for TraceExec {
    fn name(&self) -> &'static str {
        gadget_proto::TRACE_EXEC
    }

    fn required_features(&self) -> &'static [Feature] {
        // The argv copy runs under bpf_loop (Linux 5.17).
        &[Feature::BpfLoop]
    }

    fn prepare(
        &self,
        params: Option<&v1::run_gadget_request::Params>,
    ) -> Result<Box<dyn PreparedGadget>, InvalidParams> {
        let params = match params {
            None => v1::ExecParams::default(),
            Some(v1::run_gadget_request::Params::Exec(exec)) => *exec,
            Some(_) => {
                return Err(InvalidParams(
                    "trace_exec takes exec parameters, not another gadget's".into(),
                ))
            }
        };
        Ok(Box::new(PreparedExec::new(&params)?))
    }
}

/// `trace_exec` with its per-trace constants.
struct PreparedExec {
    max_args: u32,
    max_args_bytes: u32,
    ignore_failed: u32,
}

impl PreparedExec {
    fn new(params: &v1::ExecParams) -> Result<Self, InvalidParams> {
        let max_args = match params.max_args {
            0 => record::ARGS_COUNT_DEFAULT,
            n if n <= record::ARGS_COUNT_CAP => n,
            n => {
                return Err(InvalidParams(format!(
                    "max args {n} is above the limit of {}",
                    record::ARGS_COUNT_CAP
                )))
            }
        };
        let max_args_bytes = match params.max_args_bytes {
            0 => record::ARGS_BYTES_DEFAULT,
            n if n <= record::ARGS_BYTES_CAP => n,
            n => {
                return Err(InvalidParams(format!(
                    "max args bytes {n} is above the limit of {}",
                    record::ARGS_BYTES_CAP
                )))
            }
        };
        Ok(PreparedExec {
            max_args,
            max_args_bytes,
            ignore_failed: params.ignore_failed.into(),
        })
    }
}

const ATTACH_POINTS: &[AttachPoint] = &[
    syscall_tracepoint!("sys_enter_execve", required = true),
    syscall_tracepoint!("sys_exit_execve", required = true),
    // execveat is from Linux 3.19 but not wired on every architecture.
    syscall_tracepoint!("sys_enter_execveat", required = false),
    syscall_tracepoint!("sys_exit_execveat", required = false),
    AttachPoint {
        program: "tracepoint__sched__sched_process_exec",
        target: AttachTarget::Tracepoint {
            category: "sched",
            name: "sched_process_exec",
        },
        required: true,
    },
];

/// The map of per-CPU scratch records an event is built in.
const SCRATCH_MAP: &str = "exec_event_scratch";

/// The map of execs in flight, for a failed exec's report.
pub const EXEC_STARTS_MAP: &str = "exec_starts";

const LOSS_COUNTERS: &[LossCounter] = &[LossCounter {
    map: "lost_execs",
    what: "execs not followed because a kernel map was full (a failed one goes unreported)",
}];

impl PreparedGadget for PreparedExec {
    fn name(&self) -> &'static str {
        gadget_proto::TRACE_EXEC
    }

    fn load<'a>(&'a self, loader: &mut EbpfLoader<'a>) -> Result<Ebpf, EbpfError> {
        // One scratch record per possible CPU (bpf_get_smp_processor_id()
        // is below that count).
        let cpus = aya::util::nr_cpus().map_err(|(path, error)| EbpfError::FileError {
            path: path.into(),
            error,
        })?;
        loader
            .set_max_entries(SCRATCH_MAP, u32::try_from(cpus).unwrap_or(u32::MAX))
            .set_global("targ_max_args", &self.max_args, true)
            .set_global("targ_max_args_bytes", &self.max_args_bytes, true)
            .set_global("targ_ignore_failed", &self.ignore_failed, true)
            .load(object(gadget_proto::TRACE_EXEC))
    }

    fn attach_points(&self) -> &'static [AttachPoint] {
        ATTACH_POINTS
    }

    fn loss_counters(&self) -> &'static [LossCounter] {
        LOSS_COUNTERS
    }

    fn decode(&self, record: &Bytes, event: &mut v1::Event) -> Result<(), MalformedRecord> {
        let exec = record::parse(record)?;
        let h = &exec.header;
        event.timestamp_ns = h.proc.boot_ns;
        event.process = Some(process_from(record, &h.proc));
        event.kind = Some(v1::event::Kind::Exec(v1::ExecEvent {
            ret: h.ret,
            exe: record.slice_ref(exec.exe),
            args: exec.args().map(|arg| record.slice_ref(arg)).collect(),
            args_truncated: h.truncated & record::ARGS_TRUNCATED != 0,
            exe_truncated: h.truncated & record::EXE_TRUNCATED != 0,
            exe_unreadable: h.truncated & record::EXE_UNREADABLE != 0,
            parent_comm: kernel_string_at(
                record,
                std::mem::offset_of!(record::ExecEventHeader, parent_comm),
                &h.parent_comm,
            ),
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset() {
        let p = PreparedExec::new(&v1::ExecParams::default()).unwrap();
        assert_eq!(p.max_args, record::ARGS_COUNT_DEFAULT);
        assert_eq!(p.max_args_bytes, record::ARGS_BYTES_DEFAULT);
        assert_eq!(p.ignore_failed, 0);
    }

    #[test]
    fn bounds_above_the_caps_are_refused() {
        let err = PreparedExec::new(&v1::ExecParams {
            max_args: record::ARGS_COUNT_CAP + 1,
            ..Default::default()
        })
        .err()
        .unwrap();
        assert_eq!(err.0, "max args 1025 is above the limit of 1024");
        assert!(PreparedExec::new(&v1::ExecParams {
            max_args_bytes: record::ARGS_BYTES_CAP + 1,
            ..Default::default()
        })
        .is_err());
    }
}
