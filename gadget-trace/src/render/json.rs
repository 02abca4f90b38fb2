//! The `json` output: one JSON object per line.
//!
//! Every line is an object with a `type`: the kind of the event for events
//! and `"status"` for a node's trace status. The kinds of events are:
//!
//! | `type` | gadget | what happened |
//! |---|---|---|
//! | `open` | trace open | a file was opened |
//! | `exec` | trace exec | a program was executed |
//! | `file_open`, `file_read`, `file_write`, `file_close` | trace file | an operation on a followed file (`file_access` for one this client does not know) |
//! | `process_exec`, `process_exit` | trace file | a selected process ran a program, or ended |
//!
//! An event looks like:
//!
//! ```json
//! {"type":"open","node":"node-1","timestamp":"2023-11-14T22:13:20.123Z",
//!  "timestamp_ns":1700000000123000000,
//!  "k8s":{"namespace":"default","pod":"xwing","container":"spaceship",
//!         "pod_uid":"3c1f...","container_id":"containerd://0123..."},
//!  "process":{"pid":4242,"tid":4242,"ppid":1,"uid":0,"gid":0,"comm":"vi",
//!             "mntns":4026532000,"cgroup":9876},
//!  "fd":-1,"error":{"errno":2,"name":"ENOENT"},"flags":524288,
//!  "flag_names":["O_RDONLY","O_CLOEXEC"],"mode":0,"dirfd":null,
//!  "syscall":"openat","path":"/etc/shadow","path_truncated":false}
//! ```
//!
//! (on one line). `k8s` is `null` for a process in no container. `error` is
//! `null` on success; its `name` is `null` for an errno without a known
//! name. An exec has `ret`, `error`, `exe`, `exe_truncated`, `exe_unreadable`
//! (the name could not be read, so `exe` is empty), `args` (an array),
//! `args_truncated` and `pcomm` instead of the open fields.
//!
//! Trace file's events all have `exe` (the executable the kernel resolved)
//! and `exe_truncated`, then:
//! - `file_*`: `operation` (`"open"`, ...), `path` (resolved by the kernel),
//!   `path_truncated` (its start is missing), `path_as_passed` (the path
//!   given to the syscall; `null` but for an open), `fd`, `ret` (the fd,
//!   the bytes transferred, 0, or -errno), `error`, `bytes` (what a read or
//!   write transferred; `null` otherwise) and `killed` (the kernel killed
//!   the process at this operation);
//! - `process_exec`: `args` and `args_truncated`;
//! - `process_exit`: `exit_code`, `signal` (`{"number":9,"name":"SIGKILL"}`,
//!   or `null` when no signal ended it; `name` is `null` for a signal
//!   without one), and the `args` and `args_truncated` of the program it
//!   ran.
//!
//! Byte fields (`comm`, `path`, `path_as_passed`, `exe`, `args`, `pcomm`)
//! are untrusted bytes.
//! A field that is valid UTF-8 is a JSON string. One that is not is an
//! object `{"base64":"..."}` holding the exact bytes in standard base64 with
//! padding; a string is never used for those, so the two cannot be
//! confused. [`bytes_from_json`] reads either back. Control, invisible and
//! direction-changing characters are written as `\u` escapes, so the JSON
//! is also safe to print on a terminal.

use gadget_proto::v1::{Process, TraceStatus, Workload};

use super::escape::{is_invisible, printable_ascii_run};
use super::{errno, time, write_i64, write_number, write_u64, Row};
use crate::gadgets;

/// What consecutive rows repeat, kept rendered from one row to the next.
#[derive(Debug, Clone, Default)]
pub(crate) struct RepeatedParts {
    /// Timestamps, from the last second written.
    clock: time::Rfc3339Writer,
    /// The `k8s` object of the last workload written.
    k8s: K8sObject,
    /// The `process` object of the last process written.
    process: ProcessObject,
}

