//! `trace file`: chosen files followed through open, read, write and
//! close, with the exec and exit of the selected processes around them;
//! optionally the kernel kills a process at an operation on one of them
//! (`--kill-on`).
//!
//! Files are chosen by the path the kernel resolved (from the process's
//! root, after symlinks, `..`, the working directory and dirfds), not by
//! the string passed to the syscall, so `cd /etc && cat ./shadow` or a
//! symlink to `/etc/shadow` is still `/etc/shadow`.
//!
//! What to follow comes from the flags (`--prefix`, `--path`,
//! `--operations`, `--kill-on`) or from a `--policy` file, never both: a
//! small YAML document for policies kept in git.
//!
//! ```yaml
//! # follow /etc, kill a process that writes to shadow files
//! paths:
//!   - /etc/shadow
//! prefixes:
//!   - /etc/
//! operations: [open, read, write, close]   # optional: all of them
//! killOn: write                            # optional: open, read or write
//! ```
//!
//! Unknown fields are refused, so a misspelt `killon` cannot silently
//! enforce nothing.
//!
//! Events render as:
//! - JSON `type`: `file_open`, `file_read`, `file_write`, `file_close`
//!   (`file_access` for an operation this client does not know),
//!   `process_exec`, `process_exit` (`file` for an event with none of them);
//! - compact lines:
//!
//! ```text
//! 🚀 process default/xwing /usr/bin/vi /etc/passwd
//! 📬 open    default/xwing /usr/bin/vi /etc/passwd
//! 📚 read    default/xwing /usr/bin/vi /etc/passwd 1275 bytes
//! 📝 write   default/xwing /usr/bin/vi /etc/passwd 1275 bytes
//! 📝 write   default/xwing /usr/bin/vi /etc/shadow killed
//! 📪 close   default/xwing /usr/bin/vi /etc/passwd
//! 💥 exit    default/xwing /usr/bin/vi /etc/passwd 0
//! 💥 exit    default/xwing /usr/bin/vi /etc/shadow SIGKILL
//! ❌ open    default/xwing /usr/bin/vi /etc/shadow EACCES
//! ```
//!
//! After where the process ran come its executable and, for an operation,
//! the file's resolved path; `process` and `exit` show the arguments after
//! `argv[0]` instead, and `exit` ends with the exit code or the signal's
//! name. An operation at which the kernel killed the process (`--kill-on`)
//! ends with `killed` (and shows no byte count: the read or write did not
//! run). A resolved path or executable whose start was cut off by the
//! kernel's bound starts with `…`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use gadget_proto::v1::{
    self, event, file_event, run_gadget_request, FileAccess, FileEvent, FileOperation,
};

use super::{Frontend, Gadget, GadgetColumn, GadgetFrontend};
use crate::render::json::{key, write_bool, write_bytes, write_error, write_str};
use crate::render::words::write_words;
use crate::render::{signal_name, write_escaped, write_number, write_signal, Cell};
use crate::request::TraceRequestError;

/// The `trace_file` gadget, for [`super::GADGETS`].
pub const GADGET: Gadget = Gadget::new(&Frontend::<TraceFile>::NEW);

/// Paths and prefixes followed at most, in all: the node's kernel program
/// keeps them as read-only data, in a table of this many slots.
pub const MAX_FOLLOWED_PATHS: usize = 8;

/// Bytes of one followed path or prefix at most: the size of a slot.
pub const MAX_FOLLOWED_PATH_BYTES: usize = 256;

/// `trace file`.
pub struct TraceFile;

/// The flags of `trace file`, beside the ones every trace takes.
#[derive(Debug, clap::Args)]
pub struct FileFlags {
    /// Follow files whose resolved path starts with PATH, e.g. /etc/ (end a
    /// directory with /: /etc also matches /etcd); repeatable.
    #[arg(long = "prefix", value_name = "PATH")]
    pub prefixes: Vec<OsString>,

    /// Follow the file whose resolved path is PATH; repeatable. At most 8
    /// --prefix and --path in all, of at most 256 bytes each.
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<OsString>,

    /// Report only these operations, comma-separated: open, read, write,
    /// close [default: all].
    #[arg(long, value_name = "LIST")]
    pub operations: Option<String>,

    /// Kill the process (SIGKILL, sent by the kernel) at this operation on
    /// a followed file: open, read or write.
    #[arg(long, value_name = "OPERATION")]
    pub kill_on: Option<String>,

    /// Read what to follow from a YAML file instead of the flags above
    ///
    /// Its fields are those of the flags, all optional but one of paths
    /// and prefixes; unknown fields are refused:
    ///
    ///   paths: [/etc/shadow]
    ///   prefixes: [/etc/]
    ///   operations: [open, read, write, close]
    ///   killOn: write
    #[arg(long, value_name = "FILE", verbatim_doc_comment)]
    pub policy: Option<PathBuf>,
}

impl GadgetFrontend for TraceFile {
    type Event = FileEvent;
    type Flags = FileFlags;

