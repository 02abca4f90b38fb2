//! `trace_open`: every open(2), openat(2) and openat2(2) with its result.
//!
//! The kernel side is `gadget-ebpf/src/bpf/trace_open.bpf.c`; its event
//! (`trace_open.h`) is mirrored by [`record`], tied to it by its layout test.

use aya::{Ebpf, EbpfError, EbpfLoader};
use bytes::Bytes;
use gadget_ebpf::MalformedRecord;
use gadget_proto::v1;

use self::record::{PREFIXES_MAX, PREFIX_LEN_MAX};
use super::{
    object, process_from, syscall_tracepoint, AttachPoint, InvalidParams, KernelGadget,
    LossCounter, PreparedGadget,
};

/// The event as `gadget-ebpf/src/bpf/trace_open.h` lays it out, and its parser.
pub mod record {
    use gadget_ebpf::{split_header, MalformedRecord, PlainRecord, ProcessRecord};

    /// Bytes of path the kernel side keeps (`OPEN_PATH_MAX`, PATH_MAX).
    pub const PATH_MAX: usize = 4096;
    /// Path prefixes one trace may filter on (`OPEN_PREFIXES_MAX`).
    pub const PREFIXES_MAX: usize = 8;
    /// Longest path prefix, in bytes (`OPEN_PREFIX_LEN_MAX`).
    pub const PREFIX_LEN_MAX: usize = 256;
    /// `OPEN_SYSCALL_OPEN`.
    pub const SYSCALL_OPEN: u32 = 1;
    /// `OPEN_SYSCALL_OPENAT`.
    pub const SYSCALL_OPENAT: u32 = 2;
    /// `OPEN_SYSCALL_OPENAT2`.
    pub const SYSCALL_OPENAT2: u32 = 3;
    /// `AT_FDCWD`: the dirfd of a path relative to the working directory.
    pub const AT_FDCWD: i32 = -100;

    /// The fixed part of `struct open_event`; `path_len` bytes of path follow.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct OpenEventHeader {
        /// Who opened.
        pub proc: ProcessRecord,
        /// Open flags (for openat2, `open_how.flags`).
        pub flags: u64,
        /// The fd, or -errno.
        pub ret: i32,
        /// Mode for a created file.
        pub mode: u32,
        /// Directory fd the path is relative to; `AT_FDCWD` for the cwd.
        pub dirfd: i32,
        /// `SYSCALL_*`.
        pub syscall: u32,
        /// Bytes of path in the record.
        pub path_len: u32,
        /// Non-zero when the path went on beyond `PATH_MAX - 1` bytes.
        /// (u32, not bool: a fixed width with no hidden padding.)
        pub path_truncated: u32,
    }

    // SAFETY: OpenEventHeader is #[repr(C)] and made only of integers and integer arrays

    // with explicit padding, so any bit pattern is a valid value.

    unsafe impl PlainRecord for OpenEventHeader {}

    /// One open, parsed from a ring-buffer record; borrows the record.
    #[derive(Debug, Clone, Copy)]
    pub struct OpenRecord<'a> {
        /// The fixed part.
        pub header: OpenEventHeader,
        /// The path as the process passed it.
        pub path: &'a [u8],
    }

    /// Checks and splits one record.
    pub fn parse(record: &[u8]) -> Result<OpenRecord<'_>, MalformedRecord> {
        let (header, rest) = split_header::<OpenEventHeader>(record)?;
        let path_len = header.path_len as usize;
        if path_len > rest.len() || path_len >= PATH_MAX {
            return Err(MalformedRecord::BadLength {
                field: "path_len",
                value: header.path_len.into(),
                len: record.len(),
            });
        }
        Ok(OpenRecord {
            header,
            path: &rest[..path_len],
        })
    }

    #[cfg(test)]
    mod tests {
        use gadget_ebpf::layout;

        use super::*;

        fn record(header: OpenEventHeader, path: &[u8]) -> Vec<u8> {
            let mut bytes = vec![0u8; std::mem::size_of::<OpenEventHeader>()];
            // SAFETY: plain struct into a buffer of exactly its size.
            unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast(), header) };
            bytes.extend_from_slice(path);
            bytes
        }

        #[test]
        fn parses_a_record() {
            let header = OpenEventHeader {
                ret: 3,
                path_len: 11,
                ..Default::default()
            };
            let bytes = record(header, b"/etc/passwd");
            let open = parse(&bytes).unwrap();
            assert_eq!(open.path, b"/etc/passwd");
            assert_eq!(open.header.ret, 3);
        }

        #[test]
        fn short_record_is_malformed() {
            assert!(matches!(
                parse(&[0u8; 10]),
                Err(MalformedRecord::Short { len: 10, .. })
            ));
        }

        #[test]
        fn path_len_beyond_record_is_malformed() {
            let header = OpenEventHeader {
                path_len: 100,
                ..Default::default()
            };
            let bytes = record(header, b"/short");
            assert!(matches!(
                parse(&bytes),
                Err(MalformedRecord::BadLength {
                    field: "path_len",
                    ..
                })
            ));
        }

        #[test]
        fn open_event_matches_c() {
            gadget_ebpf::assert_layout!(
                OpenEventHeader,
                "open_event",
                [
                    proc,
                    flags,
                    ret,
                    mode,
                    dirfd,
                    syscall,
                    path_len,
                    path_truncated
                ],
                tail = path
            );
            assert_eq!(
                layout::field("open_event", "path").map(|(_, size)| size),
                Some(PATH_MAX)
            );
            layout::assert_constants(&[
                ("OPEN_PATH_MAX", PATH_MAX as i64),
                ("OPEN_PREFIXES_MAX", PREFIXES_MAX as i64),
                ("OPEN_PREFIX_LEN_MAX", PREFIX_LEN_MAX as i64),
                ("OPEN_SYSCALL_OPEN", SYSCALL_OPEN.into()),
                ("OPEN_SYSCALL_OPENAT", SYSCALL_OPENAT.into()),
                ("OPEN_SYSCALL_OPENAT2", SYSCALL_OPENAT2.into()),
            ]);
        }
    }
}

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