/// The `k8s` object of a workload, kept with the fields it was rendered
/// from. The rows of a batch come from a few workloads, and its five
/// strings, each scanned for escapes, were about a seventh of a JSON row's
/// instructions; comparing them with the last workload's costs a few
/// `memcmp`s. Compared by content, not by address: a workload freed and
/// another allocated in its place must not take its object.
#[derive(Debug, Clone, Default)]
struct K8sObject {
    /// namespace, pod, container, pod_uid, container_id; empty until set.
    fields: [String; 5],
    json: Vec<u8>,
}

impl K8sObject {
    fn write(&mut self, out: &mut Vec<u8>, workload: &Workload) {
        let fields = [
            &workload.namespace,
            &workload.pod,
            &workload.container,
            &workload.pod_uid,
            &workload.container_id,
        ];
        if self.json.is_empty() || self.fields.iter().ne(fields) {
            for (kept, field) in self.fields.iter_mut().zip(fields) {
                kept.clone_from(field);
            }
            self.json.clear();
            write_k8s(&mut self.json, workload);
        }
        out.extend_from_slice(&self.json);
    }
}

/// The `process` object of a process, kept with the process it was
/// rendered from. A busy thread's events come in runs of consecutive rows,
/// and writing its seven numbers and `comm` anew for each was 14% of the
/// merge harness's instructions (callgrind, `merge_throughput 1 100000
/// json`); comparing with the last process costs a few integer compares and
/// a `memcmp`.
#[derive(Debug, Clone, Default)]
struct ProcessObject {
    /// `None` until set.
    process: Option<Process>,
    json: Vec<u8>,
}

impl ProcessObject {
    fn write(&mut self, out: &mut Vec<u8>, process: &Process) {
        if self.process.as_ref() != Some(process) {
            // `comm` is copied out: a slice of the batch would keep the
            // whole batch's buffer alive.
            self.process = Some(Process {
                comm: bytes::Bytes::copy_from_slice(&process.comm),
                ..process.clone()
            });
            self.json.clear();
            write_process(&mut self.json, process);
        }
        out.extend_from_slice(&self.json);
    }
}

fn write_k8s(out: &mut Vec<u8>, workload: &Workload) {
    out.extend_from_slice(b"{\"namespace\":");
    write_str(out, &workload.namespace);
    key(out, "pod");
    write_str(out, &workload.pod);
    key(out, "container");
    write_str(out, &workload.container);
    key(out, "pod_uid");
    write_str(out, &workload.pod_uid);
    key(out, "container_id");
    write_str(out, &workload.container_id);
    out.push(b'}');
}

/// Writes `row` as one JSON object and a newline (with what the rows
/// before it left in `parts`).
pub(crate) fn write_event(out: &mut Vec<u8>, parts: &mut RepeatedParts, row: &Row) {
    let event = row.event;
    let gadget = gadgets::of_event(event);
    out.extend_from_slice(b"{\"type\":");
    let kind = gadget.and_then(|gadget| gadget.kind(event));
    write_known_str(out, kind.unwrap_or("unknown"));
    key(out, "node");
    write_str(out, row.node);
    key(out, "timestamp");
    out.push(b'"');
    parts.clock.write(out, event.timestamp_ns);
    out.push(b'"');
    key(out, "timestamp_ns");
    write_u64(out, event.timestamp_ns);

    key(out, "k8s");
    match row.workload {
        Some(workload) => parts.k8s.write(out, workload),
        None => out.extend_from_slice(b"null"),
    }

    key(out, "process");
    match &event.process {
        Some(process) => parts.process.write(out, process),
        None => parts.process.write(out, &Process::default()),
    }

    if let Some(gadget) = gadget {
        gadget.write_json_fields(out, event);
    }
    out.extend_from_slice(b"}\n");
}

