//! Property tests of decoding a batch of kernel records, for every gadget:
//! whatever bytes a record holds, decoding does not panic and each record
//! is either an event or counted as malformed; a record written as the
//! kernel writes it decodes to exactly what it holds; one cut short or
//! with a length beyond its bytes is counted, never read past.

use bytes::Bytes;
use gadget_ebpf::{PlainRecord, ProcessRecord, TASK_COMM_LEN};
use gadget_proto::v1::{self, event, file_event};
use proptest::prelude::*;

use super::BatchBuilder;
use crate::gadgets::{trace_exec, trace_file, trace_open, KernelGadget, PreparedGadget};
use crate::trace::held::HeldEvents;
use crate::trace::verdicts::Judgement;

/// The bytes of a record's fixed part.
fn bytes_of<T: PlainRecord>(header: T) -> Vec<u8> {
    let mut bytes = vec![0u8; std::mem::size_of::<T>()];
    // SAFETY: T is plain data (PlainRecord) and the buffer holds exactly
    // one T; the write is unaligned.
    unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast::<T>(), header) };
    bytes
}

/// Decodes `records` as one batch of `gadget`, every cgroup admitted as
/// the host's: the batch and how many were counted malformed.
fn decode_batch(gadget: &dyn PreparedGadget, records: &[Vec<u8>]) -> (v1::EventBatch, u64) {
    let mut builder = BatchBuilder::default();
    for record in records {
        let start = builder.buffer.len();
        builder.buffer.extend_from_slice(record);
        builder.records.push(start..builder.buffer.len());
    }
    let (mut malformed, mut unjudged) = (0, 0);
    let admit = |_cgroup: u64, _may_hold: bool| Judgement::judged(Some(None));
    let mut held = HeldEvents::default();
    let batch = builder.finish(gadget, admit, &mut held, &mut malformed, &mut unjudged);
    assert!(held.is_empty());
    // Every cgroup was judged on a complete identity.
    assert_eq!(unjudged, 0);
    (batch, malformed)
}

/// `gadget` with parameters it takes (trace file needs something to
/// follow).
fn prepared(gadget: &dyn KernelGadget) -> Box<dyn PreparedGadget> {
    let params = match gadget.name() {
        gadget_proto::TRACE_FILE => Some(v1::run_gadget_request::Params::File(v1::FileParams {
            path_prefixes: vec![Bytes::from_static(b"/etc/")],
            ..Default::default()
        })),
        _ => None,
    };
    gadget
        .prepare(params.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", gadget.name()))
}

/// Integers that are likely to break arithmetic: the ends of the range,
/// around 0, and anything.
fn edgy_i32() -> impl Strategy<Value = i32> {
    prop_oneof![Just(i32::MIN), Just(i32::MAX), -4096i32..4096, any::<i32>(),]
}

fn edgy_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        -4096i64..1 << 20,
        any::<i64>()
    ]
}

fn process_record() -> impl Strategy<Value = ProcessRecord> {
    (
        any::<[u64; 3]>(),
        any::<[u32; 5]>(),
        any::<[u8; TASK_COMM_LEN]>(),
    )
        .prop_map(
            |([boot_ns, cgroup_id, mntns_id], [pid, tid, ppid, uid, gid], comm)| ProcessRecord {
                boot_ns,
                cgroup_id,
                mntns_id,
                pid,
                tid,
                ppid,
                uid,
                gid,
                _pad: 0,
                comm,
            },
        )
}

fn some_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=max)
}

fn no_nul_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(1u8..=255, 0..=max)
}

/// A record as the kernel writes it, and the event it must decode to.
type Written = (Vec<u8>, v1::Event);

/// The process part of the event for `proc`.
fn expected_process(proc: &ProcessRecord) -> v1::Process {
    v1::Process {
        pid: proc.pid,
        tid: proc.tid,
        ppid: proc.ppid,
        uid: proc.uid,
        gid: proc.gid,
        comm: Bytes::copy_from_slice(gadget_ebpf::trim_nul(&proc.comm)),
        mntns_id: proc.mntns_id,
        cgroup_id: proc.cgroup_id,
    }
}

fn expected_event(proc: &ProcessRecord, kind: event::Kind) -> v1::Event {
    v1::Event {
        timestamp_ns: proc.boot_ns,
        process: Some(expected_process(proc)),
        workload: 0,
        kind: Some(kind),
    }
}

