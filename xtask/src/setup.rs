//! `cargo xtask setup`: what building and testing need beyond Rust.
//!
//! The kernel programs are C compiled by clang with libbpf's helper headers
//! and the kernel's uapi headers; the kernel tests need root, BTF and a
//! kernel with ring buffers. Installs the Debian/Ubuntu packages when run as
//! root, and otherwise says exactly what is missing.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use crate::util::{is_root, on_path, run_checked};

/// A file or program and the Debian package that provides it.
struct Need {
    present: fn() -> bool,
    what: &'static str,
    package: &'static str,
}

const NEEDS: &[Need] = &[
    Need {
        present: || on_path("clang"),
        what: "clang (compiles the eBPF programs)",
        package: "clang",
    },
    Need {
        present: || Path::new("/usr/include/bpf/bpf_helpers.h").exists(),
        what: "libbpf headers (bpf_helpers.h, bpf_core_read.h)",
        package: "libbpf-dev",
    },
    Need {
        present: || Path::new("/usr/include/linux/bpf.h").exists(),
        what: "Linux uapi headers (linux/bpf.h)",
        package: "linux-libc-dev",
    },
    Need {
        present: || on_path("cc"),
        what: "a C compiler and linker for Rust build scripts",
        package: "build-essential",
    },
];

/// Installs or reports what is missing; fails when something still is.
pub fn run(_args: &[String]) -> Result<()> {
    ensure_build_tools()?;
    report_kernel();
    Ok(())
}

/// The build-time part, also run first by `demo` and `test`.
pub fn ensure_build_tools() -> Result<()> {
    ensure_rust_components()?;
    let missing: Vec<&Need> = NEEDS.iter().filter(|need| !(need.present)()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|need| need.package).collect();
    let list = missing
        .iter()
        .map(|need| format!("  {} (package {})", need.what, need.package))
        .collect::<Vec<_>>()
        .join("\n");
    if !is_root() || !on_path("apt-get") {
        bail!(
            "missing:\n{list}\ninstall them with: sudo apt-get install -y {}",
            packages.join(" ")
        );
    }
    eprintln!("installing {}", packages.join(" "));
    run_checked(Command::new("apt-get").args(["update", "-qq"]))?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let still: Vec<&str> = NEEDS
        .iter()
        .filter(|need| !(need.present)())
        .map(|need| need.what)
        .collect();
    if !still.is_empty() {
        bail!("still missing after apt-get: {}", still.join(", "));
    }
    Ok(())
}

/// `cargo fmt` and `cargo clippy` are rustup components that minimal
/// toolchains leave out; `test` runs both.
fn ensure_rust_components() -> Result<()> {
    let have = |tool: &str| {
        crate::util::cargo()
            .args([tool, "--version"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if have("fmt") && have("clippy") {
        return Ok(());
    }
    if !on_path("rustup") {
        bail!("missing: cargo fmt and cargo clippy (rustfmt and clippy components of the Rust toolchain); install them with your Rust distribution");
    }
    eprintln!("installing the rustfmt and clippy components");
    run_checked(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))
}

/// What running gadgets needs from the kernel; reported, not installed.
fn report_kernel() {
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    eprintln!(
        "root: {}\nkernel BTF (/sys/kernel/btf/vmlinux): {}",
        if is_root() {
            "yes"
        } else {
            "no (gadgets and kernel tests need root)"
        },
        if btf {
            "present"
        } else {
            "absent (CO-RE needs a kernel built with CONFIG_DEBUG_INFO_BTF)"
        },
    );
}

/// Fails unless gadgets can run here: root and BTF.
pub fn require_kernel_access(what: &str) -> Result<()> {
    if !is_root() {
        bail!(
            "{what} loads eBPF programs and needs root: run it as root (sudo -E cargo xtask ...)"
        );
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("{what} needs kernel BTF (/sys/kernel/btf/vmlinux): the kernel lacks CONFIG_DEBUG_INFO_BTF");
    }
    Ok(())
}
