//! Property tests of what reaches the terminal and the JSON stream, with
//! arbitrary bytes wherever a traced process or a node chooses them:
//! escaping loses nothing and lets no control or invisible character
//! through, cutting to a column's width keeps that true, JSON strings and
//! byte fields decode back to exactly the input, and every row of every
//! format is one line that cannot drive the terminal.

use bytes::Bytes;
use gadget_proto::v1::{
    event, file_event, Event, ExecEvent, FileAccess, FileEvent, FileOperation, OpenEvent, Process,
    ProcessExec, ProcessExit, TraceStatus, Workload,
};
use proptest::prelude::*;
use serde_json::Value;

use super::escape::tests::{assert_terminal_safe, unescape};
use super::escape::write_escaped_fit;
use super::json::{write_bytes, write_str};
use super::*;

/// Pieces that exercise the escaper: controls, escapes' own characters,
/// C1, direction overrides, invisible characters, bytes that are not
/// UTF-8 (alone and as the start of a sequence), wide and 4-byte
/// characters, and the `…` the columns end a cut cell with.
const HOSTILE: &[&[u8]] = &[
    b"a",
    b"/etc/passwd",
    b" ",
    b"\\",
    b"\\x41",
    b"\"",
    b"\n",
    b"\r",
    b"\t",
    b"\0",
    b"\x1b[2J",
    b"\x1b]0;title\x07",
    b"\x7f",
    b"\xff",
    b"\x80",
    b"\xc3",
    b"\xe2\x82",
    b"\xf0\x9f",
    "\u{85}".as_bytes(),
    "\u{9b}".as_bytes(),
    "\u{202e}".as_bytes(),
    "\u{200b}".as_bytes(),
    "\u{feff}".as_bytes(),
    "\u{e0041}".as_bytes(),
    "é".as_bytes(),
    "日本".as_bytes(),
    "😀".as_bytes(),
    "…".as_bytes(),
];

/// Untrusted bytes: any bytes, or pieces of [`HOSTILE`] run together.
fn untrusted_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..48),
        proptest::collection::vec(proptest::sample::select(HOSTILE), 0..16)
            .prop_map(|pieces| pieces.concat()),
    ]
}

/// Untrusted text: any characters, or the valid UTF-8 of
/// [`untrusted_bytes`].
fn untrusted_text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        untrusted_bytes().prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
    ]
}

/// The characters of base64 text, and a few that are not.
const BASE64_TEXT: &[char] = &['A', 'Z', 'a', 'z', '0', '9', '+', '/', '=', '=', '-', ' '];

fn untrusted_field() -> impl Strategy<Value = Bytes> {
    untrusted_bytes().prop_map(Bytes::from)
}

fn untrusted_args() -> impl Strategy<Value = Vec<Bytes>> {
    proptest::collection::vec(untrusted_field(), 0..5)
}

