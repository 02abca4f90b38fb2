//! `trace_open`: open(2), openat(2) and openat2(2) with their result
//! (`src/bpf/trace_open.bpf.c`).

use crate::{split_header, MalformedRecord, PlainRecord, ProcessRecord};

/// The compiled kernel object.
pub fn object() -> &'static [u8] {
    crate::bpf_object!("trace_open.bpf.o")
}

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
}
