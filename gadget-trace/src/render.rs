//! Rendering of event rows and trace statuses as text, shared by the client
//! and the node's local mode so that there is one copy of the formatting.
//!
//! Three formats, chosen with `-o`:
//! - `columns` (default) or `columns=node,pod,pid,...`: fixed-width
//!   columns, a header once then one line per event (see [`Column`]);
//! - `json`: one JSON object per line (see the `json` module docs for the
//!   fields and how bytes that are not UTF-8 are represented);
//! - `compact`: one short line per event with an emoji for its kind.
//!
//! Paths, arguments and command names come from untrusted processes: in
//! `columns` and `compact` every control or invisible character and every
//! invalid UTF-8 byte is escaped (see [`write_escaped`]), and the JSON
//! output escapes them as `\u` escapes, so no event can drive the terminal.
//!
//! Rendering runs once per event, so a [`Renderer`] writes into a buffer
//! the caller owns and reuses, without allocating per field; the caller
//! writes out a whole batch of rows at once.
//!
//! # Examples
//!
//! ```
//! use gadget_proto::v1::{event, Event, OpenEvent};
//! use gadget_trace::gadgets;
//! use gadget_trace::render::{OutputFormat, Renderer, Row};
//!
//! let trace_open = gadgets::find("trace_open").unwrap();
//! let format = OutputFormat::parse(trace_open, "columns=pid,err,path").unwrap();
//! let mut renderer = Renderer::new(format);
//! let event = Event {
//!     kind: Some(event::Kind::Open(OpenEvent {
//!         fd: -1,
//!         error: 2,
//!         path: "/etc/missing".into(),
//!         ..Default::default()
//!     })),
//!     ..Default::default()
//! };
//! let mut out = Vec::new();
//! renderer.write_header(&mut out);
//! renderer.write_row(&mut out, &Row { node: "node-1", workload: None, event: &event });
//! assert_eq!(
//!     String::from_utf8(out).unwrap(),
//!     "PID     ERR          PATH\n0       ENOENT       /etc/missing\n"
//! );
//! ```

mod columns;
mod compact;
mod errno;
mod escape;
pub(crate) mod json;
mod signal;
mod status;
mod time;
pub(crate) mod words;

pub(crate) use columns::Cell;
pub use columns::Column;
pub use errno::errno_name;
pub use escape::{escaped, write_escaped};
pub use json::bytes_from_json;
pub use signal::signal_name;
pub(crate) use signal::write_signal;

use gadget_proto::v1::{Event, TraceStatus, Workload};

use crate::gadgets::Gadget;

/// One event to render, with what the client resolved around it.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The node the event happened on.
    pub node: &'a str,
    /// The workload `event.workload` points to in its batch; `None` for a
    /// process in no known container (the host).
    pub workload: Option<&'a Workload>,
    /// The event.
    pub event: &'a Event,
}

/// How rows are printed, as chosen with `-o`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputFormat {
    /// Fixed-width columns, in this order.
    Columns(Vec<Column>),
    /// One JSON object per line.
    Json,
    /// One short line per event, led by an emoji.
    Compact,
}

impl OutputFormat {
    /// Parses an `-o` value for `gadget`: `columns`, `columns=<list>`,
    /// `json` or `compact`.
    pub fn parse(gadget: Gadget, spec: &str) -> Result<OutputFormat, FormatError> {
        let spec = spec.trim();
        if let Some(list) = spec.strip_prefix("columns=") {
            return Ok(OutputFormat::Columns(Column::parse_list(gadget, list)?));
        }
        match spec {
            "columns" => Ok(OutputFormat::Columns(Column::defaults(gadget))),
            "json" => Ok(OutputFormat::Json),
            "compact" => Ok(OutputFormat::Compact),
            _ => Err(FormatError::UnknownFormat(spec.to_string())),
        }
    }
}

