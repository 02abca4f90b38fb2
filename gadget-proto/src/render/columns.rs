//! The `columns` output: a header once, then one fixed-width line per row.
//!
//! Rows are printed as they arrive, so widths are fixed per column instead
//! of measured over a whole table. Every column but the last is padded or
//! cut (with `…`) to its width; the last takes the rest of the line.

use super::escape::{write_escaped, write_escaped_fit};
use super::{
    errno, failure_errno, open_flags, open_syscall_name, split_kind, time, write_number,
    FormatError, Row,
};
use crate::v1::{ExecEvent, Process};
use crate::Gadget;

/// A column of the `columns` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    /// The node the event happened on.
    Node,
    /// The pod's namespace.
    Namespace,
    /// The pod's name.
    Pod,
    /// The container's name in its pod.
    Container,
    /// The pod's UID.
    PodUid,
    /// The container id, shortened to 12 characters like `docker ps` does.
    ContainerId,
    /// Wall-clock time of the event, RFC 3339 in UTC with milliseconds.
    Timestamp,
    /// Process id (thread group id), as seen from the host.
    Pid,
    /// Thread id, as seen from the host.
    Tid,
    /// Parent process id.
    Ppid,
    /// User id.
    Uid,
    /// Group id.
    Gid,
    /// The task's command name (at most 15 bytes, set by the process).
    Comm,
    /// Mount namespace id.
    Mntns,
    /// cgroup v2 id.
    Cgroup,
    /// errno name of a failed call; empty on success.
    Err,
    /// File descriptor returned by the open, or -1.
    Fd,
    /// Open flags, decoded, e.g. `O_RDONLY|O_CLOEXEC`.
    Flags,
    /// Mode of a created file, in octal.
    Mode,
    /// Directory fd the path is relative to, when not `AT_FDCWD`.
    Dirfd,
    /// Which open syscall: `open`, `openat` or `openat2`.
    Syscall,
    /// The path as passed to the open.
    Path,
    /// Return value of the exec: 0, or -errno.
    Ret,
    /// The program as named to the exec.
    Exe,
    /// The parent's command name.
    Pcomm,
    /// The exec's arguments, `argv[0]` first, joined by spaces.
    Args,
}

/// Columns shown for `trace_open` when none are chosen.
const OPEN_DEFAULTS: &[Column] = &[
    Column::Node,
    Column::Namespace,
    Column::Pod,
    Column::Container,
    Column::Pid,
    Column::Comm,
    Column::Fd,
    Column::Err,
    Column::Path,
];

/// Columns shown for `trace_exec` when none are chosen.
const EXEC_DEFAULTS: &[Column] = &[
    Column::Node,
    Column::Namespace,
    Column::Pod,
    Column::Container,
    Column::Pid,
    Column::Ppid,
    Column::Comm,
    Column::Ret,
    Column::Args,
];

impl Column {
    /// Every column, in the order they are listed to users.
    pub const ALL: [Column; 26] = [
        Column::Node,
        Column::Namespace,
        Column::Pod,
        Column::Container,
        Column::PodUid,
        Column::ContainerId,
        Column::Timestamp,
        Column::Pid,
        Column::Tid,
        Column::Ppid,
        Column::Uid,
        Column::Gid,
        Column::Comm,
        Column::Mntns,
        Column::Cgroup,
        Column::Err,
        Column::Fd,
        Column::Flags,
        Column::Mode,
        Column::Dirfd,
        Column::Syscall,
        Column::Path,
        Column::Ret,
        Column::Exe,
        Column::Pcomm,
        Column::Args,
    ];

