//! The `columns` output: a header once, then one fixed-width line per row.
//!
//! Rows are printed as they arrive, so widths are fixed per column instead
//! of measured over a whole table. Every column but the last is padded or
//! cut (with `…`) to its width; the last takes the rest of the line.
//!
//! The columns every gadget has (where and who: node, pod, pid, comm, ...)
//! are defined here; each gadget adds its own in its module
//! ([`crate::gadgets::GadgetFrontend::COLUMNS`]).

use std::fmt;

use gadget_proto::v1::{Process, Workload};

use super::escape::{write_escaped, write_escaped_fit};
use super::{errno, time, write_number, FormatError, Row};
use crate::gadgets::Gadget;

/// A column of the `columns` output: one of the common columns, or one of
/// a gadget's own.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Column(Source);

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Common(Common),
    /// The gadget's column at this index of its `COLUMNS`.
    Gadget(Gadget, usize),
}

/// The columns every gadget's events have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Common {
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
}

impl Common {
    /// Every common column, in the order they are listed to users.
    const ALL: [Common; 16] = [
        Common::Node,
        Common::Namespace,
        Common::Pod,
        Common::Container,
        Common::PodUid,
        Common::ContainerId,
        Common::Timestamp,
        Common::Pid,
        Common::Tid,
        Common::Ppid,
        Common::Uid,
        Common::Gid,
        Common::Comm,
        Common::Mntns,
        Common::Cgroup,
        Common::Err,
    ];

    fn name(self) -> &'static str {
        match self {
            Common::Node => "node",
            Common::Namespace => "namespace",
            Common::Pod => "pod",
            Common::Container => "container",
            Common::PodUid => "poduid",
            Common::ContainerId => "containerid",
            Common::Timestamp => "timestamp",
            Common::Pid => "pid",
            Common::Tid => "tid",
            Common::Ppid => "ppid",
            Common::Uid => "uid",
            Common::Gid => "gid",
            Common::Comm => "comm",
            Common::Mntns => "mntns",
            Common::Cgroup => "cgroup",
            Common::Err => "err",
        }
    }

    fn header(self) -> &'static str {
        match self {
            Common::PodUid => "POD-UID",
            Common::ContainerId => "CONTAINER-ID",
            Common::Node => "NODE",
            Common::Namespace => "NAMESPACE",
            Common::Pod => "POD",
            Common::Container => "CONTAINER",
            Common::Timestamp => "TIMESTAMP",
            Common::Pid => "PID",
            Common::Tid => "TID",
            Common::Ppid => "PPID",
            Common::Uid => "UID",
            Common::Gid => "GID",
            Common::Comm => "COMM",
            Common::Mntns => "MNTNS",
            Common::Cgroup => "CGROUP",
            Common::Err => "ERR",
        }
    }

    fn width(self) -> usize {
        match self {
            Common::Node => 16,
            Common::Namespace => 16,
            Common::Pod => 30,
            Common::Container => 16,
            // A UUID.
            Common::PodUid => 36,
            Common::ContainerId => 12,
            // 2023-11-14T22:13:20.123Z
            Common::Timestamp => 24,
            // pid_max is at most 2^22, 7 digits.
            Common::Pid | Common::Tid | Common::Ppid => 7,
            Common::Uid | Common::Gid => 7,
            // TASK_COMM_LEN is 16 including the NUL.
            Common::Comm => 15,
            // Namespace ids are inode numbers, 4026531840 and up.
            Common::Mntns => 10,
            Common::Cgroup => 10,
            // ENAMETOOLONG
            Common::Err => 12,
        }
    }

    fn cell<'r>(self, row: &Row<'r>, process: &'r Process, scratch: &mut Vec<u8>) -> Cell<'r> {
        let workload_field = |field: fn(&'r Workload) -> &'r str| {
            Cell::Text(row.workload.map_or("", field).as_bytes())
        };
        match self {
            Common::Node => Cell::Text(row.node.as_bytes()),
            Common::Namespace => workload_field(|w| &w.namespace),
            Common::Pod => workload_field(|w| &w.pod),
            Common::Container => workload_field(|w| &w.container),
            Common::PodUid => workload_field(|w| &w.pod_uid),
            Common::ContainerId => Cell::Text(short_container_id(
                row.workload.map_or("", |w| &w.container_id),
            )),
            Common::Timestamp => {
                time::write_rfc3339_ms(scratch, row.event.timestamp_ns);
                Cell::Formatted
            }
            Common::Pid => Cell::number(scratch, &process.pid),
            Common::Tid => Cell::number(scratch, &process.tid),
            Common::Ppid => Cell::number(scratch, &process.ppid),
            Common::Uid => Cell::number(scratch, &process.uid),
            Common::Gid => Cell::number(scratch, &process.gid),
            Common::Comm => Cell::Text(&process.comm),
            Common::Mntns => Cell::number(scratch, &process.mntns_id),
            Common::Cgroup => Cell::number(scratch, &process.cgroup_id),
            Common::Err => match crate::gadgets::of_event(row.event)
                .and_then(|gadget| gadget.failure(row.event))
            {
                Some(errno) => {
                    errno::write_errno(scratch, errno);
                    Cell::Formatted
                }
                None => Cell::EMPTY,
            },
        }
    }
}

