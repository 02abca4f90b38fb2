//! `trace open`: files being opened (open, openat, openat2), with the fd or
//! the error.

use std::ffi::OsString;

use bytes::Bytes;
use gadget_proto::v1::{self, event, run_gadget_request, OpenEvent, OpenSyscall};

use super::{Frontend, Gadget, GadgetColumn, GadgetFrontend};
use crate::render::json::{key, write_bool, write_bytes, write_error, write_known_str};
use crate::render::words::write_name;
use crate::render::{write_escaped, write_i64, write_u64, Cell};
use crate::request::TraceRequestError;

mod flag_names;

/// The `trace_open` gadget, for [`super::GADGETS`].
pub const GADGET: Gadget = Gadget::new(&Frontend::<TraceOpen>::NEW);

/// `trace open`.
pub struct TraceOpen;

/// The flags of `trace open`, beside the ones every trace takes.
#[derive(Debug, clap::Args)]
pub struct OpenFlags {
    /// Only show opens that failed.
    #[arg(long)]
    pub failed: bool,

    /// Only show paths that start with PREFIX, as passed to the syscall
    /// (a relative path is not made absolute); repeatable.
    #[arg(long = "prefix", value_name = "PREFIX")]
    pub prefixes: Vec<OsString>,
}

impl GadgetFrontend for TraceOpen {
    type Event = OpenEvent;
    type Flags = OpenFlags;

    const NAME: &'static str = gadget_proto::TRACE_OPEN;
    const COMMAND: &'static str = "open";
    const ABOUT: &'static str = "Trace files being opened (open, openat, openat2)";
    const KINDS: &'static [&'static str] = &["open"];
    const COLUMNS: &'static [GadgetColumn<OpenEvent>] = &[
        GadgetColumn {
            name: "fd",
            header: "FD",
            width: 4,
            cell: |open, scratch| Cell::number(scratch, &open.fd),
        },
        GadgetColumn {
            name: "flags",
            header: "FLAGS",
            width: 24,
            cell: |open, scratch| {
                flag_names::write_open_flags(scratch, open.flags);
                Cell::Formatted
            },
        },
        GadgetColumn {
            name: "mode",
            header: "MODE",
            width: 6,
            cell: |open, scratch| Cell::number(scratch, &format_args!("{:04o}", open.mode)),
        },
        GadgetColumn {
            name: "dirfd",
            header: "DIRFD",
            width: 5,
            cell: |open, scratch| match open.dirfd {
                Some(dirfd) => Cell::number(scratch, &dirfd),
                None => Cell::EMPTY,
            },
        },
        GadgetColumn {
            name: "syscall",
            header: "SYSCALL",
            width: 7,
            cell: |open, _| Cell::Text(syscall_name(open.syscall()).as_bytes()),
        },
        GadgetColumn {
            name: "path",
            header: "PATH",
            width: 40,
            cell: |open, scratch| {
                write_name(scratch, &open.path, open.path_truncated, false);
                Cell::Escaped
            },
        },
    ];
    const MINIMAL_FLAGS: &'static [&'static str] = &[];
    const DEFAULT_COLUMNS: &'static [&'static str] = &[
        "node",
        "namespace",
        "pod",
        "container",
        "pid",
        "comm",
        "fd",
        "err",
        "path",
    ];

    fn event(kind: &event::Kind) -> Option<&OpenEvent> {
        match kind {
            event::Kind::Open(open) => Some(open),
            _ => None,
        }
    }

    fn kind(_: &OpenEvent) -> &'static str {
        "open"
    }

    fn compact_word(_: &OpenEvent) -> &'static str {
        "open"
    }

    fn emoji(_: &OpenEvent) -> &'static str {
        "📬"
    }

    fn params(flags: OpenFlags) -> Result<run_gadget_request::Params, TraceRequestError> {
        Ok(run_gadget_request::Params::Open(v1::OpenParams {
            failed_only: flags.failed,
            path_prefixes: flags
                .prefixes
                .into_iter()
                .map(prefix_bytes)
                .collect::<Result<_, _>>()?,
        }))
    }

    fn failure(open: &OpenEvent) -> Option<i32> {
        (open.error != 0).then_some(open.error)
    }

    fn write_json_fields(out: &mut Vec<u8>, open: &OpenEvent) {
        key(out, "fd");
        write_i64(out, open.fd.into());
        key(out, "error");
        write_error(out, Self::failure(open));
        key(out, "flags");
        write_u64(out, open.flags);
        key(out, "flag_names");
        out.push(b'[');
        let mut first = true;
        flag_names::for_each_open_flag(open.flags, |flag| {
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            flag_names::write_open_flag(out, flag);
            out.push(b'"');
        });
        out.push(b']');
        key(out, "mode");
        write_u64(out, open.mode.into());
        key(out, "dirfd");
        match open.dirfd {
            Some(dirfd) => write_i64(out, dirfd.into()),
            None => out.extend_from_slice(b"null"),
        }
        key(out, "syscall");
        write_known_str(out, syscall_name(open.syscall()));
        key(out, "path");
        write_bytes(out, &open.path);
        key(out, "path_truncated");
        write_bool(out, open.path_truncated);
    }

    /// The command, then the path.
    fn write_compact(out: &mut Vec<u8>, comm: &[u8], open: &OpenEvent) {
        out.push(b' ');
        write_escaped(out, comm);
        out.push(b' ');
        write_name(out, &open.path, open.path_truncated, false);
    }
}

/// The name of an open syscall as users know it, empty when unspecified.
fn syscall_name(syscall: OpenSyscall) -> &'static str {
    match syscall {
        OpenSyscall::Unspecified => "",
        OpenSyscall::Open => "open",
        OpenSyscall::Openat => "openat",
        OpenSyscall::Openat2 => "openat2",
    }
}

/// The bytes of a `--prefix`; on unix any path, even one that is not UTF-8.
fn prefix_bytes(prefix: OsString) -> Result<Bytes, TraceRequestError> {
    use std::os::unix::ffi::OsStringExt as _;
    if prefix.is_empty() {
        return Err(TraceRequestError::Prefix {
            prefix: String::new(),
            problem: "an empty prefix would match every path; leave --prefix out instead",
        });
    }
    let bytes = prefix.into_vec();
    if bytes.contains(&0) {
        return Err(TraceRequestError::Prefix {
            prefix: String::from_utf8_lossy(&bytes).into_owned(),
            problem: "a path cannot contain a NUL byte",
        });
    }
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::json::write_str;

    #[test]
    fn syscall_names_are_written_as_their_strings_are() {
        for syscall in [
            OpenSyscall::Unspecified,
            OpenSyscall::Open,
            OpenSyscall::Openat,
            OpenSyscall::Openat2,
        ] {
            let (mut known, mut scanned) = (Vec::new(), Vec::new());
            write_known_str(&mut known, syscall_name(syscall));
            write_str(&mut scanned, syscall_name(syscall));
            assert_eq!(known, scanned, "{syscall:?}");
        }
    }
}