    /// The name used in `-o columns=...`, lower-case.
    pub fn name(self) -> &'static str {
        match self {
            Column::Node => "node",
            Column::Namespace => "namespace",
            Column::Pod => "pod",
            Column::Container => "container",
            Column::PodUid => "poduid",
            Column::ContainerId => "containerid",
            Column::Timestamp => "timestamp",
            Column::Pid => "pid",
            Column::Tid => "tid",
            Column::Ppid => "ppid",
            Column::Uid => "uid",
            Column::Gid => "gid",
            Column::Comm => "comm",
            Column::Mntns => "mntns",
            Column::Cgroup => "cgroup",
            Column::Err => "err",
            Column::Fd => "fd",
            Column::Flags => "flags",
            Column::Mode => "mode",
            Column::Dirfd => "dirfd",
            Column::Syscall => "syscall",
            Column::Path => "path",
            Column::Ret => "ret",
            Column::Exe => "exe",
            Column::Pcomm => "pcomm",
            Column::Args => "args",
        }
    }

    /// The column's title in the header line.
    pub fn header(self) -> &'static str {
        match self {
            Column::PodUid => "POD-UID",
            Column::ContainerId => "CONTAINER-ID",
            Column::Node => "NODE",
            Column::Namespace => "NAMESPACE",
            Column::Pod => "POD",
            Column::Container => "CONTAINER",
            Column::Timestamp => "TIMESTAMP",
            Column::Pid => "PID",
            Column::Tid => "TID",
            Column::Ppid => "PPID",
            Column::Uid => "UID",
            Column::Gid => "GID",
            Column::Comm => "COMM",
            Column::Mntns => "MNTNS",
            Column::Cgroup => "CGROUP",
            Column::Err => "ERR",
            Column::Fd => "FD",
            Column::Flags => "FLAGS",
            Column::Mode => "MODE",
            Column::Dirfd => "DIRFD",
            Column::Syscall => "SYSCALL",
            Column::Path => "PATH",
            Column::Ret => "RET",
            Column::Exe => "EXE",
            Column::Pcomm => "PCOMM",
            Column::Args => "ARGS",
        }
    }

    /// Display width when the column is not the last one.
    pub fn width(self) -> usize {
        match self {
            Column::Node => 16,
            Column::Namespace => 16,
            Column::Pod => 30,
            Column::Container => 16,
            // A UUID.
            Column::PodUid => 36,
            Column::ContainerId => 12,
            // 2023-11-14T22:13:20.123Z
            Column::Timestamp => 24,
            // pid_max is at most 2^22, 7 digits.
            Column::Pid | Column::Tid | Column::Ppid => 7,
            Column::Uid | Column::Gid => 7,
            // TASK_COMM_LEN is 16 including the NUL.
            Column::Comm | Column::Pcomm => 15,
            // Namespace ids are inode numbers, 4026531840 and up.
            Column::Mntns => 10,
            Column::Cgroup => 10,
            // ENAMETOOLONG
            Column::Err => 12,
            Column::Fd => 4,
            Column::Flags => 24,
            Column::Mode => 6,
            Column::Dirfd => 5,
            Column::Syscall => 7,
            Column::Path => 40,
            Column::Ret => 4,
            Column::Exe => 32,
            Column::Args => 40,
        }
    }

    /// Whether the column has values for `gadget`'s events.
    pub fn applies_to(self, gadget: Gadget) -> bool {
        match self {
            Column::Fd
            | Column::Flags
            | Column::Mode
            | Column::Dirfd
            | Column::Syscall
            | Column::Path => gadget == Gadget::TraceOpen,
            Column::Ret | Column::Exe | Column::Pcomm | Column::Args => gadget == Gadget::TraceExec,
            _ => true,
        }
    }

    /// The columns shown for `gadget` when none are chosen.
    pub fn defaults(gadget: Gadget) -> &'static [Column] {
        match gadget {
            Gadget::TraceOpen => OPEN_DEFAULTS,
            Gadget::TraceExec => EXEC_DEFAULTS,
        }
    }

    /// Parses a comma-separated list of column names (case-insensitive),
    /// e.g. `node,pod,pid,comm,path`, for `gadget`.
    pub fn parse_list(gadget: Gadget, list: &str) -> Result<Vec<Column>, FormatError> {
        let mut columns = Vec::new();
        for name in list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            let column = Column::ALL
                .into_iter()
                .find(|c| c.applies_to(gadget) && c.name().eq_ignore_ascii_case(name))
                .ok_or_else(|| FormatError::UnknownColumn {
                    column: name.to_string(),
                    gadget,
                    valid: Column::ALL
                        .into_iter()
                        .filter(|c| c.applies_to(gadget))
                        .map(Column::name)
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            columns.push(column);
        }
        if columns.is_empty() {
            return Err(FormatError::NoColumns);
        }
        Ok(columns)
    }
}

/// Writes the header line for `columns`.
pub(crate) fn write_header(out: &mut Vec<u8>, columns: &[Column]) {
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(column.header().as_bytes());
        if i + 1 < columns.len() {
            pad(out, column.header().len(), column.width());
        }
    }
    out.push(b'\n');
}