fn written_open() -> impl Strategy<Value = Written> {
    use trace_open::record::{OpenEventHeader, AT_FDCWD};
    (
        process_record(),
        edgy_i32(),
        prop_oneof![Just(AT_FDCWD), edgy_i32()],
        any::<(u32, u32, u32)>(),
        0u32..5,
        some_bytes(64),
        some_bytes(8),
    )
        .prop_map(
            |(proc, ret, dirfd, (mode, flags, truncated), syscall, path, tail)| {
                let header = OpenEventHeader {
                    proc,
                    flags: flags.into(),
                    ret,
                    mode,
                    dirfd,
                    syscall,
                    path_len: path.len() as u32,
                    path_truncated: truncated,
                };
                let mut record = bytes_of(header);
                record.extend_from_slice(&path);
                // Bytes after the path (the rest of a fixed-size reservation)
                // are not part of it.
                record.extend_from_slice(&tail);
                let failed = ret < 0;
                let open = v1::OpenEvent {
                    fd: if failed { -1 } else { ret },
                    error: if failed { ret.saturating_neg() } else { 0 },
                    flags: gadget_proto::open_flags::to_generic(flags.into()),
                    mode,
                    path: Bytes::from(path),
                    path_truncated: truncated != 0,
                    dirfd: (dirfd != AT_FDCWD).then_some(dirfd),
                    syscall: match syscall {
                        1..=3 => syscall as i32,
                        _ => 0,
                    },
                };
                (record, expected_event(&proc, event::Kind::Open(open)))
            },
        )
}

fn written_exec() -> impl Strategy<Value = Written> {
    use trace_exec::record::{ExecEventHeader, ARGS_TRUNCATED, EXE_TRUNCATED, EXE_UNREADABLE};
    (
        process_record(),
        any::<[u8; TASK_COMM_LEN]>(),
        edgy_i32(),
        no_nul_bytes(64),
        proptest::collection::vec(no_nul_bytes(16), 0..6),
        0u32..8,
        some_bytes(8),
    )
        .prop_map(|(proc, parent_comm, ret, exe, args, truncated, tail)| {
            let args_bytes: Vec<u8> = args
                .iter()
                .flat_map(|a| a.iter().copied().chain([0]))
                .collect();
            let header = ExecEventHeader {
                proc,
                parent_comm,
                ret,
                exe_len: exe.len() as u32,
                args_count: args.len() as u32,
                args_size: args_bytes.len() as u32,
                truncated,
                _pad: 0,
            };
            let mut record = bytes_of(header);
            record.extend_from_slice(&exe);
            record.push(0);
            record.extend_from_slice(&args_bytes);
            record.extend_from_slice(&tail);
            let exec = v1::ExecEvent {
                ret,
                exe: Bytes::from(exe),
                args: args.into_iter().map(Bytes::from).collect(),
                args_truncated: truncated & ARGS_TRUNCATED != 0,
                parent_comm: Bytes::copy_from_slice(gadget_ebpf::trim_nul(&parent_comm)),
                exe_truncated: truncated & EXE_TRUNCATED != 0,
                exe_unreadable: truncated & EXE_UNREADABLE != 0,
            };
            (record, expected_event(&proc, event::Kind::Exec(exec)))
        })
}

