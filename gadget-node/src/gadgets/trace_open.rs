//! `trace_open`: every open(2), openat(2) and openat2(2) with its result.

use aya::{Ebpf, EbpfError, EbpfLoader};
use bytes::Bytes;
use gadget_ebpf::trace_open::{self as abi, PREFIXES_MAX, PREFIX_LEN_MAX};
use gadget_ebpf::MalformedRecord;
use gadget_proto::v1;

use super::{
    process_from, syscall_tracepoint, AttachPoint, InvalidParams, KernelGadget, PreparedGadget,
};

/// The `trace_open` gadget.
pub struct TraceOpen;

impl KernelGadget for TraceOpen {
    fn name(&self) -> &'static str {
        gadget_proto::TRACE_OPEN
    }

    fn prepare(
        &self,
        params: Option<&v1::run_gadget_request::Params>,
    ) -> Result<Box<dyn PreparedGadget>, InvalidParams> {
        let params = match params {
            None => v1::OpenParams::default(),
            Some(v1::run_gadget_request::Params::Open(open)) => open.clone(),
            Some(_) => {
                return Err(InvalidParams(
                    "trace_open takes open parameters, not another gadget's".into(),
                ))
            }
        };
        Ok(Box::new(PreparedOpen::new(&params)?))
    }
}

/// `trace_open` with its per-trace constants.
struct PreparedOpen {
    failed_only: u32,
    prefix_count: u32,
    prefix_lens: [u32; PREFIXES_MAX],
    prefixes: [[u8; PREFIX_LEN_MAX]; PREFIXES_MAX],
}

impl PreparedOpen {
    fn new(params: &v1::OpenParams) -> Result<Self, InvalidParams> {
        if params.path_prefixes.len() > PREFIXES_MAX {
            return Err(InvalidParams(format!(
                "at most {PREFIXES_MAX} path prefixes, got {}",
                params.path_prefixes.len()
            )));
        }
        let mut prepared = PreparedOpen {
            failed_only: params.failed_only.into(),
            prefix_count: params.path_prefixes.len() as u32,
            prefix_lens: [0; PREFIXES_MAX],
            prefixes: [[0; PREFIX_LEN_MAX]; PREFIXES_MAX],
        };
        for (i, prefix) in params.path_prefixes.iter().enumerate() {
            if prefix.is_empty() || prefix.len() > PREFIX_LEN_MAX {
                return Err(InvalidParams(format!(
                    "path prefix {:?} must be 1 to {PREFIX_LEN_MAX} bytes",
                    String::from_utf8_lossy(prefix)
                )));
            }
            prepared.prefix_lens[i] = prefix.len() as u32;
            prepared.prefixes[i][..prefix.len()].copy_from_slice(prefix);
        }
        Ok(prepared)
    }
}

const ATTACH_POINTS: &[AttachPoint] = &[
    // open(2) exists only on older architectures (not on arm64).
    syscall_tracepoint!("sys_enter_open", required = false),
    syscall_tracepoint!("sys_exit_open", required = false),
    syscall_tracepoint!("sys_enter_openat", required = true),
    syscall_tracepoint!("sys_exit_openat", required = true),
    // openat2 is from Linux 5.6; older kernels still get open and openat.
    syscall_tracepoint!("sys_enter_openat2", required = false),
    syscall_tracepoint!("sys_exit_openat2", required = false),
];

impl PreparedGadget for PreparedOpen {
    fn name(&self) -> &'static str {
        gadget_proto::TRACE_OPEN
    }

    fn load<'a>(&'a self, loader: &mut EbpfLoader<'a>) -> Result<Ebpf, EbpfError> {
        loader
            .set_global("targ_failed_only", &self.failed_only, true)
            .set_global("targ_prefix_count", &self.prefix_count, true)
            .set_global("targ_prefix_lens", &self.prefix_lens, true)
            .set_global("targ_prefixes", &self.prefixes, true)
            .load(abi::object())
    }

    fn attach_points(&self) -> &'static [AttachPoint] {
        ATTACH_POINTS
    }

    fn decode(&self, record: &Bytes, event: &mut v1::Event) -> Result<(), MalformedRecord> {
        let open = abi::parse(record)?;
        let h = &open.header;
        event.timestamp_ns = h.proc.boot_ns;
        event.process = Some(process_from(record, &h.proc));
        let failed = h.ret < 0;
        event.kind = Some(v1::event::Kind::Open(v1::OpenEvent {
            fd: if failed { -1 } else { h.ret },
            error: if failed { -h.ret } else { 0 },
            // The wire carries the generic encoding whatever the node's arch.
            flags: gadget_proto::open_flags::to_generic(h.flags),
            mode: h.mode,
            path: record.slice_ref(open.path),
            path_truncated: h.path_truncated != 0,
            dirfd: (h.dirfd != abi::AT_FDCWD).then_some(h.dirfd),
            syscall: match h.syscall {
                abi::SYSCALL_OPEN => v1::OpenSyscall::Open,
                abi::SYSCALL_OPENAT => v1::OpenSyscall::Openat,
                abi::SYSCALL_OPENAT2 => v1::OpenSyscall::Openat2,
                _ => v1::OpenSyscall::Unspecified,
            } as i32,
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_prefixes_are_refused() {
        let params = v1::OpenParams {
            failed_only: false,
            path_prefixes: vec![Bytes::from_static(b"/etc"); PREFIXES_MAX + 1],
        };
        let err = PreparedOpen::new(&params).err().unwrap();
        assert!(err.0.contains("at most 8 path prefixes"), "{err}");
    }

    #[test]
    fn empty_and_long_prefixes_are_refused() {
        for bad in [Bytes::new(), Bytes::from(vec![b'a'; PREFIX_LEN_MAX + 1])] {
            let params = v1::OpenParams {
                failed_only: false,
                path_prefixes: vec![bad],
            };
            assert!(PreparedOpen::new(&params).is_err());
        }
    }

    #[test]
    fn prefixes_become_rodata() {
        let params = v1::OpenParams {
            failed_only: true,
            path_prefixes: vec![Bytes::from_static(b"/etc/"), Bytes::from_static(b"/tmp")],
        };
        let p = PreparedOpen::new(&params).unwrap();
        assert_eq!(p.failed_only, 1);
        assert_eq!(p.prefix_count, 2);
        assert_eq!(p.prefix_lens[..3], [5, 4, 0]);
        assert_eq!(&p.prefixes[1][..5], b"/tmp\0");
    }
}
