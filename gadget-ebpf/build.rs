//! Compiles the kernel programs in `src/bpf/*.bpf.c` with clang (BPF target,
//! CO-RE) and dumps the C layout of the shared event structs for the layout
//! test.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const MISSING_TOOLS: &str = "install clang and libbpf-dev (Debian/Ubuntu: \
    `apt-get install clang libbpf-dev linux-libc-dev`), or run `cargo xtask setup`";

fn main() {
    let src = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("src/bpf");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-env-changed=CLANG");

    let (target_arch, multiarch) = match env::var("CARGO_CFG_TARGET_ARCH").unwrap().as_str() {
        "x86_64" => ("x86", "x86_64-linux-gnu"),
        "aarch64" => ("arm64", "aarch64-linux-gnu"),
        other => panic!("gadget-ebpf: unsupported target architecture {other}"),
    };
    for header in ["bpf/bpf_helpers.h", "linux/bpf.h"] {
        if !Path::new("/usr/include").join(header).exists() {
            panic!("gadget-ebpf: /usr/include/{header} is missing: {MISSING_TOOLS}");
        }
    }

    let mut programs: Vec<PathBuf> = std::fs::read_dir(&src)
        .expect("read src/bpf")
        .map(|entry| entry.expect("read src/bpf").path())
        .filter(|path| path.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    programs.sort();
    for program in &programs {
        let name = program.file_name().unwrap().to_string_lossy();
        let object = out.join(name.replace(".bpf.c", ".bpf.o"));
        run(
            Command::new(&clang)
                .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
                .arg(format!("-D__TARGET_ARCH_{target_arch}"))
                .arg(format!("-I{}", src.display()))
                .arg(format!("-I/usr/include/{multiarch}"))
                .arg("-c")
                .arg(program)
                .arg("-o")
                .arg(&object),
            &clang,
        );
    }

    // The host build of the layout dump sees the same headers as the kernel
    // programs; its output is what the Rust mirrors are checked against.
    let dump = out.join("layout_dump");
    run(
        Command::new(&clang)
            .arg(format!("-I{}", src.display()))
            .arg(src.join("layout_dump.c"))
            .arg("-o")
            .arg(&dump),
        &clang,
    );
    let layout = Command::new(&dump).output().expect("run layout_dump");
    assert!(layout.status.success(), "layout_dump failed");
    std::fs::write(out.join("c_layout.txt"), layout.stdout).expect("write c_layout.txt");
}

fn run(command: &mut Command, clang: &str) {
    let status = command
        .status()
        .unwrap_or_else(|err| panic!("gadget-ebpf: cannot run {clang} ({err}): {MISSING_TOOLS}"));
    assert!(status.success(), "gadget-ebpf: {command:?} failed");
}