fn written_file() -> impl Strategy<Value = Written> {
    use trace_file::record::{
        FileEventHeader, ARGS_TRUNCATED, EVENT_ACCESS, EVENT_EXEC, EVENT_EXIT, EXE_TRUNCATED,
        OP_OPEN, PATH_TRUNCATED,
    };
    let access = (
        1u32..=4,
        some_bytes(64),
        some_bytes(32),
        edgy_i64(),
        edgy_i32(),
        any::<bool>(),
    )
        .prop_map(|(operation, path, passed, ret, fd, killed)| {
            let passed = if operation == OP_OPEN {
                passed
            } else {
                Vec::new()
            };
            (
                EVENT_ACCESS,
                operation,
                path,
                passed,
                Vec::new(),
                ret,
                fd,
                killed,
                0,
                Vec::new(),
            )
        });
    let exec = (
        proptest::collection::vec(no_nul_bytes(16), 0..6),
        any::<bool>(),
    )
        .prop_map(|(mut args, cut)| {
            let mut args_bytes: Vec<u8> = args
                .iter()
                .flat_map(|a| a.iter().copied().chain([0]))
                .collect();
            if cut {
                // A last argument cut short has no NUL; cut before its
                // first byte, it is not there at all.
                args_bytes.pop();
                if args.last().is_some_and(Vec::is_empty) {
                    args.pop();
                }
            }
            (
                EVENT_EXEC,
                0,
                Vec::new(),
                Vec::new(),
                args_bytes,
                0,
                0,
                false,
                0,
                args,
            )
        });
    let exit = edgy_i32().prop_map(|status| {
        (
            EVENT_EXIT,
            0,
            Vec::new(),
            Vec::new(),
            Vec::new(),
            0,
            0,
            false,
            status,
            Vec::new(),
        )
    });
    (
        process_record(),
        prop_oneof![access, exec, exit],
        some_bytes(64),
        0u32..8,
        some_bytes(8),
    )
        .prop_map(|(proc, what, exe, truncated, tail)| {
            let (kind, operation, path, passed, args, ret, fd, killed, exit_status, exec_args) =
                what;
            let header = FileEventHeader {
                proc,
                kind,
                operation,
                ret,
                fd,
                killed: killed.into(),
                exit_status,
                truncated,
                exe_len: exe.len() as u32,
                path_len: path.len() as u32,
                passed_len: passed.len() as u32,
                args_len: args.len() as u32,
                ..Default::default()
            };
            let mut record = bytes_of(header);
            for part in [&path, &passed, &args, &exe, &tail] {
                record.extend_from_slice(part);
            }
            let what = match kind {
                EVENT_ACCESS => file_event::What::Access(v1::FileAccess {
                    operation: operation as i32,
                    path: Bytes::from(path),
                    path_truncated: truncated & PATH_TRUNCATED != 0,
                    path_as_passed: Bytes::from(passed),
                    fd,
                    ret,
                    killed,
                }),
                EVENT_EXEC => file_event::What::Exec(v1::ProcessExec {
                    args: exec_args.into_iter().map(Bytes::from).collect(),
                    args_truncated: truncated & ARGS_TRUNCATED != 0,
                }),
                _ => file_event::What::Exit(v1::ProcessExit {
                    exit_code: (exit_status >> 8) & 0xff,
                    signal: exit_status & 0x7f,
                    // No exec of this pid in the batch before it: decoded
                    // alone, an exit has no arguments.
                    args: Vec::new(),
                    args_truncated: false,
                }),
            };
            let file = v1::FileEvent {
                what: Some(what),
                exe: Bytes::from(exe),
                exe_truncated: truncated & EXE_TRUNCATED != 0,
            };
            (record, expected_event(&proc, event::Kind::File(file)))
        })
}

/// A written record of each gadget, with its gadget's name.
fn written() -> impl Strategy<Value = (&'static str, Written)> {
    prop_oneof![
        written_open().prop_map(|w| (gadget_proto::TRACE_OPEN, w)),
        written_exec().prop_map(|w| (gadget_proto::TRACE_EXEC, w)),
        written_file().prop_map(|w| (gadget_proto::TRACE_FILE, w)),
    ]
}

fn gadget(name: &str) -> &'static dyn KernelGadget {
    crate::gadgets::find(name).expect("a gadget of this node")
}

/// A written record of any gadget with one to four bytes changed, or cut
/// or extended at the end.
fn corrupted() -> impl Strategy<Value = Vec<u8>> {
    let edits = proptest::collection::vec((any::<usize>(), any::<u8>()), 1..5);
    (
        written(),
        edits,
        prop_oneof![Just(None), any::<usize>().prop_map(Some)],
    )
        .prop_map(|((_, (mut record, _)), edits, new_len)| {
            for (at, byte) in edits {
                let at = at % record.len();
                record[at] = byte;
            }
            if let Some(len) = new_len {
                record.resize(len % (record.len() + 16), 0);
            }
            record
        })
}

/// A written record cut inside its fixed part: empty, one byte short, or
/// shorter.
fn cut_short(record: &[u8], header_len: usize, how: u8) -> Vec<u8> {
    match how {
        0 => Vec::new(),
        1 => record[..header_len - 1].to_vec(),
        _ => record[..(how as usize) % header_len].to_vec(),
    }
}