/// An `-o` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not one of the formats.
    #[error("unknown output format {0:?}; use columns, columns=<name,...>, json or compact")]
    UnknownFormat(String),
    /// A column that does not exist for the gadget.
    #[error("unknown column {column:?} for {gadget}; its columns are: {valid}")]
    UnknownColumn {
        /// The name as given.
        column: String,
        /// The gadget the columns were chosen for.
        gadget: Gadget,
        /// The gadget's column names, comma-separated.
        valid: String,
    },
    /// `columns=` with nothing after it.
    #[error("no columns listed after columns=")]
    NoColumns,
}

/// Where status lines belong, so that stdout stays parseable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusStream {
    /// With the rows: JSON status objects are part of the JSON stream.
    Stdout,
    /// Apart from the rows: human lines must not break up the columns.
    Stderr,
}

/// Renders rows and statuses in one [`OutputFormat`].
#[derive(Debug, Clone)]
pub struct Renderer {
    format: OutputFormat,
    /// Cells that are formatted rather than copied; reused across rows.
    scratch: Vec<u8>,
    /// What consecutive JSON rows repeat, kept rendered.
    json_parts: json::RepeatedParts,
}

impl Renderer {
    /// A renderer for `format`.
    pub fn new(format: OutputFormat) -> Renderer {
        Renderer {
            format,
            scratch: Vec::new(),
            json_parts: json::RepeatedParts::default(),
        }
    }

    /// The format rows are rendered in.
    pub fn format(&self) -> &OutputFormat {
        &self.format
    }

    /// Writes the header line of the `columns` format; nothing for the
    /// others. Call it once, before the first row.
    pub fn write_header(&self, out: &mut Vec<u8>) {
        if let OutputFormat::Columns(columns) = &self.format {
            columns::write_header(out, columns);
        }
    }

    /// Appends `row` to `out` as one line, newline included.
    pub fn write_row(&mut self, out: &mut Vec<u8>, row: &Row) {
        match &self.format {
            OutputFormat::Columns(columns) => {
                columns::write_row(out, &mut self.scratch, columns, row)
            }
            OutputFormat::Json => json::write_event(out, &mut self.json_parts, row),
            OutputFormat::Compact => compact::write_event(out, row),
        }
    }

    /// Appends the lines for a node's trace status to `out`: a JSON object
    /// for `json`, human lines otherwise (none when the status reports
    /// nothing). Print them to [`Renderer::status_stream`].
    pub fn write_status(&self, out: &mut Vec<u8>, node: &str, status: &TraceStatus) {
        match self.format {
            OutputFormat::Json => json::write_status(out, node, status),
            OutputFormat::Columns(_) | OutputFormat::Compact => {
                status::write_status_lines(out, node, status)
            }
        }
    }

    /// Where the output of [`Renderer::write_status`] goes.
    pub fn status_stream(&self) -> StatusStream {
        match self.format {
            OutputFormat::Json => StatusStream::Stdout,
            OutputFormat::Columns(_) | OutputFormat::Compact => StatusStream::Stderr,
        }
    }
}

/// Writes a number (or anything short and ASCII) without allocating.
pub(crate) fn write_number(out: &mut Vec<u8>, value: &dyn std::fmt::Display) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{value}");
}

/// Writes `value` in decimal. A row has a dozen integers: through `fmt`
/// (`write_number`) they took about a tenth of the client's time per
/// JSON row.
pub(crate) fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    // Two digits per division: half the divisions of one at a time.
    while value >= 100 {
        start -= 2;
        digits[start..start + 2].copy_from_slice(two_digits((value % 100) as usize));
        value /= 100;
    }
    if value >= 10 {
        start -= 2;
        digits[start..start + 2].copy_from_slice(two_digits(value as usize));
    } else {
        start -= 1;
        digits[start] = b'0' + value as u8;
    }
    out.extend_from_slice(&digits[start..]);
}

/// The two decimal digits of `value` (below 100).
pub(crate) fn two_digits(value: usize) -> &'static [u8] {
    const PAIRS: &[u8; 200] = b"\
        0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    &PAIRS[2 * value..2 * value + 2]
}