/// Writes one line for `row`. `scratch` holds the cells that are formatted
/// rather than copied; it is reused across rows to avoid allocating.
pub(crate) fn write_row(out: &mut Vec<u8>, scratch: &mut Vec<u8>, columns: &[Column], row: &Row) {
    let default_process = Process::default();
    let process = row.event.process.as_ref().unwrap_or(&default_process);
    for (i, &column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        scratch.clear();
        let width = column.width();
        let (text, may_cut) = match cell(column, row, process, scratch) {
            Cell::Text(text) => (text, true),
            Cell::Formatted => (&scratch[..], true),
            // Numbers are not cut: a shortened pid would be another pid.
            Cell::Number => (&scratch[..], false),
        };
        if i + 1 == columns.len() {
            // The last column takes the rest of the line.
            write_escaped(out, text);
        } else if may_cut {
            let used = write_escaped_fit(out, text, width);
            pad(out, used, width);
        } else {
            out.extend_from_slice(text);
            pad(out, text.len(), width);
        }
    }
    out.push(b'\n');
}

/// What a cell shows.
enum Cell<'r> {
    /// Untrusted text from the event, escaped when written.
    Text(&'r [u8]),
    /// Text formatted into the scratch buffer.
    Formatted,
    /// A number formatted into the scratch buffer.
    Number,
}

const EMPTY: Cell<'static> = Cell::Text(b"");

fn cell<'r>(
    column: Column,
    row: &Row<'r>,
    process: &'r Process,
    scratch: &mut Vec<u8>,
) -> Cell<'r> {
    let workload_field = |field: fn(&'r crate::v1::Workload) -> &'r str| {
        Cell::Text(row.workload.map_or("", field).as_bytes())
    };
    let (open, exec) = split_kind(row.event);
    let number = |scratch: &mut Vec<u8>, value: &dyn std::fmt::Display| {
        write_number(scratch, value);
        Cell::Number
    };
    match column {
        Column::Node => Cell::Text(row.node.as_bytes()),
        Column::Namespace => workload_field(|w| &w.namespace),
        Column::Pod => workload_field(|w| &w.pod),
        Column::Container => workload_field(|w| &w.container),
        Column::PodUid => workload_field(|w| &w.pod_uid),
        Column::ContainerId => Cell::Text(short_container_id(
            row.workload.map_or("", |w| &w.container_id),
        )),
        Column::Timestamp => {
            time::write_rfc3339_ms(scratch, row.event.timestamp_ns);
            Cell::Formatted
        }
        Column::Pid => number(scratch, &process.pid),
        Column::Tid => number(scratch, &process.tid),
        Column::Ppid => number(scratch, &process.ppid),
        Column::Uid => number(scratch, &process.uid),
        Column::Gid => number(scratch, &process.gid),
        Column::Comm => Cell::Text(&process.comm),
        Column::Mntns => number(scratch, &process.mntns_id),
        Column::Cgroup => number(scratch, &process.cgroup_id),
        Column::Err => match failure_errno(open, exec) {
            Some(errno) => {
                errno::write_errno(scratch, errno);
                Cell::Formatted
            }
            None => EMPTY,
        },
        Column::Fd => open.map_or(EMPTY, |o| number(scratch, &o.fd)),
        Column::Flags => open.map_or(EMPTY, |o| {
            open_flags::write_open_flags(scratch, o.flags);
            Cell::Formatted
        }),
        Column::Mode => open.map_or(EMPTY, |o| number(scratch, &format_args!("{:04o}", o.mode))),
        Column::Dirfd => open
            .and_then(|o| o.dirfd)
            .map_or(EMPTY, |dirfd| number(scratch, &dirfd)),
        Column::Syscall => open.map_or(EMPTY, |o| {
            Cell::Text(open_syscall_name(o.syscall()).as_bytes())
        }),
        Column::Path => open.map_or(EMPTY, |o| {
            if o.path_truncated {
                scratch.extend_from_slice(&o.path);
                scratch.extend_from_slice("…".as_bytes());
                Cell::Formatted
            } else {
                Cell::Text(&o.path)
            }
        }),
        Column::Ret => exec.map_or(EMPTY, |e| number(scratch, &e.ret)),
        Column::Exe => exec.map_or(EMPTY, |e| Cell::Text(&e.exe)),
        Column::Pcomm => exec.map_or(EMPTY, |e| Cell::Text(&e.parent_comm)),
        Column::Args => exec.map_or(EMPTY, |e| {
            write_args(scratch, e);
            Cell::Formatted
        }),
    }
}

/// Joins argv with spaces, raw (escaping happens when the cell is written),
/// and marks a cut argument list with ` …`.
fn write_args(out: &mut Vec<u8>, exec: &ExecEvent) {
    for (i, arg) in exec.args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(arg);
    }
    if exec.args_truncated {
        out.extend_from_slice(" …".as_bytes());
    }
}