    const NAME: &'static str = gadget_proto::TRACE_FILE;
    const COMMAND: &'static str = "file";
    const ABOUT: &'static str =
        "Follow files through open, read, write and close, with the processes around them";
    const KINDS: &'static [&'static str] = &[
        "file_open",
        "file_read",
        "file_write",
        "file_close",
        "file_access",
        "process_exec",
        "process_exit",
        "file",
    ];
    const COLUMNS: &'static [GadgetColumn<FileEvent>] = &[
        GadgetColumn {
            name: "op",
            header: "OP",
            width: 5,
            cell: |file, _| Cell::Text(op_name(file).as_bytes()),
        },
        GadgetColumn {
            name: "exe",
            header: "EXE",
            width: 24,
            cell: |file, scratch| resolved_path_cell(&file.exe, file.exe_truncated, scratch),
        },
        GadgetColumn {
            name: "path",
            header: "PATH",
            width: 40,
            cell: |file, scratch| match access(file) {
                Some(access) => resolved_path_cell(&access.path, access.path_truncated, scratch),
                None => Cell::EMPTY,
            },
        },
        GadgetColumn {
            name: "fd",
            header: "FD",
            width: 4,
            cell: |file, scratch| match access(file) {
                Some(access) => Cell::number(scratch, &access.fd),
                None => Cell::EMPTY,
            },
        },
        GadgetColumn {
            name: "ret",
            header: "RET",
            width: 8,
            cell: |file, scratch| match access(file) {
                Some(access) => Cell::number(scratch, &access.ret),
                None => Cell::EMPTY,
            },
        },
        GadgetColumn {
            name: "bytes",
            header: "BYTES",
            width: 8,
            cell: |file, scratch| match access(file).and_then(bytes_transferred) {
                Some(bytes) => Cell::number(scratch, &bytes),
                None => Cell::EMPTY,
            },
        },
        GadgetColumn {
            name: "killed",
            header: "KILLED",
            width: 6,
            cell: |file, _| match access(file) {
                Some(access) if access.killed => Cell::Text(b"yes"),
                _ => Cell::EMPTY,
            },
        },
        GadgetColumn {
            name: "args",
            header: "ARGS",
            width: 40,
            cell: |file, scratch| match args(file) {
                Some((args, truncated)) => {
                    write_words(scratch, args.iter().map(|a| &a[..]), truncated);
                    Cell::Escaped
                }
                None => Cell::EMPTY,
            },
        },
        GadgetColumn {
            name: "exit",
            header: "EXIT",
            // SIGKILL, SIGSEGV
            width: 7,
            cell: |file, scratch| match &file.what {
                Some(file_event::What::Exit(exit)) => {
                    write_exit_status(scratch, exit);
                    Cell::Formatted
                }
                _ => Cell::EMPTY,
            },
        },
        GadgetColumn {
            name: "passed",
            header: "PASSED",
            width: 40,
            cell: |file, _| match access(file) {
                Some(access) => Cell::Text(&access.path_as_passed),
                None => Cell::EMPTY,
            },
        },
    ];
    const MINIMAL_FLAGS: &'static [&'static str] = &["--prefix", "/etc/"];
    const DEFAULT_COLUMNS: &'static [&'static str] = &[
        "node",
        "namespace",
        "pod",
        "container",
        "pid",
        "op",
        "ret",
        "err",
        "killed",
        "exit",
        "exe",
        "path",
    ];

    fn event(kind: &event::Kind) -> Option<&FileEvent> {
        match kind {
            event::Kind::File(file) => Some(file),
            _ => None,
        }
    }

    fn kind(file: &FileEvent) -> &'static str {
        names(file).kind
    }

    fn compact_word(file: &FileEvent) -> &'static str {
        names(file).word
    }

    fn emoji(file: &FileEvent) -> &'static str {
        names(file).emoji
    }

    fn params(flags: FileFlags) -> Result<run_gadget_request::Params, TraceRequestError> {
        let params = match flags.policy {
            Some(file) => {
                let given = [
                    (!flags.prefixes.is_empty(), "--prefix"),
                    (!flags.paths.is_empty(), "--path"),
                    (flags.operations.is_some(), "--operations"),
                    (flags.kill_on.is_some(), "--kill-on"),
                ];
                if let Some((_, flag)) = given.into_iter().find(|(given, _)| *given) {
                    return Err(TraceRequestError::PolicyWithFlag { flag });
                }
                Policy::read(&file)?.params(&file)?
            }
            None => {
                use std::os::unix::ffi::OsStringExt as _;
                let operations: Option<Vec<&str>> = flags
                    .operations
                    .as_deref()
                    .map(|list| list.split(',').collect());
                file_params(
                    &FLAG_NAMES,
                    flags.prefixes.into_iter().map(OsString::into_vec),
                    flags.paths.into_iter().map(OsString::into_vec),
                    operations.as_deref(),
                    flags.kill_on.as_deref(),
                )?
            }
        };
        Ok(run_gadget_request::Params::File(params))
    }

    fn failure(file: &FileEvent) -> Option<i32> {
        let access = access(file)?;
        // A killed read or write ends with EINTR because of the kill: the
        // row says `killed`, not that the call failed.
        (access.ret < 0 && !access.killed).then(|| {
            access
                .ret
                .checked_neg()
                .and_then(|errno| i32::try_from(errno).ok())
                .unwrap_or(i32::MAX)
        })
    }

    fn enforcement(params: &run_gadget_request::Params) -> Option<String> {
        let run_gadget_request::Params::File(file) = params else {
            return None;
        };
        let operation = file.kill_on();
        if operation == FileOperation::Unspecified {
            return None;
        }
        let list = |paths: &[bytes::Bytes]| {
            paths
                .iter()
                .map(|path| String::from_utf8_lossy(path).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut files = Vec::new();
        if !file.path_prefixes.is_empty() {
            files.push(format!("under {}", list(&file.path_prefixes)));
        }
        if !file.paths.is_empty() {
            files.push(format!("at {}", list(&file.paths)));
        }
        Some(format!(
            "SIGKILL at {} of files {}",
            operation_name(operation),
            files.join(" or ")
        ))
    }

    fn write_json_fields(out: &mut Vec<u8>, file: &FileEvent) {
        key(out, "exe");
        write_bytes(out, &file.exe);
        key(out, "exe_truncated");
        write_bool(out, file.exe_truncated);
        match &file.what {
            Some(file_event::What::Access(access)) => {
                key(out, "operation");
                match operation(access) {
                    Some(op) if op != FileOperation::Unspecified => {
                        write_str(out, operation_name(op))
                    }
                    _ => out.extend_from_slice(b"null"),
                }
                key(out, "path");
                write_bytes(out, &access.path);
                key(out, "path_truncated");
                write_bool(out, access.path_truncated);
                key(out, "path_as_passed");
                if operation(access) == Some(FileOperation::Open) {
                    write_bytes(out, &access.path_as_passed);
                } else {
                    out.extend_from_slice(b"null");
                }
                key(out, "fd");
                write_number(out, &access.fd);
                key(out, "ret");
                write_number(out, &access.ret);
                key(out, "error");
                write_error(out, Self::failure(file));
                key(out, "bytes");
                match bytes_transferred(access) {
                    Some(bytes) => write_number(out, &bytes),
                    None => out.extend_from_slice(b"null"),
                }
                key(out, "killed");
                write_bool(out, access.killed);
            }
            Some(file_event::What::Exec(exec)) => {
                write_json_args(out, &exec.args, exec.args_truncated);
            }
            Some(file_event::What::Exit(exit)) => {
                key(out, "exit_code");
                write_number(out, &exit.exit_code);
                key(out, "signal");
                if exit.signal == 0 {
                    out.extend_from_slice(b"null");
                } else {
                    out.extend_from_slice(b"{\"number\":");
                    write_number(out, &exit.signal);
                    key(out, "name");
                    match signal_name(exit.signal) {
                        Some(name) => write_str(out, name),
                        None => out.extend_from_slice(b"null"),
                    }
                    out.push(b'}');
                }
                write_json_args(out, &exit.args, exit.args_truncated);
            }
            None => {}
        }
    }

    /// The executable, then the resolved path of an operation (with its
    /// byte count, or `killed`), or the arguments of a process (and how an
    /// exit ended).
    fn write_compact(out: &mut Vec<u8>, comm: &[u8], file: &FileEvent) {
        out.push(b' ');
        if file.exe.is_empty() {
            write_escaped(out, comm);
        } else {
            write_resolved_path(out, &file.exe, file.exe_truncated);
        }
        match &file.what {
            Some(file_event::What::Access(access)) => {
                if !access.path.is_empty() || access.path_truncated {
                    out.push(b' ');
                    write_resolved_path(out, &access.path, access.path_truncated);
                }
                if access.killed {
                    out.extend_from_slice(b" killed");
                } else if let Some(bytes) = bytes_transferred(access) {
                    out.push(b' ');
                    write_number(out, &bytes);
                    out.extend_from_slice(b" bytes");
                }
            }
            Some(file_event::What::Exec(exec)) => {
                write_compact_args(out, &exec.args, exec.args_truncated);
            }
            Some(file_event::What::Exit(exit)) => {
                write_compact_args(out, &exit.args, exit.args_truncated);
                out.push(b' ');
                write_exit_status(out, exit);
            }
            None => {}
        }
    }
}

/// What a kind of event is called.
struct EventNames {
    /// JSON's `type`.
    kind: &'static str,
    /// The word after the emoji of a compact line.
    word: &'static str,
    /// The emoji of a compact line.
    emoji: &'static str,
}

fn names(file: &FileEvent) -> EventNames {
    let (kind, word, emoji) = match &file.what {
        Some(file_event::What::Access(access)) => match operation(access) {
            Some(FileOperation::Open) => ("file_open", "open", "📬"),
            Some(FileOperation::Read) => ("file_read", "read", "📚"),
            Some(FileOperation::Write) => ("file_write", "write", "📝"),
            Some(FileOperation::Close) => ("file_close", "close", "📪"),
            Some(FileOperation::Unspecified) | None => ("file_access", "access", "📁"),
        },
        Some(file_event::What::Exec(_)) => ("process_exec", "process", "🚀"),
        Some(file_event::What::Exit(_)) => ("process_exit", "exit", "💥"),
        None => ("file", "file", "📁"),
    };
    EventNames { kind, word, emoji }
}

/// The operation of an access, `None` for a number this client does not
/// know (a newer node's).
fn operation(access: &FileAccess) -> Option<FileOperation> {
    FileOperation::try_from(access.operation).ok()
}

/// The operations by name, in the order they are listed to users.
const OPERATIONS: [(&str, FileOperation); 4] = [
    ("open", FileOperation::Open),
    ("read", FileOperation::Read),
    ("write", FileOperation::Write),
    ("close", FileOperation::Close),
];

fn operation_name(operation: FileOperation) -> &'static str {
    OPERATIONS
        .iter()
        .find(|(_, op)| *op == operation)
        .map_or("", |(name, _)| name)
}