fn process() -> impl Strategy<Value = Process> {
    (
        any::<[u32; 5]>(),
        untrusted_field(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |([pid, tid, ppid, uid, gid], comm, mntns_id, cgroup_id)| Process {
                pid,
                tid,
                ppid,
                uid,
                gid,
                comm,
                mntns_id,
                cgroup_id,
            },
        )
}

fn open_event() -> impl Strategy<Value = OpenEvent> {
    (
        any::<(i32, i32, u64, u32)>(),
        untrusted_field(),
        any::<bool>(),
        any::<Option<i32>>(),
        -1i32..5,
    )
        .prop_map(
            |((fd, error, flags, mode), path, path_truncated, dirfd, syscall)| OpenEvent {
                fd,
                error,
                flags,
                mode,
                path,
                path_truncated,
                dirfd,
                syscall,
            },
        )
}

fn exec_event() -> impl Strategy<Value = ExecEvent> {
    (
        any::<i32>(),
        untrusted_field(),
        untrusted_args(),
        any::<(bool, bool, bool)>(),
        untrusted_field(),
    )
        .prop_map(
            |(ret, exe, args, (args_truncated, exe_truncated, exe_unreadable), parent_comm)| {
                ExecEvent {
                    ret,
                    exe,
                    args,
                    args_truncated,
                    parent_comm,
                    exe_truncated,
                    exe_unreadable,
                }
            },
        )
}

fn file_event() -> impl Strategy<Value = FileEvent> {
    let access = (
        -1i32..6,
        untrusted_field(),
        any::<bool>(),
        untrusted_field(),
        any::<(i32, i64, bool)>(),
    )
        .prop_map(
            |(operation, path, path_truncated, path_as_passed, (fd, ret, killed))| {
                file_event::What::Access(FileAccess {
                    operation,
                    path,
                    path_truncated,
                    path_as_passed,
                    fd,
                    ret,
                    killed,
                })
            },
        );
    let exec = (untrusted_args(), any::<bool>()).prop_map(|(args, args_truncated)| {
        file_event::What::Exec(ProcessExec {
            args,
            args_truncated,
        })
    });
    let exit = (any::<(i32, i32)>(), untrusted_args(), any::<bool>()).prop_map(
        |((exit_code, signal), args, args_truncated)| {
            file_event::What::Exit(ProcessExit {
                exit_code,
                signal,
                args,
                args_truncated,
            })
        },
    );
    (
        proptest::option::weighted(0.9, prop_oneof![access, exec, exit]),
        untrusted_field(),
        any::<bool>(),
    )
        .prop_map(|(what, exe, exe_truncated)| FileEvent {
            what,
            exe,
            exe_truncated,
        })
}

fn event() -> impl Strategy<Value = Event> {
    let kind = proptest::option::weighted(
        0.95,
        prop_oneof![
            open_event().prop_map(event::Kind::Open),
            exec_event().prop_map(event::Kind::Exec),
            file_event().prop_map(event::Kind::File),
        ],
    );
    (
        any::<u64>(),
        proptest::option::weighted(0.9, process()),
        kind,
    )
        .prop_map(|(timestamp_ns, process, kind)| Event {
            timestamp_ns,
            process,
            workload: 1,
            kind,
        })
}

fn workload() -> impl Strategy<Value = Workload> {
    (
        proptest::collection::vec(untrusted_text(), 5),
        proptest::collection::hash_map(untrusted_text(), untrusted_text(), 0..3),
    )
        .prop_map(|(names, labels)| {
            let [namespace, pod, container, pod_uid, container_id] =
                <[String; 5]>::try_from(names).unwrap();
            Workload {
                namespace,
                pod,
                container,
                pod_uid,
                container_id,
                labels,
            }
        })
}

/// Every output format of every gadget: all its columns, its default
/// columns, compact and JSON.
fn formats() -> Vec<OutputFormat> {
    let mut formats = vec![OutputFormat::Compact, OutputFormat::Json];
    for &gadget in crate::gadgets::GADGETS {
        formats.push(OutputFormat::Columns(Column::all(gadget).collect()));
        formats.push(OutputFormat::Columns(Column::defaults(gadget)));
    }
    formats
}

/// The bytes a JSON byte field holds; fails the case on anything else.
fn json_bytes(value: &Value) -> Result<Vec<u8>, TestCaseError> {
    bytes_from_json(value).ok_or_else(|| TestCaseError::fail(format!("not a byte field: {value}")))
}

/// The bytes of a JSON array of byte fields.
fn json_args(value: &Value) -> Result<Vec<Vec<u8>>, TestCaseError> {
    let Some(items) = value.as_array() else {
        return Err(TestCaseError::fail(format!("not an array: {value}")));
    };
    items.iter().map(json_bytes).collect()
}

fn as_vecs(args: &[Bytes]) -> Vec<Vec<u8>> {
    args.iter().map(|arg| arg.to_vec()).collect()
}

/// Checks that the JSON of `row` holds every untrusted field of it exactly.
fn check_json_fields(json: &Value, row: &Row) -> Result<(), TestCaseError> {
    prop_assert_eq!(&json["node"], row.node);
    match row.workload {
        Some(workload) => {
            prop_assert_eq!(&json["k8s"]["namespace"], workload.namespace.as_str());
            prop_assert_eq!(&json["k8s"]["pod"], workload.pod.as_str());
            prop_assert_eq!(&json["k8s"]["container"], workload.container.as_str());
            prop_assert_eq!(&json["k8s"]["pod_uid"], workload.pod_uid.as_str());
            prop_assert_eq!(&json["k8s"]["container_id"], workload.container_id.as_str());
        }
        None => prop_assert_eq!(&json["k8s"], &Value::Null),
    }
    let process = row.event.process.clone().unwrap_or_default();
    prop_assert_eq!(json_bytes(&json["process"]["comm"])?, process.comm.to_vec());
    prop_assert_eq!(&json["process"]["pid"], process.pid);
    prop_assert_eq!(&json["process"]["cgroup"], process.cgroup_id);
    prop_assert_eq!(&json["timestamp_ns"], row.event.timestamp_ns);
    match &row.event.kind {
        Some(event::Kind::Open(open)) => {
            prop_assert_eq!(json_bytes(&json["path"])?, open.path.to_vec());
            prop_assert_eq!(&json["fd"], open.fd);
        }
        Some(event::Kind::Exec(exec)) => {
            prop_assert_eq!(json_bytes(&json["exe"])?, exec.exe.to_vec());
            prop_assert_eq!(json_args(&json["args"])?, as_vecs(&exec.args));
            prop_assert_eq!(json_bytes(&json["pcomm"])?, exec.parent_comm.to_vec());
        }
        Some(event::Kind::File(file)) => {
            prop_assert_eq!(json_bytes(&json["exe"])?, file.exe.to_vec());
            match &file.what {
                Some(file_event::What::Access(access)) => {
                    prop_assert_eq!(json_bytes(&json["path"])?, access.path.to_vec());
                    if access.operation == i32::from(FileOperation::Open) {
                        prop_assert_eq!(
                            json_bytes(&json["path_as_passed"])?,
                            access.path_as_passed.to_vec()
                        );
                    }
                    prop_assert_eq!(&json["ret"], access.ret);
                }
                Some(file_event::What::Exec(exec)) => {
                    prop_assert_eq!(json_args(&json["args"])?, as_vecs(&exec.args));
                }
                Some(file_event::What::Exit(exit)) => {
                    prop_assert_eq!(json_args(&json["args"])?, as_vecs(&exit.args));
                    prop_assert_eq!(&json["exit_code"], exit.exit_code);
                }
                None => {}
            }
        }
        None => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10000))]

    /// Escaped text is UTF-8 with no control or invisible character, and
    /// unescapes to exactly the input bytes.
    #[test]
    fn escaping_round_trips_any_bytes_and_is_terminal_safe(text in untrusted_bytes()) {
        let mut out = b"kept|".to_vec();
        write_escaped(&mut out, &text);
        prop_assert!(out.starts_with(b"kept|"));
        let escaped = std::str::from_utf8(&out[5..]).expect("escaped text is UTF-8");
        assert_terminal_safe(escaped);
        prop_assert_eq!(unescape(escaped), text);
    }

    /// Cut to a column's width: within the width, counted right, still
    /// terminal safe; whole when the escaped text fits, else a prefix of it
    /// that ends between escapes (so it unescapes to a prefix of the input)
    /// followed by `…`, cut no earlier than the longest escape requires.
    #[test]
    fn escaping_into_a_width_keeps_a_clean_prefix(
        text in untrusted_bytes(),
        width in 0usize..64,
    ) {
        let mut whole = Vec::new();
        write_escaped(&mut whole, &text);
        let whole = String::from_utf8(whole).unwrap();
        let mut out = b"kept|".to_vec();
        let cols = write_escaped_fit(&mut out, &text, width);
        prop_assert!(out.starts_with(b"kept|"));
        let fitted = std::str::from_utf8(&out[5..]).expect("fitted text is UTF-8");
        assert_terminal_safe(fitted);
        prop_assert!(cols <= width);
        prop_assert_eq!(fitted.chars().count(), cols);
        if whole.chars().count() <= width {
            prop_assert_eq!(fitted, whole.as_str());
        } else if width > 0 {
            let kept = fitted.strip_suffix('…').expect("a cut cell ends with …");
            prop_assert!(whole.starts_with(kept), "{:?} is not a prefix of {:?}", kept, whole);
            prop_assert!(text.starts_with(&unescape(kept)));
            // An escape is at most 10 columns (`\u{10ffff}`): nothing
            // shorter than that is left unused.
            prop_assert!(cols + 10 > width, "{} of {} columns used: {:?}", cols, width, fitted);
        } else {
            prop_assert_eq!(fitted, "");
        }
    }

    /// A JSON string of any text parses back to that text, and has no raw
    /// control or invisible character.
    #[test]
    fn json_strings_round_trip_any_text(text in untrusted_text()) {
        let mut out = Vec::new();
        write_str(&mut out, &text);
        let json = String::from_utf8(out).unwrap();
        assert_terminal_safe(&json);
        prop_assert_eq!(serde_json::from_str::<String>(&json).unwrap(), text);
    }

    /// A JSON byte field of any bytes reads back as those bytes: a string
    /// exactly when they are UTF-8, `{"base64": ...}` otherwise.
    #[test]
    fn json_byte_fields_round_trip_any_bytes(bytes in untrusted_bytes()) {
        let mut out = Vec::new();
        write_bytes(&mut out, &bytes);
        let json = String::from_utf8(out).unwrap();
        assert_terminal_safe(&json);
        let value: Value = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(value.is_string(), std::str::from_utf8(&bytes).is_ok());
        prop_assert_eq!(bytes_from_json(&value), Some(bytes));
    }

    /// Whatever a `{"base64": ...}` object holds, reading it does not
    /// panic.
    #[test]
    fn reading_any_base64_text_does_not_panic(
        text in prop_oneof![
            proptest::collection::vec(proptest::sample::select(BASE64_TEXT), 0..13)
                .prop_map(String::from_iter),
            untrusted_text(),
        ],
    ) {
        let value = serde_json::json!({ "base64": text });
        if let Some(bytes) = bytes_from_json(&value) {
            prop_assert!(bytes.len() <= text.len());
        }
    }

}