fn write_process(out: &mut Vec<u8>, process: &Process) {
    out.extend_from_slice(b"{\"pid\":");
    write_u64(out, process.pid.into());
    key(out, "tid");
    write_u64(out, process.tid.into());
    key(out, "ppid");
    write_u64(out, process.ppid.into());
    key(out, "uid");
    write_u64(out, process.uid.into());
    key(out, "gid");
    write_u64(out, process.gid.into());
    key(out, "comm");
    write_bytes(out, &process.comm);
    key(out, "mntns");
    write_u64(out, process.mntns_id);
    key(out, "cgroup");
    write_u64(out, process.cgroup_id);
    out.push(b'}');
}

/// `{"errno":2,"name":"ENOENT"}`, or `null` when the call succeeded.
pub(crate) fn write_error(out: &mut Vec<u8>, errno: Option<i32>) {
    let Some(errno) = errno else {
        out.extend_from_slice(b"null");
        return;
    };
    out.extend_from_slice(b"{\"errno\":");
    write_i64(out, errno.into());
    key(out, "name");
    match errno::errno_name(errno) {
        Some(name) => write_known_str(out, name),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// Writes a node's trace status as one JSON object and a newline.
pub(crate) fn write_status(out: &mut Vec<u8>, node: &str, status: &TraceStatus) {
    out.extend_from_slice(b"{\"type\":\"status\"");
    key(out, "node");
    write_str(out, node);
    key(out, "started");
    write_bool(out, status.started);
    key(out, "lost_kernel");
    write_number(out, &status.lost_kernel);
    key(out, "lost_node");
    write_number(out, &status.lost_node);
    key(out, "malformed");
    write_number(out, &status.malformed);
    key(out, "unjudged");
    write_number(out, &status.unjudged);
    key(out, "warnings");
    out.push(b'[');
    for (i, warning) in status.warnings.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, warning);
    }
    out.push(b']');
    key(out, "error");
    if status.error.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        write_str(out, &status.error);
    }
    out.extend_from_slice(b"}\n");
}

/// Writes `,"name":`.
///
/// Always inlined: every caller names a literal, whose length is then
/// known where it is copied, so the copy is a few moves instead of a call
/// to `memcpy` (about 9 keys a row).
#[inline(always)]
pub(crate) fn key(out: &mut Vec<u8>, name: &str) {
    out.reserve(name.len() + 4);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

pub(crate) fn write_bool(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

/// Writes untrusted bytes: a string when they are UTF-8, otherwise
/// `{"base64":"..."}`.
pub(crate) fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Most paths and names are printable ASCII: UTF-8 with nothing to
    // escape, written as they are without checking them twice.
    if plain_prefix_len(bytes) == bytes.len() {
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => write_str(out, text),
        Err(_) => {
            out.extend_from_slice(b"{\"base64\":\"");
            write_base64(out, bytes);
            out.extend_from_slice(b"\"}");
        }
    }
}

/// Writes a JSON string. Besides what JSON requires (`"`, `\` and C0),
/// DEL, C1 and invisible characters are escaped so a terminal showing the
/// line cannot be controlled by it.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut run_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Printable ASCII but `"` and `\` is written as it is: paths and
        // names are mostly that, and it is decided from the byte alone,
        // without decoding a character (a third of the client's time per
        // JSON row went into decoding and classifying every character).
        let plain = plain_prefix_len(&bytes[i..]);
        if plain > 0 {
            i += plain;
            continue;
        }
        // `i` is on a character boundary: it only ever moves by whole
        // characters.
        let c = text[i..].chars().next().expect("i < len");
        let at = i;
        i += c.len_utf8();
        let short: &[u8] = match c {
            '"' => b"\\\"",
            '\\' => b"\\\\",
            '\n' => b"\\n",
            '\r' => b"\\r",
            '\t' => b"\\t",
            c if c.is_control() || is_invisible(c) => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run_start..at]);
        run_start = i;
        if short.is_empty() {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.extend_from_slice(b"\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[usize::from((*unit >> shift) & 0xf)]);
                }
            }
        } else {
            out.extend_from_slice(short);
        }
    }
    out.extend_from_slice(&text.as_bytes()[run_start..]);
    out.push(b'"');
}