/// The `op` column: the operation, or `exec` and `exit`.
fn op_name(file: &FileEvent) -> &'static str {
    match &file.what {
        Some(file_event::What::Access(access)) => operation(access).map_or("", operation_name),
        Some(file_event::What::Exec(_)) => "exec",
        Some(file_event::What::Exit(_)) => "exit",
        None => "",
    }
}

fn access(file: &FileEvent) -> Option<&FileAccess> {
    match &file.what {
        Some(file_event::What::Access(access)) => Some(access),
        _ => None,
    }
}

/// The arguments of an exec, or of the program an exiting process ran.
fn args(file: &FileEvent) -> Option<(&[Bytes], bool)> {
    match &file.what {
        Some(file_event::What::Exec(exec)) => Some((&exec.args, exec.args_truncated)),
        Some(file_event::What::Exit(exit)) => Some((&exit.args, exit.args_truncated)),
        _ => None,
    }
}

/// The bytes a read or write transferred; `None` for the other operations,
/// a failure, or an operation the kernel killed the process at (it did not
/// run).
fn bytes_transferred(access: &FileAccess) -> Option<i64> {
    let moves_bytes = matches!(
        operation(access),
        Some(FileOperation::Read | FileOperation::Write)
    );
    (moves_bytes && !access.killed && access.ret >= 0).then_some(access.ret)
}

/// A path the kernel resolved: its start is what a cut loses, so `…`
/// leads.
fn resolved_path_cell<'e>(path: &'e [u8], truncated: bool, scratch: &mut Vec<u8>) -> Cell<'e> {
    if truncated {
        scratch.extend_from_slice("…".as_bytes());
        scratch.extend_from_slice(path);
        Cell::Formatted
    } else {
        Cell::Text(path)
    }
}

/// Writes a path the kernel resolved, escaped, led by `…` when its start
/// was cut.
fn write_resolved_path(out: &mut Vec<u8>, path: &[u8], truncated: bool) {
    if truncated {
        out.extend_from_slice("…".as_bytes());
    }
    write_escaped(out, path);
}

/// The arguments after `argv[0]`, each led by a space, then ` …` when the
/// list was cut.
fn write_compact_args(out: &mut Vec<u8>, args: &[Bytes], truncated: bool) {
    if args.len() > 1 || truncated {
        out.push(b' ');
        write_words(out, args.iter().skip(1).map(|a| &a[..]), truncated);
    }
}

fn write_json_args(out: &mut Vec<u8>, args: &[Bytes], truncated: bool) {
    key(out, "args");
    out.push(b'[');
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_bytes(out, arg);
    }
    out.push(b']');
    key(out, "args_truncated");
    write_bool(out, truncated);
}

/// The signal's name when a signal ended the process (`signal 35` for one
/// without a name, so that it is not read as an exit code), otherwise the
/// exit code.
fn write_exit_status(out: &mut Vec<u8>, exit: &v1::ProcessExit) {
    if exit.signal == 0 {
        write_number(out, &exit.exit_code);
    } else if signal_name(exit.signal).is_some() {
        write_signal(out, exit.signal);
    } else {
        out.extend_from_slice(b"signal ");
        write_number(out, &exit.signal);
    }
}

/// How the values were given, to name them in errors.
struct Names {
    prefix: &'static str,
    path: &'static str,
    operations: &'static str,
    kill_on: &'static str,
    all_paths: &'static str,
    required: &'static str,
}

const FLAG_NAMES: Names = Names {
    prefix: "--prefix",
    path: "--path",
    operations: "--operations",
    kill_on: "--kill-on",
    all_paths: "--prefix and --path values",
    required: "a --prefix, --path or --policy",
};

const POLICY_NAMES: Names = Names {
    prefix: "prefixes",
    path: "paths",
    operations: "operations",
    kill_on: "killOn",
    all_paths: "paths and prefixes",
    required: "one of paths and prefixes",
};

/// Checks what to follow, from the flags or a policy, and makes it the
/// gadget's parameters.
fn file_params(
    names: &Names,
    prefixes: impl IntoIterator<Item = Vec<u8>>,
    paths: impl IntoIterator<Item = Vec<u8>>,
    operations: Option<&[&str]>,
    kill_on: Option<&str>,
) -> Result<v1::FileParams, TraceRequestError> {
    let path_prefixes = prefixes
        .into_iter()
        .map(|prefix| followed_path(names.prefix, prefix, PathKind::Prefix))
        .collect::<Result<Vec<_>, _>>()?;
    let paths = paths
        .into_iter()
        .map(|path| followed_path(names.path, path, PathKind::Exact))
        .collect::<Result<Vec<_>, _>>()?;
    let count = path_prefixes.len() + paths.len();
    if count == 0 {
        return Err(TraceRequestError::NothingToFollow {
            missing: names.required,
        });
    }
    if count > MAX_FOLLOWED_PATHS {
        return Err(TraceRequestError::TooManyFollowedPaths {
            what: names.all_paths,
            count,
            max: MAX_FOLLOWED_PATHS,
        });
    }
    let operations = match operations {
        // 0 on the wire: every operation.
        None => 0,
        Some(list) => operation_bits(names.operations, list)?,
    };
    let kill_on = match kill_on {
        None => FileOperation::Unspecified,
        Some(value) => kill_operation(names.kill_on, value)?,
    };
    if kill_on != FileOperation::Unspecified
        && operations != 0
        && operations & operation_bit(kill_on) == 0
    {
        return Err(TraceRequestError::KillUnreported {
            what: names.kill_on,
            operation: operation_name(kill_on),
            operations: names.operations,
        });
    }
    Ok(v1::FileParams {
        path_prefixes,
        paths,
        operations,
        kill_on: kill_on.into(),
    })
}

/// An operation's bit in `FileParams.operations`.
fn operation_bit(operation: FileOperation) -> u32 {
    1 << operation as u32
}

/// Whether a followed path is matched as a prefix or whole.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PathKind {
    Prefix,
    Exact,
}