proptest! {
    // Each case renders a row in seven formats.
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Any event, node and workload, in every format of every gadget: one
    /// line with nothing a terminal obeys; JSON that parses and holds
    /// every untrusted field exactly.
    #[test]
    fn every_row_is_one_safe_line(
        event in event(),
        node in untrusted_text(),
        workload in proptest::option::of(workload()),
    ) {
        let row = Row { node: &node, workload: workload.as_ref(), event: &event };
        for format in formats() {
            let json = format == OutputFormat::Json;
            let mut renderer = Renderer::new(format);
            let mut out = Vec::new();
            renderer.write_row(&mut out, &row);
            let line = String::from_utf8(out).expect("rows are UTF-8");
            let body = line.strip_suffix('\n').expect("a row ends its line");
            assert_terminal_safe(body);
            if json {
                let value: Value = serde_json::from_str(body)
                    .map_err(|e| TestCaseError::fail(format!("{e}: {body}")))?;
                check_json_fields(&value, &row)?;
            }
        }
    }

    /// A node's status, whatever its name, warnings and error say: lines
    /// with nothing a terminal obeys, or a JSON object that holds them.
    #[test]
    fn every_status_is_safe(
        node in untrusted_text(),
        warnings in proptest::collection::vec(untrusted_text(), 0..3),
        error in untrusted_text(),
        counts in any::<(u64, u64, u64, u64, bool)>(),
    ) {
        let (lost_kernel, lost_node, malformed, unjudged, started) = counts;
        let status = TraceStatus {
            lost_kernel,
            lost_node,
            malformed,
            warnings,
            error,
            started,
            unjudged,
        };
        for format in [OutputFormat::Compact, OutputFormat::Json] {
            let json = format == OutputFormat::Json;
            let mut out = Vec::new();
            Renderer::new(format).write_status(&mut out, &node, &status);
            let text = String::from_utf8(out).expect("statuses are UTF-8");
            if !json {
                // Every line is the node's, so no text can forge another.
                let mut name = Vec::new();
                write_escaped(&mut name, node.as_bytes());
                let name = format!("{}: ", String::from_utf8(name).unwrap());
                for line in text.lines() {
                    prop_assert!(line.starts_with(&name), "{:?}", line);
                }
            }
            prop_assert!(text.is_empty() || text.ends_with('\n'));
            for line in text.lines() {
                assert_terminal_safe(line);
            }
            if json {
                let value: Value = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(&value["node"], node.as_str());
                prop_assert_eq!(&value["warnings"], &serde_json::json!(status.warnings));
                if !status.error.is_empty() {
                    prop_assert_eq!(&value["error"], status.error.as_str());
                }
            }
        }
    }
}