/// The map of opens in flight, by thread.
pub const OPEN_ARGS_MAP: &str = "open_args_by_tid";

const LOSS_COUNTERS: &[LossCounter] = &[LossCounter {
    map: "lost_opens",
    what: "opens not followed because a kernel map was full",
}];

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
            .load(object(gadget_proto::TRACE_OPEN))
    }

    fn attach_points(&self) -> &'static [AttachPoint] {
        ATTACH_POINTS
    }

    fn loss_counters(&self) -> &'static [LossCounter] {
        LOSS_COUNTERS
    }

    fn decode(&self, record: &Bytes, event: &mut v1::Event) -> Result<(), MalformedRecord> {
        let open = record::parse(record)?;
        let h = &open.header;
        event.timestamp_ns = h.proc.boot_ns;
        event.process = Some(process_from(record, &h.proc));
        let failed = h.ret < 0;
        event.kind = Some(v1::event::Kind::Open(v1::OpenEvent {
            fd: if failed { -1 } else { h.ret },
            // Saturating: -i32::MIN overflows, and a record's bytes are not
            // trusted to hold an errno.
            error: if failed { h.ret.saturating_neg() } else { 0 },
            // The wire carries the generic encoding whatever the node's arch.
            flags: gadget_proto::open_flags::to_generic(h.flags),
            mode: h.mode,
            path: record.slice_ref(open.path),
            path_truncated: h.path_truncated != 0,
            dirfd: (h.dirfd != record::AT_FDCWD).then_some(h.dirfd),
            syscall: match h.syscall {
                record::SYSCALL_OPEN => v1::OpenSyscall::Open,
                record::SYSCALL_OPENAT => v1::OpenSyscall::Openat,
                record::SYSCALL_OPENAT2 => v1::OpenSyscall::Openat2,
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

    /// Found by the batch's property tests: a record whose return value is
    /// `i32::MIN` made decoding panic (negation overflow) in debug builds.
    #[test]
    fn a_return_of_i32_min_does_not_overflow() {
        let header = record::OpenEventHeader {
            ret: i32::MIN,
            ..Default::default()
        };
        let mut bytes = vec![0u8; std::mem::size_of::<record::OpenEventHeader>()];
        // SAFETY: plain struct into a buffer of exactly its size.
        unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast(), header) };
        let prepared = PreparedOpen::new(&v1::OpenParams::default()).unwrap();
        let mut event = v1::Event::default();
        prepared.decode(&Bytes::from(bytes), &mut event).unwrap();
        let Some(v1::event::Kind::Open(open)) = event.kind else {
            panic!("{event:?}")
        };
        assert_eq!((open.fd, open.error), (-1, i32::MAX));
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