/// Checks one path to follow: what can never equal (or start) a path the
/// kernel resolved is refused, as it would silently follow nothing.
fn followed_path(
    what: &'static str,
    path: Vec<u8>,
    kind: PathKind,
) -> Result<Bytes, TraceRequestError> {
    let bad = |problem: &'static str| TraceRequestError::FollowedPath {
        what,
        path: String::from_utf8_lossy(&path).into_owned(),
        problem,
    };
    if path.is_empty() {
        return Err(bad("a followed path cannot be empty"));
    }
    if path.contains(&0) {
        return Err(bad("a path cannot contain a NUL byte"));
    }
    if path[0] != b'/' {
        return Err(bad(
            "it must be absolute (start with /), like the paths the kernel resolves",
        ));
    }
    if path.len() > MAX_FOLLOWED_PATH_BYTES {
        return Err(TraceRequestError::FollowedPathTooLong {
            what,
            len: path.len(),
            path: String::from_utf8_lossy(&path).into_owned(),
            max: MAX_FOLLOWED_PATH_BYTES,
        });
    }
    let components: Vec<&[u8]> = path[1..].split(|&b| b == b'/').collect();
    // A prefix's last component may be the start of a name (`/etc/.`
    // starts `/etc/.profile`), or empty after a directory's `/`.
    let whole = match kind {
        PathKind::Prefix => &components[..components.len() - 1],
        PathKind::Exact => &components[..],
    };
    let never_resolved = |c: &&[u8]| c.is_empty() || *c == b"." || *c == b"..";
    if kind == PathKind::Exact && path.len() > 1 && path.ends_with(b"/") {
        return Err(bad(
            "a resolved path never ends with / (use --prefix or prefixes for a directory)",
        ));
    }
    if path.len() > 1 && whole.iter().any(never_resolved) {
        return Err(bad(
            "a resolved path has no empty, \".\" or \"..\" components, so it would never match",
        ));
    }
    Ok(Bytes::from(path))
}

/// The `FileParams.operations` bits of a list of operation names.
fn operation_bits(what: &'static str, list: &[&str]) -> Result<u32, TraceRequestError> {
    let mut bits = 0;
    for name in list.iter().map(|name| name.trim()) {
        if name.is_empty() {
            continue;
        }
        let operation = OPERATIONS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|&(_, operation)| operation)
            .ok_or_else(|| TraceRequestError::FileOperation {
                what,
                value: name.to_string(),
                valid: "open, read, write and close",
            })?;
        bits |= operation_bit(operation);
    }
    if bits == 0 {
        return Err(TraceRequestError::NoFileOperations { what });
    }
    Ok(bits)
}

/// The operation a `--kill-on` names: open, read or write.
fn kill_operation(what: &'static str, value: &str) -> Result<FileOperation, TraceRequestError> {
    let bad = |problem: &'static str| TraceRequestError::KillOn {
        what,
        value: value.to_string(),
        problem,
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "open" => Ok(FileOperation::Open),
        "read" => Ok(FileOperation::Read),
        "write" => Ok(FileOperation::Write),
        "close" => Err(bad(
            "killing at close stops nothing, the reads and writes are done; use open, read or write",
        )),
        _ => Err(bad("use open, read or write")),
    }
}

/// A `--policy` file, as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Policy {
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    prefixes: Vec<String>,
    operations: Option<Vec<String>>,
    kill_on: Option<String>,
}

impl Policy {
    /// Reads and parses `file`.
    fn read(file: &Path) -> Result<Policy, TraceRequestError> {
        let text = std::fs::read_to_string(file).map_err(|err| TraceRequestError::PolicyRead {
            file: file.display().to_string(),
            reason: err.to_string(),
        })?;
        Policy::parse(&text).map_err(|reason| TraceRequestError::PolicySyntax {
            file: file.display().to_string(),
            reason,
        })
    }

    /// Parses a policy, or says in one line why it is not one.
    fn parse(text: &str) -> Result<Policy, String> {
        serde_saphyr::from_str::<Policy>(text).map_err(|err| {
            // The message for users (not the one suggesting parser options)
            // with its line and column, without the multi-line source
            // snippet: errors here are one line.
            let message = err.render_with_options(serde_saphyr::render_options! {
                formatter: &serde_saphyr::UserMessageFormatter,
                snippets: serde_saphyr::SnippetMode::Off,
            });
            message.split_whitespace().collect::<Vec<_>>().join(" ")
        })
    }

    /// Checks the policy's values, naming its fields.
    fn params(self, file: &Path) -> Result<v1::FileParams, TraceRequestError> {
        let operations: Option<Vec<&str>> = self
            .operations
            .as_ref()
            .map(|list| list.iter().map(String::as_str).collect());
        file_params(
            &POLICY_NAMES,
            self.prefixes.into_iter().map(String::into_bytes),
            self.paths.into_iter().map(String::into_bytes),
            operations.as_deref(),
            self.kill_on.as_deref(),
        )
        .map_err(|problem| TraceRequestError::PolicyValue {
            file: file.display().to_string(),
            problem: Box::new(problem),
        })
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::{process, workload};
    use crate::render::{OutputFormat, Renderer, Row};
    use gadget_proto::v1::{Event, ProcessExec, ProcessExit, Workload};
    use serde_json::{json, Value};

    /// The parameters of `trace file ARGS`, or its error.
    fn params(args: &[&str]) -> Result<v1::FileParams, TraceRequestError> {
        let matches = GADGET
            .command()
            .try_get_matches_from(std::iter::once("file").chain(args.iter().copied()))
            .expect("the flags parse");
        match GADGET.params(&matches)? {
            run_gadget_request::Params::File(params) => Ok(params),
            other => panic!("not trace file's parameters: {other:?}"),
        }
    }

    /// The error of `trace file ARGS`, which must be one line.
    fn error(args: &[&str]) -> String {
        let message = params(args).expect_err("refused").to_string();
        assert!(!message.contains('\n'), "{message:?}");
        message
    }

    /// The notice a trace of `args` (after `trace file`) prints before its
    /// rows, with its namespaces resolved as in a cluster whose context
    /// namespace is `default`.
    fn notice(args: &[&str]) -> Option<String> {
        use crate::cli::{TraceCommand, TraceHelp};
        use crate::request::{NamespaceScope, TraceRequest};
        use clap::Parser;

        enum NoHelp {}
        impl TraceHelp for NoHelp {
            const AFTER_LONG_HELP: &'static str = "";
        }
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            trace: TraceCommand<NoHelp>,
        }
        let line = ["trace", "file"].into_iter().chain(args.iter().copied());
        let cli = Cli::try_parse_from(line).unwrap();
        let request =
            TraceRequest::from_command(cli.trace, NamespaceScope::ContextDefault).unwrap();
        request.enforcement_notice(&request.run_request(Some("default")))
    }

    #[test]
    fn a_kill_on_trace_states_what_it_enforces_and_on_whom() {
        assert_eq!(notice(&["--prefix", "/etc/"]), None);
        assert_eq!(
            notice(&["--prefix", "/etc/", "--kill-on", "write"]).as_deref(),
            Some(
                "enforcing while this trace runs: SIGKILL at write of files under /etc/, \
                 to processes of pods in namespace default; not the host's processes"
            )
        );
        assert_eq!(
            notice(&[
                "--path",
                "/etc/shadow",
                "--prefix",
                "/root/",
                "--kill-on",
                "open",
                "-A",
                "-l",
                "app=web",
                "--host",
            ])
            .as_deref(),
            Some(
                "enforcing while this trace runs: SIGKILL at open of files under /root/ or at \
                 /etc/shadow, to processes of pods in every namespace, labels app=web, and the \
                 host's processes"
            )
        );
    }

