//! Property test across the protocol: whatever a user types after `trace`,
//! the front end refuses it or sends a request the node takes. The node
//! checks every request again (a client is not trusted to be this one), so
//! a request the front end lets through and the node refuses would be a
//! trace that fails on every node with a message meant for another
//! program. The one exception is a ring buffer above the node's limit,
//! which is the node's to set. No unit test needs root: nothing is loaded.

use std::ffi::OsString;

use clap::Parser;
use gadget_node::trace::{InvalidRequest, TracePlan, MAX_RING_BUFFER_BYTES};
use gadget_trace::cli::{TraceCommand, TraceHelp};
use gadget_trace::request::{NamespaceScope, TraceRequest};
use proptest::prelude::*;

enum NoHelp {}

impl TraceHelp for NoHelp {
    const AFTER_LONG_HELP: &'static str = "";
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    trace: TraceCommand<NoHelp>,
}

/// A flag and the values to try with it, valid and not.
type Flag = (&'static str, &'static [&'static str]);

/// Flags every trace takes.
const COMMON: &[Flag] = &[
    ("-n", &["default", "kube-system", "Bad", ""]),
    ("-A", &[]),
    ("-p", &["web-1", "web.1", "-x"]),
    ("-c", &["nginx", "a_b"]),
    (
        "-l",
        &[
            "app=web",
            "app in (a,b),!canary",
            "a=,b!=",
            "x>1",
            "a in (",
            "é",
        ],
    ),
    ("--host", &[]),
    ("--pid", &["1", "0", "4294967295"]),
    ("--uid", &["0", "1000"]),
    ("-t", &["0", "5"]),
    (
        "--ring-buffer-size",
        &["4096", "1", "4M", "256M", "257M", "4095M", "0", "12Q"],
    ),
    (
        "-o",
        &["json", "compact", "columns", "columns=pid,comm", "yaml"],
    ),
];

/// Each gadget's own flags.
const OWN: &[(&str, &[Flag])] = &[
    (
        "open",
        &[
            ("--prefix", &["/etc/", "/", "", "relative", "/a\u{0}b"]),
            ("--failed", &[]),
        ],
    ),
    (
        "exec",
        &[
            ("--ignore-failed", &[]),
            ("--max-args", &["1", "0", "64", "1024", "1025"]),
            ("--max-args-bytes", &["1", "0", "4096", "32768", "32769"]),
        ],
    ),
    (
        "file",
        &[
            (
                "--prefix",
                &["/etc/", "/", "/a/../b", "etc", "", "/x/.", "/a\u{0}b"],
            ),
            ("--path", &["/etc/shadow", "/etc/", "/", "/a//b", "x"]),
            (
                "--operations",
                &["open,write", "read", "", "rename", "close"],
            ),
            ("--kill-on", &["write", "open", "close", "never"]),
        ],
    ),
];

/// A `trace` command line: a gadget and up to eight of its flags and the
/// common ones, each with one of its values.
fn command_line() -> impl Strategy<Value = Vec<OsString>> {
    let picks = proptest::collection::vec((any::<u8>(), any::<u8>(), any::<bool>()), 0..8);
    (0..OWN.len(), picks).prop_map(|(gadget, picks)| {
        let (command, own) = OWN[gadget];
        let mut line = vec![OsString::from("trace"), OsString::from(command)];
        for (flag, value, from_own) in picks {
            let flags = if from_own { own } else { COMMON };
            let (name, values) = flags[usize::from(flag) % flags.len()];
            if values.is_empty() {
                line.push(name.into());
            } else {
                let value = values[usize::from(value) % values.len()];
                // `--flag=value` keeps values starting with '-' values.
                line.push(format!("{name}={value}").into());
            }
        }
        line
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn what_the_front_end_sends_the_node_takes(line in command_line()) {
        let Ok(cli) = Cli::try_parse_from(&line) else {
            // clap's own refusal (a flag twice, -A with -n): nothing sent.
            return Ok(());
        };
        let request = match TraceRequest::from_command(cli.trace, NamespaceScope::All) {
            Ok(request) => request,
            Err(err) => {
                let message = err.to_string();
                prop_assert!(!message.contains('\n'), "{}", message);
                return Ok(());
            }
        };
        let run = request.run_request(Some("default"));
        match TracePlan::from_proto(&run) {
            Ok(_) => {}
            Err(InvalidRequest::RingBuffer(bytes)) => {
                prop_assert!(bytes > MAX_RING_BUFFER_BYTES, "{:?}", line);
            }
            Err(err) => {
                prop_assert!(false, "{:?}: the front end sent what the node refuses: {}", line, err);
            }
        }
    }
}

/// The front end's bounds on an exec's arguments are the kernel program's:
/// the largest it lets through, the node takes.
#[test]
fn exec_limits_are_the_kernels_on_both_sides() {
    use gadget_node::gadgets::trace_exec::record::{ARGS_BYTES_CAP, ARGS_COUNT_CAP};
    use gadget_trace::gadgets::trace_exec::{MAX_ARGS, MAX_ARGS_BYTES};
    assert_eq!((MAX_ARGS, MAX_ARGS_BYTES), (ARGS_COUNT_CAP, ARGS_BYTES_CAP));
}
