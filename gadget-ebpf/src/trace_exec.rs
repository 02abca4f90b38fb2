//! `trace_exec`: execve(2) and execveat(2), successful or not
//! (`src/bpf/trace_exec.bpf.c`).

use crate::{split_header, MalformedRecord, PlainRecord, ProcessRecord, TASK_COMM_LEN};

/// The compiled kernel object.
pub fn object() -> &'static [u8] {
    crate::bpf_object!("trace_exec.bpf.o")
}

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
    /// `ARGS_TRUNCATED` | `EXE_TRUNCATED`.
    pub truncated: u32,
    /// Explicit padding.
    pub _pad: u32,
}

unsafe impl PlainRecord for ExecEventHeader {}

/// One exec, parsed from a ring-buffer record; borrows the record.
#[derive(Debug, Clone, Copy)]
pub struct ExecRecord<'a> {
    /// The fixed part.
    pub header: ExecEventHeader,
    /// The program as named to execve.
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
}
