//! Every kind of hook a gadget can name attaches, on this kernel, through the
//! function the trace runtime uses: `tests/bpf/attach_kinds.bpf.c` has one
//! program per kind, each counting its runs for this process, and every
//! counter must move when the hooks fire. Needs root.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use aya::maps::Array;
use aya::{Ebpf, EbpfLoader};
use gadget_node::gadgets::{AttachPoint, AttachTarget};
use gadget_node::trace::attach_programs;

/// The kinds in the order of the C file's `hits` slots.
const SLOTS: [&str; 4] = ["tracepoint", "raw tracepoint", "BTF tracepoint", "uprobe"];

/// Each program of the object at its real hook; all fire on getpid().
fn points() -> [AttachPoint; 4] {
    [
        AttachPoint {
            program: "tracepoint__syscalls__sys_enter_getpid",
            target: AttachTarget::Tracepoint {
                category: "syscalls",
                name: "sys_enter_getpid",
            },
            required: true,
        },
        AttachPoint {
            program: "raw_tp__sys_enter",
            target: AttachTarget::RawTracepoint { name: "sys_enter" },
            required: true,
        },
        AttachPoint {
            program: "tp_btf__sys_enter",
            target: AttachTarget::BtfTracepoint { name: "sys_enter" },
            required: true,
        },
        AttachPoint {
            program: "uprobe__getpid",
            target: AttachTarget::Uprobe {
                binary: mapped_libc(),
                symbol: "getpid",
            },
            required: true,
        },
    ]
}

/// The same programs at hooks no kernel or libc has.
fn missing_points(required: bool) -> [AttachPoint; 4] {
    let mut points = points();
    let targets = [
        AttachTarget::Tracepoint {
            category: "syscalls",
            name: "sys_enter_no_such_call",
        },
        AttachTarget::RawTracepoint {
            name: "no_such_tracepoint",
        },
        AttachTarget::BtfTracepoint {
            name: "no_such_tracepoint",
        },
        AttachTarget::Uprobe {
            binary: mapped_libc(),
            symbol: "no_such_function",
        },
    ];
    for (point, target) in points.iter_mut().zip(targets) {
        point.target = target;
        point.required = required;
    }
    points
}

/// The libc this process runs, as mapped (its uprobe must be in this very
/// file to fire on our calls).
fn mapped_libc() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .filter_map(|line| line.split_whitespace().nth(5))
            .find(|path| {
                Path::new(path)
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("libc.so"))
            })
            .expect("the test binary maps libc")
            .to_string()
    })
}

/// The object, compiled once per test binary.
fn object() -> &'static [u8] {
    static OBJECT: OnceLock<Vec<u8>> = OnceLock::new();
    OBJECT.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bpf/attach_kinds.bpf.c");
        let out = tempfile::tempdir().unwrap();
        let object = out.path().join("attach_kinds.bpf.o");
        // Debian keeps <asm/types.h>, which <linux/bpf.h> needs, under the
        // multiarch directory, which clang does not search for -target bpf.
        let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
        let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
        let status = Command::new(&clang)
            .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
            .arg(format!("-I{multiarch}"))
            .arg("-c")
            .arg(&source)
            .arg("-o")
            .arg(&object)
            .status()
            .unwrap_or_else(|err| {
                panic!("cannot run {clang} (cargo xtask setup installs it): {err}")
            });
        assert!(status.success(), "{clang} failed on {}", source.display());
        std::fs::read(&object).unwrap()
    })
}

fn load() -> Ebpf {
    let tgid = std::process::id();
    EbpfLoader::new()
        .set_global("targ_tgid", &tgid, true)
        .load(object())
        .expect("the test object loads")
}

fn hits(ebpf: &Ebpf) -> Vec<u64> {
    let hits: Array<_, u64> = Array::try_from(ebpf.map("hits").unwrap()).unwrap();
    (0..SLOTS.len() as u32)
        .map(|slot| hits.get(&slot, 0).unwrap())
        .collect()
}

#[test]
fn every_kind_of_hook_attaches_and_fires() {
    gadget_node::tracefs::ensure_mounted().unwrap();
    let mut ebpf = load();
    let mut warnings = Vec::new();

    let ids = attach_programs(&mut ebpf, &points(), &mut warnings).unwrap();
    assert_eq!(ids.len(), SLOTS.len(), "one kernel id per program");
    assert!(warnings.is_empty(), "{warnings:?}");

    for _ in 0..10 {
        // SAFETY: getpid has no preconditions. Called through libc (not a
        // raw syscall) so that the uprobe fires too.
        unsafe { libc::getpid() };
    }
    let hits = hits(&ebpf);
    for (kind, count) in SLOTS.iter().zip(&hits) {
        assert!(*count >= 10, "the {kind} ran {count} times for 10 calls");
    }
}

#[test]
fn an_optional_missing_hook_of_any_kind_is_a_warning() {
    gadget_node::tracefs::ensure_mounted().unwrap();
    let mut ebpf = load();
    let mut warnings = Vec::new();

    let ids = attach_programs(&mut ebpf, &missing_points(false), &mut warnings).unwrap();

    assert!(ids.is_empty());
    let libc = mapped_libc();
    assert_eq!(
        warnings,
        [
            "syscalls/sys_enter_no_such_call is not available on this kernel, \
             its events are not traced"
                .to_string(),
            "raw_tp/no_such_tracepoint is not available on this kernel, \
             its events are not traced"
                .to_string(),
            "tp_btf/no_such_tracepoint is not available on this kernel, \
             its events are not traced"
                .to_string(),
            format!(
                "uprobe/{libc}:no_such_function is not available on this node, \
                 its events are not traced"
            ),
        ]
    );
}

#[test]
fn a_required_missing_hook_of_any_kind_fails_with_its_name() {
    gadget_node::tracefs::ensure_mounted().unwrap();
    let libc = mapped_libc();
    let expected = [
        "attaching tracepoint__syscalls__sys_enter_getpid to syscalls/sys_enter_no_such_call: "
            .to_string(),
        "attaching raw_tp__sys_enter to raw_tp/no_such_tracepoint: ".to_string(),
        "attaching tp_btf__sys_enter to tp_btf/no_such_tracepoint: ".to_string(),
        format!("attaching uprobe__getpid to uprobe/{libc}:no_such_function: "),
    ];
    for (point, expected) in missing_points(true).into_iter().zip(expected) {
        // A fresh object each time: a program loads only once.
        let mut ebpf = load();
        let mut warnings = Vec::new();
        let err = attach_programs(&mut ebpf, &[point], &mut warnings).unwrap_err();
        assert!(err.to_string().starts_with(&expected), "{err}");
        assert!(warnings.is_empty());
    }
}
