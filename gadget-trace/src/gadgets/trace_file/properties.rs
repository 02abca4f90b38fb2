//! Property tests of `--policy`: whatever a policy file holds, reading it
//! never panics and a refusal is one line; a policy sends exactly what the
//! same choices given as flags send, and is refused exactly when they are.

use std::cell::RefCell;
use std::ffi::OsString;

use proptest::prelude::*;

use super::*;

/// The operations, as the policy and the flags name them.
const OPERATION_NAMES: &[(&str, FileOperation)] = &[
    ("open", FileOperation::Open),
    ("read", FileOperation::Read),
    ("write", FileOperation::Write),
    ("close", FileOperation::Close),
];

/// The operations a process can be killed at.
const KILLABLE: &[(&str, FileOperation)] = &[
    ("open", FileOperation::Open),
    ("read", FileOperation::Read),
    ("write", FileOperation::Write),
];

/// What `trace file` with `args` sends, or why it is refused.
fn from_flags(args: Vec<OsString>) -> Result<v1::FileParams, TraceRequestError> {
    thread_local! {
        // Built once: building the command costs more than a case.
        static COMMAND: RefCell<clap::Command> = RefCell::new(GADGET.command());
    }
    let line = std::iter::once(OsString::from("file")).chain(args);
    let matches = COMMAND
        .with_borrow_mut(|command| command.try_get_matches_from_mut(line))
        .expect("the flags parse");
    match GADGET.params(&matches)? {
        run_gadget_request::Params::File(params) => Ok(params),
        other => panic!("not trace file's parameters: {other:?}"),
    }
}

/// What a policy file holding `text` sends, or why it is refused.
fn from_policy(text: &str) -> Result<v1::FileParams, TraceRequestError> {
    let file = Path::new("policy.yaml");
    let policy = Policy::parse(text).map_err(|reason| TraceRequestError::PolicySyntax {
        file: file.display().to_string(),
        reason,
    })?;
    policy.params(file)
}

/// The choices a policy or the flags make, as given.
#[derive(Debug, Clone)]
struct Choices {
    prefixes: Vec<String>,
    paths: Vec<String>,
    operations: Option<Vec<String>>,
    kill_on: Option<String>,
}

impl Choices {
    /// The same choices as `trace file` flags.
    fn flags(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        for prefix in &self.prefixes {
            args.push(OsString::from(format!("--prefix={prefix}")));
        }
        for path in &self.paths {
            args.push(OsString::from(format!("--path={path}")));
        }
        if let Some(operations) = &self.operations {
            args.push(OsString::from(format!(
                "--operations={}",
                operations.join(",")
            )));
        }
        if let Some(kill_on) = &self.kill_on {
            args.push(OsString::from(format!("--kill-on={kill_on}")));
        }
        args
    }
}

/// How a YAML scalar is written.
#[derive(Debug, Clone, Copy)]
enum Quoting {
    /// As it is, when YAML reads it back as the same string.
    Plain,
    /// `'...'`, with `''` for `'`.
    Single,
    /// `"..."`, every character that is not alphanumeric as `\UXXXXXXXX`.
    Double,
}

/// `text` as a YAML scalar that reads back as exactly `text`: quoted as
/// asked when that style can hold it, else double-quoted.
fn yaml_scalar(text: &str, quoting: Quoting) -> String {
    let plain_is_safe = !text.is_empty()
        && text.starts_with(|c: char| c == '/' || c.is_ascii_alphabetic())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    let single_is_safe = text.chars().all(|c| !c.is_control() && c != '\u{feff}');
    match quoting {
        Quoting::Plain if plain_is_safe => text.to_string(),
        Quoting::Single | Quoting::Plain if single_is_safe => {
            format!("'{}'", text.replace('\'', "''"))
        }
        _ => {
            let mut out = String::from("\"");
            for c in text.chars() {
                if c.is_ascii_alphanumeric() {
                    out.push(c);
                } else {
                    out.push_str(&format!("\\U{:08x}", u32::from(c)));
                }
            }
            out.push('"');
            out
        }
    }
}

