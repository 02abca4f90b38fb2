//! `trace_exec`: every execve(2) and execveat(2), with its arguments.

use aya::{Ebpf, EbpfError, EbpfLoader};
use bytes::Bytes;
use gadget_ebpf::trace_exec as abi;
use gadget_ebpf::MalformedRecord;
use gadget_proto::v1;

use crate::features::Feature;

use super::{
    kernel_string_at, process_from, syscall_tracepoint, AttachPoint, AttachTarget, InvalidParams,
    KernelGadget, PreparedGadget,
};

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
            0 => abi::ARGS_COUNT_DEFAULT,
            n if n <= abi::ARGS_COUNT_CAP => n,
            n => {
                return Err(InvalidParams(format!(
                    "max args {n} is above the limit of {}",
                    abi::ARGS_COUNT_CAP
                )))
            }
        };
        let max_args_bytes = match params.max_args_bytes {
            0 => abi::ARGS_BYTES_DEFAULT,
            n if n <= abi::ARGS_BYTES_CAP => n,
            n => {
                return Err(InvalidParams(format!(
                    "max args bytes {n} is above the limit of {}",
                    abi::ARGS_BYTES_CAP
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

impl PreparedGadget for PreparedExec {
    fn name(&self) -> &'static str {
        gadget_proto::TRACE_EXEC
    }

    fn load<'a>(&'a self, loader: &mut EbpfLoader<'a>) -> Result<Ebpf, EbpfError> {
        loader
            .set_global("targ_max_args", &self.max_args, true)
            .set_global("targ_max_args_bytes", &self.max_args_bytes, true)
            .set_global("targ_ignore_failed", &self.ignore_failed, true)
            .load(abi::object())
    }

    fn attach_points(&self) -> &'static [AttachPoint] {
        ATTACH_POINTS
    }

    fn decode(&self, record: &Bytes, event: &mut v1::Event) -> Result<(), MalformedRecord> {
        let exec = abi::parse(record)?;
        let h = &exec.header;
        event.timestamp_ns = h.proc.boot_ns;
        event.process = Some(process_from(record, &h.proc));
        event.kind = Some(v1::event::Kind::Exec(v1::ExecEvent {
            ret: h.ret,
            exe: record.slice_ref(exec.exe),
            args: exec.args().map(|arg| record.slice_ref(arg)).collect(),
            args_truncated: h.truncated & abi::ARGS_TRUNCATED != 0,
            parent_comm: kernel_string_at(
                record,
                std::mem::offset_of!(abi::ExecEventHeader, parent_comm),
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
        assert_eq!(p.max_args, abi::ARGS_COUNT_DEFAULT);
        assert_eq!(p.max_args_bytes, abi::ARGS_BYTES_DEFAULT);
        assert_eq!(p.ignore_failed, 0);
    }

    #[test]
    fn bounds_above_the_caps_are_refused() {
        let err = PreparedExec::new(&v1::ExecParams {
            max_args: abi::ARGS_COUNT_CAP + 1,
            ..Default::default()
        })
        .err()
        .unwrap();
        assert_eq!(err.0, "max args 1025 is above the limit of 1024");
        assert!(PreparedExec::new(&v1::ExecParams {
            max_args_bytes: abi::ARGS_BYTES_CAP + 1,
            ..Default::default()
        })
        .is_err());
    }
}