impl Column {
    /// The name used in `-o columns=...`, lower-case.
    pub fn name(self) -> &'static str {
        match self.0 {
            Source::Common(common) => common.name(),
            Source::Gadget(gadget, index) => gadget.column_name(index),
        }
    }

    /// The column's title in the header line.
    pub fn header(self) -> &'static str {
        match self.0 {
            Source::Common(common) => common.header(),
            Source::Gadget(gadget, index) => gadget.column_header(index),
        }
    }

    /// Display width when the column is not the last one.
    pub fn width(self) -> usize {
        match self.0 {
            Source::Common(common) => common.width(),
            Source::Gadget(gadget, index) => gadget.column_width(index),
        }
    }

    /// Every column of `gadget`'s events, common ones first, in the order
    /// they are listed to users.
    pub fn all(gadget: Gadget) -> impl Iterator<Item = Column> {
        let common = Common::ALL.into_iter().map(|c| Column(Source::Common(c)));
        let own = (0..gadget.column_count()).map(move |i| Column(Source::Gadget(gadget, i)));
        common.chain(own)
    }

    /// The columns shown for `gadget` when none are chosen.
    pub fn defaults(gadget: Gadget) -> Vec<Column> {
        gadget
            .default_columns()
            .iter()
            .map(|name| {
                Column::named(gadget, name)
                    .unwrap_or_else(|| panic!("{gadget} has no default column {name}"))
            })
            .collect()
    }

    /// `gadget`'s column called `name` (case-insensitive).
    pub fn named(gadget: Gadget, name: &str) -> Option<Column> {
        Column::all(gadget).find(|c| c.name().eq_ignore_ascii_case(name))
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
            let column = Column::named(gadget, name).ok_or_else(|| FormatError::UnknownColumn {
                column: name.to_string(),
                gadget,
                valid: Column::all(gadget)
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

    fn cell<'r>(self, row: &Row<'r>, process: &'r Process, scratch: &mut Vec<u8>) -> Cell<'r> {
        match self.0 {
            Source::Common(common) => common.cell(row, process, scratch),
            Source::Gadget(gadget, index) => gadget.cell(index, row.event, scratch),
        }
    }
}

impl fmt::Debug for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Source::Common(_) => write!(f, "Column({})", self.name()),
            Source::Gadget(gadget, _) => write!(f, "Column({gadget}.{})", self.name()),
        }
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
        let (text, may_cut) = match column.cell(row, process, scratch) {
            Cell::Text(text) => (text, true),
            Cell::Formatted => (&scratch[..], true),
            Cell::Escaped => {
                if i + 1 == columns.len() {
                    out.extend_from_slice(scratch);
                } else {
                    let used = write_fit(out, scratch, width);
                    pad(out, used, width);
                }
                continue;
            }
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
pub enum Cell<'r> {
    /// Untrusted text from the event, escaped when written.
    Text(&'r [u8]),
    /// Text formatted into the scratch buffer (escaped when written).
    Formatted,
    /// A number formatted into the scratch buffer; never cut.
    Number,
    /// Text written into the scratch buffer already escaped (by the
    /// `words` writers), so that the quotes and markers it added are not
    /// escaped again.
    Escaped,
}

impl Cell<'_> {
    /// A cell with nothing in it.
    pub const EMPTY: Cell<'static> = Cell::Text(b"");

    /// Formats `value` into `scratch` as a number cell.
    pub fn number(scratch: &mut Vec<u8>, value: &dyn fmt::Display) -> Cell<'static> {
        write_number(scratch, value);
        Cell::Number
    }
}

/// The first 12 characters of a container id, without the runtime prefix
/// (`containerd://`, `cri-o://`) that Kubernetes puts in pod statuses.
fn short_container_id(id: &str) -> &[u8] {
    let id = id.rsplit("://").next().unwrap_or(id).as_bytes();
    &id[..id.len().min(12)]
}

/// Writes escaped text (printable, one column per character) into at most
/// `width` columns, ending with `…` when cut; returns the columns used.
fn write_fit(out: &mut Vec<u8>, escaped: &[u8], width: usize) -> usize {
    let text = String::from_utf8_lossy(escaped);
    let count = text.chars().count();
    if count <= width {
        out.extend_from_slice(text.as_bytes());
        return count;
    }
    let Some(keep) = width.checked_sub(1) else {
        return 0;
    };
    let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
    out.extend_from_slice(&text.as_bytes()[..end]);
    out.extend_from_slice("…".as_bytes());
    width
}