fn quoting() -> impl Strategy<Value = Quoting> {
    prop_oneof![
        Just(Quoting::Plain),
        Just(Quoting::Single),
        Just(Quoting::Double)
    ]
}

/// A list in flow (`[a, b]`) or block (`- a` lines) style.
fn yaml_list(items: &[String], flow: bool, quoting: &[Quoting]) -> String {
    let scalar = |(i, item): (usize, &String)| yaml_scalar(item, quoting[i % quoting.len()]);
    if flow || items.is_empty() {
        let items: Vec<String> = items.iter().enumerate().map(scalar).collect();
        format!(" [{}]\n", items.join(", "))
    } else {
        let items: Vec<String> = items
            .iter()
            .enumerate()
            .map(|item| format!("  - {}\n", scalar(item)))
            .collect();
        format!("\n{}", items.concat())
    }
}

/// `choices` as a policy file, its fields in any order and style.
fn policy_text(choices: Choices) -> impl Strategy<Value = String> {
    let styles = (
        proptest::collection::vec(any::<bool>(), 3),
        proptest::collection::vec(quoting(), 1..4),
    );
    let fields = styles.prop_map(move |(flow, quoting)| {
        let mut fields = Vec::new();
        // An empty list is written out sometimes: the same as none.
        if !choices.prefixes.is_empty() || flow[0] {
            let list = yaml_list(&choices.prefixes, flow[0], &quoting);
            fields.push(format!("prefixes:{list}"));
        }
        if !choices.paths.is_empty() || flow[1] {
            let list = yaml_list(&choices.paths, flow[1], &quoting);
            fields.push(format!("paths:{list}"));
        }
        if let Some(operations) = &choices.operations {
            let list = yaml_list(operations, flow[2], &quoting);
            fields.push(format!("operations:{list}"));
        }
        if let Some(kill_on) = &choices.kill_on {
            fields.push(format!("killOn: {}\n", yaml_scalar(kill_on, quoting[0])));
        }
        fields
    });
    (fields.prop_shuffle(), any::<bool>()).prop_map(|(fields, header)| {
        // A document marker with nothing after it is a document that is
        // not a mapping: a syntax error, unlike an empty file.
        let head = match (header, fields.is_empty()) {
            (true, false) => "# a policy\n---\n",
            (true, true) => "# a policy\n",
            (false, _) => "",
        };
        format!("{head}{}", fields.concat())
    })
}

/// Text of `len` pieces taken from `palette`: one byte per piece, much
/// cheaper to generate and shrink than a regular expression or a strategy
/// per character.
fn text_of(
    palette: &'static [&'static str],
    len: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), len).prop_map(move |codes| {
        codes
            .into_iter()
            .map(|code| palette[usize::from(code) % palette.len()])
            .collect()
    })
}

/// A path component the kernel can resolve, with characters YAML treats
/// specially and some that are not ASCII.
fn component() -> impl Strategy<Value = String> {
    const PALETTE: &[&str] = &[
        "a", "z", "0", "9", "_", ".", "-", ":", "#", "&", "*", "!", "|", ">", "%", "@", "`", "'",
        "\"", "{", "}", "[", "]", ",", " ", "é", "日",
    ];
    text_of(PALETTE, 1..=10).prop_filter("a resolved path has no . or .. component", |c| {
        c != "." && c != ".."
    })
}

/// A path the kernel can resolve: `/`, or components after `/`.
fn resolved_path() -> impl Strategy<Value = String> {
    proptest::collection::vec(component(), 0..4).prop_map(|parts| format!("/{}", parts.join("/")))
}

/// A prefix: a resolved path, a directory (ending in `/`), or a path and
/// the start of a name.
fn prefix() -> impl Strategy<Value = String> {
    (resolved_path(), 0u8..3, text_of(&["a", "z", "."], 0..=3)).prop_map(|(path, how, start)| {
        match how {
            0 => path,
            1 if path != "/" => format!("{path}/"),
            _ => format!(
                "{}{start}",
                if path == "/" {
                    path
                } else {
                    format!("{path}/")
                }
            ),
        }
    })
}