    fn bit(operation: FileOperation) -> u32 {
        1 << operation as u32
    }

    #[test]
    fn prefixes_and_paths_are_sent_as_given() {
        let sent = params(&[
            "--prefix",
            "/etc/",
            "--path",
            "/var/lib/secret",
            "--prefix",
            "/root/.ssh/",
        ])
        .unwrap();
        assert_eq!(sent.path_prefixes, ["/etc/", "/root/.ssh/"]);
        assert_eq!(sent.paths, ["/var/lib/secret"]);
        // Every operation, and no kill.
        assert_eq!(sent.operations, 0);
        assert_eq!(sent.kill_on(), FileOperation::Unspecified);
    }

    #[test]
    fn operations_become_bits() {
        let sent = params(&["--path", "/etc/shadow", "--operations", "open,write"]).unwrap();
        assert_eq!(
            sent.operations,
            bit(FileOperation::Open) | bit(FileOperation::Write)
        );
        let sent = params(&["--path", "/a", "--operations", " Read, CLOSE,"]).unwrap();
        assert_eq!(
            sent.operations,
            bit(FileOperation::Read) | bit(FileOperation::Close)
        );
        let sent = params(&["--path", "/a", "--operations", "open,read,write,close"]).unwrap();
        assert_eq!(sent.operations, 0b11110);
    }

    #[test]
    fn kill_on_open_read_or_write() {
        for (name, operation) in [
            ("open", FileOperation::Open),
            ("read", FileOperation::Read),
            ("write", FileOperation::Write),
        ] {
            let sent = params(&["--path", "/etc/shadow", "--kill-on", name]).unwrap();
            assert_eq!(sent.kill_on(), operation);
        }
        let sent = params(&[
            "--path",
            "/etc/shadow",
            "--operations",
            "open,write",
            "--kill-on",
            "write",
        ])
        .unwrap();
        assert_eq!(sent.kill_on(), FileOperation::Write);
    }

    #[test]
    fn something_to_follow_is_required() {
        assert_eq!(
            error(&[]),
            "a --prefix, --path or --policy is required: following every file is not what \
             trace file is for"
        );
        assert_eq!(
            error(&["--operations", "open"]),
            "a --prefix, --path or --policy is required: following every file is not what \
             trace file is for"
        );
    }

    #[test]
    fn followed_paths_must_be_absolute_and_not_empty() {
        assert_eq!(
            error(&["--prefix", "etc/"]),
            "invalid --prefix \"etc/\": it must be absolute (start with /), like the paths the \
             kernel resolves"
        );
        assert_eq!(
            error(&["--path", "./shadow"]),
            "invalid --path \"./shadow\": it must be absolute (start with /), like the paths the \
             kernel resolves"
        );
        assert_eq!(
            error(&["--path", ""]),
            "invalid --path \"\": a followed path cannot be empty"
        );
        assert_eq!(
            error(&["--prefix", ""]),
            "invalid --prefix \"\": a followed path cannot be empty"
        );
    }