/// Writes a JSON string from this program's own vocabulary (an event's
/// type, a syscall's or an errno's name), which holds nothing to escape:
/// without the scan `write_str` makes, a tenth of its cost per row.
pub(crate) fn write_known_str(out: &mut Vec<u8>, text: &'static str) {
    debug_assert_eq!(plain_prefix_len(text.as_bytes()), text.len(), "{text:?}");
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// How many of the leading `bytes` a JSON string holds as they are:
/// printable ASCII but `"` and `\`.
fn plain_prefix_len(bytes: &[u8]) -> usize {
    printable_ascii_run(bytes, b'"')
}

const HEX: &[u8; 16] = b"0123456789abcdef";

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (RFC 4648 section 4) with `=` padding.
fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let bits = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(BASE64[(bits >> (18 - 6 * i) & 0x3f) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

fn read_base64(text: &str) -> Option<Vec<u8>> {
    let groups = text.as_bytes().chunks_exact(4);
    if !groups.remainder().is_empty() {
        return None;
    }
    let group_count = groups.len();
    let mut bytes = Vec::with_capacity(group_count * 3);
    for (n, group) in groups.enumerate() {
        let padding = group.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && n + 1 != group_count) {
            return None;
        }
        let mut bits = 0u32;
        for &c in &group[..4 - padding] {
            let value = BASE64.iter().position(|&b| b == c)?;
            bits = bits << 6 | value as u32;
        }
        bits <<= 6 * padding;
        let decoded = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
        bytes.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(bytes)
}

/// Reads back a byte field of the `json` output: the bytes of a string, or
/// the decoded bytes of a `{"base64":"..."}` object. `None` for anything
/// else, including malformed base64.
///
/// # Examples
///
/// ```
/// use gadget_trace::render::bytes_from_json;
/// use serde_json::json;
///
/// assert_eq!(bytes_from_json(&json!("/etc/passwd")).unwrap(), b"/etc/passwd");
/// assert_eq!(bytes_from_json(&json!({"base64": "/w=="})).unwrap(), b"\xff");
/// ```
pub fn bytes_from_json(value: &serde_json::Value) -> Option<Vec<u8>> {
    match value {
        serde_json::Value::String(text) => Some(text.clone().into_bytes()),
        serde_json::Value::Object(object) if object.len() == 1 => {
            read_base64(object.get("base64")?.as_str()?)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::{exec_event, open_event, workload};
    use gadget_proto::v1::{event, Event};
    use serde_json::{json, Value};

    fn event_json(row: &Row) -> Value {
        let mut out = Vec::new();
        write_event(&mut out, &mut RepeatedParts::default(), row);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(out.last(), Some(&b'\n'));
        serde_json::from_slice(&out).expect("output is valid JSON")
    }

    fn string_json(text: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn utf8_bytes_are_written_as_their_string_is_whether_plain_or_not() {
        for text in [
            "/usr/lib/python3.11/site-packages/checkout/handlers.py",
            "",
            "a\"b",
            "back\\slash",
            "tab\there",
            "del\u{7f}",
            "caf\u{e9}",
            "\u{202e}txt.exe",
        ] {
            let mut bytes = Vec::new();
            write_bytes(&mut bytes, text.as_bytes());
            assert_eq!(
                String::from_utf8(bytes).unwrap(),
                string_json(text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn plain_run_stops_at_every_byte_json_does_not_hold_as_it_is_wherever_it_is() {
        // Every byte value at every place of a word and past it, as the
        // eight-byte test sees it, against the byte-by-byte rule.
        for byte in 0..=u8::MAX {
            let plain = matches!(byte, b' '..=b'~') && byte != b'"' && byte != b'\\';
            for at in 0..20 {
                let mut bytes = vec![b'a'; 20];
                bytes[at] = byte;
                let expected = if plain { 20 } else { at };
                assert_eq!(plain_prefix_len(&bytes), expected, "{byte:#x} at {at}");
            }
        }
        assert_eq!(plain_prefix_len(b""), 0);
    }

    #[test]
    fn k8s_objects_kept_from_row_to_row_are_the_ones_written_anew() {
        let first = workload();
        let mut renamed = workload();
        renamed.container = "sidecar".into();
        let mut hostile = workload();
        hostile.pod = "x\u{1b}[2J\"".into();
        let empty = Workload::default();
        let event = open_event(b"/etc/hosts", 3, 0);
        let mut parts = RepeatedParts::default();
        // The same workload again, one that differs in one field, one that
        // needs escapes, an empty one (like the object before any), none.
        let sequence = [
            Some(&first),
            Some(&first),
            Some(&renamed),
            Some(&first),
            Some(&hostile),
            Some(&empty),
            Some(&empty),
            None,
            Some(&first),
        ];
        for workload in sequence {
            let row = Row {
                node: "node-1",
                workload,
                event: &event,
            };
            let (mut kept, mut anew) = (Vec::new(), Vec::new());
            write_event(&mut kept, &mut parts, &row);
            write_event(&mut anew, &mut RepeatedParts::default(), &row);
            assert_eq!(String::from_utf8(kept), String::from_utf8(anew));
        }
        // The same place in memory holding another workload.
        let mut reused = workload();
        for pod in ["a", "b"] {
            reused.pod = pod.into();
            let row = Row {
                node: "node-1",
                workload: Some(&reused),
                event: &event,
            };
            let mut kept = Vec::new();
            write_event(&mut kept, &mut parts, &row);
            assert_eq!(event_json(&row)["k8s"]["pod"], pod);
            assert_eq!(
                serde_json::from_slice::<Value>(&kept).unwrap()["k8s"]["pod"],
                pod
            );
        }
    }

    #[test]
    fn process_objects_kept_from_row_to_row_are_the_ones_written_anew() {
        let first = open_event(b"/etc/hosts", 3, 0);
        let process = |event: &Event| event.process.clone().unwrap();
        let with = |change: &dyn Fn(&mut Process)| {
            let mut event = first.clone();
            change(event.process.as_mut().unwrap());
            event
        };
        // Each field changed alone after the same process; a `comm` that
        // needs escapes or is not UTF-8; the default process (like the
        // object before any); no process at all.
        let sequence = [
            first.clone(),
            first.clone(),
            with(&|p| p.pid += 1),
            with(&|p| p.tid += 1),
            with(&|p| p.ppid += 1),
            with(&|p| p.uid += 1),
            with(&|p| p.gid += 1),
            with(&|p| p.mntns_id += 1),
            with(&|p| p.cgroup_id += 1),
            with(&|p| p.comm = bytes::Bytes::from_static(b"x\x1b[2J\"")),
            with(&|p| p.comm = bytes::Bytes::from_static(b"\xff\xfe")),
            first.clone(),
            with(&|p| *p = Process::default()),
            Event {
                process: None,
                ..first.clone()
            },
            first.clone(),
        ];
        let mut parts = RepeatedParts::default();
        for event in &sequence {
            let row = Row {
                node: "node-1",
                workload: None,
                event,
            };
            let (mut kept, mut anew) = (Vec::new(), Vec::new());
            write_event(&mut kept, &mut parts, &row);
            write_event(&mut anew, &mut RepeatedParts::default(), &row);
            assert_eq!(String::from_utf8(kept), String::from_utf8(anew));
        }
        // The kept process holds its own `comm`, not the batch's bytes.
        let kept = parts.process.process.as_ref().unwrap();
        assert_eq!(kept, &process(&first));
        assert_ne!(kept.comm.as_ptr(), process(&first).comm.as_ptr());
    }

    #[test]
    fn known_strings_are_written_as_their_strings_are() {
        let kinds = crate::gadgets::GADGETS
            .iter()
            .flat_map(|gadget| gadget.kinds().iter().copied());
        let errnos = (0..4096).filter_map(errno::errno_name);
        for text in kinds.chain(errnos).chain(["unknown"]) {
            let mut known = Vec::new();
            write_known_str(&mut known, text);
            assert_eq!(String::from_utf8(known).unwrap(), string_json(text));
        }
    }

    #[test]
    fn open_event_has_every_field() {
        let mut event = open_event(b"/etc/shadow", -1, 13);
        if let Some(event::Kind::Open(open)) = &mut event.kind {
            open.flags = 0o2000000;
            open.dirfd = Some(4);
        }
        let workload = workload();
        let row = Row {
            node: "node-1",
            workload: Some(&workload),
            event: &event,
        };
        assert_eq!(
            event_json(&row),
            json!({
                "type": "open",
                "node": "node-1",
                "timestamp": "2023-11-14T22:13:20.123Z",
                "timestamp_ns": 1_700_000_000_123_000_000u64,
                "k8s": {
                    "namespace": "default",
                    "pod": "xwing",
                    "container": "spaceship",
                    "pod_uid": "3c1f7a4e-5c26-4c3a-9b0e-6a3d7f0e1c2b",
                    "container_id": "containerd://0123456789abcdef0123456789abcdef",
                },
                "process": {
                    "pid": 4242, "tid": 4243, "ppid": 1, "uid": 1000, "gid": 1001,
                    "comm": "vi", "mntns": 4026532000u64, "cgroup": 9876,
                },
                "fd": -1,
                "error": {"errno": 13, "name": "EACCES"},
                "flags": 0o2000000,
                "flag_names": ["O_RDONLY", "O_CLOEXEC"],
                "mode": 0,
                "dirfd": 4,
                "syscall": "openat",
                "path": "/etc/shadow",
                "path_truncated": false,
            })
        );
    }

    #[test]
    fn exec_event_of_a_host_process() {
        let event = exec_event(b"/usr/bin/vi", &[b"vi", b"", b"/etc/passwd"], -2);
        let row = Row {
            node: "node-1",
            workload: None,
            event: &event,
        };
        let value = event_json(&row);
        assert_eq!(value["type"], "exec");
        assert_eq!(value["k8s"], Value::Null);
        assert_eq!(value["ret"], -2);
        assert_eq!(value["error"], json!({"errno": 2, "name": "ENOENT"}));
        assert_eq!(value["exe"], "/usr/bin/vi");
        assert_eq!(value["args"], json!(["vi", "", "/etc/passwd"]));
        assert_eq!(value["args_truncated"], false);
        assert_eq!(value["exe_truncated"], false);
        assert_eq!(value["exe_unreadable"], false);
        assert_eq!(value["pcomm"], "bash");
    }

    #[test]
    fn success_has_null_error_and_unknown_errno_has_null_name() {
        let event = open_event(b"/ok", 3, 0);
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        assert_eq!(event_json(&row)["error"], Value::Null);
        let event = open_event(b"/odd", -1, 4000);
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        assert_eq!(
            event_json(&row)["error"],
            json!({"errno": 4000, "name": null})
        );
    }

    #[test]
    fn invalid_utf8_fields_are_base64_objects() {
        let mut event = exec_event(b"/bin/\xff", &[b"a\x80", b"ok"], 0);
        if let Some(Process { comm, .. }) = &mut event.process {
            *comm = bytes::Bytes::from_static(b"\xc3");
        }
        let row = Row {
            node: "n",
            workload: None,
            event: &event,
        };
        let value = event_json(&row);
        assert_eq!(value["exe"], json!({"base64": "L2Jpbi//"}));
        assert_eq!(value["args"], json!([{"base64": "YYA="}, "ok"]));
        assert_eq!(value["process"]["comm"], json!({"base64": "ww=="}));
        assert_eq!(bytes_from_json(&value["exe"]).unwrap(), b"/bin/\xff");
    }

    #[test]
    fn arbitrary_bytes_round_trip() {
        // A cheap deterministic generator: every length up to 70, many
        // byte mixes, valid UTF-8 or not.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: &[&[u8]] = &[
            b"a",
            b"\\",
            b"\"",
            b"\n",
            b"\x1b",
            b"\x7f",
            b"\xff",
            b"\x80",
            "é".as_bytes(),
            "\u{9b}".as_bytes(),
            "\u{202e}".as_bytes(),
            "😀".as_bytes(),
            b"\xf0\x9f",
        ];
        for _ in 0..2000 {
            let len = (next() % 70) as usize;
            let mut bytes = Vec::new();
            for _ in 0..len {
                let r = next();
                if r % 3 == 0 {
                    bytes.push((r >> 8) as u8);
                } else {
                    bytes.extend_from_slice(alphabet[(r >> 8) as usize % alphabet.len()]);
                }
            }
            let mut out = Vec::new();
            write_bytes(&mut out, &bytes);
            let value: Value = serde_json::from_slice(&out).expect("valid JSON");
            assert_eq!(
                bytes_from_json(&value).as_deref(),
                Some(&bytes[..]),
                "{value}"
            );
            assert_eq!(value.is_string(), std::str::from_utf8(&bytes).is_ok());
        }
        let all: Vec<u8> = (0..=255).collect();
        let mut out = Vec::new();
        write_bytes(&mut out, &all);
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(bytes_from_json(&value).unwrap(), all);
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = Vec::new();
            write_base64(&mut out, plain.as_bytes());
            assert_eq!(out, encoded.as_bytes());
            assert_eq!(read_base64(encoded).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn malformed_base64_is_refused() {
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9v!A==", "===="] {
            assert_eq!(read_base64(bad), None, "{bad}");
        }
        assert_eq!(bytes_from_json(&json!({"base64": "Zg==", "x": 1})), None);
        assert_eq!(bytes_from_json(&json!({"hex": "ff"})), None);
        assert_eq!(bytes_from_json(&json!(42)), None);
    }

    #[test]
    fn strings_escape_what_json_needs_and_what_terminals_obey() {
        assert_eq!(string_json("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            string_json("\n\r\t\u{8}\u{1b}[2J"),
            r#""\n\r\t\u0008\u001b[2J""#
        );
        assert_eq!(
            string_json("\u{7f}\u{9b}\u{202e}"),
            r#""\u007f\u009b\u202e""#
        );
        assert_eq!(string_json("\u{e0041}"), r#""\udb40\udc41""#);
        assert_eq!(string_json("café 日本 😀"), "\"café 日本 😀\"");
        // Runs of plain ASCII between escapes and multi-byte characters
        // are copied whole, up to the byte before each escape.
        assert_eq!(
            string_json("/tmp/a\u{7f}b/é\u{200b}.txt\\"),
            r#""/tmp/a\u007fb/é\u200b.txt\\""#
        );
        assert_eq!(string_json(""), r#""""#);
        let value: Value = serde_json::from_str(&string_json("\u{e0041}\u{1b}")).unwrap();
        assert_eq!(value, "\u{e0041}\u{1b}");
    }

    #[test]
    fn status_line() {
        let status = TraceStatus {
            lost_kernel: 42,
            lost_node: 3,
            malformed: 0,
            warnings: vec!["kernel lacks \"openat2\"".into()],
            error: String::new(),
            started: true,
            unjudged: 5,
        };
        let mut out = Vec::new();
        write_status(&mut out, "node-1", &status);
        assert_eq!(out.last(), Some(&b'\n'));
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value,
            json!({
                "type": "status",
                "node": "node-1",
                "started": true,
                "lost_kernel": 42,
                "lost_node": 3,
                "malformed": 0,
                "unjudged": 5,
                "warnings": ["kernel lacks \"openat2\""],
                "error": null,
            })
        );
        let failed = TraceStatus {
            error: "attach failed".into(),
            ..TraceStatus::default()
        };
        let mut out = Vec::new();
        write_status(&mut out, "node-2", &failed);
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["error"], "attach failed");
    }
}