/// An operation name as a user may write it: any case, blanks around.
fn operation_name(
    names: &'static [(&'static str, FileOperation)],
) -> impl Strategy<Value = String> {
    (
        proptest::sample::select(names),
        any::<u8>(),
        0usize..3,
        0usize..3,
    )
        .prop_map(|((name, _), case, before, after)| {
            let name: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if case >> (i % 8) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            format!("{}{name}{}", " ".repeat(before), " ".repeat(after))
        })
}

/// Choices `trace file` accepts: 1 to 8 paths and prefixes, maybe some
/// operations, maybe a kill at one of them.
fn valid_choices() -> impl Strategy<Value = Choices> {
    (
        proptest::collection::vec(prefix(), 0..=4),
        proptest::collection::vec(resolved_path(), 0..=4),
        proptest::option::of(proptest::collection::vec(
            operation_name(OPERATION_NAMES),
            1..5,
        )),
        proptest::option::of(operation_name(KILLABLE)),
    )
        .prop_filter("something to follow", |(prefixes, paths, _, _)| {
            !prefixes.is_empty() || !paths.is_empty()
        })
        .prop_map(|(prefixes, paths, mut operations, kill_on)| {
            // A kill must be at an operation that is reported.
            if let (Some(operations), Some(kill_on)) = (&mut operations, &kill_on) {
                operations.push(kill_on.clone());
            }
            Choices {
                prefixes,
                paths,
                operations,
                kill_on,
            }
        })
}

/// What `choices` (valid) ask the node for, worked out from the
/// documentation of the flags.
fn expected_params(choices: &Choices) -> v1::FileParams {
    let operation = |name: &str| {
        let name = name.trim().to_ascii_lowercase();
        OPERATION_NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .unwrap()
            .1
    };
    v1::FileParams {
        path_prefixes: choices
            .prefixes
            .iter()
            .map(|p| Bytes::from(p.clone()))
            .collect(),
        paths: choices
            .paths
            .iter()
            .map(|p| Bytes::from(p.clone()))
            .collect(),
        operations: choices.operations.as_ref().map_or(0, |names| {
            names
                .iter()
                .fold(0, |bits, name| bits | 1 << operation(name) as u32)
        }),
        kill_on: choices
            .kill_on
            .as_deref()
            .map_or(0, |name| operation(name).into()),
    }
}

/// Any text a user might put in a field, valid or not: paths with
/// `.`, `..`, `//`, NUL, relative or too long; unknown operations.
fn any_field() -> impl Strategy<Value = String> {
    const PATHS: &[&str] = &["/", "/", ".", "..", "a", "é", "\0", " ", "\t"];
    prop_oneof![
        3 => text_of(PATHS, 0..=8),
        1 => text_of(&["a", "b"], 250..=260).prop_map(|name| format!("/{name}")),
        1 => any::<String>().prop_filter("no comma: the flag splits on it", |s| !s.contains(',')),
        2 => operation_name(OPERATION_NAMES),
        1 => text_of(&["o", "p", "e", "n", " "], 0..=8),
    ]
}

/// Choices of anything, accepted or not: any fields, or valid choices with
/// one field replaced by anything.
fn any_choices() -> impl Strategy<Value = Choices> {
    let near = (valid_choices(), any_field(), 0u8..4).prop_map(|(mut choices, field, which)| {
        match which {
            0 => choices.prefixes.push(field),
            1 => choices.paths.insert(0, field),
            2 => choices
                .operations
                .get_or_insert_with(Vec::new)
                .push(field.replace(',', "")),
            _ => choices.kill_on = Some(field),
        }
        choices
    });
    prop_oneof![near, anything_chosen()]
}

/// Choices of any fields.
fn anything_chosen() -> impl Strategy<Value = Choices> {
    (
        proptest::collection::vec(any_field(), 0..6),
        proptest::collection::vec(any_field(), 0..6),
        proptest::option::of(proptest::collection::vec(
            any_field().prop_filter("no comma", |s| !s.contains(',')),
            0..4,
        )),
        proptest::option::of(any_field()),
    )
        .prop_map(|(prefixes, paths, operations, kill_on)| Choices {
            prefixes,
            paths,
            operations,
            kill_on,
        })
}