fn pad(out: &mut Vec<u8>, used: usize, width: usize) {
    out.resize(out.len() + width.saturating_sub(used), b' ');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::{exec_event, open_event, workload, EXEC, OPEN};
    use gadget_proto::v1::{event, Event, Workload};

    fn cols(gadget: Gadget, list: &str) -> Vec<Column> {
        Column::parse_list(gadget, list).unwrap()
    }

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
        for gadget in crate::gadgets::GADGETS {
            for column in Column::all(*gadget) {
                assert!(column.header().len() <= column.width(), "{column:?}");
                assert_eq!(
                    column.name().to_ascii_uppercase().replace('-', ""),
                    column.header().replace('-', "")
                );
            }
        }
    }

    #[test]
    fn default_columns_are_the_inspektor_gadget_ones() {
        let names = |g| {
            header(&Column::defaults(g))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            names(OPEN),
            "NODE NAMESPACE POD CONTAINER PID COMM FD ERR PATH"
        );
        assert_eq!(
            names(EXEC),
            "NODE NAMESPACE POD CONTAINER PID PPID COMM RET ARGS"
        );
        for &gadget in crate::gadgets::GADGETS {
            // Every default is one of the gadget's columns (or panics).
            assert!(!Column::defaults(gadget).is_empty());
        }
    }

    #[test]
    fn header_pads_all_but_the_last_column() {
        assert_eq!(
            header(&cols(OPEN, "pid,comm,path")),
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
        let header = header(&Column::defaults(OPEN));
        let line = line(&Column::defaults(OPEN), &row);
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
            line(&cols(OPEN, "fd,err,path"), &row),
            "-1   ENOENT       /nope\n"
        );
        let event = open_event(b"/x", -1, 512);
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        assert_eq!(line(&cols(OPEN, "err"), &row), "512\n");
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
            line(&cols(OPEN, "namespace,pod,path"), &row),
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
            line(&cols(EXEC, "pid,ppid,ret,args"), &row),
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
            line(&cols(EXEC, "ret,err,args"), &row),
            "-13  EACCES       vi /etc/passwd …\n"
        );
    }

    /// Regression: `["x /etc/shadow"]` and a name ending in `…` were
    /// shown like two arguments and a cut name.
    #[test]
    fn exec_args_and_exe_are_quoted_when_their_content_could_be_misread() {
        let mut event = exec_event("/tmp/x…".as_bytes(), &[b"cat", b"x /etc/shadow"], 0);
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        assert_eq!(
            line(&cols(EXEC, "exe,args"), &row),
            format!("{:32} cat \"x /etc/shadow\"\n", "\"/tmp/x…\"")
        );
        if let Some(event::Kind::Exec(exec)) = &mut event.kind {
            exec.exe = vec![b'a'; 40].into();
            exec.exe_truncated = true;
            exec.args = vec!["\x1b[2J".into()];
        }
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        // Cut to the column: 31 characters and `…`; the escapes stay.
        assert_eq!(
            line(&cols(EXEC, "exe,args"), &row),
            format!("{}… \\x1b[2J\n", "a".repeat(31))
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
        let columns = cols(
            OPEN,
            "timestamp,tid,uid,gid,mntns,cgroup,flags,mode,dirfd,syscall,containerid,poduid",
        );
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
            line(&cols(OPEN, "comm,path"), &row),
            format!("a-very-long-co… {long_path}\n")
        );
        let line = line(&cols(OPEN, "path,pid"), &row);
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
        assert_eq!(line(&cols(OPEN, "path"), &row), "/deep/dir…\n");
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
        let line = line(&cols(OPEN, "namespace,comm,path"), &row);
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
            line(&cols(OPEN, "fd,path,pid"), &row),
            format!("{:4} {:40} 4242\n", "", "")
        );
    }

    #[test]
    fn column_list_is_parsed_case_insensitively() {
        assert_eq!(
            Column::parse_list(OPEN, "node, POD,pid,comm,path")
                .unwrap()
                .into_iter()
                .map(Column::name)
                .collect::<Vec<_>>(),
            ["node", "pod", "pid", "comm", "path"]
        );
        assert_eq!(Column::parse_list(OPEN, " , "), Err(FormatError::NoColumns));
    }

    #[test]
    fn unknown_column_error_lists_the_gadgets_columns() {
        let Err(FormatError::UnknownColumn {
            column,
            gadget,
            valid,
        }) = Column::parse_list(OPEN, "pid,args")
        else {
            panic!("args is not an open column");
        };
        assert_eq!((column.as_str(), gadget), ("args", OPEN));
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