    #[test]
    fn followed_paths_cannot_hold_a_nul_byte() {
        let err = followed_path("--path", b"/etc/\0shadow".to_vec(), PathKind::Exact)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid --path \"/etc/\\0shadow\": a path cannot contain a NUL byte"
        );
    }

    #[test]
    fn paths_that_are_never_resolved_are_refused() {
        let never = "a resolved path has no empty, \".\" or \"..\" components, so it would never \
                     match";
        for (flag, path) in [
            ("--path", "/etc/../etc/shadow"),
            ("--path", "/etc/./shadow"),
            ("--path", "/etc//shadow"),
            ("--prefix", "/etc//"),
            ("--prefix", "/etc/../"),
        ] {
            assert_eq!(
                error(&[flag, path]),
                format!("invalid {flag} {path:?}: {never}")
            );
        }
        assert_eq!(
            error(&["--path", "/etc/"]),
            "invalid --path \"/etc/\": a resolved path never ends with / (use --prefix or \
             prefixes for a directory)"
        );
        // A prefix may end with the start of a name, dots included.
        for prefix in ["/", "/etc", "/etc/", "/etc/.", "/etc/..", "/home/user/.ss"] {
            params(&["--prefix", prefix]).unwrap();
        }
        params(&["--path", "/"]).unwrap();
    }

    #[test]
    fn followed_paths_fit_the_kernels_table() {
        let longest = format!("/{}", "a".repeat(MAX_FOLLOWED_PATH_BYTES - 1));
        params(&["--path", &longest]).unwrap();
        let too_long = format!("{longest}a");
        assert_eq!(
            error(&["--path", &too_long]),
            format!(
                "invalid --path {too_long:?}: it is 257 bytes long, at most 256 are kept by the \
                 kernel"
            )
        );

        let paths: Vec<String> = (0..9).map(|i| format!("/etc/{i}")).collect();
        let mut args = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            args.push(if i % 2 == 0 { "--path" } else { "--prefix" });
            args.push(path);
        }
        params(&args[..16]).unwrap();
        assert_eq!(
            error(&args),
            "too many --prefix and --path values: 9, at most 8 in all are kept by the kernel"
        );
    }

    #[test]
    fn unknown_operations_are_refused_with_the_valid_ones() {
        assert_eq!(
            error(&["--path", "/a", "--operations", "open,rename"]),
            "invalid --operations \"rename\": the operations are open, read, write and close"
        );
        assert_eq!(
            error(&["--path", "/a", "--operations", "exec"]),
            "invalid --operations \"exec\": the operations are open, read, write and close"
        );
        assert_eq!(
            error(&["--path", "/a", "--operations", " , "]),
            "no operation in --operations: list some of open, read, write and close, or leave \
             it out for all of them"
        );
    }

    #[test]
    fn kill_on_close_or_an_unknown_operation_is_refused() {
        assert_eq!(
            error(&["--path", "/a", "--kill-on", "close"]),
            "invalid --kill-on \"close\": killing at close stops nothing, the reads and writes \
             are done; use open, read or write"
        );
        assert_eq!(
            error(&["--path", "/a", "--kill-on", "exec"]),
            "invalid --kill-on \"exec\": use open, read or write"
        );
        assert_eq!(
            error(&["--path", "/a", "--operations", "open", "--kill-on", "write"]),
            "--kill-on write needs write among the --operations: the kill would not be reported"
        );
    }

    #[test]
    fn policy_cannot_be_combined_with_the_flags_it_replaces() {
        for (flag, value) in [
            ("--prefix", "/etc/"),
            ("--path", "/etc/shadow"),
            ("--operations", "open"),
            ("--kill-on", "write"),
        ] {
            assert_eq!(
                error(&["--policy", "policy.yaml", flag, value]),
                format!(
                    "--policy cannot be combined with {flag}: the policy file is the one source \
                     of what to follow"
                )
            );
        }
    }

    /// A policy file with `text` in it, kept until the end of the test.
    fn policy_file(text: &str) -> tempfile::NamedTempFile {
        use std::io::Write as _;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    /// `trace file --policy` with `text`: its parameters or its error (one
    /// line, with the file's name in place of `{file}`).
    fn policy(text: &str) -> Result<v1::FileParams, String> {
        let file = policy_file(text);
        let name = file.path().to_str().unwrap();
        params(&["--policy", name]).map_err(|err| {
            let message = err.to_string();
            assert!(!message.contains('\n'), "{message:?}");
            message.replace(&format!("{name:?}"), "{file}")
        })
    }

    #[test]
    fn good_policy() {
        let sent = policy(
            "# follow /etc, kill a process that writes to shadow files\n\
             paths:\n  - /etc/shadow\n\
             prefixes:\n  - /etc/\n\
             operations: [open, read, write, close]\n\
             killOn: write\n",
        )
        .unwrap();
        assert_eq!(
            sent,
            v1::FileParams {
                path_prefixes: vec![Bytes::from_static(b"/etc/")],
                paths: vec![Bytes::from_static(b"/etc/shadow")],
                operations: 0b11110,
                kill_on: FileOperation::Write.into(),
            }
        );
        // Only what to follow is required.
        let sent = policy("prefixes: [/root/.ssh/]").unwrap();
        assert_eq!(sent.path_prefixes, ["/root/.ssh/"]);
        assert_eq!((sent.operations, sent.kill_on), (0, 0));
    }

    #[test]
    fn policy_with_an_unknown_field_is_refused_naming_it() {
        assert_eq!(
            policy("paths: [/etc/shadow]\nkill_on: write\n").unwrap_err(),
            "invalid --policy {file}: unknown field `kill_on`, expected one of paths, prefixes, \
             operations, killOn at line 2, column 1"
        );
    }

    #[test]
    fn policy_with_a_bad_operation_names_the_field_and_value() {
        assert_eq!(
            policy("paths: [/etc/shadow]\noperations: [open, rename]\n").unwrap_err(),
            "invalid --policy {file}: invalid operations \"rename\": the operations are open, \
             read, write and close"
        );
        assert_eq!(
            policy("paths: [/etc/shadow]\noperations: []\n").unwrap_err(),
            "invalid --policy {file}: no operation in operations: list some of open, read, \
             write and close, or leave it out for all of them"
        );
    }

    #[test]
    fn policy_with_a_bad_kill_on_names_the_field_and_value() {
        assert_eq!(
            policy("paths: [/etc/shadow]\nkillOn: close\n").unwrap_err(),
            "invalid --policy {file}: invalid killOn \"close\": killing at close stops nothing, \
             the reads and writes are done; use open, read or write"
        );
        assert_eq!(
            policy("paths: [/etc/shadow]\nkillOn: sometimes\n").unwrap_err(),
            "invalid --policy {file}: invalid killOn \"sometimes\": use open, read or write"
        );
        assert_eq!(
            policy("paths: [/etc/shadow]\noperations: [open]\nkillOn: read\n").unwrap_err(),
            "invalid --policy {file}: killOn read needs read among the operations: the kill \
             would not be reported"
        );
    }

    #[test]
    fn policy_paths_are_checked_like_the_flags() {
        assert_eq!(
            policy("prefixes: [etc/]\n").unwrap_err(),
            "invalid --policy {file}: invalid prefixes \"etc/\": it must be absolute (start \
             with /), like the paths the kernel resolves"
        );
        let nine = (0..9)
            .map(|i| format!("/etc/{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(
            policy(&format!("paths: [{nine}]\n")).unwrap_err(),
            "invalid --policy {file}: too many paths and prefixes: 9, at most 8 in all are kept \
             by the kernel"
        );
        for empty in ["", "# nothing yet\n", "operations: [open]\n"] {
            assert_eq!(
                policy(empty).unwrap_err(),
                "invalid --policy {file}: one of paths and prefixes is required: following \
                 every file is not what trace file is for"
            );
        }
    }

    #[test]
    fn missing_policy_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("policy.yaml");
        let err = params(&["--policy", missing.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "cannot read --policy {:?}: No such file or directory (os error 2)",
                missing.display().to_string()
            )
        );
    }

    #[test]
    fn policy_with_a_yaml_syntax_error_says_where() {
        assert_eq!(
            policy("paths: [/etc/shadow\n").unwrap_err(),
            "invalid --policy {file}: unclosed bracket '[' at line 1, column 8"
        );
        assert_eq!(
            policy("paths: /etc/shadow\n").unwrap_err(),
            "invalid --policy {file}: expected sequence start at line 1, column 8"
        );
        assert_eq!(
            policy("paths: [/a]\npaths: [/b]\n").unwrap_err(),
            "invalid --policy {file}: duplicate mapping key `paths` is not allowed here at line \
             2, column 1"
        );
    }

    fn file_event(what: Option<file_event::What>) -> Event {
        Event {
            timestamp_ns: 1_700_000_000_123_000_000,
            process: Some(process()),
            workload: 1,
            kind: Some(event::Kind::File(FileEvent {
                what,
                exe: Bytes::from_static(b"/usr/bin/vi"),
                exe_truncated: false,
            })),
        }
    }

    fn access_event(operation: FileOperation, path: &[u8], fd: i32, ret: i64) -> Event {
        file_event(Some(file_event::What::Access(FileAccess {
            operation: operation.into(),
            path: Bytes::copy_from_slice(path),
            path_truncated: false,
            path_as_passed: match operation {
                FileOperation::Open => Bytes::from_static(b"../etc/passwd"),
                _ => Bytes::new(),
            },
            fd,
            ret,
            killed: false,
        })))
    }

    fn exec_event(args: &[&[u8]]) -> Event {
        file_event(Some(file_event::What::Exec(ProcessExec {
            args: args.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
            args_truncated: false,
        })))
    }

    fn exit_event(exit_code: i32, signal: i32) -> Event {
        file_event(Some(file_event::What::Exit(ProcessExit {
            exit_code,
            signal,
            args: vec![
                Bytes::from_static(b"vi"),
                Bytes::from_static(b"/etc/passwd"),
            ],
            args_truncated: false,
        })))
    }

    fn access_mut(event: &mut Event) -> &mut FileAccess {
        match &mut event.kind {
            Some(event::Kind::File(FileEvent {
                what: Some(file_event::What::Access(access)),
                ..
            })) => access,
            _ => panic!("not an access"),
        }
    }

    fn file_mut(event: &mut Event) -> &mut FileEvent {
        match &mut event.kind {
            Some(event::Kind::File(file)) => file,
            _ => panic!("not a file event"),
        }
    }

    fn render(spec: &str, workload: Option<&Workload>, event: &Event) -> String {
        let mut renderer = Renderer::new(OutputFormat::parse(GADGET, spec).unwrap());
        let mut out = Vec::new();
        renderer.write_row(
            &mut out,
            &Row {
                node: "node-1",
                workload,
                event,
            },
        );
        let line = String::from_utf8(out).unwrap();
        assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        line.trim_end_matches('\n').to_string()
    }

    /// Every one of the gadget's cells (and `err`), by column name.
    fn cells(event: &Event) -> Vec<(&'static str, String)> {
        [
            "op", "exe", "path", "fd", "ret", "bytes", "killed", "args", "exit", "passed", "err",
        ]
        .into_iter()
        .map(|name| (name, render(&format!("columns={name}"), None, event)))
        .collect()
    }

    fn expected(cells: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        cells
            .iter()
            .map(|&(name, text)| (name, text.to_string()))
            .collect()
    }

    #[test]
    fn columns_of_an_open() {
        assert_eq!(
            cells(&access_event(FileOperation::Open, b"/etc/passwd", 3, 3)),
            expected(&[
                ("op", "open"),
                ("exe", "/usr/bin/vi"),
                ("path", "/etc/passwd"),
                ("fd", "3"),
                ("ret", "3"),
                ("bytes", ""),
                ("killed", ""),
                ("args", ""),
                ("exit", ""),
                ("passed", "../etc/passwd"),
                ("err", ""),
            ])
        );
    }

    #[test]
    fn columns_of_a_failed_open() {
        assert_eq!(
            cells(&access_event(FileOperation::Open, b"/etc/shadow", -1, -13)),
            expected(&[
                ("op", "open"),
                ("exe", "/usr/bin/vi"),
                ("path", "/etc/shadow"),
                ("fd", "-1"),
                ("ret", "-13"),
                ("bytes", ""),
                ("killed", ""),
                ("args", ""),
                ("exit", ""),
                ("passed", "../etc/passwd"),
                ("err", "EACCES"),
            ])
        );
    }

    #[test]
    fn columns_of_a_read_and_a_killed_write() {
        assert_eq!(
            cells(&access_event(FileOperation::Read, b"/etc/passwd", 3, 1275)),
            expected(&[
                ("op", "read"),
                ("exe", "/usr/bin/vi"),
                ("path", "/etc/passwd"),
                ("fd", "3"),
                ("ret", "1275"),
                ("bytes", "1275"),
                ("killed", ""),
                ("args", ""),
                ("exit", ""),
                ("passed", ""),
                ("err", ""),
            ])
        );
        let mut write = access_event(FileOperation::Write, b"/etc/shadow", 4, 0);
        access_mut(&mut write).killed = true;
        assert_eq!(
            cells(&write),
            expected(&[
                ("op", "write"),
                ("exe", "/usr/bin/vi"),
                ("path", "/etc/shadow"),
                ("fd", "4"),
                ("ret", "0"),
                ("bytes", ""),
                ("killed", "yes"),
                ("args", ""),
                ("exit", ""),
                ("passed", ""),
                ("err", ""),
            ])
        );
    }

    #[test]
    fn columns_of_a_close() {
        assert_eq!(
            cells(&access_event(FileOperation::Close, b"/etc/passwd", 3, 0)),
            expected(&[
                ("op", "close"),
                ("exe", "/usr/bin/vi"),
                ("path", "/etc/passwd"),
                ("fd", "3"),
                ("ret", "0"),
                ("bytes", ""),
                ("killed", ""),
                ("args", ""),
                ("exit", ""),
                ("passed", ""),
                ("err", ""),
            ])
        );
    }

    #[test]
    fn columns_of_an_exec_and_an_exit() {
        let mut exec = exec_event(&[b"vi", b"/etc/passwd"]);
        assert_eq!(
            cells(&exec),
            expected(&[
                ("op", "exec"),
                ("exe", "/usr/bin/vi"),
                ("path", ""),
                ("fd", ""),
                ("ret", ""),
                ("bytes", ""),
                ("killed", ""),
                ("args", "vi /etc/passwd"),
                ("exit", ""),
                ("passed", ""),
                ("err", ""),
            ])
        );
        if let Some(file_event::What::Exec(exec)) = &mut file_mut(&mut exec).what {
            exec.args_truncated = true;
        }
        assert_eq!(render("columns=args", None, &exec), "vi /etc/passwd …");

        assert_eq!(
            cells(&exit_event(1, 0)),
            expected(&[
                ("op", "exit"),
                ("exe", "/usr/bin/vi"),
                ("path", ""),
                ("fd", ""),
                ("ret", ""),
                ("bytes", ""),
                ("killed", ""),
                ("args", "vi /etc/passwd"),
                ("exit", "1"),
                ("passed", ""),
                ("err", ""),
            ])
        );
        assert_eq!(render("columns=exit", None, &exit_event(0, 9)), "SIGKILL");
        assert_eq!(
            render("columns=exit", None, &exit_event(0, 35)),
            "signal 35"
        );
    }

    #[test]
    fn cut_resolved_paths_lead_with_an_ellipsis() {
        let mut event = access_event(FileOperation::Open, b"/lib/passwd", 3, 3);
        access_mut(&mut event).path_truncated = true;
        file_mut(&mut event).exe_truncated = true;
        assert_eq!(render("columns=path", None, &event), "…/lib/passwd");
        assert_eq!(render("columns=exe", None, &event), "…/usr/bin/vi");
    }

    #[test]
    fn default_columns() {
        let workload = workload();
        let event = access_event(FileOperation::Read, b"/etc/passwd", 3, 1275);
        let header = {
            let renderer = Renderer::new(OutputFormat::parse(GADGET, "columns").unwrap());
            let mut out = Vec::new();
            renderer.write_header(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            header.split_whitespace().collect::<Vec<_>>(),
            [
                "NODE",
                "NAMESPACE",
                "POD",
                "CONTAINER",
                "PID",
                "OP",
                "RET",
                "ERR",
                "KILLED",
                "EXIT",
                "EXE",
                "PATH"
            ]
        );
        let line = render("columns", Some(&workload), &event);
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>(),
            [
                "node-1",
                "default",
                "xwing",
                "spaceship",
                "4242",
                "read",
                "1275",
                "/usr/bin/vi",
                "/etc/passwd"
            ]
        );
        assert_eq!(header.find("PATH"), line.find("/etc/passwd"));
        assert_eq!(header.find("EXE"), line.find("/usr/bin/vi"));
    }

    /// The JSON of `event`, without the fields every gadget has.
    fn own_json(event: &Event) -> Value {
        let line = render("json", None, event);
        let mut value: Value = serde_json::from_str(&line).unwrap();
        let object = value.as_object_mut().unwrap();
        for common in ["node", "timestamp", "timestamp_ns", "k8s", "process"] {
            assert!(object.remove(common).is_some(), "{common} is missing");
        }
        let kind = object["type"].as_str().unwrap();
        assert!(TraceFile::KINDS.contains(&kind), "{kind}");
        value
    }

    #[test]
    fn json_of_an_open() {
        assert_eq!(
            own_json(&access_event(FileOperation::Open, b"/etc/shadow", -1, -13)),
            json!({
                "type": "file_open",
                "exe": "/usr/bin/vi",
                "exe_truncated": false,
                "operation": "open",
                "path": "/etc/shadow",
                "path_truncated": false,
                "path_as_passed": "../etc/passwd",
                "fd": -1,
                "ret": -13,
                "error": {"errno": 13, "name": "EACCES"},
                "bytes": null,
                "killed": false,
            })
        );
    }

    #[test]
    fn json_of_reads_writes_and_closes() {
        let mut write = access_event(FileOperation::Write, b"/etc/shadow", 4, 0);
        access_mut(&mut write).killed = true;
        access_mut(&mut write).path_truncated = true;
        for (event, kind, operation, ret, bytes, truncated, killed) in [
            (
                access_event(FileOperation::Read, b"/etc/shadow", 4, 1275),
                "file_read",
                "read",
                1275,
                json!(1275),
                false,
                false,
            ),
            (write, "file_write", "write", 0, Value::Null, true, true),
            (
                access_event(FileOperation::Close, b"/etc/shadow", 4, 0),
                "file_close",
                "close",
                0,
                Value::Null,
                false,
                false,
            ),
        ] {
            assert_eq!(
                own_json(&event),
                json!({
                    "type": kind,
                    "exe": "/usr/bin/vi",
                    "exe_truncated": false,
                    "operation": operation,
                    "path": "/etc/shadow",
                    "path_truncated": truncated,
                    "path_as_passed": null,
                    "fd": 4,
                    "ret": ret,
                    "error": null,
                    "bytes": bytes,
                    "killed": killed,
                })
            );
        }
    }

    #[test]
    fn json_of_an_exec() {
        let mut event = exec_event(&[b"vi", b"", b"/etc/passwd"]);
        file_mut(&mut event).exe_truncated = true;
        assert_eq!(
            own_json(&event),
            json!({
                "type": "process_exec",
                "exe": "/usr/bin/vi",
                "exe_truncated": true,
                "args": ["vi", "", "/etc/passwd"],
                "args_truncated": false,
            })
        );
    }

    #[test]
    fn json_of_exits() {
        assert_eq!(
            own_json(&exit_event(2, 0)),
            json!({
                "type": "process_exit",
                "exe": "/usr/bin/vi",
                "exe_truncated": false,
                "exit_code": 2,
                "signal": null,
                "args": ["vi", "/etc/passwd"],
                "args_truncated": false,
            })
        );
        assert_eq!(
            own_json(&exit_event(0, 9))["signal"],
            json!({"number": 9, "name": "SIGKILL"})
        );
        assert_eq!(
            own_json(&exit_event(0, 40))["signal"],
            json!({"number": 40, "name": null})
        );
    }

    #[test]
    fn json_of_what_this_client_does_not_know() {
        let mut event = access_event(FileOperation::Open, b"/x", 3, 3);
        access_mut(&mut event).operation = 9;
        let value = own_json(&event);
        assert_eq!(value["type"], "file_access");
        assert_eq!(value["operation"], Value::Null);
        let value = own_json(&file_event(None));
        assert_eq!(
            value,
            json!({"type": "file", "exe": "/usr/bin/vi", "exe_truncated": false})
        );
    }

    fn compact(event: &Event) -> String {
        render("compact", Some(&workload()), event)
    }

    #[test]
    fn compact_lines() {
        assert_eq!(
            compact(&exec_event(&[b"vi", b"/etc/passwd"])),
            "🚀 process default/xwing /usr/bin/vi /etc/passwd"
        );
        assert_eq!(
            compact(&access_event(FileOperation::Open, b"/etc/passwd", 3, 3)),
            "📬 open    default/xwing /usr/bin/vi /etc/passwd"
        );
        assert_eq!(
            compact(&access_event(FileOperation::Read, b"/etc/passwd", 3, 1275)),
            "📚 read    default/xwing /usr/bin/vi /etc/passwd 1275 bytes"
        );
        assert_eq!(
            compact(&access_event(FileOperation::Write, b"/etc/passwd", 3, 1275)),
            "📝 write   default/xwing /usr/bin/vi /etc/passwd 1275 bytes"
        );
        assert_eq!(
            compact(&access_event(FileOperation::Close, b"", 3, 0)),
            "📪 close   default/xwing /usr/bin/vi"
        );
        assert_eq!(
            compact(&exit_event(0, 0)),
            "💥 exit    default/xwing /usr/bin/vi /etc/passwd 0"
        );
        assert_eq!(
            compact(&exit_event(0, 9)),
            "💥 exit    default/xwing /usr/bin/vi /etc/passwd SIGKILL"
        );
    }

    #[test]
    fn compact_close_shows_the_path_when_the_node_sent_it() {
        assert_eq!(
            compact(&access_event(FileOperation::Close, b"/etc/passwd", 3, 0)),
            "📪 close   default/xwing /usr/bin/vi /etc/passwd"
        );
    }

    #[test]
    fn compact_killed_and_failed_operations() {
        // As the kernel reports it: the pending SIGKILL cut the write with
        // EINTR before a byte was copied. Killed, not failed.
        let mut write = access_event(FileOperation::Write, b"/etc/passwd", 3, -4);
        access_mut(&mut write).killed = true;
        assert_eq!(
            compact(&write),
            "📝 write   default/xwing /usr/bin/vi /etc/passwd killed"
        );
        let mut open = access_event(FileOperation::Open, b"/etc/shadow", 3, 3);
        access_mut(&mut open).killed = true;
        assert_eq!(
            compact(&open),
            "📬 open    default/xwing /usr/bin/vi /etc/shadow killed"
        );
        assert_eq!(
            compact(&access_event(FileOperation::Open, b"/etc/shadow", -1, -13)),
            "❌ open    default/xwing /usr/bin/vi /etc/shadow EACCES"
        );
        assert_eq!(
            compact(&access_event(FileOperation::Read, b"/etc/shadow", 9, -9)),
            "❌ read    default/xwing /usr/bin/vi /etc/shadow EBADF"
        );
    }

    #[test]
    fn compact_host_process_cuts_and_unknowns() {
        let event = access_event(FileOperation::Open, b"/etc/passwd", 3, 3);
        assert_eq!(
            render("compact", None, &event),
            "📬 open    host node-1 /usr/bin/vi /etc/passwd"
        );
        let mut event = exit_event(0, 35);
        file_mut(&mut event).exe_truncated = true;
        if let Some(file_event::What::Exit(exit)) = &mut file_mut(&mut event).what {
            exit.args_truncated = true;
        }
        assert_eq!(
            compact(&event),
            "💥 exit    default/xwing …/usr/bin/vi /etc/passwd … signal 35"
        );
        let mut event = access_event(FileOperation::Open, b"/passwd", 3, 3);
        access_mut(&mut event).path_truncated = true;
        file_mut(&mut event).exe = Bytes::new();
        assert_eq!(compact(&event), "📬 open    default/xwing vi …/passwd");
        access_mut(&mut event).operation = 9;
        assert_eq!(compact(&event), "📁 access  default/xwing vi …/passwd");
    }

    #[test]
    fn hostile_bytes_are_escaped() {
        let mut event = access_event(FileOperation::Open, b"/etc/\x1b[2J\nfake\xff", 3, 3);
        file_mut(&mut event).exe = Bytes::from_static(b"/tmp/\xe2\x80\xaeexe");
        access_mut(&mut event).path_as_passed = Bytes::from_static(b"\x9b31m");
        assert_eq!(
            compact(&event),
            "📬 open    default/xwing /tmp/\\u{202e}exe /etc/\\x1b[2J\\nfake\\xff"
        );
        assert_eq!(
            render("columns=exe,path,passed", None, &event),
            format!(
                "{:24} {:40} \\x9b31m",
                "/tmp/\\u{202e}exe", "/etc/\\x1b[2J\\nfake\\xff"
            )
        );
        let value = own_json(&event);
        assert_eq!(value["exe"], "/tmp/\u{202e}exe");
        assert_eq!(value["path"], json!({"base64": "L2V0Yy8bWzJKCmZha2X/"}));
        assert_eq!(value["path_as_passed"], json!({"base64": "mzMxbQ=="}));
        let raw = render("json", None, &event);
        assert!(raw.contains("\\u202e"), "{raw}");

        let event = exec_event(&[b"sh", b"-c", b"echo \x1b]0;owned\x07"]);
        let line = compact(&event);
        assert_eq!(
            line,
            "🚀 process default/xwing /usr/bin/vi -c \"echo \\x1b]0;owned\\x07\""
        );
        assert!(!line.chars().any(char::is_control));
        assert_eq!(
            render("columns=args", None, &event),
            "sh -c \"echo \\x1b]0;owned\\x07\""
        );
    }
}