fn header_len(gadget: &dyn KernelGadget) -> usize {
    match gadget.name() {
        gadget_proto::TRACE_OPEN => std::mem::size_of::<trace_open::record::OpenEventHeader>(),
        gadget_proto::TRACE_EXEC => std::mem::size_of::<trace_exec::record::ExecEventHeader>(),
        _ => std::mem::size_of::<trace_file::record::FileEventHeader>(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// Records of any bytes, of every gadget, in one batch: no panic, and
    /// every record is an event or counted malformed.
    #[test]
    fn any_bytes_are_an_event_or_counted(
        records in proptest::collection::vec(
            prop_oneof![
                1 => some_bytes(160),
                // Long enough for every fixed part, with a random one.
                1 => proptest::collection::vec(any::<u8>(), 100..400),
                // Records of every gadget with a few bytes changed: past
                // the first checks, into the decoding of each field.
                2 => corrupted(),
            ],
            0..8,
        ),
    ) {
        for &gadget in crate::gadgets::GADGETS {
            let (batch, malformed) = decode_batch(&*prepared(gadget), &records);
            prop_assert_eq!(batch.events.len() as u64 + malformed, records.len() as u64);
            // Nothing decoded refers to a workload the batch lacks.
            prop_assert!(batch.events.iter().all(|e| e.workload == 0));
        }
    }

    /// A record as the kernel writes it decodes to exactly what it holds,
    /// wherever it sits in the batch (records after the first are not
    /// aligned); the same record cut short is counted, not decoded.
    #[test]
    fn written_records_decode_exactly_and_cut_ones_are_counted(
        (name, (record, expected)) in written(),
        before in some_bytes(40),
        how in any::<u8>(),
    ) {
        let gadget = gadget(name);
        let prepared = prepared(gadget);
        let cut = cut_short(&record, header_len(gadget), how);
        // `before` is shorter than any fixed part: malformed too, and it
        // leaves the written record unaligned.
        let (batch, malformed) = decode_batch(&*prepared, &[before, record, cut]);
        prop_assert_eq!(malformed, 2);
        prop_assert_eq!(batch.events.len(), 1);
        let mut decoded = batch.events.last().cloned().expect("the written record decodes");
        prop_assert_ne!(decoded.timestamp_ns, 0);
        // The batch turns boot time into wall time; compare the rest.
        decoded.timestamp_ns = expected.timestamp_ns;
        prop_assert_eq!(decoded, expected);
    }

    /// A length field pointing beyond the record's bytes (or beyond what
    /// the kernel keeps) is counted, never read past.
    #[test]
    fn lengths_beyond_the_record_are_counted(
        (name, (record, _)) in written(),
        extra in prop_oneof![1u32..16, Just(u32::MAX), any::<u32>()],
        which in 0usize..4,
    ) {
        let gadget = gadget(name);
        // The offsets of the length fields the parsers check.
        let fields: &[usize] = match gadget.name() {
            gadget_proto::TRACE_OPEN => &[std::mem::offset_of!(
                trace_open::record::OpenEventHeader,
                path_len
            )],
            gadget_proto::TRACE_EXEC => &[
                std::mem::offset_of!(trace_exec::record::ExecEventHeader, exe_len),
                std::mem::offset_of!(trace_exec::record::ExecEventHeader, args_size),
            ],
            _ => &[
                std::mem::offset_of!(trace_file::record::FileEventHeader, path_len),
                std::mem::offset_of!(trace_file::record::FileEventHeader, passed_len),
                std::mem::offset_of!(trace_file::record::FileEventHeader, args_len),
                std::mem::offset_of!(trace_file::record::FileEventHeader, exe_len),
            ],
        };
        let at = fields[which % fields.len()];
        let mut record = record;
        let len = u32::from_ne_bytes(record[at..at + 4].try_into().unwrap());
        // Beyond every byte of the record, whatever the other lengths.
        let beyond = len.saturating_add(record.len() as u32).saturating_add(extra);
        record[at..at + 4].copy_from_slice(&beyond.to_ne_bytes());
        let (batch, malformed) = decode_batch(&*prepared(gadget), &[record]);
        prop_assert_eq!((batch.events.len(), malformed), (0, 1));
    }
}
