//! `trace exec`: programs being executed (execve, execveat), with their
//! arguments.

use gadget_proto::v1::{self, event, run_gadget_request, ExecEvent};

use super::{Frontend, Gadget, GadgetColumn, GadgetFrontend};
use crate::render::json::{key, write_bool, write_bytes, write_error};
use crate::render::words::{write_name, write_words};
use crate::render::{write_number, Cell};
use crate::request::TraceRequestError;

/// The `trace_exec` gadget, for [`super::GADGETS`].
pub const GADGET: Gadget = Gadget::new(&Frontend::<TraceExec>::NEW);

/// Arguments of one exec kept at most: the node's kernel program's bound
/// (`EXEC_ARGS_COUNT_CAP`).
pub const MAX_ARGS: u32 = 1024;

/// Bytes of arguments of one exec kept at most: the node's kernel
/// program's bound (`EXEC_ARGS_BYTES_CAP`).
pub const MAX_ARGS_BYTES: u32 = 32768;

/// `trace exec`.
pub struct TraceExec;

/// The flags of `trace exec`, beside the ones every trace takes.
#[derive(Debug, clap::Args)]
pub struct ExecFlags {
    /// Do not show execs that failed.
    #[arg(long)]
    pub ignore_failed: bool,

    /// Keep at most N arguments of each exec (default: the node's).
    #[arg(long, value_name = "N")]
    pub max_args: Option<u32>,

    /// Keep at most BYTES bytes of arguments of each exec (default: the
    /// node's).
    #[arg(long, value_name = "BYTES")]
    pub max_args_bytes: Option<u32>,
}

impl GadgetFrontend for TraceExec {
    type Event = ExecEvent;
    type Flags = ExecFlags;

    const NAME: &'static str = gadget_proto::TRACE_EXEC;
    const COMMAND: &'static str = "exec";
    const ABOUT: &'static str = "Trace programs being executed (execve, execveat)";
    const KINDS: &'static [&'static str] = &["exec"];
    const COLUMNS: &'static [GadgetColumn<ExecEvent>] = &[
        GadgetColumn {
            name: "ret",
            header: "RET",
            width: 4,
            cell: |exec, scratch| Cell::number(scratch, &exec.ret),
        },
        GadgetColumn {
            name: "exe",
            header: "EXE",
            width: 32,
            cell: |exec, scratch| {
                write_exe(scratch, exec);
                Cell::Escaped
            },
        },
        GadgetColumn {
            name: "pcomm",
            header: "PCOMM",
            // TASK_COMM_LEN is 16 including the NUL.
            width: 15,
            cell: |exec, _| Cell::Text(&exec.parent_comm),
        },
        GadgetColumn {
            name: "args",
            header: "ARGS",
            width: 40,
            cell: |exec, scratch| {
                write_args(scratch, exec);
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
        "ppid",
        "comm",
        "ret",
        "args",
    ];

    fn event(kind: &event::Kind) -> Option<&ExecEvent> {
        match kind {
            event::Kind::Exec(exec) => Some(exec),
            _ => None,
        }
    }

    fn kind(_: &ExecEvent) -> &'static str {
        "exec"
    }

    /// `process`: the word every gadget uses for a program being executed.
    fn compact_word(_: &ExecEvent) -> &'static str {
        "process"
    }

    fn emoji(_: &ExecEvent) -> &'static str {
        "🚀"
    }

    fn params(flags: ExecFlags) -> Result<run_gadget_request::Params, TraceRequestError> {
        Ok(run_gadget_request::Params::Exec(v1::ExecParams {
            ignore_failed: flags.ignore_failed,
            // 0 on the wire means "the node's default", so an explicit 0
            // would silently mean something else than asked.
            max_args: limit("--max-args", flags.max_args, MAX_ARGS)?,
            max_args_bytes: limit("--max-args-bytes", flags.max_args_bytes, MAX_ARGS_BYTES)?,
        }))
    }

    fn failure(exec: &ExecEvent) -> Option<i32> {
        (exec.ret < 0).then(|| exec.ret.saturating_neg())
    }

    fn write_json_fields(out: &mut Vec<u8>, exec: &ExecEvent) {
        key(out, "ret");
        write_number(out, &exec.ret);
        key(out, "error");
        write_error(out, Self::failure(exec));
        key(out, "exe");
        write_bytes(out, &exec.exe);
        key(out, "exe_truncated");
        write_bool(out, exec.exe_truncated);
        key(out, "exe_unreadable");
        write_bool(out, exec.exe_unreadable);
        key(out, "args");
        out.push(b'[');
        for (i, arg) in exec.args.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_bytes(out, arg);
        }
        out.push(b']');
        key(out, "args_truncated");
        write_bool(out, exec.args_truncated);
        key(out, "pcomm");
        write_bytes(out, &exec.parent_comm);
    }

    /// The program as the kernel ran it (never `argv[0]`, which the caller
    /// chooses), then its arguments after `argv[0]`.
    fn write_compact(out: &mut Vec<u8>, _comm: &[u8], exec: &ExecEvent) {
        out.push(b' ');
        write_exe(out, exec);
        if exec.args.len() > 1 || exec.args_truncated {
            out.push(b' ');
            write_words(
                out,
                exec.args.iter().skip(1).map(|a| &a[..]),
                exec.args_truncated,
            );
        }
    }
}

/// The program, quoted when its content could be misread, marked when cut
/// or unreadable.
fn write_exe(out: &mut Vec<u8>, exec: &ExecEvent) {
    write_name(out, &exec.exe, exec.exe_truncated, exec.exe_unreadable);
}

/// argv, one word per argument, then ` …` when the list was cut.
fn write_args(out: &mut Vec<u8>, exec: &ExecEvent) {
    write_words(out, exec.args.iter().map(|a| &a[..]), exec.args_truncated);
}

/// A limit flag: 0 is refused, because the protocol reads it as "the node's
/// default"; unset is sent as 0.
fn limit(flag: &'static str, value: Option<u32>, max: u32) -> Result<u32, TraceRequestError> {
    match value {
        Some(0) => Err(TraceRequestError::ZeroLimit { flag }),
        // Refused here rather than by every node.
        Some(value) if value > max => Err(TraceRequestError::AboveLimit { flag, value, max }),
        Some(value) => Ok(value),
        None => Ok(0),
    }
}