/// Writes `value` in decimal, with a `-` when negative.
pub(crate) fn write_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    write_u64(out, value.unsigned_abs());
}

/// Writes `0x` and `value` in lower-case hex.
pub(crate) fn write_hex(out: &mut Vec<u8>, value: u64) {
    write_number(out, &format_args!("{value:#x}"));
}

#[cfg(test)]
mod properties;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn integers_are_written_as_fmt_writes_them() {
        for value in [0, 7, 10, 99, 4242, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, value);
            assert_eq!(out, value.to_string().as_bytes());
        }
        for value in [0, -1, 42, -4096, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            write_i64(&mut out, value);
            assert_eq!(out, value.to_string().as_bytes());
        }
    }
    use bytes::Bytes;
    use gadget_proto::v1::{
        event, file_event, ExecEvent, FileAccess, FileEvent, FileOperation, OpenEvent, OpenSyscall,
        Process, ProcessExec, ProcessExit,
    };

    pub(crate) const OPEN: Gadget = crate::gadgets::trace_open::GADGET;
    pub(crate) const EXEC: Gadget = crate::gadgets::trace_exec::GADGET;

    pub(crate) fn workload() -> Workload {
        Workload {
            namespace: "default".into(),
            pod: "xwing".into(),
            container: "spaceship".into(),
            pod_uid: "3c1f7a4e-5c26-4c3a-9b0e-6a3d7f0e1c2b".into(),
            container_id: "containerd://0123456789abcdef0123456789abcdef".into(),
            labels: [("app".to_string(), "xwing".to_string())].into(),
        }
    }

    pub(crate) fn process() -> Process {
        Process {
            pid: 4242,
            tid: 4243,
            ppid: 1,
            uid: 1000,
            gid: 1001,
            comm: Bytes::from_static(b"vi"),
            mntns_id: 4_026_532_000,
            cgroup_id: 9876,
        }
    }

    pub(crate) fn open_event(path: &[u8], fd: i32, error: i32) -> Event {
        Event {
            timestamp_ns: 1_700_000_000_123_000_000,
            process: Some(process()),
            workload: 1,
            kind: Some(event::Kind::Open(OpenEvent {
                fd,
                error,
                flags: 0,
                mode: 0,
                path: Bytes::copy_from_slice(path),
                path_truncated: false,
                dirfd: None,
                syscall: OpenSyscall::Openat.into(),
            })),
        }
    }

    pub(crate) fn exec_event(exe: &[u8], args: &[&[u8]], ret: i32) -> Event {
        Event {
            timestamp_ns: 1_700_000_000_123_000_000,
            process: Some(process()),
            workload: 1,
            kind: Some(event::Kind::Exec(ExecEvent {
                ret,
                exe: Bytes::copy_from_slice(exe),
                args: args.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
                args_truncated: false,
                parent_comm: Bytes::from_static(b"bash"),
                exe_truncated: false,
                exe_unreadable: false,
            })),
        }
    }

    fn file_event(what: file_event::What) -> Event {
        Event {
            timestamp_ns: 1_700_000_000_123_000_000,
            process: Some(process()),
            workload: 1,
            kind: Some(event::Kind::File(FileEvent {
                what: Some(what),
                exe: Bytes::from_static(b"/bin/\x1b"),
                exe_truncated: true,
            })),
        }
    }

    #[test]
    fn output_formats_are_parsed() {
        let open = OPEN;
        assert_eq!(
            OutputFormat::parse(open, "columns"),
            Ok(OutputFormat::Columns(Column::defaults(open)))
        );
        assert_eq!(
            OutputFormat::parse(open, "columns=pid,path"),
            Ok(OutputFormat::Columns(vec![
                Column::named(open, "pid").unwrap(),
                Column::named(open, "path").unwrap()
            ]))
        );
        assert_eq!(OutputFormat::parse(open, "json"), Ok(OutputFormat::Json));
        assert_eq!(
            OutputFormat::parse(open, "compact"),
            Ok(OutputFormat::Compact)
        );
        assert_eq!(
            OutputFormat::parse(open, "columns="),
            Err(FormatError::NoColumns)
        );
        let err = OutputFormat::parse(open, "yaml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown output format \"yaml\"; use columns, columns=<name,...>, json or compact"
        );
    }

    #[test]
    fn unknown_column_message_lists_valid_columns() {
        let err = OutputFormat::parse(EXEC, "columns=pid,path").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown column \"path\" for trace_exec; its columns are: node, namespace, pod, \
             container, poduid, containerid, timestamp, pid, tid, ppid, uid, gid, comm, mntns, \
             cgroup, err, ret, exe, pcomm, args"
        );
    }

    #[test]
    fn renderer_appends_rows_to_the_callers_buffer() {
        let event = open_event(b"/etc/passwd", 3, 0);
        let row = Row {
            node: "node-1",
            workload: None,
            event: &event,
        };
        let mut renderer = Renderer::new(OutputFormat::Compact);
        let mut out = b"earlier rows\n".to_vec();
        renderer.write_header(&mut out);
        renderer.write_row(&mut out, &row);
        renderer.write_row(&mut out, &row);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "earlier rows\n📬 open    host node-1 vi /etc/passwd\n📬 open    host node-1 vi /etc/passwd\n"
        );
    }

    #[test]
    fn every_format_writes_exactly_one_line_per_row() {
        let events = [
            open_event(b"/a\nb", 3, 0),
            open_event(b"\xff", -1, 2),
            exec_event(b"/x", &[b"x", b"\n\n"], -8),
            file_event(file_event::What::Access(FileAccess {
                operation: FileOperation::Write.into(),
                path: Bytes::from_static(b"/a\nb\xff"),
                ret: -1,
                killed: true,
                ..FileAccess::default()
            })),
            file_event(file_event::What::Exec(ProcessExec {
                args: vec![Bytes::from_static(b"x\r"), Bytes::from_static(b"\n")],
                args_truncated: true,
            })),
            file_event(file_event::What::Exit(ProcessExit {
                signal: 9,
                ..ProcessExit::default()
            })),
            Event::default(),
        ];
        let workload = workload();
        for spec in ["columns", "json", "compact"] {
            for &gadget in crate::gadgets::GADGETS {
                let mut renderer = Renderer::new(OutputFormat::parse(gadget, spec).unwrap());
                for event in &events {
                    for workload in [None, Some(&workload)] {
                        let mut out = Vec::new();
                        renderer.write_row(
                            &mut out,
                            &Row {
                                node: "n",
                                workload,
                                event,
                            },
                        );
                        let text = String::from_utf8(out).unwrap();
                        assert_eq!(text.matches('\n').count(), 1, "{spec}: {text:?}");
                        assert!(text.ends_with('\n'));
                        if spec == "json" {
                            serde_json::from_str::<serde_json::Value>(&text).unwrap();
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn statuses_go_with_json_rows_but_apart_from_human_rows() {
        let status = TraceStatus {
            lost_kernel: 42,
            lost_node: 3,
            ..TraceStatus::default()
        };
        let json = Renderer::new(OutputFormat::Json);
        assert_eq!(json.status_stream(), StatusStream::Stdout);
        let mut out = Vec::new();
        json.write_status(&mut out, "node-1", &status);
        assert!(out.starts_with(b"{\"type\":\"status\",\"node\":\"node-1\""));

        let columns = Renderer::new(OutputFormat::parse(OPEN, "columns").unwrap());
        assert_eq!(columns.status_stream(), StatusStream::Stderr);
        let mut out = Vec::new();
        columns.write_status(&mut out, "node-1", &status);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "node-1: 42 events lost (ring buffer full), 3 events dropped (client too slow)\n"
        );
    }

    #[test]
    fn hex_numbers() {
        let mut out = Vec::new();
        write_hex(&mut out, 0x1f);
        assert_eq!(out, b"0x1f");
    }
}