/// The first 12 characters of a container id, without the runtime prefix
/// (`containerd://`, `cri-o://`) that Kubernetes puts in pod statuses.
fn short_container_id(id: &str) -> &[u8] {
    let id = id.rsplit("://").next().unwrap_or(id).as_bytes();
    &id[..id.len().min(12)]
}

fn pad(out: &mut Vec<u8>, used: usize, width: usize) {
    out.resize(out.len() + width.saturating_sub(used), b' ');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::{exec_event, open_event, workload};
    use crate::v1::{event, Event, Workload};

    fn line(columns: &[Column], row: &Row) -> String {
        let mut out = Vec::new();
        write_row(&mut out, &mut Vec::new(), columns, row);
        String::from_utf8(out).unwrap()
    }

    fn header(columns: &[Column]) -> String {
        let mut out = Vec::new();
        write_header(&mut out, columns);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn headers_fit_their_columns() {
        for column in Column::ALL {
            assert!(column.header().len() <= column.width(), "{column:?}");
            assert_eq!(
                column.name().to_ascii_uppercase().replace('-', ""),
                column.header().replace('-', "")
            );
        }
    }

    #[test]
    fn default_columns_are_the_inspektor_gadget_ones() {
        let names = |g| {
            header(Column::defaults(g))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            names(Gadget::TraceOpen),
            "NODE NAMESPACE POD CONTAINER PID COMM FD ERR PATH"
        );
        assert_eq!(
            names(Gadget::TraceExec),
            "NODE NAMESPACE POD CONTAINER PID PPID COMM RET ARGS"
        );
        for gadget in Gadget::ALL {
            assert!(Column::defaults(gadget)
                .iter()
                .all(|c| c.applies_to(gadget)));
        }
    }

    #[test]
    fn header_pads_all_but_the_last_column() {
        assert_eq!(
            header(&[Column::Pid, Column::Comm, Column::Path]),
            "PID     COMM            PATH\n"
        );
    }

    #[test]
    fn open_row_in_default_columns() {
        let event = open_event(b"/etc/passwd", 3, 0);
        let workload = workload();
        let row = Row {
            node: "node-1",
            workload: Some(&workload),
            event: &event,
        };
        let header = header(Column::defaults(Gadget::TraceOpen));
        let line = line(Column::defaults(Gadget::TraceOpen), &row);
        assert_eq!(
            line,
            "node-1           default          xwing                          spaceship        \
             4242    vi              3                 /etc/passwd\n"
        );
        // Cells line up under their titles.
        assert_eq!(header.find("PATH"), line.find("/etc/passwd"));
        assert_eq!(header.find("FD"), line.find("3 "));
    }

    #[test]
    fn failed_open_shows_errno_name() {
        let event = open_event(b"/nope", -1, 2);
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        assert_eq!(
            line(&[Column::Fd, Column::Err, Column::Path], &row),
            "-1   ENOENT       /nope\n"
        );
        let event = open_event(b"/x", -1, 512);
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        assert_eq!(line(&[Column::Err], &row), "512\n");
    }

    #[test]
    fn host_process_has_empty_kubernetes_cells() {
        let event = open_event(b"/etc/hosts", 3, 0);
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        assert_eq!(
            line(&[Column::Namespace, Column::Pod, Column::Path], &row),
            format!("{:16} {:30} /etc/hosts\n", "", "")
        );
    }

    #[test]
    fn exec_row_joins_args_and_marks_truncation() {
        let mut event = exec_event(b"/usr/bin/vi", &[b"vi", b"/etc/passwd"], 0);
        let workload = workload();
        let row = Row {
            node: "node-1",
            workload: Some(&workload),
            event: &event,
        };
        assert_eq!(
            line(
                &[Column::Pid, Column::Ppid, Column::Ret, Column::Args],
                &row
            ),
            "4242    1       0    vi /etc/passwd\n"
        );
        if let Some(event::Kind::Exec(exec)) = &mut event.kind {
            exec.args_truncated = true;
            exec.ret = -13;
        }
        let row = Row {
            node: "node-1",
            workload: Some(&workload),
            event: &event,
        };
        assert_eq!(
            line(&[Column::Ret, Column::Err, Column::Args], &row),
            "-13  EACCES       vi /etc/passwd …\n"
        );
    }

    #[test]
    fn extra_columns() {
        let mut event = open_event(b"data.db", 7, 0);
        event.timestamp_ns = 1_700_000_000_123_000_000;
        if let Some(event::Kind::Open(open)) = &mut event.kind {
            open.flags = 0o1 | 0o100 | 0o2000000;
            open.mode = 0o644;
            open.dirfd = Some(5);
        }
        let workload = workload();
        let row = Row {
            node: "n",
            workload: Some(&workload),
            event: &event,
        };
        let columns = [
            Column::Timestamp,
            Column::Tid,
            Column::Uid,
            Column::Gid,
            Column::Mntns,
            Column::Cgroup,
            Column::Flags,
            Column::Mode,
            Column::Dirfd,
            Column::Syscall,
            Column::ContainerId,
            Column::PodUid,
        ];
        let line = line(&columns, &row);
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "2023-11-14T22:13:20.123Z",
                "4243",
                "1000",
                "1001",
                "4026532000",
                "9876",
                "O_WRONLY|O_CREAT|O_CLOE…",
                "0644",
                "5",
                "openat",
                "0123456789ab",
                "3c1f7a4e-5c26-4c3a-9b0e-6a3d7f0e1c2b",
            ]
        );
    }

    #[test]
    fn long_cells_are_cut_to_their_width_and_the_last_is_not() {
        let long_path = "/very/long/path/".repeat(10);
        let mut event = open_event(long_path.as_bytes(), 3, 0);
        if let Some(Process { comm, .. }) = &mut event.process {
            *comm = bytes::Bytes::from_static(b"a-very-long-command-name");
        }
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        assert_eq!(
            line(&[Column::Comm, Column::Path], &row),
            format!("a-very-long-co… {long_path}\n")
        );
        let line = line(&[Column::Path, Column::Pid], &row);
        assert_eq!(line, format!("{}… 4242\n", &long_path[..39]));
    }

    #[test]
    fn truncated_path_is_marked() {
        let mut event = open_event(b"/deep/dir", 3, 0);
        if let Some(event::Kind::Open(open)) = &mut event.kind {
            open.path_truncated = true;
        }
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        assert_eq!(line(&[Column::Path], &row), "/deep/dir…\n");
    }

    #[test]
    fn hostile_names_cannot_break_the_line_or_the_terminal() {
        let mut event = open_event(b"\x1b[2J\x1b]0;owned\x07\nfake\rrow\xff\xe2\x80\xae", 3, 0);
        if let Some(Process { comm, .. }) = &mut event.process {
            *comm = bytes::Bytes::from_static(b"\x9b31mred");
        }
        let hostile = Workload {
            namespace: "ns\u{202e}x".into(),
            ..workload()
        };
        let row = Row {
            node: "n",
            workload: Some(&hostile),
            event: &event,
        };
        let line = line(&[Column::Namespace, Column::Comm, Column::Path], &row);
        assert_eq!(
            line,
            "ns\\u{202e}x      \\x9b31mred      \\x1b[2J\\x1b]0;owned\\x07\\nfake\\rrow\\xff\\u{202e}\n"
        );
        assert_eq!(line.matches('\n').count(), 1);
        assert!(!line.trim_end_matches('\n').chars().any(char::is_control));
    }

    #[test]
    fn event_of_another_gadget_leaves_gadget_cells_empty() {
        let event = Event {
            kind: None,
            ..open_event(b"/x", 3, 0)
        };
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        assert_eq!(
            line(&[Column::Fd, Column::Path, Column::Pid], &row),
            format!("{:4} {:40} 4242\n", "", "")
        );
    }

    #[test]
    fn column_list_is_parsed_case_insensitively() {
        assert_eq!(
            Column::parse_list(Gadget::TraceOpen, "node, POD,pid,comm,path"),
            Ok(vec![
                Column::Node,
                Column::Pod,
                Column::Pid,
                Column::Comm,
                Column::Path
            ])
        );
        assert_eq!(
            Column::parse_list(Gadget::TraceOpen, " , "),
            Err(FormatError::NoColumns)
        );
    }

    #[test]
    fn unknown_column_error_lists_the_gadgets_columns() {
        let Err(FormatError::UnknownColumn {
            column,
            gadget,
            valid,
        }) = Column::parse_list(Gadget::TraceOpen, "pid,args")
        else {
            panic!("args is not an open column");
        };
        assert_eq!((column.as_str(), gadget), ("args", Gadget::TraceOpen));
        let valid: Vec<&str> = valid.split(", ").collect();
        assert!(
            valid.contains(&"path") && valid.contains(&"fd"),
            "{valid:?}"
        );
        assert!(
            !valid.contains(&"args") && !valid.contains(&"ret"),
            "{valid:?}"
        );
    }
}