/// Text shaped like YAML and like a policy, to get past the parser's
/// first checks: keys, lists, anchors and aliases, tags, quotes, blanks,
/// and anything else.
fn yaml_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        6 => proptest::sample::select(
            &[
                "paths", "prefixes", "operations", "killOn", "kill_on", ":", ": ", "- ", "[",
                "]", "{", "}", ", ", "\n", "  ", "\t", "/etc/", "/etc/shadow", "write", "open",
                "&a ", "*a", "!!str ", "!!binary ", "!!map", "---\n", "...\n", "'", "\"", "#",
                "? ", "|\n", ">-\n", "%YAML 1.2\n", "<<: ", "~", "null", "\u{feff}", "\0",
                "\\", "\r",
            ][..]
        )
        .prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

/// The one-line message of a refusal; fails the case on a longer one.
fn one_line(err: &TraceRequestError) -> Result<String, TestCaseError> {
    let message = err.to_string();
    prop_assert!(!message.contains('\n'), "{:?}", message);
    Ok(message)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A valid policy, in any style, sends exactly what its flags send.
    #[test]
    fn a_policy_sends_what_its_flags_send(
        (choices, text) in valid_choices()
            .prop_flat_map(|choices| (Just(choices.clone()), policy_text(choices))),
    ) {
        let expected = expected_params(&choices);
        let by_flags = from_flags(choices.flags()).map_err(|e| {
            TestCaseError::fail(format!("flags {:?} refused: {e}", choices.flags()))
        })?;
        prop_assert_eq!(&by_flags, &expected);
        let by_policy = from_policy(&text).map_err(|e| {
            TestCaseError::fail(format!("policy {text:?} refused: {e}"))
        })?;
        prop_assert_eq!(by_policy, expected, "{}", text);
    }

    /// Any choices: the policy is refused exactly when the flags are, for
    /// the same reason, naming the field the flag stands for; else both
    /// send the same.
    #[test]
    fn a_policy_is_refused_when_its_flags_are(
        (choices, text) in any_choices()
            .prop_flat_map(|choices| (Just(choices.clone()), policy_text(choices))),
    ) {
        match (from_flags(choices.flags()), from_policy(&text)) {
            (Ok(by_flags), Ok(by_policy)) => prop_assert_eq!(by_flags, by_policy),
            (Err(by_flags), Err(TraceRequestError::PolicyValue { problem, .. })) => {
                prop_assert_eq!(
                    std::mem::discriminant(&by_flags),
                    std::mem::discriminant(&*problem),
                    "{} / {}", by_flags, problem
                );
                one_line(&problem)?;
            }
            (by_flags, by_policy) => prop_assert!(
                false,
                "flags {:?}: {:?}\npolicy {:?}: {:?}",
                choices.flags(), by_flags, text, by_policy
            ),
        }
    }

    /// Any text: a policy or a one-line refusal, never a panic.
    #[test]
    fn any_text_is_a_policy_or_refused_in_one_line(
        text in prop_oneof![yaml_like(), any::<String>()],
    ) {
        if let Err(err) = from_policy(&text) {
            one_line(&err)?;
        }
    }
}

/// Any bytes in the file, through `--policy` as a user gives it: bytes
/// that are not UTF-8 are refused in one line too. One directory for all
/// cases, a new file in it for each (rewriting one file makes the file
/// system flush it each time).
#[test]
fn any_file_is_a_policy_or_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        yaml_like().prop_map(String::into_bytes),
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(1000));
    let case = std::cell::Cell::new(0u32);
    let result = runner.run(&bytes, |bytes| {
        case.set(case.get() + 1);
        let file = dir.path().join(format!("policy-{}.yaml", case.get()));
        std::fs::write(&file, &bytes).unwrap();
        let args = vec![OsString::from("--policy"), file.into_os_string()];
        if let Err(err) = from_flags(args) {
            one_line(&err)?;
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
